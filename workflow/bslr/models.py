"""Model definitions, small and exact.

Each builder takes the input shape (without the batch axis), the number of classes and keyword options,
so one name serves every data set of the right kind; a config's own models (`module:callable`,
`torchvision:NAME`, `timm:NAME`) are built by the same `build_model` from their spec. The CIFAR models
follow the papers they name: ResNet of He et al. 2016 (Section 4.2, option-A shortcuts, as in
akamaster/pytorch_resnet_cifar10), VGG-19 with batch norm (Simonyan & Zisserman 2015; Ioffe & Szegedy
2015) for 32x32 inputs, and the small AlexNet of Zhang et al. 2017.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import math
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from bslr.catalog import ModelSpec
from bslr.errors import ModelError


def mlp(input_shape: tuple[int, ...], num_classes: int, hidden: tuple[int, ...] = (100, 100)) -> nn.Module:
    """Fully connected ReLU network on the flattened input; hidden sizes from `training.mlp_hidden`.

    The default, two hidden layers of 100, is the MNIST-1D paper's MLP.
    """
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


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with batch norm; a parameter-free (option A) shortcut when the shape changes:
    subsample by 2 and pad the new channels with zeros."""

    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.pad = planes - in_planes
        self.stride = stride

    def shortcut(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1 and self.pad == 0:
            return x
        x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, self.pad // 2, self.pad - self.pad // 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """ResNet-(6n+2) for 32x32 images: 3x3 conv (16), three stages of n basic blocks with 16, 32 and 64
    channels (stride 2 entering stages 2 and 3), global average pooling, linear classifier."""

    def __init__(self, depth: int, in_channels: int, num_classes: int) -> None:
        super().__init__()
        if (depth - 2) % 6:
            raise ValueError(f"CIFAR ResNet depth must be 6n+2 (20, 32, 44, 56, 110), not {depth}")
        blocks = (depth - 2) // 6
        self.conv = nn.Conv2d(in_channels, 16, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(16)
        stages, in_planes = [], 16
        for planes, stride in ((16, 1), (32, 2), (64, 2)):
            for index in range(blocks):
                stages.append(BasicBlock(in_planes, planes, stride if index == 0 else 1))
                in_planes = planes
        self.stages = nn.Sequential(*stages)
        self.linear = nn.Linear(64, num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d | nn.Linear):
                nn.init.kaiming_normal_(module.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.stages(F.relu(self.bn(self.conv(x))))
        return self.linear(F.adaptive_avg_pool2d(out, 1).flatten(1))


def cifar_resnet(depth: int) -> Callable[..., nn.Module]:
    def build(input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
        return CifarResNet(depth, input_shape[0], num_classes)

    build.__doc__ = f"ResNet-{depth} for CIFAR ({(depth - 2) // 6} basic blocks per stage)."
    return build


VGG19_LAYERS = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M")


def vgg19(input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """VGG-19 with batch norm for 32x32 inputs: sixteen 3x3 conv-BN-ReLU layers in five pooled blocks
    (the 32x32 input ends as 1x1x512), then one linear classifier, as in CIFAR versions of VGG."""
    layers: list[nn.Module] = []
    channels = input_shape[0]
    for item in VGG19_LAYERS:
        if item == "M":
            layers.append(nn.MaxPool2d(2))
        else:
            layers += [nn.Conv2d(channels, item, 3, padding=1), nn.BatchNorm2d(item), nn.ReLU(inplace=True)]
            channels = item
    layers += [nn.Flatten(), nn.Linear(512, num_classes)]
    return nn.Sequential(*layers)


def alexnet(input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """The small AlexNet of Zhang et al. 2017 ("Understanding deep learning requires rethinking
    generalization"), used in many generalization studies of CIFAR: two modules of 5x5 convolution (64)
    -> ReLU -> 3x3 max-pool (stride 2) -> local response normalisation, then fully connected layers of 384
    and 192 units and the classifier. On 32x32 inputs the features are 64x8x8."""
    channels, height, width = input_shape
    features = nn.Sequential(
        nn.Conv2d(channels, 64, 5, padding=2),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(3, stride=2, padding=1),
        nn.LocalResponseNorm(4, alpha=0.001 / 9.0, beta=0.75, k=1.0),
        nn.Conv2d(64, 64, 5, padding=2),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(3, stride=2, padding=1),
        nn.LocalResponseNorm(4, alpha=0.001 / 9.0, beta=0.75, k=1.0),
    )
    flat = 64 * math.ceil(height / 4) * math.ceil(width / 4)
    classifier = nn.Sequential(
        nn.Flatten(),
        nn.Linear(flat, 384),
        nn.ReLU(inplace=True),
        nn.Linear(384, 192),
        nn.ReLU(inplace=True),
        nn.Linear(192, num_classes),
    )
    return nn.Sequential(features, classifier)


def torchvision_model(name: str) -> Callable[..., nn.Module]:
    def build(input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
        import torchvision

        return getattr(torchvision.models, name)(weights=None, num_classes=num_classes)

    build.__doc__ = f"torchvision's {name} for ImageNet, randomly initialised (no pretrained weights)."
    return build


# The built-in models by name (`bslr.catalog.BUILTIN_MODELS` holds what planning knows of them).
BUILDERS: dict[str, Callable[..., nn.Module]] = {
    "mlp": mlp,
    "cnn1d": cnn1d,
    "resnet20": cifar_resnet(20),
    "resnet56": cifar_resnet(56),
    "resnet110": cifar_resnet(110),
    "vgg19": vgg19,
    "alexnet": alexnet,
    "resnet18": torchvision_model("resnet18"),
    "resnet50": torchvision_model("resnet50"),
}


def import_factory(factory: str, where: str) -> Callable[..., Any]:
    """The callable of `module:callable` or `path/to/file.py:callable`, imported from the directory the
    job runs in (Snakemake's) or from PYTHONPATH."""
    module_name, _, attribute = factory.rpartition(":")
    try:
        if module_name.endswith(".py"):
            path = Path(module_name).resolve()
            spec = importlib.util.spec_from_file_location(f"bslr_user_{path.stem}", path)
            if spec is None or spec.loader is None:
                raise ImportError(f"cannot load {path}")
            module = importlib.util.module_from_spec(spec)
            sys.modules[spec.name] = module
            spec.loader.exec_module(module)
        else:
            if os.getcwd() not in sys.path:
                sys.path.insert(0, os.getcwd())
            module = importlib.import_module(module_name)
        target: Any = module
        for part in attribute.split("."):
            target = getattr(target, part)
    except Exception as error:  # whatever the user's module raises on import
        raise ModelError(
            f"{where}: {factory!r} does not import ({type(error).__name__}: {error}); fix the module, or the name "
            "after the colon"
        ) from error
    if not callable(target):
        raise ModelError(f"{where}: {factory!r} is a {type(target).__name__}, not a callable")
    return target


def build_model(
    spec: ModelSpec, input_shape: tuple[int, ...], num_classes: int, mlp_hidden: tuple[int, ...] = (100, 100)
) -> nn.Module:
    """A freshly initialised model (seed torch first): a built-in one, the user's, torchvision's or timm's.

    No weights are ever downloaded: torchvision's are built with `weights=None`, timm's with `pretrained=False`.
    """
    where = f"model {spec.name}"
    kind, name = spec.factory.split(":", 1)[0], spec.factory.rpartition(":")[2]
    if spec.builtin:
        if name == "mlp":
            return mlp(input_shape, num_classes, tuple(mlp_hidden))
        return BUILDERS[name](input_shape, num_classes)
    try:
        if kind == "torchvision":
            import torchvision

            model = torchvision.models.get_model(name, weights=None, num_classes=num_classes, **spec.kwargs)
        elif kind == "timm":
            try:
                import timm
            except ImportError as error:
                raise ModelError(f"{where}: {spec.factory!r} needs timm: pip install 'bslr[timm]'") from error
            model = timm.create_model(
                name, pretrained=False, num_classes=num_classes, in_chans=input_shape[0], **spec.kwargs
            )
        else:
            factory = import_factory(spec.factory, where)
            model = factory(input_shape=tuple(input_shape), num_classes=num_classes, **spec.kwargs)
    except ModelError:
        raise
    except Exception as error:  # a wrong name or keyword: torchvision, timm and user code raise several kinds
        raise ModelError(
            f"{where}: {spec.factory} with kwargs {json.dumps(spec.kwargs)} fails to build "
            f"({type(error).__name__}: {error}); fix the entry under the config's models:"
        ) from error
    if not isinstance(model, nn.Module):
        raise ModelError(f"{where}: {spec.factory} returned a {type(model).__name__}, not a torch.nn.Module")
    return model


def check_output(model: nn.Module, spec: ModelSpec, input_shape: tuple[int, ...], num_classes: int) -> None:
    """The model maps a batch of the data set's inputs to (batch, num_classes) logits; tried on two zero
    inputs, in eval mode and without gradients, so that nothing the run computes changes."""
    parameter = next(model.parameters(), None)
    if parameter is None:
        raise ModelError(f"model {spec.name}: {spec.factory} has no parameters to train")
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            output = model(torch.zeros((2, *input_shape), device=parameter.device))
    except Exception as error:
        raise ModelError(
            f"model {spec.name}: {spec.factory} fails on inputs of shape (batch, {', '.join(map(str, input_shape))}) "
            f"({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}); make it take the data "
            "set's shape, or pair it with another data set"
        ) from error
    finally:
        model.train(was_training)
    if not isinstance(output, torch.Tensor) or tuple(output.shape) != (2, num_classes):
        shape = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
        raise ModelError(
            f"model {spec.name}: {spec.factory} returns {shape} for a batch of 2 inputs of shape {input_shape}; it "
            f"must return logits of shape (batch, {num_classes}) (num_classes={num_classes})"
        )
