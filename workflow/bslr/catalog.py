"""What planning must know about data sets and models before any job runs, without importing torch.

`bslr.data` and `bslr.models` hold the loaders and the networks; this module holds their names, shapes
and sizes, so that validating a config and planning 1,600 jobs never pays for importing torch.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DatasetSpec:
    """What the workflow must know about a data set before any job runs."""

    name: str
    num_classes: int
    input_shape: tuple[int, ...]
    train_size: int
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    generated_file: str | None = None  # relative to data.root, made by a workflow rule
    expected: str = ""  # where the files go under data.root, for error messages


DATASETS: dict[str, DatasetSpec] = {
    "mnist1d": DatasetSpec("mnist1d", 10, (1, 40), 4000, generated_file="mnist1d/mnist1d.npz"),
    "mnist": DatasetSpec(
        "mnist",
        10,
        (1, 28, 28),
        60000,
        (0.1307,),
        (0.3081,),
        expected="MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte (torchvision.datasets.MNIST)",
    ),
    "cifar10": DatasetSpec(
        "cifar10",
        10,
        (3, 32, 32),
        50000,
        (0.4914, 0.4822, 0.4465),
        (0.2470, 0.2435, 0.2616),
        expected="cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta} (the 'CIFAR-10 python version')",
    ),
    "cifar100": DatasetSpec(
        "cifar100",
        100,
        (3, 32, 32),
        50000,
        (0.5071, 0.4865, 0.4409),
        (0.2673, 0.2564, 0.2762),
        expected="cifar-100-python/{train,test,meta} (the 'CIFAR-100 python version')",
    ),
    "imagenet": DatasetSpec(
        "imagenet",
        1000,
        (3, 224, 224),
        1281167,
        (0.485, 0.456, 0.406),
        (0.229, 0.224, 0.225),
        expected="imagenet/train/<class>/*.JPEG and imagenet/val/<class>/*.JPEG (an ImageFolder tree)",
    ),
}

# Every model `bslr.models.MODELS` builds (a test keeps the two in step).
MODEL_NAMES = ("mlp", "cnn1d", "resnet20", "resnet56", "resnet110", "vgg19", "alexnet", "resnet18", "resnet50")

# Which input each model is made for: image models need (C, H, W), cnn1d needs (C, L); the rest take any.
MODEL_INPUT_RANK = {"cnn1d": 2, "resnet20": 3, "resnet56": 3, "resnet110": 3, "vgg19": 3, "alexnet": 3}

# How figures and reports name models and data sets (the config uses the keys). Names not listed print as
# they are written in the config.
DISPLAY_NAMES = {
    "mlp": "MLP",
    "cnn1d": "1-D CNN",
    "resnet20": "ResNet-20",
    "resnet56": "ResNet-56",
    "resnet110": "ResNet-110",
    "vgg19": "VGG-19",
    "alexnet": "AlexNet",
    "resnet18": "ResNet-18",
    "resnet50": "ResNet-50",
    "mnist1d": "MNIST-1D",
    "mnist": "MNIST",
    "cifar10": "CIFAR-10",
    "cifar100": "CIFAR-100",
    "imagenet": "ImageNet",
}


def display_name(name: str) -> str:
    """The printed name of a model or data set: `ResNet-110`, `CIFAR-10`."""
    return DISPLAY_NAMES.get(name, name)


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
