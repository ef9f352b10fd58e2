"""Planning cost: `snakemake -n` of a config against Snakemake's own floor for as many trivial jobs.

The floor is a minimal Snakefile whose one rule makes one empty file per job (no params, no resources,
no config): what Snakemake itself needs to build a DAG of that many jobs. The issue's target for the
paper's 1,600 runs is at most 1.5 times the floor. Each command is run `--repeats` times in turn, in a
fresh process, in an empty working directory; the medians and their ratio are printed.

    python benchmarks/planning.py                          # config/paper.yaml, 1,600 jobs
    python benchmarks/planning.py --configfile config/rebuttal.yaml --repeats 7
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FLOOR = """rule all:
    input:
        expand("out/{{index}}.txt", index=range({jobs})),


rule make:
    output:
        "out/{{index}}.txt",
    shell:
        "touch {{output}}"
"""


def timed(command: list[str], workdir: Path) -> float:
    started = time.perf_counter()
    subprocess.run(command, cwd=workdir, check=True, capture_output=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configfile", default=str(REPO / "config/paper.yaml"))
    parser.add_argument("--jobs", type=int, default=1600, help="trivial jobs of the floor (the config's runs)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    snakemake = [sys.executable, "-m", "snakemake", "-n", "--quiet", "all"]
    with tempfile.TemporaryDirectory() as floor_dir, tempfile.TemporaryDirectory() as plan_dir:
        floor_file = Path(floor_dir) / "Snakefile"
        floor_file.write_text(FLOOR.format(jobs=args.jobs))
        commands = {
            "floor": ([*snakemake, "--snakefile", str(floor_file)], Path(floor_dir)),
            "bslr": (
                [
                    *snakemake,
                    "--snakefile",
                    str(REPO / "Snakefile"),
                    "--configfile",
                    str(Path(args.configfile).resolve()),
                ],
                Path(plan_dir),
            ),
        }
        times: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(args.repeats):
            for name, (command, workdir) in commands.items():
                times[name].append(timed(command, workdir))
    floor, bslr = (statistics.median(times[name]) for name in ("floor", "bslr"))
    print(f"snakemake -n, median of {args.repeats} runs each, in turn:")
    for name, label in (("floor", f"floor ({args.jobs} trivial jobs)"), ("bslr", f"bslr ({args.configfile})")):
        spread = f"min {min(times[name]):.2f}, max {max(times[name]):.2f}"
        print(f"  {label}: {statistics.median(times[name]):.2f} s ({spread})")
    print(f"  ratio bslr / floor: {bslr / floor:.2f} (target: at most 1.5)")


if __name__ == "__main__":
    main()
