"""The picture of TensorBoard's HParams tab in docs/: a TensorBoard served on localhost over a study's log
directory, photographed by headless Chromium (Debian's `chromium` package).

    snakemake --cores 2                                   # the default study, logging to TensorBoard
    python docs/screenshot_tensorboard.py                 # -> docs/figures/tensorboard_hparams.png
    python docs/screenshot_tensorboard.py --logdir results/tensorboard/paper --output hparams.png
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

DOCS = Path(__file__).resolve().parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def sessions(url: str) -> int:
    """How many runs the HParams plugin has loaded so far."""
    statuses = ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING"]
    body = {"experimentName": "", "startIndex": 0, "sliceSize": 100000, "allowedStatuses": statuses}
    body = json.dumps(body).encode()
    request = urllib.request.Request(
        f"{url}/data/plugin/hparams/session_groups", body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return len(json.load(response).get("sessionGroups", []))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--logdir", default="results/tensorboard/mnist1d")
    parser.add_argument("--output", default=str(DOCS / "figures/tensorboard_hparams.png"))
    parser.add_argument("--size", default="1800,1000", help="the browser window, in pixels: width,height")
    args = parser.parse_args()
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if browser is None:
        sys.exit("no chromium found: install Debian's `chromium` package (apt install chromium)")
    runs = sum(1 for _ in Path(args.logdir).rglob("events.out.tfevents.*"))
    if runs == 0:
        sys.exit(f"no TensorBoard runs under {args.logdir}: run the study first (snakemake --cores 2)")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "tensorboard.main", "--logdir", args.logdir, "--host", "127.0.0.1"]
    server = subprocess.Popen([*command, "--port", str(port)], stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if sessions(url) >= runs:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                sys.exit(f"TensorBoard did not load the {runs} runs of {args.logdir} in 120 s")
            time.sleep(1)
        subprocess.run(
            [
                browser,
                "--headless",
                "--no-sandbox",  # root in a container has no user namespace to sandbox with
                "--disable-gpu",
                "--hide-scrollbars",
                f"--window-size={args.size}",
                "--virtual-time-budget=20000",  # let the page load the runs and draw before the picture
                f"--screenshot={Path(args.output).resolve()}",
                f"{url}/#hparams",
            ],
            check=True,
            capture_output=True,
        )
    finally:
        server.terminate()
        server.wait(timeout=30)
    print(f"wrote {args.output}: the HParams tab of {runs} runs under {args.logdir}")


if __name__ == "__main__":
    main()
