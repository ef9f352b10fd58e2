"""The picture of TensorBoard's HParams tab in docs/: a TensorBoard served on localhost over a study's log
directory (the tests' server, tests/tensorboard_api.py), photographed by headless Chromium (Debian's
`chromium` package).

    snakemake --cores 2                                   # the default study, logging to TensorBoard
    python docs/screenshot_tensorboard.py                 # -> docs/figures/tensorboard_hparams.png
    python docs/screenshot_tensorboard.py --logdir results/tensorboard/paper --output hparams.png
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS.parent / "tests"))
from tensorboard_api import tensorboard  # noqa: E402


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
    with tensorboard(Path(args.logdir), runs=runs) as board:
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
                f"{board.url}/#hparams",
            ],
            check=True,
            capture_output=True,
        )
    print(f"wrote {args.output}: the HParams tab of {runs} runs under {args.logdir}")


if __name__ == "__main__":
    main()
