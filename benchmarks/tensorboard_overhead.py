"""What live logging costs: the default study (`snakemake --cores N`) with TensorBoard logging on and off.

Each setting runs `--repeats` times from an empty working directory (the data generated, every run trained,
the statistics and figures drawn), the two settings alternated so that the machine's load falls on both
alike; the medians and their ratio are printed (the target: logging adds at most 5%). The progress files
are written either way: they are the jobs' own record, not an option.

    python benchmarks/tensorboard_overhead.py                 # the default study, 3 times each, 2 cores
    python benchmarks/tensorboard_overhead.py --configfile config/optimizers.yaml --repeats 1
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
from planning import timed  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configfile", default=str(REPO / "config/config.yaml"))
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    times: dict[str, list[float]] = {"logging on": [], "logging off": []}
    for repeat in range(args.repeats):
        for setting, value in (("logging off", "false"), ("logging on", "true")):
            with tempfile.TemporaryDirectory() as workdir:
                command = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile")]
                command += ["--directory", workdir, "--cores", str(args.cores)]
                command += ["--configfile", str(Path(args.configfile).resolve())]
                command += ["--config", f"training={{tensorboard: {value}}}"]
                seconds = timed(command, Path(workdir))
                logged = sum(1 for _ in Path(workdir, "results/tensorboard").rglob("events.out.tfevents.*"))
            times[setting].append(seconds)
            print(f"repeat {repeat + 1}, {setting}: {seconds:.1f} s ({logged} TensorBoard runs written)", flush=True)
    on, off = (statistics.median(times[setting]) for setting in ("logging on", "logging off"))
    print(f"median of {args.repeats}: logging on {on:.1f} s, logging off {off:.1f} s, ratio {on / off:.3f}")
    print(f"machine: {os.cpu_count()} cores, load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
