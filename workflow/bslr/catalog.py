"""What planning must know about data sets, models and figures before any job runs, without importing torch.

One registry of each kind: the built-in entries below and a config's own (`models:` and `datasets:`,
read by `bslr.registry`) are the same typed specs, looked up the same way (`Catalog`); the figures are one
registry too (`FIGURES`). `bslr.data`, `bslr.models` and `bslr.figures` build from a spec; this module
holds only names, shapes, sizes, costs and titles, so that validating a config and planning 1,600 jobs
never pays for importing torch or matplotlib.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Factory kinds of a model or data set entry: `bslr:NAME` (built in), `module:callable` or
# `path/to/file.py:callable` (the user's own code), `torchvision:NAME`, `timm:NAME` (models only).
LIBRARY_KINDS = ("torchvision", "timm")


@dataclass(frozen=True)
class ModelSpec:
    """A model a config can name: built in, or declared under the config's `models:`."""

    name: str
    factory: str  # `bslr:mlp`, `mynets:wide_resnet`, `nets.py:wide_resnet`, `torchvision:resnet18`, `timm:NAME`
    kwargs: dict[str, Any] = field(default_factory=dict, hash=False)
    display: str = ""
    input_rank: int | None = None  # 3 for (C, H, W) only, 2 for (C, L) only, None: any input
    cost: float | None = 1.0  # time per epoch relative to ResNet-56's (for `runtime: auto`); None: unknown
    source_sha256: str | None = None  # the user's module source, so that editing it re-trains its runs

    @property
    def builtin(self) -> bool:
        return self.factory.startswith("bslr:")

    @property
    def kind(self) -> str:
        """`bslr`, `torchvision`, `timm` or `module` (the user's own code)."""
        prefix = self.factory.split(":", 1)[0]
        return prefix if prefix in ("bslr", *LIBRARY_KINDS) else "module"

    def protocol(self) -> dict[str, Any]:
        """What of a user's model defines a run's result (in its settings and its per-run file's metadata)."""
        return {"factory": self.factory, "kwargs": dict(self.kwargs), "source_sha256": self.source_sha256}


@dataclass(frozen=True)
class DatasetSpec:
    """What the workflow must know about a data set before any job runs."""

    name: str
    num_classes: int
    input_shape: tuple[int, ...]
    train_size: int
    mean: tuple[float, ...] = ()  # per channel; empty: computed from the training set (user data sets)
    std: tuple[float, ...] = ()
    generated_file: str | None = None  # relative to data.root, made by a workflow rule
    expected: str = ""  # where the files go under data.root, for error messages
    # what torchvision reads under data.root, checked before any job starts (without data.download)
    required: tuple[str, ...] = ()
    format: str = "builtin"  # or a user's: `npz`, `imagefolder`, `factory`
    path: str | None = None  # a user's npz file or image folder
    image_size: int | None = None  # imagefolder: images resized and centre-cropped to this square
    augment: str = "none"  # under `training.augment: standard`: `crop_flip` or `none`
    factory: str | None = None  # format `factory`: `module:callable` returning the arrays or two Datasets
    kwargs: dict[str, Any] = field(default_factory=dict, hash=False)
    source_sha256: str | None = None
    display: str = ""
    minutes_per_epoch: float | None = None  # of one run on one GPU (CPU for MNIST-1D); None: unknown
    memory_mb: int = 4000  # a training job's memory request under `mem_mb: auto`

    @property
    def builtin(self) -> bool:
        return self.format == "builtin"

    def protocol(self) -> dict[str, Any]:
        """What of a user's data set defines a run's result: its declaration and the shapes read from it."""
        declared = {
            "format": self.format,
            "path": self.path,
            "image_size": self.image_size,
            "augment": self.augment,
            "factory": self.factory,
            "kwargs": dict(self.kwargs),
            "source_sha256": self.source_sha256,
            "mean": list(self.mean) or None,
            "std": list(self.std) or None,
        }
        shapes = {"input_shape": list(self.input_shape), "num_classes": self.num_classes, "train_size": self.train_size}
        return {key: value for key, value in {**declared, **shapes}.items() if value is not None}

    @classmethod
    def from_protocol(cls, name: str, protocol: dict[str, Any]) -> DatasetSpec:
        fields = dict(protocol)
        fields["input_shape"] = tuple(fields["input_shape"])
        fields["mean"], fields["std"] = tuple(fields.get("mean") or ()), tuple(fields.get("std") or ())
        return cls(name=name, **fields)


def missing_data_message(spec: DatasetSpec, root: str | Path, detail: str) -> str:
    """What a job, and before it the planning, says when a built-in data set's files are not in place."""
    return (
        f"data set {spec.name} not found or corrupt under {Path(root).resolve()} ({detail}); expected "
        f"{spec.expected} there. Put the files in place, point data.root at them, or set data.download: "
        "true on a machine with network access"
    )


BUILTIN_DATASETS: dict[str, DatasetSpec] = {
    "mnist1d": DatasetSpec(
        "mnist1d",
        10,
        (1, 40),
        4000,
        generated_file="mnist1d/mnist1d.npz",
        display="MNIST-1D",
        minutes_per_epoch=0.05,
        memory_mb=2000,
    ),
    "mnist": DatasetSpec(
        "mnist",
        10,
        (1, 28, 28),
        60000,
        (0.1307,),
        (0.3081,),
        expected="MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte (torchvision.datasets.MNIST)",
        required=tuple(
            f"MNIST/raw/{name}-ubyte"
            for name in ("train-images-idx3", "train-labels-idx1", "t10k-images-idx3", "t10k-labels-idx1")
        ),
        display="MNIST",
        minutes_per_epoch=0.2,
        memory_mb=4000,
    ),
    "cifar10": DatasetSpec(
        "cifar10",
        10,
        (3, 32, 32),
        50000,
        (0.4914, 0.4822, 0.4465),
        (0.2470, 0.2435, 0.2616),
        expected="cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta} (the 'CIFAR-10 python version')",
        required=tuple(
            f"cifar-10-batches-py/{name}"
            for name in (*(f"data_batch_{index}" for index in range(1, 6)), "test_batch", "batches.meta")
        ),
        augment="crop_flip",
        display="CIFAR-10",
        minutes_per_epoch=1.0,
        memory_mb=8000,
    ),
    "cifar100": DatasetSpec(
        "cifar100",
        100,
        (3, 32, 32),
        50000,
        (0.5071, 0.4865, 0.4409),
        (0.2673, 0.2564, 0.2762),
        expected="cifar-100-python/{train,test,meta} (the 'CIFAR-100 python version')",
        required=("cifar-100-python/train", "cifar-100-python/test", "cifar-100-python/meta"),
        augment="crop_flip",
        display="CIFAR-100",
        minutes_per_epoch=1.0,
        memory_mb=8000,
    ),
    "imagenet": DatasetSpec(
        "imagenet",
        1000,
        (3, 224, 224),
        1281167,
        (0.485, 0.456, 0.406),
        (0.229, 0.224, 0.225),
        expected="imagenet/train/<class>/*.JPEG and imagenet/val/<class>/*.JPEG (an ImageFolder tree)",
        required=("imagenet/train", "imagenet/val"),
        augment="random_resized_crop_flip",
        display="ImageNet",
        minutes_per_epoch=60.0,
        memory_mb=32000,
    ),
}


def _builtin(name: str, display: str, input_rank: int | None = None, cost: float = 1.0) -> ModelSpec:
    return ModelSpec(name, f"bslr:{name}", display=display, input_rank=input_rank, cost=cost)


# Every model `bslr.models.BUILDERS` builds (a test keeps the two in step). Image models need (C, H, W),
# cnn1d needs (C, L); the rest take any input.
BUILTIN_MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        _builtin("mlp", "MLP"),
        _builtin("cnn1d", "1-D CNN", 2),
        _builtin("resnet20", "ResNet-20", 3),
        _builtin("resnet56", "ResNet-56", 3),
        _builtin("resnet110", "ResNet-110", 3, cost=2.0),
        _builtin("vgg19", "VGG-19", 3, cost=1.5),
        _builtin("alexnet", "AlexNet", 3),
        _builtin("resnet18", "ResNet-18"),
        _builtin("resnet50", "ResNet-50", cost=2.0),
    )
}


@dataclass(frozen=True)
class Catalog:
    """The models and data sets a config can name: the built-in ones and its own, in one lookup."""

    models: dict[str, ModelSpec] = field(default_factory=lambda: dict(BUILTIN_MODELS), hash=False)
    datasets: dict[str, DatasetSpec] = field(default_factory=lambda: dict(BUILTIN_DATASETS), hash=False)

    def display_name(self, name: str) -> str:
        """The printed name of a model or data set (`ResNet-110`, `CIFAR-10`), or the config's key."""
        spec = self.models.get(name) or self.datasets.get(name)
        return (spec.display if spec else "") or name

    def user_display_names(self) -> dict[str, str]:
        """The printed names a config's own entries declare (figures and the report need them)."""
        entries = [*self.models.values(), *self.datasets.values()]
        return {spec.name: spec.display for spec in entries if not spec.builtin and spec.display}


BUILTIN = Catalog()


def display_name(name: str) -> str:
    """The printed name of a built-in model or data set; other names print as the config writes them."""
    return BUILTIN.display_name(name)


# The columns each measure (`training.measures`) adds to the rows it is taken at (NaN on the others); a
# per-run file has them only with its measure on. `_se`: the estimate's standard error from its own
# sampling; `hessian_top_residual`: ||Hv - lambda v||, which bounds the distance to an eigenvalue.
MEASURE_COLUMNS = {
    "hessian_trace": ["hessian_trace", "hessian_trace_se"],
    "hessian_top": ["hessian_top", "hessian_top_residual"],
    "gradient_noise": ["covariance_trace", "covariance_trace_se", "noise_scale", "noise_scale_se"],
    "fluctuation": ["fluctuation", "fluctuation_se", "fluctuation_local", "fluctuation_steps"],
    "weight_norm": ["weight_norm"],
    "init_distance": ["init_distance"],
}


# Where a figure is drawn: once per (experiment, data set, model), per experiment, or once for the config.
FIGURE_SCOPES = ("scenario", "experiment", "study")
# The tables a figure can read: "runs" and "epochs" (the aggregate), and the statistics' whose numbers a
# figure prints rather than recomputes.
FIGURE_INPUT_TABLES = ("runs", "epochs", "correlations", "iso_ratio", "measure_slopes")


@dataclass(frozen=True)
class FigureSpec:
    """A figure the workflow draws: its one declaration, which planning, the rules, the report and
    `bslr figure` all read (`bslr.figures.DRAWERS` holds how it is drawn, under the same name; the config
    schema its settings, under `figures.<name>`; workflow/report/<name>.rst its caption)."""

    name: str
    scope: str  # one of FIGURE_SCOPES
    tables: tuple[str, ...]  # of FIGURE_INPUT_TABLES
    title: str  # how the report lists it
    # the `analysis` settings it applies exactly as the statistics do: which cells count (`diverged`), and
    # the level a significant marker means (`alpha`); they join the figure's own settings, its params
    analysis_keys: tuple[str, ...] = ("diverged",)
    # drawn for every scenario or experiment (`always`), for experiments with `training.measures` only
    # (`measured`), or where two experiments share a scenario under different budgets (`budgets`)
    drawn: str = "always"


FIGURES: dict[str, FigureSpec] = {
    spec.name: spec
    for spec in (
        FigureSpec("acc_vs_batch_size", "scenario", ("runs",), "Outcome against batch size, a line per learning rate"),
        FigureSpec(
            "acc_vs_learning_rate", "scenario", ("runs",), "Outcome against learning rate, a line per batch size"
        ),
        FigureSpec("acc_vs_ratio", "scenario", ("runs", "correlations"), "Outcome against batch size / learning rate"),
        FigureSpec(
            "train_test_vs_ratio",
            "scenario",
            ("runs", "correlations"),
            "Test and train accuracy and their gap against the ratio",
        ),
        FigureSpec("heatmap", "scenario", ("runs",), "Outcome over the grid"),
        FigureSpec("heatmap_gap", "scenario", ("runs",), "Generalisation gap over the grid"),
        FigureSpec("training_curves", "scenario", ("epochs",), "Training curves", analysis_keys=()),
        FigureSpec(
            "measures_vs_ratio",
            "scenario",
            ("runs", "measure_slopes"),
            "The theory's quantities against batch size / learning rate",
            drawn="measured",
        ),
        FigureSpec("composite", "experiment", ("runs", "correlations"), "Figure 1 of the paper, every scenario"),
        FigureSpec(
            "group_correlations",
            "experiment",
            ("correlations",),
            "Correlations of the paper's groups",
            analysis_keys=("alpha",),
        ),
        FigureSpec("iso_ratio", "experiment", ("runs", "iso_ratio"), "Cells sharing a ratio"),
        FigureSpec(
            "budgets",
            "study",
            ("runs", "correlations"),
            "Outcomes against the ratio under each budget",
            drawn="budgets",
        ),
    )
}


def figure_names(scope: str | None = None, drawn: str | None = None) -> tuple[str, ...]:
    """The registered figures of a scope and a condition (all of them where not given), in order."""
    return tuple(spec.name for spec in FIGURES.values() if scope in (None, spec.scope) and drawn in (None, spec.drawn))
