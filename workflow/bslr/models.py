"""Model definitions, small and exact. Each builder takes the input shape (without the batch axis) and
the number of classes, so one name serves every data set of the right kind."""

from __future__ import annotations

import math
from collections.abc import Callable

from torch import nn


def mlp(input_shape: tuple[int, ...], num_classes: int, hidden: tuple[int, ...] = (100, 100)) -> nn.Module:
    """Fully connected ReLU network; two hidden layers of 100 as in the MNIST-1D paper's MLP."""
    layers: list[nn.Module] = [nn.Flatten()]
    width = math.prod(input_shape)
    for size in hidden:
        layers += [nn.Linear(width, size), nn.ReLU()]
        width = size
    layers.append(nn.Linear(width, num_classes))
    return nn.Sequential(*layers)


def cnn1d(input_shape: tuple[int, ...], num_classes: int, channels: int = 32) -> nn.Module:
    """Three stride-2 1-D convolutions (kernel 5) and a linear layer, for MNIST-1D signals.

    Length 40 becomes 20, 10, 5; the MNIST-1D paper's CNN is of the same shape.
    """
    in_channels, length = input_shape
    layers: list[nn.Module] = []
    for _ in range(3):
        layers += [nn.Conv1d(in_channels, channels, kernel_size=5, stride=2, padding=2), nn.ReLU()]
        in_channels = channels
        length = (length + 1) // 2
    layers += [nn.Flatten(), nn.Linear(channels * length, num_classes)]
    return nn.Sequential(*layers)


MODELS: dict[str, Callable[..., nn.Module]] = {
    "mlp": mlp,
    "cnn1d": cnn1d,
}


def build_model(name: str, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    if name not in MODELS:
        raise KeyError(f"unknown model {name!r}; known models: {', '.join(sorted(MODELS))}")
    return MODELS[name](input_shape, num_classes)
