"""A config's own models and data sets for the tests: modules and data files written into a directory."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np

from conftest import tiny_config

# A user's module of models: a CNN for images of any size, one that returns the wrong shape, and one whose
# forward `vmap` cannot batch (it reads a value out of a tensor with `.item()`).
MODELS_MODULE = textwrap.dedent(
    '''
    """Models of a researcher's own."""
    import math

    from torch import nn


    def small_cnn(input_shape, num_classes, width=4):
        return nn.Sequential(
            nn.Conv2d(input_shape[0], width, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(2),
            nn.Flatten(),
            nn.Linear(4 * width, num_classes),
        )


    def wrong_output(input_shape, num_classes):
        return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), num_classes + 1))


    class Gated(nn.Module):
        def __init__(self, input_shape, num_classes):
            super().__init__()
            self.linear = nn.Linear(math.prod(input_shape), num_classes)

        def forward(self, x):
            out = self.linear(x.flatten(1))
            return out * 2.0 if out.sum().item() > 0 else out  # data-dependent on the weights: vmap cannot batch it


    def gated(input_shape, num_classes):
        return Gated(input_shape, num_classes)
    '''
)


def write_models_module(directory: Path, name: str = "mynets") -> Path:
    path = directory / f"{name}.py"
    path.write_text(MODELS_MODULE)
    return path


def image_arrays(seed: int = 0, train: int = 96, test: int = 32, shape=(1, 8, 8), classes: int = 4) -> dict:
    """uint8 images whose class sets their mean brightness, so that a model can learn them in a few steps."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, count in (("train", train), ("test", test)):
        labels = np.arange(count) % classes
        rng.shuffle(labels)
        base = (labels * (200 // classes))[:, None, None, None]
        noise = rng.integers(0, 40, size=(count, *shape))
        arrays[f"x_{split}"] = np.clip(base + noise, 0, 255).astype(np.uint8)
        arrays[f"y_{split}"] = labels.astype(np.int64)
    return arrays


def write_npz(path: Path, **overrides) -> Path:
    arrays = image_arrays()
    arrays.update(overrides)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **{key: value for key, value in arrays.items() if value is not None})
    return path


def write_image_folder(root: Path, arrays: dict | None = None) -> Path:
    """The arrays as PNG files, train/<class>/<index>.png and test/<class>/<index>.png."""
    from PIL import Image

    arrays = arrays or image_arrays()
    for split in ("train", "test"):
        for index, (image, label) in enumerate(zip(arrays[f"x_{split}"], arrays[f"y_{split}"], strict=True)):
            folder = root / split / f"class{label}"
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image[0]).save(folder / f"{index:04d}.png")
    return root


def user_config(models: dict, datasets: dict, /, **experiment) -> dict:
    """`tiny_config` on the config's own entries: one seed, two batch sizes, two learning rates, one epoch."""
    config = tiny_config(
        models=list(experiment.pop("models", models)),
        datasets=list(experiment.pop("datasets", datasets)),
        batch_sizes=experiment.pop("batch_sizes", [16, 32]),
        learning_rates=experiment.pop("learning_rates", [0.05, 0.1]),
        epochs=experiment.pop("epochs", 1),
        runtime=experiment.pop("runtime", 10),
        device="cpu",
        **experiment,
    )
    config["models"], config["datasets"] = models, datasets
    return config
