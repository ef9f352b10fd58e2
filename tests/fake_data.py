"""Small data sets written in the true on-disk formats that torchvision reads.

CIFAR: pickled batches (dicts of `data`: N x 3072 uint8 rows, `labels` or `fine_labels`) and the meta
file; MNIST: big-endian idx files; ImageNet: an ImageFolder tree of PNG and JPEG files. The CIFAR
loaders check MD5 sums of the real files, which generated files cannot match; `MD5_PATCH` switches that
check off the way torchvision's own tests patch `check_integrity`.
"""

from __future__ import annotations

import pickle
import struct
from pathlib import Path

import numpy as np
from PIL import Image

# A sitecustomize.py for the jobs Snakemake starts. It patches torchvision's CIFAR module when something
# imports it, not at start-up: importing torchvision in every process (Snakemake's own, every job's) would
# add about 4 s to each.
MD5_PATCH = """\
import importlib.abc
import importlib.util
import sys


class PatchCifarIntegrity(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name != "torchvision.datasets.cifar":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        execute = spec.loader.exec_module

        def exec_module(module):
            execute(module)
            module.check_integrity = lambda *args, **kwargs: True

        spec.loader.exec_module = exec_module
        return spec


sys.meta_path.insert(0, PatchCifarIntegrity())
"""


def write_cifar(root: Path, classes: int, per_batch: int = 20, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    if classes == 10:
        folder, label_key, meta_name = root / "cifar-10-batches-py", "labels", "batches.meta"
        files = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
        meta = {"label_names": [f"class{i}" for i in range(10)]}
    else:
        folder, label_key, meta_name = root / "cifar-100-python", "fine_labels", "meta"
        files = ["train", "test"]
        meta = {"fine_label_names": [f"class{i}" for i in range(100)], "coarse_label_names": ["c"] * 20}
        per_batch *= 5  # one train file holding what CIFAR-10 splits into five batches
    folder.mkdir(parents=True, exist_ok=True)
    for name in files:
        count = per_batch if name not in ("test", "test_batch") else max(per_batch // 5, 10)
        entry = {
            "data": rng.integers(0, 256, size=(count, 3072), dtype=np.uint8),
            label_key: rng.integers(0, classes, size=count).tolist(),
            "batch_label": name,
        }
        with open(folder / name, "wb") as handle:
            pickle.dump(entry, handle)
    with open(folder / meta_name, "wb") as handle:
        pickle.dump(meta, handle)


def write_idx(path: Path, array: np.ndarray) -> None:
    """idx format: magic (0, 0, type 0x08 = ubyte, number of dimensions), big-endian sizes, data."""
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def write_mnist(root: Path, train: int = 60, test: int = 20, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for prefix, count in (("train", train), ("t10k", test)):
        write_idx(raw / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, size=(count, 28, 28)))
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", rng.integers(0, 10, size=count))


def write_imagefolder(root: Path, classes: int = 3, per_class: int = 2, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    for split in ("train", "val"):
        for label in range(classes):
            folder = root / "imagenet" / split / f"n{label:08d}"
            folder.mkdir(parents=True, exist_ok=True)
            for index in range(per_class):
                pixels = rng.integers(0, 256, size=(40 + 8 * index, 48, 3), dtype=np.uint8)
                suffix = "JPEG" if index % 2 == 0 else "png"
                Image.fromarray(pixels).save(folder / f"image{index}.{suffix}")
