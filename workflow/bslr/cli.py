"""The `bslr` command: one subcommand per stage of the workflow, usable without Snakemake."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from bslr.config import ConfigError
from bslr.data import DataError
from bslr.storage import RunFileError

EXPECTED_ERRORS = (ConfigError, DataError, RunFileError)


def cmd_validate(args: argparse.Namespace) -> None:
    from bslr.config import expand_grid, load_config_file

    config = load_config_file(args.config)
    runs = expand_grid(config)
    for name in config["experiments"]:
        count = sum(run.experiment == name for run in runs)
        print(f"experiment {name}: {count} runs")
    print(f"{args.config}: valid, {len(runs)} runs in all")


def cmd_prepare_data(args: argparse.Namespace) -> None:
    from bslr.data import generated_path, prepare_mnist1d

    path = args.output or generated_path(args.dataset, args.root)
    prepare_mnist1d(path, seed=args.seed)
    print(f"wrote {path}")


def cmd_train(args: argparse.Namespace) -> None:
    from bslr.train import train_to_file

    frame = train_to_file(
        json.loads(args.settings),
        args.output,
        threads=args.threads,
        eval_batch_size=args.eval_batch_size,
        workers=args.workers,
    )
    last = frame.iloc[-1]
    print(f"wrote {args.output}: {len(frame)} epochs, final test accuracy {last['test_acc']:.4f}")


def cmd_aggregate(args: argparse.Namespace) -> None:
    from bslr.aggregate import aggregate
    from bslr.storage import write_table

    runs, epochs = aggregate(args.run_files)
    write_table(runs, args.runs)
    write_table(epochs, args.epochs)
    print(f"aggregated {len(runs)} runs ({int(runs['diverged'].sum())} diverged), {len(epochs)} epochs")


def cmd_stats(args: argparse.Namespace) -> None:
    import pandas as pd

    from bslr.stats import correlations, markdown_table
    from bslr.storage import write_csv, write_table, write_text

    table = correlations(pd.read_parquet(args.runs), args.outcomes, args.methods)
    write_csv(table, args.csv)
    write_table(table, args.parquet)
    write_text(markdown_table(table), args.markdown)
    print(f"wrote {len(table)} correlation rows")


def cmd_figure(args: argparse.Namespace) -> None:
    import pandas as pd

    from bslr.figures import draw

    draw(
        args.name,
        pd.read_parquet(args.runs),
        (args.experiment, args.dataset, args.model),
        json.loads(args.settings),
        args.pdf,
        args.png,
    )


def build_parser() -> argparse.ArgumentParser:
    from bslr import __version__
    from bslr.data import DATASETS
    from bslr.figures import FIGURES
    from bslr.stats import METHODS

    parser = argparse.ArgumentParser(prog="bslr", description=__doc__)
    parser.add_argument("--version", action="version", version=f"bslr {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    command = commands.add_parser("validate", help="check a config file and count its runs")
    command.add_argument("config")
    command.set_defaults(run=cmd_validate)

    command = commands.add_parser("prepare-data", help="generate a data set that needs no download")
    command.add_argument("dataset", choices=[name for name, spec in DATASETS.items() if spec.generated_file])
    command.add_argument("--root", default="resources/data", help="data.root; the file goes to its usual place")
    command.add_argument("--output", help="write to this path instead")
    command.add_argument("--seed", type=int, default=42)
    command.set_defaults(run=cmd_prepare_data)

    command = commands.add_parser("train", help="train one run and write its per-run Parquet")
    command.add_argument("--settings", required=True, help="the run's resolved settings as JSON")
    command.add_argument("--output", required=True)
    command.add_argument("--threads", type=int, default=1)
    command.add_argument("--eval-batch-size", type=int, default=1000)
    command.add_argument("--workers", type=int, default=8, help="DataLoader workers for on-disk data sets")
    command.set_defaults(run=cmd_train)

    command = commands.add_parser("aggregate", help="per-run Parquet files into runs and epochs tables")
    command.add_argument("run_files", nargs="*")
    command.add_argument("--runs", required=True)
    command.add_argument("--epochs", required=True)
    command.set_defaults(run=cmd_aggregate)

    command = commands.add_parser("stats", help="Pearson and Spearman tests in the paper's grouping")
    command.add_argument("--runs", required=True)
    command.add_argument("--outcomes", nargs="+", required=True)
    command.add_argument("--methods", nargs="+", choices=sorted(METHODS), default=["pearson", "spearman"])
    command.add_argument("--csv", required=True)
    command.add_argument("--parquet", required=True)
    command.add_argument("--markdown", required=True)
    command.set_defaults(run=cmd_stats)

    command = commands.add_parser("figure", help="draw one figure of one scenario")
    command.add_argument("name", choices=sorted(FIGURES))
    command.add_argument("--runs", required=True)
    command.add_argument("--experiment", required=True)
    command.add_argument("--dataset", required=True)
    command.add_argument("--model", required=True)
    command.add_argument("--settings", required=True, help="the figure's settings as JSON")
    command.add_argument("--pdf", required=True)
    command.add_argument("--png", required=True)
    command.set_defaults(run=cmd_figure)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except EXPECTED_ERRORS as error:
        print(f"bslr {args.command}: error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
