import pytest
import torch

from bslr.catalog import BUILTIN_DATASETS, BUILTIN_MODELS
from bslr.models import BUILDERS, build_model


def test_the_torch_free_catalog_names_every_model():
    assert tuple(BUILDERS) == tuple(BUILTIN_MODELS)
    assert all(spec.factory == f"bslr:{name}" and spec.builtin for name, spec in BUILTIN_MODELS.items())


def test_mnist1d_models_map_signals_to_logits():
    spec = BUILTIN_DATASETS["mnist1d"]
    inputs = torch.randn(7, *spec.input_shape)
    for name in ("mlp", "cnn1d"):
        model = build_model(BUILTIN_MODELS[name], spec.input_shape, spec.num_classes)
        assert model(inputs).shape == (7, 10), name


def test_mlp_has_the_documented_size():
    model = BUILDERS["mlp"]((1, 40), 10)
    # 40*100+100 + 100*100+100 + 100*10+10
    assert sum(p.numel() for p in model.parameters()) == 15210


@pytest.mark.parametrize(
    ("name", "classes", "parameters"),
    [
        ("resnet110", 10, 1_727_962),  # He et al. 2016: 1.7M
        ("resnet56", 10, 853_018),
        ("resnet20", 10, 269_722),
        ("resnet110", 100, 1_733_812),
        ("vgg19", 10, 20_040_522),  # 16 conv layers with batch norm, one linear layer
        ("vgg19", 100, 20_086_692),
        ("alexnet", 10, 1_756_426),
    ],
)
def test_cifar_models_have_their_published_sizes(name, classes, parameters):
    model = build_model(BUILTIN_MODELS[name], (3, 32, 32), classes)
    assert sum(p.numel() for p in model.parameters()) == parameters
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, classes)


def test_resnet110_is_three_stages_of_eighteen_blocks():
    model = build_model(BUILTIN_MODELS["resnet110"], (3, 32, 32), 10)
    blocks = list(model.stages)
    assert len(blocks) == 54
    assert [block.conv1.out_channels for block in blocks[::18]] == [16, 32, 64]
    assert [block.stride for block in blocks[::18]] == [1, 2, 2]
    convolutions = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convolutions) + 1 == 110  # 109 convolutions and the classifier


def test_imagenet_models_come_from_torchvision_untrained():
    assert (
        sum(p.numel() for p in build_model(BUILTIN_MODELS["resnet18"], (3, 224, 224), 1000).parameters()) == 11_689_512
    )
    assert (
        sum(p.numel() for p in build_model(BUILTIN_MODELS["resnet50"], (3, 224, 224), 1000).parameters()) == 25_557_032
    )


def test_mlp_hidden_sizes_are_configurable():
    model = build_model(BUILTIN_MODELS["mlp"], (1, 28, 28), 10, mlp_hidden=(512, 512))
    assert sum(p.numel() for p in model.parameters()) == 784 * 512 + 512 + 512 * 512 + 512 + 512 * 10 + 10
