"""The plan of a config: its runs, the packs that train them, every training path, the rules' params.

Snakemake plans from this module (the rule files ask it and declare no path template of its own), and
so can any script. It imports neither torch nor matplotlib: a dry run of the paper's 1,600 runs costs
what Snakemake itself costs (benchmarks/planning.py).

A **pack** is the runs of one (experiment, data set, model, batch size, seed) that one training job
trains together; they differ only in learning rate. `training.pack.size` cuts each experiment's list of
learning rates into chunks of at most that many (1: every run is its own job).
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import json
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bslr.catalog import BUILTIN_DATASETS, FIGURES, Catalog, missing_data_message
from bslr.config import (
    EXECUTION_KEYS,
    RunSpec,
    format_lr,
    job_resources,
    pack_size,
    run_spec,
    training_settings,
    validate_config,
)
from bslr.registry import catalog_of

# Per-run results (the output contract), and per-pack files: `{lrs}` is the pack's learning rate, or its
# first and last ("0.04-0.2"), so that a pack of one has the paths of its run.
RUN = "results/runs/{experiment}/{dataset}/{model}/bs{batch_size}_lr{lr}_seed{seed}.parquet"
CHECKPOINT = "results/checkpoints/{experiment}/{dataset}/{model}/bs{batch_size}_lr{lrs}_seed{seed}.pt"
TRAIN_LOG = "logs/train/{experiment}/{dataset}/{model}/bs{batch_size}_lr{lrs}_seed{seed}.log"
TRAIN_PROGRESS = "logs/train/{experiment}/{dataset}/{model}/bs{batch_size}_lr{lrs}_seed{seed}.progress.jsonl"
TRAIN_BENCHMARK = "results/benchmarks/train/{experiment}/{dataset}/{model}/bs{batch_size}_lr{lrs}_seed{seed}.tsv"
# TensorBoard: a log directory per experiment (`tensorboard --logdir` opens it as it is), a run per run.
TENSORBOARD = "results/tensorboard/{experiment}"
TENSORBOARD_RUN = TENSORBOARD + "/{dataset}/{model}/bs{batch_size}_lr{lr}_seed{seed}"
TENSORBOARD_ROOT = TENSORBOARD[: TENSORBOARD.index("{")]
EXECUTION = "results/execution/{experiment}.json"
EXECUTION_LOG = "logs/execution/{experiment}.log"
SCENARIO_FIGURE = "results/figures/{experiment}/{dataset}/{model}/{name}.{extension}"
SCENARIO_FIGURE_LOG = "logs/figures/{experiment}/{dataset}/{model}/{name}.log"
EXPERIMENT_FIGURE = "results/figures/{experiment}/{name}.{extension}"
EXPERIMENT_FIGURE_LOG = "logs/figures/{experiment}/{name}.log"
FIGURES_DIR = SCENARIO_FIGURE[: SCENARIO_FIGURE.index("{")]  # where every figure goes, for messages
STUDY_FIGURE = "results/figures/{name}.{extension}"
STUDY_FIGURE_LOG = "logs/figures/{name}.log"

# What the aggregate rule writes: every run's row, and every evaluation of every run.
AGGREGATE_OUTPUTS = {"runs": "results/aggregate/runs.parquet", "epochs": "results/aggregate/epochs.parquet"}

# What the stats rule writes, by the names of its outputs (`bslr stats --output NAME=PATH`).
STATS_OUTPUTS = {
    "csv": "results/stats/correlations.csv",
    "parquet": "results/stats/correlations.parquet",
    "markdown": "results/stats/correlations.md",
    "granulated_kendall": "results/stats/granulated_kendall.csv",
    "iso_ratio": "results/stats/iso_ratio.csv",
    "headline": "results/stats/headline.csv",
    "regression": "results/stats/regression.csv",
    "stratified": "results/stats/stratified.csv",
    "divergence": "results/stats/divergence.csv",
    "measure_slopes": "results/stats/measure_slopes.csv",
    "tables_markdown": "results/tables/correlations.md",
    "tables_latex": "results/tables/correlations.tex",
    "tables_html": "results/tables/correlations.html",
}
STATS_LOG = "logs/stats.log"
TABLES_DIR = STATS_OUTPUTS["tables_latex"].rsplit("/", 1)[0] + "/"

FIGURE_EXTENSIONS = ("pdf", "png", "csv")  # the figure, and the data it draws for readers who re-plot
# Each figure's path template, by its scope (`bslr.catalog.FIGURES`).
FIGURE_PATHS = {"scenario": SCENARIO_FIGURE, "experiment": EXPERIMENT_FIGURE, "study": STUDY_FIGURE}
FIGURE_LOGS = {"scenario": SCENARIO_FIGURE_LOG, "experiment": EXPERIMENT_FIGURE_LOG, "study": STUDY_FIGURE_LOG}

RUN_PATTERN = re.compile(
    r"(?:.*/)?results/runs/(?P<experiment>[^/]+)/(?P<dataset>[^/]+)/(?P<model>[^/]+)/"
    r"bs(?P<batch_size>\d+)_lr(?P<lr>[0-9.]+)_seed(?P<seed>\d+)\.parquet"
)


@dataclass(frozen=True)
class Run:
    """One grid point: one per-run Parquet file."""

    experiment: str
    model: str
    dataset: str
    batch_size: int
    lr: float
    seed: int

    @property
    def path(self) -> str:
        return RUN.format(
            experiment=self.experiment,
            dataset=self.dataset,
            model=self.model,
            batch_size=int(self.batch_size),
            lr=format_lr(self.lr),
            seed=int(self.seed),
        )


def expand_grid(config: dict[str, Any]) -> list[Run]:
    """Every run of every experiment of a validated config, in a stable order."""
    return [
        Run(name, *point)
        for name, experiment in config["experiments"].items()
        for point in itertools.product(
            experiment["models"],
            experiment["datasets"],
            experiment["batch_sizes"],
            experiment["learning_rates"],
            experiment["seeds"],
        )
    ]


def scenarios(config: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(experiment, dataset, model) triples: the paper's unit of analysis and of figures."""
    return [
        (name, dataset, model)
        for name, experiment in config["experiments"].items()
        for dataset in experiment["datasets"]
        for model in experiment["models"]
    ]


def generated_path(dataset: str, root: str | Path, catalog: Catalog | None = None) -> Path | None:
    """Where the workflow writes a data set it generates itself (MNIST-1D); None for the others."""
    spec = (catalog.datasets if catalog else BUILTIN_DATASETS)[dataset]
    return Path(root) / spec.generated_file if spec.generated_file else None


def figure_pattern(template: str, name: str, extension: str = "") -> str:
    """A figure's path (or log) with its name and extension filled in, its scenario left as wildcards."""
    return template.replace("{name}", name).replace("{extension}", extension)


def run_of_path(path: str) -> Run:
    """The run whose per-run Parquet `path` is (the file name is the run's identity)."""
    match = RUN_PATTERN.fullmatch(str(path))
    if match is None:
        raise ValueError(f"{path} is not a per-run file path of the form {RUN}")
    fields = match.groupdict()
    return Run(
        fields["experiment"],
        fields["model"],
        fields["dataset"],
        int(fields["batch_size"]),
        float(fields["lr"]),
        int(fields["seed"]),
    )


def lrs_text(lrs: tuple[float, ...] | list[float]) -> str:
    """A pack's name in its paths: its learning rate, or its first and last."""
    return format_lr(lrs[0]) if len(lrs) == 1 else f"{format_lr(lrs[0])}-{format_lr(lrs[-1])}"


# The keys of a run's settings that its per-run file name carries; the rest is its job's protocol.
PATH_KEYS = ("experiment", "dataset", "model", "batch_size", "lr", "seed")


def run_keys(path: str) -> dict[str, Any]:
    """The settings a per-run file name carries: experiment, data set, model, batch size, lr, seed."""
    run = run_of_path(path)
    return {key: getattr(run, key) for key in PATH_KEYS}


def prefix_of(output: str) -> str:
    """What comes before a per-run file's `results/runs/`: a Snakemake module's prefix, or nothing."""
    return str(output)[: str(output).index("results/runs/")]


def checkpoint_path(outputs: list[str]) -> str:
    """A pack's checkpoint, beside its per-run files' tree (under the same prefix, if any)."""
    runs = [run_of_path(path) for path in outputs]
    first = runs[0]
    return prefix_of(outputs[0]) + CHECKPOINT.format(
        experiment=first.experiment,
        dataset=first.dataset,
        model=first.model,
        batch_size=first.batch_size,
        seed=first.seed,
        lrs=lrs_text([run.lr for run in runs]),
    )


def tensorboard_dir(output: str, logdir: str | Path | None = None) -> str:
    """A run's TensorBoard run directory, from its per-run file's path: beside the per-run files' tree (under
    the same prefix, if any), or under `logdir`/<experiment>/ where one is given."""
    run = run_of_path(output)
    fields = dict(
        experiment=run.experiment,
        dataset=run.dataset,
        model=run.model,
        batch_size=run.batch_size,
        lr=format_lr(run.lr),
        seed=run.seed,
    )
    if logdir is not None:
        return str(Path(logdir) / TENSORBOARD_RUN.removeprefix(TENSORBOARD_ROOT).format(**fields))
    return prefix_of(output) + TENSORBOARD_RUN.format(**fields)


@dataclass(frozen=True)
class TrainRule:
    """One training rule: the jobs of one (experiment, data set, model) and one chunk of its learning rates
    (`lrs`), or every learning rate one run per job (`lrs` None: an `{lr}` wildcard). Everything in it is
    fixed when the workflow is parsed, so Snakemake evaluates no function per job (planning speed)."""

    name: str
    experiment: str
    dataset: str
    model: str
    lrs: tuple[float, ...] | None
    protocol: str  # the params Snakemake records: a change re-trains the rule's runs
    inputs: list[str]
    execution: str
    threads: int
    resources: dict[str, int]

    def _fixed(self, template: str) -> str:
        return (
            template.replace("{experiment}", self.experiment)
            .replace("{dataset}", self.dataset)
            .replace("{model}", self.model)
            .replace("{lrs}", "{lr}" if self.lrs is None else lrs_text(self.lrs))
        )

    @property
    def outputs(self) -> list[str]:
        fixed = self._fixed(RUN)
        return [fixed] if self.lrs is None else [fixed.replace("{lr}", format_lr(lr)) for lr in self.lrs]

    @property
    def log(self) -> str:
        return self._fixed(TRAIN_LOG)

    @property
    def progress(self) -> str:
        return self._fixed(TRAIN_PROGRESS)

    @property
    def benchmark(self) -> str:
        return self._fixed(TRAIN_BENCHMARK)


class Plan:
    """A validated config and everything planned from it."""

    def __init__(self, config: dict[str, Any], overrides: dict[str, Any] | None = None) -> None:
        """`overrides`: what `snakemake --config` set, merged into `config` already (see validate_config)."""
        self.config = validate_config(config, overrides)
        self.catalog = catalog_of(self.config)
        self.runs = expand_grid(self.config)
        self.experiments = list(self.config["experiments"])

    @functools.cache  # noqa: B019 (one Plan per workflow; its settings never change)
    def training(self, experiment: str) -> dict[str, Any]:
        return training_settings(self.config, experiment)

    @functools.cache  # noqa: B019 (as `training`)
    def chunks(self, experiment: str, dataset: str, model: str) -> list[tuple[float, ...]]:
        """The experiment's learning rates, in config order, cut into packs of at most `pack.size` (under
        `auto`, of the size `pack_size` finds for this model and data set)."""
        lrs = self.config["experiments"][experiment]["learning_rates"]
        size = pack_size(self.config, experiment, model, dataset, self.catalog)
        return [tuple(lrs[start : start + size]) for start in range(0, len(lrs), size)]

    def missing_data(self, root: Path = Path(".")) -> list[str]:
        """A message for each built-in data set whose files are not under data.root (relative to `root`)
        while a run on it is still to train and torchvision may not download them: its jobs would fail."""
        data = self.config["data"]
        if data["download"]:
            return []
        untrained = dict.fromkeys(run.dataset for run in self.runs if not (root / run.path).exists())
        messages = []
        for name in untrained:
            spec, where = self.catalog.datasets[name], root / data["root"]
            absent = [path for path in spec.required if not (where / path).exists()]
            if absent:
                shown = ", ".join(absent[:3]) + (f" and {len(absent) - 3} more" if len(absent) > 3 else "")
                messages.append(missing_data_message(spec, where, f"missing: {shown}"))
        return messages

    def replaced_runs(self, root: Path = Path(".")) -> list[tuple[Run, dict[str, tuple[Any, Any]]]]:
        """Trained runs whose recorded settings differ from what the config now plans for them, with each
        changed setting (recorded, planned): Snakemake would re-train them to the same paths."""
        import pyarrow.parquet as pq

        replaced = []
        for run in self.runs:
            path = root / run.path
            if not path.is_file():
                continue
            recorded = json.loads((pq.read_schema(path).metadata or {}).get(b"settings", b"{}"))
            planned = json.loads(json.dumps(self.trained_settings(run)))
            keys = sorted(set(recorded) | set(planned))
            changed = {
                key: (recorded.get(key), planned.get(key)) for key in keys if recorded.get(key) != planned.get(key)
            }
            if changed:
                replaced.append((run, changed))
        return replaced

    def replacement_message(self, root: Path = Path(".")) -> str:
        """One line on the trained runs a run of this config would replace, or empty."""
        replaced = self.replaced_runs(root)
        if not replaced:
            return ""
        changes = Counter(
            f"{key}: {json.dumps(old)} -> {json.dumps(new)}"
            for _, changed in replaced
            for key, (old, new) in changed.items()
        )
        shown = "; ".join(change for change, _ in changes.most_common(3))
        more = f" and {len(changes) - 3} other changes" if len(changes) > 3 else ""
        return (
            f"{len(replaced)} trained runs would be re-trained to the same paths, replacing their results, "
            f"because their settings changed ({shown}{more})"
        )

    def report_problem(self, root: Path = Path(".")) -> str:
        """Why `snakemake --report` of this config would fail or show another config's results, or empty.

        The aggregate, the statistics and the figures have one path whatever the config, so a working
        directory in which another config ran last holds that config's tables (and this config's figures
        drawn from older ones). Snakemake's report runs nothing: it bundles what is on disk."""
        import pyarrow.parquet as pq

        runs_table = root / AGGREGATE_OUTPUTS["runs"]
        run_first = "run the workflow with this config first (snakemake --cores N, the same config files)"
        if not runs_table.is_file():
            return f"{AGGREGATE_OUTPUTS['runs']} does not exist yet: {run_first}, then --report"
        recorded = pq.read_table(runs_table, columns=list(PATH_KEYS)).to_pylist()
        found = {Run(**{key: row[key] for key in PATH_KEYS}) for row in recorded}
        if found != set(self.runs):
            experiments = ", ".join(sorted({run.experiment for run in found})) or "none"
            return (
                f"{AGGREGATE_OUTPUTS['runs']} holds another config's runs ({len(found)} of experiments {experiments}; "
                f"this config has {len(self.runs)}): {run_first}, which aggregates, tests and draws its runs, "
                "then --report"
            )
        aggregated = runs_table.stat().st_mtime
        stale = [
            path
            for path in [*STATS_OUTPUTS.values(), *self.figure_files()]
            if not (root / path).is_file() or (root / path).stat().st_mtime < aggregated
        ]
        if stale:
            return (
                f"{len(stale)} of this config's tables and figures are missing or older than its runs table "
                f"(first: {stale[0]}): {run_first}, then --report"
            )
        return ""

    def pack_lrs(self, run: Run) -> tuple[float, ...]:
        """The learning rates of the pack that trains `run` (its own alone where runs are not packed)."""
        return next(chunk for chunk in self.chunks(run.experiment, run.dataset, run.model) if run.lr in chunk)

    def train_rules(self) -> list[TrainRule]:
        """A rule per (experiment, data set, model) and chunk of learning rates: `train_<experiment>_<data
        set>_<model>`, with `_pack<k>` where the learning rates are cut into several packs."""
        rules = []
        for experiment, dataset, model in scenarios(self.config):
            chunks = self.chunks(experiment, dataset, model)
            # one run per job: the learning rate a wildcard of one rule (`all` or N keep their fixed packs)
            one_per_job = self.training(experiment)["pack"]["size"] in (1, "auto") and len(chunks[0]) == 1
            chunks = [None] if one_per_job else chunks
            for index, lrs in enumerate(chunks, 1):
                name = f"train_{experiment}_{dataset}_{model}" + (f"_pack{index}" if len(chunks) > 1 else "")
                runs = 1 if lrs is None else len(lrs)
                resources = job_resources(self.config, experiment, model, dataset, runs, self.catalog)
                rules.append(
                    TrainRule(
                        name=name,
                        experiment=experiment,
                        dataset=dataset,
                        model=model,
                        lrs=lrs,
                        protocol=self.protocol_json(experiment, lrs, dataset, model),
                        inputs=self.data_files(dataset),
                        execution=EXECUTION.format(experiment=experiment),
                        threads=self.training(experiment)["threads"],
                        resources=resources,
                    )
                )
        return rules

    def protocol_json(
        self,
        experiment: str,
        lrs: tuple[float, ...] | None = None,
        dataset: str | None = None,
        model: str | None = None,
    ) -> str:
        """What a training job's runs share beyond what their file names carry. Snakemake records it, so
        changing it re-trains them. Under the serial learner each run computes as if alone, so how runs
        are packed is not part of it and re-packing re-trains nothing; under any other learner a run's
        result depends on its pack, whose learning rates are then part of it. A config's own model or data
        set adds its declaration, so the protocol is a scenario's (`dataset`, `model`; default the first)."""
        first = next(
            run for run in self.runs_of(experiment) if dataset in (None, run.dataset) and model in (None, run.model)
        )
        spec = self.spec(first)
        if spec.learner != "serial" and lrs is not None:
            spec = dataclasses.replace(spec, pack_learning_rates=tuple(float(lr) for lr in lrs))
        protocol = {key: value for key, value in spec.settings().items() if key not in PATH_KEYS}
        return json.dumps(protocol, sort_keys=True)

    def trained_settings(self, run: Run) -> dict[str, Any]:
        """The settings a run's file records when this plan trains it: its own, and under a learner other
        than serial its pack's learning rates (`protocol_json`)."""
        spec = self.spec(run)
        if spec.learner != "serial":
            spec = dataclasses.replace(spec, pack_learning_rates=tuple(float(lr) for lr in self.pack_lrs(run)))
        return spec.settings()

    @functools.cache  # noqa: B019
    def spec(self, run: Run) -> RunSpec:
        """The run's typed settings (`bslr.config.RunSpec`)."""
        return run_spec(self.config, run, self.catalog)

    @functools.cache  # noqa: B019
    def runs_of(self, experiment: str) -> list[Run]:
        return [run for run in self.runs if run.experiment == experiment]

    def execution_options_json(self, experiment: str) -> str:
        """How an experiment's training jobs run (never what they compute), as its options file holds them."""
        settings = self.training(experiment)
        return json.dumps({key: settings[key] for key in EXECUTION_KEYS}, sort_keys=True)

    def generated_data(self, dataset: str) -> list[str]:
        """Data files of `dataset` that the workflow itself makes (MNIST-1D)."""
        path = generated_path(dataset, self.config["data"]["root"], self.catalog)
        return [str(path)] if path else []

    def data_files(self, dataset: str) -> list[str]:
        """The file a training job of `dataset` reads, as its rule's input: one the workflow makes (MNIST-1D)
        or a config's own npz (replacing it re-trains its runs); none for the others."""
        spec = self.catalog.datasets[dataset]
        return [spec.path] if spec.format == "npz" else self.generated_data(dataset)

    def run_files(self) -> list[str]:
        return [run.path for run in self.runs]

    def compares_budgets(self) -> bool:
        """Whether two experiments share a (data set, model) under different budgets (epochs or `budget`)."""
        budgets: dict[tuple[str, str], set[str]] = {}
        for experiment, dataset, model in scenarios(self.config):
            length = self.config["experiments"][experiment].get("epochs")
            budget = json.dumps([length, self.training(experiment)["budget"]], sort_keys=True)
            budgets.setdefault((dataset, model), set()).add(budget)
        return any(len(found) > 1 for found in budgets.values())

    def figure_settings(self, name: str) -> dict[str, Any]:
        """A figure's settings (`figures.<name>`) with the `analysis` settings it applies as the tables do, and
        the printed names the config's own models and data sets declare (`display_names`, where any do)."""
        analysis = {key: self.config["analysis"][key] for key in FIGURES[name].analysis_keys}
        names = self.catalog.user_display_names()
        return {**self.config["figures"][name], **analysis, **({"display_names": names} if names else {})}

    def draws(self, name: str, experiment: str | None = None) -> bool:
        """Whether figure `name` is drawn (for `experiment`, where its scope is one): `measured` figures only
        where the experiment takes measures, `budgets` ones only where `compares_budgets`."""
        drawn = FIGURES[name].drawn
        if drawn == "measured":
            return bool(self.training(experiment)["measures"])
        return self.compares_budgets() if drawn == "budgets" else True

    def figure_files(self) -> list[str]:
        """Every figure of every scenario and experiment, and the config's own: PDF, PNG and its source data."""
        places: dict[str, list[dict[str, str]]] = {
            "scenario": [
                dict(experiment=experiment, dataset=dataset, model=model)
                for experiment, dataset, model in scenarios(self.config)
            ],
            "experiment": [dict(experiment=experiment) for experiment in self.experiments],
            "study": [{}],
        }
        return [
            FIGURE_PATHS[spec.scope].format(**place, name=spec.name, extension=extension)
            for spec in FIGURES.values()
            for place in places[spec.scope]
            if self.draws(spec.name, place.get("experiment"))
            for extension in FIGURE_EXTENSIONS
        ]
