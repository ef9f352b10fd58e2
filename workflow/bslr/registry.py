"""A config's own models and data sets, resolved at planning into what the catalog's specs hold, torch-free.

Everything a training job will need is checked here, before any job starts: that a factory string parses,
that its module's source can be found and defines the callable (read with `ast`, never imported: a user's
module imports torch, and planning must not), the hash of that source (so that editing it re-trains the
runs of its model and only those), and a data set's shapes, classes and sizes (an npz's arrays read with
numpy, an image folder's listing). `resolve_entries` writes what it finds into the validated config's
`models:` and `datasets:` sections, from which `catalog_of` builds the catalog anywhere, cheaply.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.machinery
import importlib.util
import math
import os
import sys
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from bslr.catalog import BUILTIN_DATASETS, BUILTIN_MODELS, LIBRARY_KINDS, Catalog, DatasetSpec, ModelSpec
from bslr.errors import ConfigError

NPZ_ARRAYS = ("x_train", "y_train", "x_test", "y_test")
# torchvision.datasets.folder.IMG_EXTENSIONS, which ImageFolder reads (repeated here to stay torch-free)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
# A data set larger than this (as uint8 images) is read by DataLoader workers instead of held on the device.
IN_MEMORY_BYTES = 4 * 2**30


def parse_factory(text: str, where: str) -> tuple[str, str]:
    """`module:callable` (or `file.py:callable`, `torchvision:NAME`, `timm:NAME`) as its two parts."""
    module, sep, name = text.rpartition(":")
    if not sep or not module or not name or not all(part.isidentifier() for part in name.split(".")):
        raise ConfigError(
            f"config key {where} = {text!r} is not a factory: write module:callable (mynets:wide_resnet), "
            "path/to/file.py:callable, torchvision:NAME or timm:NAME"
        )
    return module, name


def search_path() -> list[str]:
    """Where a user's module is looked for: the directory Snakemake runs in, then PYTHONPATH and sys.path."""
    return [os.getcwd(), *sys.path]


def module_file(module: str, where: str) -> Path:
    """The source file of `module` (a dotted name, or a path ending in .py), found without importing it."""
    if module.endswith(".py"):
        path = Path(module)
        if not path.is_file():
            raise ConfigError(
                f"config key {where}: file {module} does not exist (from {Path.cwd()}); give its path relative "
                "to the directory Snakemake runs in"
            )
        return path
    locations: list[str] | None = search_path()
    spec = None
    for part in module.split("."):
        spec = importlib.machinery.PathFinder.find_spec(part, locations)
        if spec is None:
            raise ConfigError(
                f"config key {where}: module {module} is not found in {Path.cwd()} nor on PYTHONPATH; put "
                f"{module.replace('.', '/')}.py in the directory Snakemake runs in, or add its directory to "
                "PYTHONPATH"
            )
        locations = list(spec.submodule_search_locations or [])
    if spec is None or not spec.origin or not Path(spec.origin).is_file():
        raise ConfigError(f"config key {where}: module {module} has no source file to import; give a .py module")
    return Path(spec.origin)


def source_sha256(path: Path) -> str:
    """The hash of a module's source: its file, or every .py file of its package."""
    digest = hashlib.sha256()
    files = sorted(path.parent.rglob("*.py")) if path.name == "__init__.py" else [path]
    for file in files:
        digest.update(str(file.relative_to(path.parent)).encode() + b"\0" + file.read_bytes() + b"\0")
    return digest.hexdigest()


def top_level_names(path: Path) -> set[str] | None:
    """Names a module binds at its top level (None where a star import makes them unknowable)."""
    try:
        tree = ast.parse(path.read_bytes(), filename=str(path))
    except SyntaxError as error:
        raise ConfigError(f"{path} does not parse ({error.msg}, line {error.lineno}); fix it first") from error
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(name.id for target in targets for name in ast.walk(target) if isinstance(name, ast.Name))
        elif isinstance(node, ast.Import | ast.ImportFrom):
            for alias in node.names:
                if alias.name == "*":
                    return None
                names.add(alias.asname or alias.name.split(".")[0])
        elif isinstance(node, ast.If | ast.Try):  # definitions under `if TYPE_CHECKING`/`try`: accept any
            return None
    return names


def user_source(factory: str, where: str) -> tuple[str, str]:
    """The hash of a user's factory module, after checking that the module exists and defines the callable."""
    module, name = parse_factory(factory, where)
    path = module_file(module, where)
    names = top_level_names(path)
    if names is not None and name.split(".")[0] not in names:
        raise ConfigError(
            f"config key {where} = {factory!r}: {path} defines no {name.split('.')[0]}; define it there or "
            "fix the name after the colon"
        )
    return module, source_sha256(path)


def resolve_model(name: str, entry: dict[str, Any]) -> dict[str, Any]:
    """A `models:` entry with its source's hash, checked as far as planning can without torch."""
    where = f"models.{name}"
    if name in BUILTIN_MODELS:
        raise ConfigError(
            f"config key {where}: {name} is a built-in model; give yours another name (a built-in name always "
            "means the built-in model)"
        )
    factory = entry["factory"]
    kind, callable_name = parse_factory(factory, f"{where}.factory")
    resolved = dict(entry)
    if kind == "bslr":
        raise ConfigError(
            f"config key {where}.factory = {factory!r}: built-in models are named directly in experiments "
            f"(models: [{callable_name}]), not declared"
        )
    if kind == "timm" and importlib.util.find_spec("timm") is None:
        raise ConfigError(
            f"config key {where}.factory = {factory!r} needs timm, which is not installed: pip install 'bslr[timm]' "
            "(or pip install timm)"
        )
    if kind not in LIBRARY_KINDS:
        resolved["source_sha256"] = user_source(factory, f"{where}.factory")[1]
    return resolved


def npz_header(archive: zipfile.ZipFile, key: str) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of one array of an .npz, read from its header without loading it."""
    with archive.open(f"{key}.npy") as stream:
        version = np.lib.format.read_magic(stream)
        reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = reader(stream)
    return tuple(shape), dtype


def resolve_npz(name: str, entry: dict[str, Any]) -> dict[str, Any]:
    where, path = f"datasets.{name}", Path(entry["path"])
    if not path.is_file():
        raise ConfigError(
            f"config key {where}.path = {entry['path']!r}: no such file (from {Path.cwd()}); write the npz first "
            "or fix the path"
        )
    try:
        with zipfile.ZipFile(path) as archive:
            present = {member[: -len(".npy")] for member in archive.namelist() if member.endswith(".npy")}
            missing = [key for key in NPZ_ARRAYS if key not in present]
            if missing:
                raise ConfigError(
                    f"config key {where}.path: {path} has no array {', '.join(missing)} (it has "
                    f"{', '.join(sorted(present)) or 'none'}); save it with np.savez(path, x_train=..., "
                    "y_train=..., x_test=..., y_test=...)"
                )
            headers = {key: npz_header(archive, key) for key in NPZ_ARRAYS}
    except (zipfile.BadZipFile, ValueError, OSError) as error:
        raise ConfigError(f"config key {where}.path: {path} is not a readable .npz ({error})") from error
    (train_shape, x_dtype), (test_shape, test_dtype) = headers["x_train"], headers["x_test"]
    for key, (shape, dtype) in headers.items():
        if key.startswith("x") and dtype.kind not in "uf":
            raise ConfigError(f"config key {where}.path: {path} array {key} is {dtype}; give uint8 or float inputs")
        if key.startswith("y") and (dtype.kind not in "iu" or len(shape) != 1):
            raise ConfigError(
                f"config key {where}.path: {path} array {key} is {dtype} of shape {shape}; give integer class "
                "labels, one per example"
            )
    if len(train_shape) < 2 or train_shape[1:] != test_shape[1:] or x_dtype != test_dtype:
        raise ConfigError(
            f"config key {where}.path: {path} x_train {train_shape} ({x_dtype}) and x_test {test_shape} ({test_dtype}) "
            "must be (examples, *input_shape) of one shape and dtype"
        )
    for split in ("train", "test"):
        if headers[f"y_{split}"][0][0] != headers[f"x_{split}"][0][0]:
            raise ConfigError(
                f"config key {where}.path: {path} has {headers[f'x_{split}'][0][0]} x_{split} but "
                f"{headers[f'y_{split}'][0][0]} y_{split}; give one label per example"
            )
    with np.load(path) as arrays:
        labels = np.concatenate([arrays["y_train"], arrays["y_test"]])
    classes = entry.get("num_classes", int(labels.max()) + 1 if labels.size else 0)
    if labels.size == 0 or labels.min() < 0 or labels.max() >= classes or classes < 2:
        raise ConfigError(
            f"config key {where}.path: {path} labels run from {labels.min(initial=0)} to {labels.max(initial=0)}; "
            f"give labels 0..{max(classes, 2) - 1} (num_classes: {classes}), at least two classes"
        )
    input_bytes = (train_shape[0] + test_shape[0]) * math.prod(train_shape[1:]) * x_dtype.itemsize
    shapes = {"input_shape": list(train_shape[1:]), "num_classes": classes, "train_size": train_shape[0]}
    return {**entry, **shapes, "memory_mb": memory_mb(input_bytes)}


def image_counts(split_dir: Path) -> dict[str, int]:
    """Images per class directory of one split of an image folder."""
    return {
        folder.name: sum(1 for file in folder.rglob("*") if file.suffix.lower() in IMAGE_EXTENSIONS)
        for folder in sorted(split_dir.iterdir())
        if folder.is_dir()
    }


def resolve_imagefolder(name: str, entry: dict[str, Any]) -> dict[str, Any]:
    where, root = f"datasets.{name}", Path(entry["path"])
    if "image_size" not in entry:
        raise ConfigError(f"config key {where}.image_size is missing: images are resized to a square of that side")
    missing = [split for split in ("train", "test") if not (root / split).is_dir()]
    if missing:
        raise ConfigError(
            f"config key {where}.path = {entry['path']!r}: {root} has no {' or '.join(f'{s}/' for s in missing)} "
            "directory; an image folder holds train/<class>/* and test/<class>/*"
        )
    train, test = image_counts(root / "train"), image_counts(root / "test")
    if set(train) != set(test) or len(train) < 2 or not all(train.values()):
        raise ConfigError(
            f"config key {where}.path: {root}/train has classes {sorted(train)} and {root}/test {sorted(test)}; "
            "give both the same class directories, at least two, each with images"
        )
    classes = entry.get("num_classes", len(train))
    if classes != len(train):
        raise ConfigError(f"config key {where}.num_classes = {classes}, but {root}/train has {len(train)} classes")
    size = entry["image_size"]
    input_bytes = (sum(train.values()) + sum(test.values())) * 3 * size * size
    resolved = {**entry, "input_shape": [3, size, size], "num_classes": classes, "train_size": sum(train.values())}
    if input_bytes > IN_MEMORY_BYTES and "mean" not in entry:
        raise ConfigError(
            f"config key {where}: {root} is too large to hold in memory ({input_bytes / 2**30:.1f} GiB), so its "
            "per-channel mean and std cannot be computed at the start of each job; give mean and std"
        )
    return resolved | {"memory_mb": memory_mb(min(input_bytes, IN_MEMORY_BYTES))}


def resolve_factory_dataset(name: str, entry: dict[str, Any]) -> dict[str, Any]:
    where = f"datasets.{name}"
    missing = [key for key in ("factory", "input_shape", "num_classes", "train_size") if key not in entry]
    if missing:
        raise ConfigError(
            f"config key {where} (format factory) is missing {', '.join(missing)}: a factory's data set declares "
            "its shapes, since planning does not run it"
        )
    resolved = dict(entry)
    resolved["source_sha256"] = user_source(entry["factory"], f"{where}.factory")[1]
    return resolved | {"memory_mb": memory_mb(entry["train_size"] * math.prod(entry["input_shape"]) * 4)}


def memory_mb(input_bytes: int) -> int:
    """A job's memory request for a data set of `input_bytes`: 2 GB for the process, three copies of the data."""
    return int(math.ceil((2000 + 3 * input_bytes / 1e6) / 1000) * 1000)


def resolve_dataset(name: str, entry: dict[str, Any]) -> dict[str, Any]:
    """A `datasets:` entry with its shapes, classes and sizes, read from its file or listing."""
    where = f"datasets.{name}"
    if name in BUILTIN_DATASETS:
        raise ConfigError(f"config key {where}: {name} is a built-in data set; give yours another name")
    entry = dict(entry)
    entry.setdefault("format", "factory" if "factory" in entry else None)
    if entry["format"] is None:
        raise ConfigError(f"config key {where}.format is missing: give npz, imagefolder or factory")
    if entry["format"] in ("npz", "imagefolder") and "path" not in entry:
        raise ConfigError(f"config key {where}.path is missing: the {entry['format']} data set's location")
    resolvers = {"npz": resolve_npz, "imagefolder": resolve_imagefolder, "factory": resolve_factory_dataset}
    resolved = resolvers[entry["format"]](name, entry)
    channels = resolved["input_shape"][0] if len(resolved["input_shape"]) > 1 else 1
    for key in ("mean", "std"):
        if key in resolved and len(resolved[key]) != channels:
            raise ConfigError(
                f"config key {where}.{key} has {len(resolved[key])} values for {channels} channel(s) of inputs "
                f"{tuple(resolved['input_shape'])}; give one per channel"
            )
    if resolved["augment"] == "crop_flip" and len(resolved["input_shape"]) != 3:
        raise ConfigError(
            f"config key {where}.augment = crop_flip needs images (C, H, W), not inputs "
            f"{tuple(resolved['input_shape'])}; use augment: none"
        )
    return resolved


def resolve_entries(config: dict[str, Any]) -> None:
    """Resolve a validated config's own models and data sets in place (shapes, source hashes)."""
    config["models"] = {name: resolve_model(name, entry) for name, entry in config["models"].items()}
    config["datasets"] = {name: resolve_dataset(name, entry) for name, entry in config["datasets"].items()}


def catalog_of(config: dict[str, Any]) -> Catalog:
    """The models and data sets a resolved config can name: the built-in ones and its own."""
    models = dict(BUILTIN_MODELS)
    for name, entry in config.get("models", {}).items():
        models[name] = ModelSpec(
            name,
            entry["factory"],
            kwargs=entry.get("kwargs", {}),
            display=entry.get("display", ""),
            input_rank=entry.get("input_rank"),
            cost=None,
            source_sha256=entry.get("source_sha256"),
        )
    datasets = dict(BUILTIN_DATASETS)
    for name, entry in config.get("datasets", {}).items():
        datasets[name] = DatasetSpec(
            name,
            entry["num_classes"],
            tuple(entry["input_shape"]),
            entry["train_size"],
            mean=tuple(entry.get("mean", ())),
            std=tuple(entry.get("std", ())),
            format=entry["format"],
            path=entry.get("path"),
            image_size=entry.get("image_size"),
            augment=entry["augment"],
            factory=entry.get("factory"),
            kwargs=entry.get("kwargs", {}),
            source_sha256=entry.get("source_sha256"),
            display=entry.get("display", ""),
            memory_mb=entry["memory_mb"],
        )
    return Catalog(models, datasets)
