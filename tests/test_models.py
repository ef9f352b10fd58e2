import torch

from bslr.data import DATASETS
from bslr.models import MODELS, build_model


def test_mnist1d_models_map_signals_to_logits():
    spec = DATASETS["mnist1d"]
    inputs = torch.randn(7, *spec.input_shape)
    for name in ("mlp", "cnn1d"):
        model = build_model(name, spec.input_shape, spec.num_classes)
        assert model(inputs).shape == (7, 10), name


def test_mlp_has_the_documented_size():
    model = MODELS["mlp"]((1, 40), 10)
    # 40*100+100 + 100*100+100 + 100*10+10
    assert sum(p.numel() for p in model.parameters()) == 15210
