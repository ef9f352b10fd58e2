"""The `bslr` command: one subcommand per stage of the workflow, usable without Snakemake."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from bslr.errors import ConfigError, DataError, Interrupted, ModelError, OutOfMemory, RunFileError

if TYPE_CHECKING:
    from bslr.config import RunSpec

EXPECTED_ERRORS = (ConfigError, DataError, RunFileError, OutOfMemory, ModelError)


def cmd_validate(args: argparse.Namespace) -> None:
    from bslr.config import read_config_files
    from bslr.plan import Plan

    plan = Plan(read_config_files(args.config))
    for name in plan.experiments:
        print(f"experiment {name}: {len(plan.runs_of(name))} runs")
    print(f"{' + '.join(args.config)}: valid, {len(plan.runs)} runs in all")
    for message in plan.missing_data():
        print(f"warning: {message}; a workflow run stops before any job until then")


def cmd_status(args: argparse.Namespace) -> None:
    from pathlib import Path

    from bslr.config import read_config_files
    from bslr.plan import Plan
    from bslr.status import report

    root = Path(args.directory)
    files = [path if Path(path).is_absolute() else str(root / path) for path in args.configfile]
    print(f"config files read (later ones win): {', '.join(files)}")
    print(report(Plan(read_config_files(files)), root))


def cmd_summary(args: argparse.Namespace) -> None:
    from pathlib import Path

    from bslr.status import summary

    print(summary(Path(args.runs), Path(args.headline), args.diverged, args.figures, args.tables))


def cmd_prepare_data(args: argparse.Namespace) -> None:
    from bslr.data import prepare_mnist1d
    from bslr.plan import generated_path

    path = args.output or generated_path(args.dataset, args.root)
    prepare_mnist1d(path, seed=args.seed)
    print(f"wrote {path}")


def cmd_execution_options(args: argparse.Namespace) -> None:
    from bslr.config import EXECUTION_KEYS
    from bslr.storage import write_text

    options = json.loads(args.options)
    unknown = sorted(set(options) - set(EXECUTION_KEYS))
    if unknown:
        raise ConfigError(f"unknown execution options {unknown}; known: {', '.join(EXECUTION_KEYS)}")
    write_text(json.dumps(options, sort_keys=True, indent=1) + "\n", args.output)
    print(f"wrote {args.output}: {options}")


def read_execution_options(path: str) -> dict:
    from bslr.config import EXECUTION_KEYS

    try:
        with open(path) as handle:
            options = json.load(handle)
    except (OSError, ValueError) as error:
        raise ConfigError(
            f"execution options file {path} is unreadable ({error}); delete it and re-run snakemake to rewrite it"
        ) from error
    missing = [key for key in EXECUTION_KEYS if key not in options]
    if missing:
        raise ConfigError(
            f"execution options file {path} lacks {missing} (an earlier version wrote it); delete it and re-run "
            "snakemake to rewrite it"
        )
    return options


def cmd_train(args: argparse.Namespace) -> None:
    from bslr.config import RunSpec
    from bslr.train import RunOptions, train_pack_to_files

    options = RunOptions(
        threads=args.threads,
        eval_batch_size=args.eval_batch_size,
        workers=args.workers,
        checkpoint=args.checkpoint,
        keep_checkpoint=args.keep_checkpoint,
        deterministic=args.deterministic,
        data_file=args.data,
        progress=args.progress,
    )
    tensorboard = args.tensorboard
    if args.execution:  # the workflow's per-experiment options file (see workflow/rules/train.smk)
        execution = read_execution_options(args.execution)
        options = dataclasses.replace(
            options,
            eval_batch_size=execution["eval_batch_size"],
            workers=execution["workers"],
            keep_checkpoint=execution["keep_checkpoints"],
            deterministic=execution["deterministic"],
        )
        if execution["tensorboard"] and tensorboard is None:
            tensorboard = "auto"
    if args.protocol:  # the workflow's way: the shared protocol, and each run's keys from its file name
        from bslr.plan import checkpoint_path, run_keys

        protocol = json.loads(args.protocol)
        runs = [RunSpec.of(protocol | run_keys(output)) for output in args.output]
        if args.checkpoint == "auto":
            options = dataclasses.replace(options, checkpoint=checkpoint_path(args.output))
    else:
        settings = json.loads(args.settings)
        runs = [RunSpec.of(run) for run in (settings if isinstance(settings, list) else [settings])]  # a pack, or one
    if options.checkpoint == "auto":
        raise ConfigError("--checkpoint auto needs --protocol and per-run output paths; give a checkpoint path")
    if tensorboard is not None:
        options = dataclasses.replace(options, tensorboard=tensorboard_dirs(runs, args.output, tensorboard))
    frames = train_pack_to_files(runs, args.output, options)
    for frame, output in zip(frames, args.output, strict=True):
        last = frame.iloc[-1]
        print(
            f"wrote {output}: {len(frame)} evaluations, {int(last['step'])} steps, final test accuracy "
            f"{last['test_acc']:.4f}"
        )


def tensorboard_dirs(runs: Sequence[RunSpec], outputs: Sequence[str], logdir: str) -> tuple[str, ...]:
    """Each run's TensorBoard run directory: beside the per-run files' tree (`auto`, the workflow's), or under
    `logdir`/<experiment>/."""
    from bslr.plan import PATH_KEYS, RUN_PATTERN, Run, tensorboard_dir

    if logdir == "auto":
        unnamed = [output for output in outputs if not RUN_PATTERN.fullmatch(output)]
        if unnamed:
            raise ConfigError(
                f"--tensorboard auto puts each run's log beside its per-run file's results/runs/ tree, but "
                f"{unnamed[0]} is not such a path; give a log directory"
            )
        return tuple(tensorboard_dir(output) for output in outputs)
    return tuple(tensorboard_dir(Run(**{key: getattr(run, key) for key in PATH_KEYS}).path, logdir) for run in runs)


def cmd_export(args: argparse.Namespace) -> None:
    from pathlib import Path

    from bslr.plan import RUN, RUN_PATTERN

    parts = Path(args.logdir or ".").resolve().parts
    if args.logdir and any(parts[index : index + 2] == ("results", "runs") for index in range(len(parts))):
        raise ConfigError(f"--logdir {args.logdir} is inside results/runs, among the per-run files; give another")
    files: list[Path] = []
    for given in map(Path, args.paths):
        if not given.exists():
            raise ConfigError(f"{given} does not exist; give per-run files or directories of them (results/runs)")
        if given.is_dir():
            files += sorted(path for path in given.rglob("*.parquet") if RUN_PATTERN.fullmatch(str(path)))
        elif RUN_PATTERN.fullmatch(str(given)):
            files.append(given)
        else:
            raise ConfigError(f"{given} is neither a directory nor a per-run file of the form {RUN}")
    if not files:
        raise ConfigError(f"no per-run files ({RUN}) under {', '.join(args.paths)}")
    from bslr.tensorboard import export

    written = export(files, args.logdir, args.replace)
    where = args.logdir or "results/tensorboard/ beside each file's results/runs/"
    print(
        f"wrote the TensorBoard logs of {len(written)} of {len(files)} runs under {where}"
        + (
            f"; {len(files) - len(written)} had one already (--replace writes them again)"
            if len(written) < len(files)
            else ""
        )
    )


def cmd_aggregate(args: argparse.Namespace) -> None:
    from bslr.aggregate import aggregate
    from bslr.storage import write_table

    runs, epochs = aggregate(args.run_files)
    write_table(runs, args.runs)
    write_table(epochs, args.epochs)
    print(f"aggregated {len(runs)} runs ({int(runs['diverged'].sum())} diverged), {len(epochs)} epochs")


def stats_outputs(pairs: list[str] | None) -> dict[str, str]:
    """`NAME=PATH` pairs (the stats rule's named outputs) over the default paths of bslr.plan.STATS_OUTPUTS."""
    from bslr.plan import STATS_OUTPUTS

    outputs = dict(STATS_OUTPUTS)
    for pair in pairs or []:
        name, _, path = pair.partition("=")
        if name not in STATS_OUTPUTS or not path:
            raise ConfigError(f"bslr stats --output {pair!r}: give NAME=PATH, NAME one of {', '.join(STATS_OUTPUTS)}")
        outputs[name] = path
    return outputs


def cmd_stats(args: argparse.Namespace) -> None:
    import pandas as pd

    from bslr import stats, tables
    from bslr.storage import write_csv, write_table, write_text

    analysis = stats.analyse(
        pd.read_parquet(args.runs),
        args.outcomes,
        args.methods,
        stats.Primary(args.primary_method, args.primary_outcome),
        args.diverged,
        args.bootstrap_resamples,
        args.seed,
        args.permutations,
        args.alpha,
    )
    outputs = stats_outputs(args.output)
    write_csv(analysis.correlations, outputs["csv"])
    write_table(analysis.correlations, outputs["parquet"])
    write_text(tables.markdown_table(analysis, args.alpha), outputs["markdown"])
    for name in (
        "granulated_kendall",
        "iso_ratio",
        "regression",
        "stratified",
        "divergence",
        "headline",
        "measure_slopes",
    ):
        write_csv(getattr(analysis, name), outputs[name])
    markdown, latex = tables.paper_tables(analysis, args.alpha)
    write_text(markdown, outputs["tables_markdown"])
    write_text(latex, outputs["tables_latex"])
    write_text(tables.html_tables(analysis, args.alpha), outputs["tables_html"])
    diverged = int(analysis.runs["diverged"].sum())
    print(f"wrote {len(analysis.correlations)} correlation rows; {diverged} diverged runs ({args.diverged}d)")


def figure_tables(name: str, pairs: list[str]) -> dict[str, str]:
    """`NAME=PATH` pairs, one per table the figure reads (its `tables` in bslr.catalog.FIGURES); a figure that
    reads one table also takes its bare path."""
    from bslr.catalog import FIGURES

    wanted = FIGURES[name].tables
    if len(pairs) == 1 and "=" not in pairs[0] and len(wanted) == 1:
        return {wanted[0]: pairs[0]}
    paths = dict(pair.partition("=")[::2] for pair in pairs)
    if sorted(paths) != sorted(wanted) or not all(paths.values()):
        raise ConfigError(f"bslr figure {name} --input: give {' '.join(f'{table}=PATH' for table in wanted)}")
    return paths


def cmd_figure(args: argparse.Namespace) -> None:
    from pathlib import Path

    import pandas as pd

    from bslr.catalog import FIGURES

    if args.name not in FIGURES:
        raise ConfigError(f"unknown figure {args.name!r}; known figures: {', '.join(sorted(FIGURES))}")
    if args.experiment is None and FIGURES[args.name].scope != "study":
        raise ConfigError(f"figure {args.name} needs --experiment")
    from bslr.figures import draw  # matplotlib, once the arguments are known good

    tables = {
        table: pd.read_csv(path) if path.endswith(".csv") else pd.read_parquet(path)
        for table, path in figure_tables(args.name, args.input).items()
    }
    outputs = {"pdf": args.pdf, "png": args.png, "csv": args.csv or str(Path(args.pdf).with_suffix(".csv"))}
    draw(args.name, tables, (args.experiment, args.dataset, args.model), json.loads(args.settings), outputs)


def build_parser() -> argparse.ArgumentParser:
    from bslr import __version__

    parser = argparse.ArgumentParser(prog="bslr", description=__doc__)
    parser.add_argument("--version", action="version", version=f"bslr {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    command = commands.add_parser("validate", help="check config files (layered as snakemake does) and count runs")
    command.add_argument("config", nargs="+", help="config files, later ones overriding earlier ones")
    command.set_defaults(run=cmd_validate)

    command = commands.add_parser("status", help="where a config's runs stand (done, running, failed...), from disk")
    command.add_argument(
        "--configfile", nargs="+", default=["config/config.yaml"], help="as given to snakemake (later files win)"
    )
    command.add_argument("--directory", default=".", help="the workflow's working directory")
    command.set_defaults(run=cmd_status)

    command = commands.add_parser("summary", help="what a finished workflow made (printed when it ends)")
    command.add_argument("--runs", required=True, help="runs.parquet")
    command.add_argument("--headline", required=True, help="the statistics' headline.csv")
    command.add_argument("--diverged", choices=["include", "exclude"], default="exclude")
    command.add_argument("--figures", required=True, help="where the figures are")
    command.add_argument("--tables", required=True, help="where the tables are")
    command.set_defaults(run=cmd_summary)

    command = commands.add_parser("prepare-data", help="generate a data set that needs no download")
    command.add_argument("dataset", choices=["mnist1d"])
    command.add_argument("--root", default="resources/data", help="data.root; the file goes to its usual place")
    command.add_argument("--output", help="write to this path instead")
    command.add_argument("--seed", type=int, default=42)
    command.set_defaults(run=cmd_prepare_data)

    command = commands.add_parser("train", help="train a pack of runs (or one run) and write per-run Parquets")
    given = command.add_mutually_exclusive_group(required=True)
    given.add_argument(
        "--settings", help="a JSON list of resolved run settings that differ only in lr (a pack), or one run's"
    )
    given.add_argument(
        "--protocol",
        help="the settings the pack's runs share (JSON); each run's other keys are read from its output path",
    )
    command.add_argument("--output", required=True, nargs="+", help="one per-run Parquet per run, in order")
    command.add_argument("--threads", type=int, default=1)
    command.add_argument("--eval-batch-size", type=int, default=1000)
    command.add_argument("--workers", type=int, default=8, help="DataLoader workers for on-disk data sets")
    command.add_argument(
        "--checkpoint", help="resume from and save to this file after every epoch; auto: where bslr.plan puts it"
    )
    command.add_argument("--keep-checkpoint", action="store_true", help="keep the checkpoint after the run")
    command.add_argument("--deterministic", action="store_true", help="deterministic CUDA kernels")
    command.add_argument(
        "--execution",
        help="a JSON file of execution options, in place of the four above (its `tensorboard`: --tensorboard auto)",
    )
    command.add_argument("--progress", help="write the job's progress here, a JSON line per event (bslr.progress)")
    command.add_argument(
        "--tensorboard",
        metavar="LOGDIR",
        help="log each run to TensorBoard under LOGDIR/<experiment>/ (auto: beside the per-run files' tree)",
    )
    command.add_argument(
        "--data",
        help="the data file the rule gives: generated MNIST-1D (if not under data_root) or a config's npz",
    )
    command.set_defaults(run=cmd_train)

    command = commands.add_parser("export", help="write finished runs' logs for other tools")
    formats = command.add_subparsers(dest="format", required=True)
    command = formats.add_parser(
        "tensorboard", help="the TensorBoard logs of runs trained without them, from their per-run Parquet files"
    )
    command.add_argument(
        "paths", nargs="*", default=["results/runs"], help="per-run files, or directories to search (results/runs)"
    )
    command.add_argument(
        "--logdir", help="write under LOGDIR/<experiment>/ (default: results/tensorboard/ beside results/runs/)"
    )
    command.add_argument("--replace", action="store_true", help="write runs that have a log already again")
    command.set_defaults(run=cmd_export)

    command = commands.add_parser("execution-options", help="write an experiment's execution options file")
    command.add_argument("--options", required=True, help="JSON object with keys of bslr.config.EXECUTION_KEYS")
    command.add_argument("--output", required=True)
    command.set_defaults(run=cmd_execution_options)

    command = commands.add_parser("aggregate", help="per-run Parquet files into runs and epochs tables")
    command.add_argument("run_files", nargs="*")
    command.add_argument("--runs", required=True)
    command.add_argument("--epochs", required=True)
    command.set_defaults(run=cmd_aggregate)

    command = commands.add_parser("stats", help="correlation tests in the paper's grouping, and the ratio tested")
    command.add_argument("--runs", required=True)
    command.add_argument("--outcomes", nargs="+", required=True)
    command.add_argument("--methods", nargs="+", default=["pearson", "spearman"])
    command.add_argument("--primary-method", default="spearman", help="method of the declared primary analysis")
    command.add_argument("--primary-outcome", default="final_test_acc", help="outcome of the primary analysis")
    command.add_argument("--diverged", choices=["include", "exclude"], default="exclude")
    command.add_argument("--alpha", type=float, default=0.05)
    command.add_argument("--bootstrap-resamples", type=int, default=1000)
    command.add_argument("--permutations", type=int, default=9999, help="Monte Carlo permutations, stratified tests")
    command.add_argument("--seed", type=int, default=0, help="seed of the bootstrap and the permutations")
    command.add_argument(
        "--output", nargs="+", metavar="NAME=PATH", help="where each output goes (default: bslr.plan.STATS_OUTPUTS)"
    )
    command.set_defaults(run=cmd_stats)

    command = commands.add_parser("figure", help="draw one figure of one scenario or experiment, and its data")
    command.add_argument("name", help="a key of the config's `figures` section")
    command.add_argument(
        "--input",
        required=True,
        nargs="+",
        metavar="TABLE=PATH",
        help="each table the figure reads (bslr.catalog.FIGURES): runs, epochs, correlations, iso_ratio...",
    )
    command.add_argument("--experiment", help="the experiment (omit for the figures of every experiment: budgets)")
    command.add_argument("--dataset", help="with --model: one scenario (omit both for experiment figures)")
    command.add_argument("--model")
    command.add_argument(
        "--settings", required=True, help="the figure's settings as JSON, with the analysis keys it applies"
    )
    command.add_argument("--pdf", required=True)
    command.add_argument("--png", required=True)
    command.add_argument("--csv", help="the data drawn, for readers who re-plot (default: beside the PDF)")
    command.set_defaults(run=cmd_figure)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except BrokenPipeError:  # `bslr status | head`: the reader has what it wanted
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 (Python's flush at exit would raise again)
        return 0
    except EXPECTED_ERRORS as error:
        print(f"bslr {args.command}: error: {error}", file=sys.stderr)
        return 1
    except Interrupted as error:
        print(f"bslr {args.command}: stopped, {error}; re-running the job resumes from its checkpoint", file=sys.stderr)
        return 143
    except KeyboardInterrupt:  # Ctrl-C outside the training loop (setting up, writing): nothing half-done is kept
        print(
            f"bslr {args.command}: stopped, received signal SIGINT; re-running the job resumes from its last "
            "checkpoint, if one was saved",
            file=sys.stderr,
        )
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
