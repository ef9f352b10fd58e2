"""Load, validate and expand a bslr configuration into its grid of runs.

The workflow calls `validate_config` once, before planning any job, so that a typo or an impossible
value stops everything with one message that names the key, the value and the fix. Torch-free: planning
imports this module (see `bslr.plan`).
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import functools
import itertools
import json
import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from bslr.budget import Budget
from bslr.catalog import BUILTIN_DATASETS, BUILTIN_MODELS, MEASURE_COLUMNS, Catalog, DatasetSpec, ModelSpec
from bslr.errors import ConfigError
from bslr.registry import catalog_of, resolve_entries

SCHEMA_PATH = Path(__file__).resolve().parents[1] / "schemas" / "config.schema.yaml"

# Keys of `training` that change how fast a run goes but never its result: they are kept out of a
# run's settings so that changing them does not re-train anything.
NON_PROTOCOL_KEYS = (
    "threads",
    "eval_batch_size",
    "workers",
    "gpus",
    "mem_mb",
    "runtime",
    "keep_checkpoints",
    "deterministic",
    "tensorboard",
    "pack",  # its `learner` is protocol (see `run_spec`); its `size` only groups runs into jobs
)

# Execution options a training job reads from results/execution/{experiment}.json at its start: an input
# marked ancient, so that changing them (a smaller evaluation batch after an out-of-memory error) re-runs
# no training job. The other non-protocol keys reach Snakemake as threads or resources.
EXECUTION_KEYS = ("eval_batch_size", "workers", "keep_checkpoints", "deterministic", "tensorboard")

# Keys of earlier versions, and what replaced them (named in the error instead of "a typo?").
RENAMED_KEYS = {
    "pack_learning_rates": "pack: {size: all, learner: stacked} (or learner: serial; see config/README.md)",
    "forest": "group_correlations (every group's correlation, a block per scenario; see config/README.md)",
}

GRID_KEYS = ("models", "datasets", "batch_sizes", "learning_rates", "seeds", "epochs")

# Protocol keys added after runs were first recorded: a run's settings carry them only where they differ
# from their defaults (and `measurement` only with measures on), so that the settings of a config written
# before them stay what they were and Snakemake re-trains none of its runs. `RunSpec.of` puts them back
# for the code that trains.
DEFAULTED_PROTOCOL_KEYS = ("budget", "evaluation", "measures", "measurement", "optimizer", "schedule")


def format_lr(lr: float) -> str:
    """Shortest decimal text that reads back as the same float: 0.01, 0.2, never 0.30000000000000004."""
    text = repr(float(lr))
    if "e" in text or "E" in text:
        text = format(Decimal(text), "f")
    return text


def load_schema(path: Path = SCHEMA_PATH) -> dict[str, Any]:
    with open(path) as handle:
        return yaml.safe_load(handle)


def _key_path(parts: Any) -> str:
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


def _describe(error: jsonschema.ValidationError) -> str:
    where = _key_path(error.absolute_path)
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(allowed))
        keys = ", ".join(f"{where}.{key}" if error.absolute_path else key for key in extra)
        renamed = [f"{key} is now {RENAMED_KEYS[key]}" for key in extra if key in RENAMED_KEYS]
        if renamed:
            return f"config key {keys} was renamed: {'; '.join(renamed)}"
        closest = [difflib.get_close_matches(key, allowed, n=1, cutoff=0.6) for key in extra]
        suggested = [f"did you mean {match[0]}?" for match in closest if match]
        hint = f"; allowed keys here: {', '.join(allowed)}" if allowed else ""
        return f"unknown config key {keys} ({' '.join(suggested) or 'a typo?'}){hint}"
    if error.validator == "type" and isinstance(error.instance, str) and error.validator_value in ("number", "integer"):
        return (
            f"config key {where} = {json.dumps(error.instance)} is a string where a {error.validator_value} is due: "
            "write it without quotes"
        )
    if error.validator == "required":
        return f"config key {where} is missing a required entry: {error.message}"
    if error.validator == "oneOf" and where.endswith(("batch_sizes", "learning_rates")):
        return (
            f"config key {where} = {json.dumps(error.instance)} is neither a non-empty list of distinct "
            "values > 0, nor a range {start, stop, step}, nor {start, stop, num, scale: linear|log}, with values > 0 "
            "(integers for batch sizes)"
        )
    if error.validator == "oneOf":
        forms = "; ".join(_form(option) for option in error.schema["oneOf"])
        return f"config key {where} = {json.dumps(error.instance)} is invalid: give one of: {forms}"
    return f"config key {where} = {json.dumps(error.instance)} is invalid: {error.message}"


def _form(option: dict[str, Any]) -> str:
    """A schema alternative in words: `null`, `an integer >= 1`, `a mapping with keys metric, value`."""
    if "enum" in option:
        return "one of " + ", ".join(map(str, option["enum"]))
    kind = option.get("type", "value")
    if kind == "null":
        return "null"
    if kind == "object":
        return "a mapping with keys " + ", ".join(option.get("properties", {}))
    words = {"integer": "an integer", "number": "a number", "array": "a list"}.get(kind, f"a {kind}")
    if "minimum" in option:
        words += f" >= {option['minimum']}"
    if "exclusiveMinimum" in option:
        words += f" > {option['exclusiveMinimum']}"
    return words


def _options(schema: dict[str, Any], root: dict[str, Any]) -> list[dict[str, Any]]:
    """The alternatives a value may match: `$ref` followed, `oneOf`/`anyOf` flattened."""
    while "$ref" in schema:
        schema = root["$defs"][schema["$ref"].rsplit("/", 1)[1]]
    alternatives = schema.get("oneOf") or schema.get("anyOf")
    if alternatives is None:
        return [schema]
    return [option for alternative in alternatives for option in _options(alternative, root)]


def _accepts(options: list[dict[str, Any]], value: Any, root: dict[str, Any]) -> bool:
    defs = {"$defs": root.get("$defs", {})}
    return any(jsonschema.Draft202012Validator({**option, **defs}).is_valid(value) for option in options)


def coerce_strings(value: Any, schema: dict[str, Any], root: dict[str, Any], given: Any) -> Any:
    """Read as YAML each string of the command line (`given`: the part of `snakemake --config` at this
    key, or None) that the schema refuses as a string.

    `snakemake --config "training={momentum: 0.9}"` hands nested values over as strings ('0.9'): their
    YAML value is what was meant, and it is what validation then judges, so `momentum: 1.5` is refused
    for its range, not for being a string. A string the schema accepts stays a string; a string in a
    config file is never read again (`learning_rates: ["0.1", 0.2]` is refused).
    """
    if given is None:
        return value
    options = _options(schema, root)
    if isinstance(value, str):
        if value != given or _accepts(options, value, root):
            return value
        try:
            loaded = yaml.safe_load(value)
        except yaml.YAMLError:
            return value
        return value if isinstance(loaded, str) else loaded
    if isinstance(value, dict) and isinstance(given, dict):
        coerced = {}
        for key, item in value.items():
            subschemas = [option["properties"][key] for option in options if key in option.get("properties", {})]
            subschemas = subschemas or [
                option["additionalProperties"]
                for option in options
                if isinstance(option.get("additionalProperties"), dict)
            ]
            child = given.get(key)
            coerced[key] = coerce_strings(item, {"anyOf": subschemas}, root, child) if subschemas else item
        return coerced
    if isinstance(value, list) and isinstance(given, list) and len(given) == len(value):
        items = [option["items"] for option in options if isinstance(option.get("items"), dict)]
        if not items:
            return value
        return [coerce_strings(item, {"anyOf": items}, root, part) for item, part in zip(value, given, strict=True)]
    return value


def fill_defaults(instance: Any, schema: dict[str, Any], root: dict[str, Any]) -> None:
    """Fill in `default:` values of the schema, recursively, where the user left a key out."""
    if "$ref" in schema:
        schema = root["$defs"][schema["$ref"].rsplit("/", 1)[1]]
    if not isinstance(instance, dict):
        return
    for key, subschema in schema.get("properties", {}).items():
        resolved = root["$defs"][subschema["$ref"].rsplit("/", 1)[1]] if "$ref" in subschema else subschema
        if key not in instance and "default" in resolved:
            instance[key] = copy.deepcopy(resolved["default"])
        if key in instance:
            fill_defaults(instance[key], subschema, root)
    additional = schema.get("additionalProperties")
    if isinstance(additional, dict):
        for value in instance.values():
            fill_defaults(value, additional, root)


def expand_values(value: Any, key: str, integer: bool) -> list:
    """A list stays as it is; {start, stop, step} becomes every value from start to stop inclusive;
    {start, stop, num, scale} becomes `num` values from start to stop, equally spaced on that scale.

    Decimal arithmetic makes 0.01..0.20 step 0.01 exactly 20 values, 0.01 ... 0.2. Spaced values are
    rounded to three significant digits (to integers for batch sizes), so that file names stay short and
    a grid reads as written: {start: 0.001, stop: 1, num: 4, scale: log} is 0.001, 0.01, 0.1, 1.0.
    """
    if isinstance(value, list):
        return [int(v) if integer else float(v) for v in value]
    if value["start"] > value["stop"]:
        raise ConfigError(
            f"config key {key} = {json.dumps(value)}: start {value['start']} is greater than stop "
            f"{value['stop']}; swap them or give a list"
        )
    if "num" in value:
        return spaced_values(value, key, integer)
    start, stop, step = (Decimal(str(value[k])) for k in ("start", "stop", "step"))
    count = int((stop - start) / step) + 1
    values = [start + i * step for i in range(count)]
    return [int(v) if integer else float(v) for v in values]


def spaced_values(value: dict[str, Any], key: str, integer: bool) -> list:
    """`num` values from start to stop, equally spaced on a linear or a log scale, rounded (see above)."""
    start, stop, num, scale = value["start"], value["stop"], value["num"], value.get("scale", "linear")
    fractions = [index / (num - 1) for index in range(num)]
    if scale == "log":
        raw = [start * (stop / start) ** fraction for fraction in fractions]
    else:
        raw = [start + (stop - start) * fraction for fraction in fractions]
    values = [round(v) if integer else float(f"{v:.3g}") for v in raw]
    values[0], values[-1] = (int(start), int(stop)) if integer else (float(start), float(stop))
    if len(set(values)) < len(values):
        kind = "integers" if integer else "three significant digits"
        raise ConfigError(
            f"config key {key} = {json.dumps(value)} gives repeated values when rounded to {kind} ({values}); "
            "ask for fewer values (num) or a wider range"
        )
    return values


@functools.cache
def _protocol_defaults() -> str:
    schema = load_schema()
    training: dict[str, Any] = {}
    fill_defaults(training, schema["$defs"]["training"], schema)
    return json.dumps({key: training[key] for key in DEFAULTED_PROTOCOL_KEYS})


# The keys each optimizer takes besides `name` (momentum and weight_decay are `training` keys of their own),
# and their defaults, torch.optim's (weight decay is `training.weight_decay`, 0 by default, also for adamw).
OPTIMIZER_KEYS: dict[str, dict[str, Any]] = {
    "sgd": {"nesterov": False},
    "adam": {"betas": [0.9, 0.999], "eps": 1e-8},
    "adamw": {"betas": [0.9, 0.999], "eps": 1e-8},
}
CONSTANT_SCHEDULE = {"decay": "constant", "unit": "epochs", "warmup": 0}  # the paper's: a schedule's default
# What the theory says stays fixed along an iso-line of each optimizer (runs.parquet's `optimizer_ratio_name`):
# SGD's noise temperature lr / B, with heavy-ball momentum m the effective rate lr / (1 - m); Adam's square-root
# rule (Malladi et al. 2022), B / lr^2.
RATIO_NAMES = {"sgd": "B/lr", "sgd_momentum": "B(1-m)/lr", "adam": "B/lr^2", "adamw": "B/lr^2"}


@dataclass(frozen=True)
class UpdateRule:
    """How the optimizer updates one run's weights: its learning rate (the schedule's peak), and the
    optimizer with its settings (torch.optim's arithmetic; weight decay is L2 in the gradient for SGD and
    Adam, decoupled for AdamW)."""

    lr: float
    momentum: float = 0.0
    weight_decay: float = 0.0
    optimizer: str = "sgd"
    nesterov: bool = False
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8


def optimizer_scaling(optimizer: str, momentum: float, batch_size: int, lr: float) -> tuple[float, float, str]:
    """(effective learning rate, the ratio the theory says governs the optimizer, its name): lr / (1 - m)
    and B (1 - m) / lr for SGD with heavy-ball momentum m (B / lr without), lr and B / lr^2 for Adam(W)."""
    if optimizer == "sgd":
        effective = lr / (1 - momentum)
        return effective, batch_size / effective, RATIO_NAMES["sgd_momentum" if momentum else "sgd"]
    return lr, batch_size / lr**2, RATIO_NAMES[optimizer]


@dataclass(frozen=True)
class RunSpec:
    """Everything that defines one run's result, typed: what a training job trains and a per-run file records.

    Built where a run's settings enter (`run_spec` from a config, `RunSpec.of` from the JSON a training job
    or a per-run file carries), with every default applied there, once. Its JSON form (`settings`) is what
    Snakemake compares to decide whether a run re-trains, so it leaves out the keys of
    DEFAULTED_PROTOCOL_KEYS at their defaults and stays what it was for every config written before them.
    The nested values (budget, evaluation, measurement, the entries of a config's own model or data set)
    are plain JSON mappings, read and never changed.
    """

    experiment: str
    model: str
    dataset: str
    batch_size: int
    lr: float
    seed: int
    learner: str  # of the pack: `serial` computes each run as alone, `stacked` with batched kernels
    epochs: int | None  # None: the length is `budget.steps`
    momentum: float
    weight_decay: float
    augment: str
    device: str
    precision: str
    tf32: bool
    channels_last: bool | str
    compile: bool | str
    mlp_hidden: tuple[int, ...]
    data_root: str
    download: bool
    budget: Mapping[str, Any] = field(hash=False)
    evaluation: Mapping[str, Any] = field(hash=False)
    optimizer: Mapping[str, Any] = field(hash=False)  # `name` and that optimizer's keys (OPTIMIZER_KEYS)
    schedule: Mapping[str, Any] = field(hash=False)  # the learning rate's course (`bslr.schedule`)
    measures: tuple[str, ...] = ()
    measurement: Mapping[str, Any] = field(default_factory=dict, hash=False)
    pack_learning_rates: tuple[float, ...] | None = None  # a non-serial pack's, whose runs depend on each other
    model_spec: Mapping[str, Any] | None = field(default=None, hash=False)  # a config's own model's declaration
    dataset_spec: Mapping[str, Any] | None = field(default=None, hash=False)  # a config's own data set's

    @classmethod
    def of(cls, settings: Mapping[str, Any]) -> RunSpec:
        """The run whose settings these are (a run's JSON settings, as a job's protocol and file name or a
        per-run file's metadata give them), with the defaults of the keys they may leave out."""
        known = {spec.name for spec in dataclasses.fields(cls)}
        unknown = sorted(set(settings) - known)
        if unknown:
            raise ConfigError(
                f"run settings have unknown keys {unknown}; they were not written by this version of bslr "
                f"(known: {', '.join(sorted(known))})"
            )
        full = {**json.loads(_protocol_defaults()), "epochs": None, **settings}
        required = {spec.name for spec in dataclasses.fields(cls) if spec.default is dataclasses.MISSING}
        missing = sorted(required - set(full))
        if missing:
            raise ConfigError(f"run settings lack {missing}; give every key of a run's settings (bslr.config.RunSpec)")
        full["mlp_hidden"] = tuple(full["mlp_hidden"])
        full["measures"] = tuple(full["measures"])
        if full.get("pack_learning_rates") is not None:
            full["pack_learning_rates"] = tuple(float(lr) for lr in full["pack_learning_rates"])
        return cls(**full)

    def settings(self) -> dict[str, Any]:
        """The run's settings as JSON-ready values, sorted by key: what its protocol and per-run file hold."""
        defaults = json.loads(_protocol_defaults())
        settings = {}
        for spec in dataclasses.fields(self):
            value = getattr(self, spec.name)
            if spec.name in DEFAULTED_PROTOCOL_KEYS:
                value = list(value) if isinstance(value, tuple) else dict(value)
                if value == defaults[spec.name] or (spec.name == "measurement" and not self.measures):
                    continue
            elif value is None and spec.name in OPTIONAL_SETTINGS:
                continue
            elif isinstance(value, tuple):
                value = list(value)
            elif isinstance(value, Mapping):
                value = dict(value)
            settings[spec.name] = value
        return dict(sorted(settings.items()))

    @property
    def update_rule(self) -> UpdateRule:
        """The optimizer's settings are resolved (`resolve_optimizer`): its name and every key it takes."""
        settings = {key: tuple(value) if key == "betas" else value for key, value in self.optimizer.items()}
        return UpdateRule(self.lr, self.momentum, self.weight_decay, settings.pop("name"), **settings)

    @property
    def scaling(self) -> tuple[float, float, str]:
        """(effective learning rate, the optimizer's own ratio, its name): `optimizer_scaling`."""
        return optimizer_scaling(self.optimizer["name"], self.momentum, self.batch_size, self.lr)

    @property
    def model_entry(self) -> ModelSpec:
        """The model this run trains: a built-in one, or the config's own entry its settings carry."""
        if self.model_spec is not None:
            return ModelSpec(self.model, **self.model_spec)
        return BUILTIN_MODELS[self.model]

    @property
    def dataset_entry(self) -> DatasetSpec:
        """The data set this run trains on: a built-in one, or the config's own entry its settings carry."""
        if self.dataset_spec is not None:
            return DatasetSpec.from_protocol(self.dataset, dict(self.dataset_spec))
        return BUILTIN_DATASETS[self.dataset]

    def training_budget(self, train_size: int | None = None) -> Budget:
        """The run's budget in steps on its data set (or on a training set of `train_size` examples)."""
        return Budget.of(
            train_size if train_size is not None else self.dataset_entry.train_size,
            batch_size=self.batch_size,
            epochs=self.epochs,
            budget=self.budget,
            evaluation=self.evaluation,
            measure_epochs=self.measurement["epochs"] if self.measures else (),
        )


# Settings a run carries only where it has them (a length in epochs, a non-serial pack, a config's own entry).
OPTIONAL_SETTINGS = ("epochs", "pack_learning_rates", "model_spec", "dataset_spec")


def check_budget(name: str, experiment: dict[str, Any], training: dict[str, Any], catalog: Catalog) -> None:
    """Exactly one length per experiment (`epochs` or `budget.steps`); an accuracy target is a fraction."""
    budget, where = training["budget"], f"experiments.{name}"
    if budget["steps"] is None and "epochs" not in experiment:
        raise ConfigError(
            f"config key {where}.epochs is missing: give the number of epochs of every run, or a number of SGD "
            "steps in budget.steps"
        )
    if budget["steps"] is not None and "epochs" in experiment:
        raise ConfigError(
            f"config key {where} gives both epochs ({experiment['epochs']}) and budget.steps ({budget['steps']}); "
            "keep one: epochs for the same epochs per run, budget.steps for the same steps"
        )
    target = budget["target"]
    if target is not None and target["metric"] == "train_acc" and target["value"] > 1:
        raise ConfigError(f"config key {where} budget.target.value = {target['value']}: accuracies are fractions")
    if target is not None and training["evaluation"]["unit"] == "epochs":
        warnings.warn(
            f"config key {where}: its target is checked every {training['evaluation']['every']} epoch(s), so "
            "the step at which a run reaches it is known to an epoch, which is more steps at a small batch size "
            "than at a large one; evaluation: {every: N, unit: steps} gives every batch size the same resolution",
            stacklevel=2,
        )
    if training["measures"] and training["measurement"]["epochs"]:
        # every run must reach each asked epoch: under a step budget the smallest batch size runs fewest epochs
        shortest = min(
            planned_budget(training, experiment, min(experiment["batch_sizes"]), catalog.datasets[dataset]).epochs
            for dataset in experiment["datasets"]
        )
        late = [epoch for epoch in training["measurement"]["epochs"] if epoch > shortest]
        if late:
            raise ConfigError(
                f"config key {where} measurement.epochs {late} lie beyond the {shortest} epochs its shortest runs "
                f"train, so some runs would never be measured there; ask for epochs up to {shortest}, or measure "
                "at the end of training only (measurement.epochs: [])"
            )


def validate_config(
    config: dict[str, Any], overrides: dict[str, Any] | None = None, schema_path: Path = SCHEMA_PATH
) -> dict[str, Any]:
    """Return a validated copy of `config` with defaults filled and ranges expanded into lists.

    `overrides`: what the command line set (`snakemake --config`, merged into `config` already), whose
    strings are read as YAML first (`coerce_strings`). Raises ConfigError with one readable message for
    the first problem found.
    """
    schema = load_schema(schema_path)
    config = coerce_strings(copy.deepcopy(dict(config)), schema, schema, overrides)
    validator = jsonschema.Draft202012Validator(schema)
    error = jsonschema.exceptions.best_match(validator.iter_errors(config))
    if error is not None:
        raise ConfigError(_describe(error))
    given = {name: set(experiment) for name, experiment in config["experiments"].items()}
    fill_defaults(config, schema, schema)
    for name, experiment in config["experiments"].items():
        # The schema's training defaults belong in `training`; an experiment keeps only its overrides.
        for key in set(config["training"]) - given[name]:
            experiment.pop(key, None)

    resolve_entries(config)
    resolve_optimizers(config)
    catalog = catalog_of(config)
    for name, experiment in config["experiments"].items():
        prefix = f"experiments.{name}"
        for key, known in (("models", catalog.models), ("datasets", catalog.datasets)):
            for item in experiment[key]:
                if item not in known:
                    raise ConfigError(
                        f"config key {prefix}.{key} names unknown {key[:-1]} {item!r}; known {key}: "
                        f"{', '.join(sorted(known))} (declare your own under the config's top-level {key}:)"
                    )
        for model, dataset in itertools.product(experiment["models"], experiment["datasets"]):
            rank, shape = catalog.models[model].input_rank, catalog.datasets[dataset].input_shape
            if rank is not None and rank != len(shape):
                raise ConfigError(
                    f"config key {prefix}: model {model} cannot take {dataset} inputs of shape "
                    f"{shape}; put them in separate experiments"
                )
        experiment["batch_sizes"] = expand_values(experiment["batch_sizes"], f"{prefix}.batch_sizes", True)
        experiment["learning_rates"] = expand_values(experiment["learning_rates"], f"{prefix}.learning_rates", False)
        for dataset in experiment["datasets"]:
            size = catalog.datasets[dataset].train_size
            too_large = [b for b in experiment["batch_sizes"] if b > size]
            if too_large:
                raise ConfigError(
                    f"config key {prefix}.batch_sizes has {too_large} larger than the {size} training "
                    f"examples of {dataset}; use batch sizes of at most {size}"
                )
        training = training_settings(config, name)
        check_budget(name, experiment, training, catalog)
        check_schedule(name, experiment, training, catalog)
        check_resources(name, experiment, training, catalog)
    check_measured_outcomes(config)
    return config


def resolve_optimizers(config: dict[str, Any]) -> None:
    """Each `optimizer` and `schedule` (in `training` and in the experiments that replace it) checked for the
    keys its kind takes, and completed with that kind's defaults, in place."""
    places = [("training", config["training"])] + [
        (f"experiments.{name}", experiment) for name, experiment in config["experiments"].items()
    ]
    for where, settings in places:
        if "optimizer" in settings:
            settings["optimizer"] = resolve_optimizer(settings["optimizer"], f"{where}.optimizer")
        if "schedule" in settings:
            settings["schedule"] = resolve_schedule(settings["schedule"], f"{where}.schedule")
    for name in config["experiments"]:
        training = training_settings(config, name)
        optimizer, momentum = training["optimizer"], training["momentum"]
        where = f"experiments.{name}" if "momentum" in config["experiments"][name] else "training"
        if optimizer["name"] != "sgd" and momentum:
            raise ConfigError(
                f"config key {where}.momentum = {momentum}: {optimizer['name']} takes no momentum (its first "
                f"moment's decay is optimizer.betas[0]); set momentum: 0 for experiment {name}"
            )
        if optimizer.get("nesterov") and not momentum:
            raise ConfigError(
                f"config key experiments.{name}: optimizer.nesterov needs momentum > 0 (it is {momentum}); "
                "set training.momentum, or nesterov: false"
            )


def resolve_optimizer(optimizer: dict[str, Any], where: str) -> dict[str, Any]:
    name = optimizer["name"]
    for key in optimizer:
        if key != "name" and key not in OPTIMIZER_KEYS[name]:
            takers = [other for other, keys in OPTIMIZER_KEYS.items() if key in keys]
            raise ConfigError(
                f"config key {where}.{key}: {name} takes no {key} ({' and '.join(takers)} do); remove it, or "
                f"set name: {takers[0]}"
            )
    return {"name": name, **OPTIMIZER_KEYS[name], **optimizer}


SCHEDULE_KEYS = {"constant": {}, "cosine": {"final": 0.0}, "step": {"gamma": 0.1}}


def resolve_schedule(schedule: dict[str, Any], where: str) -> dict[str, Any]:
    decay = schedule.get("decay", "constant")
    for key in ("final", "milestones", "gamma"):
        if key in schedule and key not in SCHEDULE_KEYS[decay] and not (key == "milestones" and decay == "step"):
            owner = "cosine" if key == "final" else "step"
            raise ConfigError(
                f"config key {where}.{key}: a {decay} decay takes no {key} (decay: {owner} does); remove it, or "
                f"set decay: {owner}"
            )
    if decay == "step" and "milestones" not in schedule:
        raise ConfigError(f"config key {where}: decay: step needs milestones (the epochs or steps where it drops)")
    return {**CONSTANT_SCHEDULE, **SCHEDULE_KEYS[decay], **schedule}


def check_schedule(name: str, experiment: dict[str, Any], training: dict[str, Any], catalog: Catalog) -> None:
    """Every run's warm-up and milestones lie within its budget (the shortest run's: under epochs, the largest
    batch size takes the fewest steps), and a cosine knows where it ends (not under a target, which stops a
    run at a step nobody knows beforehand)."""
    schedule = training["schedule"]
    if schedule == CONSTANT_SCHEDULE:
        return
    where = f"experiments.{name}.schedule" if "schedule" in experiment else "training.schedule"
    if schedule["decay"] == "cosine" and training["budget"]["target"] is not None:
        raise ConfigError(
            f"config key {where}: a cosine decay ends at the budget's last step, which a target budget does not "
            "fix (a run stops when it reaches the target); use decay: step or constant, or an epochs or steps budget"
        )
    for dataset in experiment["datasets"]:
        for batch_size in experiment["batch_sizes"]:
            budget = planned_budget(training, experiment, batch_size, catalog.datasets[dataset])
            length = budget.epochs if schedule["unit"] == "epochs" else budget.steps
            late = [value for value in [schedule["warmup"], *schedule.get("milestones", [])] if value >= length]
            if late:
                raise ConfigError(
                    f"config key {where}: warm-up or milestones {late} {schedule['unit']} do not end before the "
                    f"{length} {schedule['unit']} of the runs at batch size {batch_size} on {dataset}; keep them "
                    "within every run's budget"
                )


def check_resources(name: str, experiment: dict[str, Any], training: dict[str, Any], catalog: Catalog) -> None:
    """One GPU per job at most, and a time limit for jobs whose time bslr cannot estimate."""

    def where(key: str) -> str:
        return f"experiments.{name}.{key}" if key in experiment else f"training.{key}"

    if isinstance(training["gpus"], int) and training["gpus"] > 1:
        raise ConfigError(
            f"config key {where('gpus')} = {training['gpus']}: a training job trains on one GPU (several runs of a "
            "pack share it); give gpus: 1, and several jobs per GPU with --resources gpu_slots=N (docs/performance.md)"
        )
    if training["runtime"] != "auto":
        return
    unknown = [model for model in experiment["models"] if catalog.models[model].cost is None]
    unknown += [data for data in experiment["datasets"] if catalog.datasets[data].minutes_per_epoch is None]
    if unknown:
        raise ConfigError(
            f"config key {where('runtime')} = auto cannot estimate the time of {', '.join(unknown)} (your own); give "
            "runtime: the minutes a training job may take (a SLURM job's time limit; any value serves a local run)"
        )


def check_measured_outcomes(config: dict[str, Any]) -> None:
    """A measure among `analysis.outcomes` must be taken by some experiment, or its rows would be empty."""
    measured = {
        column
        for name in config["experiments"]
        for measure in training_settings(config, name)["measures"]
        for column in MEASURE_COLUMNS[measure]
    }
    owner = {column: measure for measure, columns in MEASURE_COLUMNS.items() for column in columns}
    unmeasured = [outcome for outcome in config["analysis"]["outcomes"] if outcome in owner and outcome not in measured]
    if unmeasured:
        measures = sorted({owner[outcome] for outcome in unmeasured})
        raise ConfigError(
            f"config key analysis.outcomes names {', '.join(unmeasured)}, which no experiment measures; add "
            f"{', '.join(measures)} to training.measures (or an experiment's measures), or remove them from "
            "analysis.outcomes"
        )


def training_settings(config: dict[str, Any], experiment: str) -> dict[str, Any]:
    """The `training` defaults with the experiment's own overrides applied."""
    settings = dict(config["training"])
    overrides = config["experiments"][experiment]
    settings.update({key: overrides[key] for key in settings if key in overrides})
    return settings


def run_spec(config: dict[str, Any], run: Any, catalog: Catalog | None = None) -> RunSpec:
    """Everything that defines a run's result: the protocol a training job is invalidated by.

    The pack's learner is part of it (`stacked` computes with other kernels than a run alone; `serial`
    is exactly a run alone), the pack's size is not (it only decides how many runs share a job). A model
    or data set of the config's own adds its declaration (`model_spec`, `dataset_spec`: factory, kwargs,
    the source's hash, the shapes read from the data), so that the run's settings alone say how to train it.
    `run`: anything with the attributes of `bslr.plan.Run`; `catalog`: the config's (`catalog_of`), where
    the caller holds it already.
    """
    training = training_settings(config, run.experiment)
    catalog = catalog or catalog_of(config)
    model, dataset = catalog.models[run.model], catalog.datasets[run.dataset]
    protocol = {key: value for key, value in training.items() if key not in NON_PROTOCOL_KEYS}
    return RunSpec.of(
        protocol
        | dict(
            learner=training["pack"]["learner"],
            experiment=run.experiment,
            model=run.model,
            dataset=run.dataset,
            batch_size=run.batch_size,
            lr=run.lr,
            seed=run.seed,
            data_root=config["data"]["root"],
            download=config["data"]["download"],
            epochs=config["experiments"][run.experiment].get("epochs"),
            model_spec=None if model.builtin else model.protocol(),
            dataset_spec=None if dataset.builtin else dataset.protocol(),
        )
    )


def planned_budget(training: dict[str, Any], experiment: dict[str, Any], batch_size: int, data: DatasetSpec) -> Budget:
    """The budget of an experiment's runs at `batch_size` on `data` (its `training` settings applied)."""
    return Budget.of(
        data.train_size,
        batch_size=batch_size,
        epochs=experiment.get("epochs"),
        budget=training["budget"],
        evaluation=training["evaluation"],
        measure_epochs=training["measurement"]["epochs"] if training["measures"] else (),
    )


def resolve_learner(name: str, runs: int) -> str:
    """The learner a pack of `runs` runs trains with. `auto`: stacked for two runs or more (about 3x faster
    than serial for the MNIST-1D models on one CPU core, see docs/performance.md), serial for one."""
    if name == "auto":
        return "stacked" if runs > 1 else "serial"
    return name


EVALUATION_COST = 0.5  # of a training epoch, for one evaluation of both sets
MEASURE_COST = 1.35  # the time factor of the measures


def evaluations(budget: Any) -> int:
    """How many times a run that trains its whole budget is evaluated."""
    if budget.unit == "steps":
        return math.ceil(budget.steps / budget.every)
    return math.ceil(budget.epochs / budget.every)


def run_minutes(config: dict[str, Any], experiment: str, model: str, dataset: str, catalog: Catalog) -> float | None:
    """The estimated minutes of one run trained alone, generous on purpose (a job killed by its time limit
    costs more than one that waits longer in the queue); None where a model or data set of the config's own
    has no estimate. The time per epoch is the data set's (`minutes_per_epoch`, one run on one GPU; CPU for
    MNIST-1D) times the model's relative cost."""
    settings = training_settings(config, experiment)
    spec, data, network = config["experiments"][experiment], catalog.datasets[dataset], catalog.models[model]
    if data.minutes_per_epoch is None or network.cost is None:
        return None
    budgets = [planned_budget(settings, spec, size, data) for size in spec["batch_sizes"]]
    # the most epochs any batch size may take, in epochs evaluated once each as `minutes_per_epoch` assumes;
    # each further evaluation costs up to half an epoch (a full pass over both sets: 0.34 to 0.52 of a
    # training epoch measured on CIFAR), and the measures up to a third more (18-34% in docs/findings.md)
    epochs = max(budget.epochs + EVALUATION_COST * max(0, evaluations(budget) - budget.epochs) for budget in budgets)
    minutes = epochs * data.minutes_per_epoch * network.cost * 1.5
    return minutes * MEASURE_COST if settings["measures"] else minutes


def pack_share(learner: str, runs: int) -> float:
    """A pack's time in runs' times: a serial pack takes its runs one after another; a stacked pack half of
    that (its runs share each batched kernel), never less than one run."""
    return max(1.0, runs / 2) if resolve_learner(learner, runs) == "stacked" else float(runs)


AUTO_PACK_MINUTES = 15.0  # `pack.size: auto`: runs per job, as many as fit in this estimate


def pack_size(config: dict[str, Any], experiment: str, model: str, dataset: str, catalog: Catalog) -> int:
    """Learning rates per training job. `auto`: under the serial learner (each run bitwise as alone, so
    packing re-trains nothing), the most whose job is estimated at AUTO_PACK_MINUTES or less (`run_minutes`),
    spread evenly over the packs that takes; one otherwise, and where a run has no estimate or the config
    gives `runtime`. Each job then starts Python, imports torch and reads its data once for all its runs
    (3 to 5 s on a CPU), while a run of hours stays a job of its own, which a cluster can place apart."""
    lrs = len(config["experiments"][experiment]["learning_rates"])
    size = training_settings(config, experiment)["pack"]["size"]
    if size == "all":
        return lrs
    if size != "auto":
        return min(size, lrs)
    training = training_settings(config, experiment)
    per_run = run_minutes(config, experiment, model, dataset, catalog)
    # Only serial packs: a stacked pack's learning rates are part of its runs' protocol, which must not
    # follow a time estimate; and a `runtime` given is each job's limit, which a pack of runs could overrun.
    if per_run is None or training["pack"]["learner"] != "serial" or training["runtime"] != "auto":
        return 1
    fits = max(runs for runs in range(1, lrs + 1) if per_run * runs <= AUTO_PACK_MINUTES or runs == 1)
    packs = math.ceil(lrs / fits)
    return math.ceil(lrs / packs)


def job_resources(
    config: dict[str, Any], experiment: str, model: str, dataset: str, runs: int = 1, catalog: Catalog | None = None
) -> dict[str, int]:
    """Resources of one training job of `runs` runs: `gpu` count, `gpu_slots`, `mem_mb`, `runtime` (minutes).

    `gpu_slots` is 1 for a job on a GPU: `snakemake --resources gpu_slots=4` runs four jobs per GPU
    (see docs/performance.md). `runtime: auto` is the pack's share of its runs' estimate (`pack_share`,
    `run_minutes`) and 10 minutes more; a config's own models and data sets give `runtime` instead.
    """
    settings = training_settings(config, experiment)
    catalog = catalog or catalog_of(config)
    wants_gpu = dataset != "mnist1d" and settings["device"] != "cpu"
    runtime = settings["runtime"]
    if runtime == "auto":
        per_run = run_minutes(config, experiment, model, dataset, catalog)
        runtime = math.ceil(per_run * pack_share(settings["pack"]["learner"], runs)) + 10
    gpu = int(wants_gpu) if settings["gpus"] == "auto" else settings["gpus"]
    return {
        "gpu": gpu,
        "gpu_slots": int(gpu > 0),
        "mem_mb": catalog.datasets[dataset].memory_mb if settings["mem_mb"] == "auto" else settings["mem_mb"],
        "runtime": runtime,
    }


def merge_configs(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """`override` over `base`, recursively, as Snakemake layers several --configfile."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_configs(merged[key], value)
        else:
            merged[key] = value
    return merged


def read_config_files(paths: list[str | Path]) -> dict[str, Any]:
    """The raw config of one or more YAML files, layered in order (not yet validated)."""
    config: dict[str, Any] = {}
    for path in map(Path, paths):
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        with open(path) as handle:
            config = merge_configs(config, yaml.safe_load(handle) or {})
    return config


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML config and validate it (for the CLI; the workflow gets its config from Snakemake)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    with open(path) as handle:
        return validate_config(yaml.safe_load(handle) or {})
