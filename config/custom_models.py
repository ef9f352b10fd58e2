"""A model of one's own for config/custom.yaml: what a `models:` entry's factory looks like.

bslr calls a factory as `factory(input_shape=(C, ...), num_classes=N, **kwargs)` with the data set's
shape of one example and its number of classes, after seeding torch, and trains the `nn.Module` it
returns. Editing this file re-trains the runs of the models it defines (their protocol holds its hash).
"""

from __future__ import annotations

from torch import nn


def small_cnn(input_shape: tuple[int, ...], num_classes: int, width: int = 16) -> nn.Module:
    """Two 3x3 convolution-ReLU layers (`width`, then twice that; the second of stride 2), average pooling
    to 4x4 and a linear classifier: small enough for CPU, and for any image size."""
    channels = input_shape[0]
    return nn.Sequential(
        nn.Conv2d(channels, width, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(width, 2 * width, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(4),
        nn.Flatten(),
        nn.Linear(2 * width * 16, num_classes),
    )
