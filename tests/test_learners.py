"""The stacked learner against the serial one (each run exactly as alone), in float64.

In float32 the two differ by rounding from the first step (other kernels), and SGD amplifies that: on
MNIST-1D after 3 epochs the train loss of the CNN differed by 1.4e-4 on one machine and less on another.
In float64 the same rounding is about 1e-16 and stays far below the tolerance used here (1e-9 relative)
over a few steps, on any CPU, so the comparison tests the learners' arithmetic, not a machine's.
"""

import io

import pytest
import torch

from bslr.catalog import BUILTIN_MODELS
from bslr.config import UpdateRule, resolve_learner
from bslr.data import MemoryData
from bslr.engine import resolve_engine
from bslr.learners import build_learner
from bslr.models import build_model
from test_train import settings

ENGINE = settings("unused")  # the engine options at their defaults: fp32, TF32 on, channels_last auto, no compile
SHAPES = {"mlp": (1, 40), "cnn1d": (1, 40), "resnet20": (3, 32, 32)}


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    actual, expected = actual.detach().double(), expected.detach().double()
    return float((actual - expected).norm() / expected.norm().clamp_min(1e-30))


def random_data(shape: tuple[int, ...], count: int, seed: int) -> MemoryData:
    generator = torch.Generator().manual_seed(seed)
    inputs = torch.randn(count, *shape, generator=generator, dtype=torch.float64)
    labels = torch.randint(0, 10, (count,), generator=generator)
    return MemoryData(inputs, labels, inputs[: count // 2], labels[: count // 2])


@pytest.mark.parametrize("model_name", ["mlp", "cnn1d", "resnet20"])
@pytest.mark.parametrize("optimizer", [{"momentum": 0.0, "weight_decay": 0.0}, {"momentum": 0.9, "weight_decay": 5e-4}])
def test_stacked_equals_serial_in_float64(model_name, optimizer):
    shape = SHAPES[model_name]
    engine = resolve_engine(ENGINE, torch.device("cpu"), len(shape))
    torch.manual_seed(0)
    base = build_model(BUILTIN_MODELS[model_name], shape, 10).double()
    runs = [UpdateRule(lr=lr, **optimizer) for lr in (0.01, 0.02, 0.05)]
    serial = build_learner("serial", base, runs, engine)
    stacked = build_learner("stacked", base, runs, engine)
    data = random_data(shape, 64, seed=1)
    for inputs, labels in data.train_batches(16, torch.Generator().manual_seed(2)):
        serial.step(inputs, labels)
        stacked.step(inputs, labels)
    for index, model in enumerate(serial.models):
        for name, weight in model.named_parameters():
            assert relative_error(stacked.params[name][index], weight) < 1e-9, name
        for name, buffer in model.named_buffers():  # BatchNorm running means, variances and batch counts
            assert relative_error(stacked.buffers[name][index], buffer) < 1e-9, name
    if model_name == "resnet20":
        counts = [name for name in stacked.buffers if name.endswith("num_batches_tracked")]
        assert counts and all(int(stacked.buffers[name][index]) == 4 for name in counts for index in range(3))
    # the three learning rates really trained three different models
    first = next(iter(stacked.params))
    assert not torch.equal(stacked.params[first][0], stacked.params[first][1])
    for split in ("train", "test"):  # evaluation in eval mode (BatchNorm running statistics)
        for (loss, accuracy), (stacked_loss, stacked_accuracy) in zip(
            serial.evaluate(data, split, 10), stacked.evaluate(data, split, 10), strict=True
        ):
            assert stacked_loss == pytest.approx(loss, rel=1e-9) and stacked_accuracy == accuracy


def first_layer(learner) -> list[torch.Tensor]:
    """Each model's first weight matrix (the MLP's layer 1: layer 0 flattens)."""
    if hasattr(learner, "models"):
        return [model[1].weight for model in learner.models]
    return list(learner.params["1.weight"])


def test_a_stopped_run_is_neither_stepped_nor_evaluated():
    engine = resolve_engine(ENGINE, torch.device("cpu"), 2)
    torch.manual_seed(0)
    base = build_model(BUILTIN_MODELS["mlp"], (1, 40), 10).double()
    data = random_data((1, 40), 32, seed=3)
    for name in ("serial", "stacked"):
        learner = build_learner(name, base, [UpdateRule(lr=0.1)] * 2, engine)
        learner.active[1] = False
        before = [weight.clone() for weight in first_layer(learner)]
        inputs, labels = next(data.train_batches(16, torch.Generator().manual_seed(0)))
        learner.step(inputs, labels)
        after = first_layer(learner)
        assert not torch.equal(before[0], after[0]) and torch.equal(before[1], after[1]), name
        (loss, _), (stopped_loss, stopped_accuracy) = learner.evaluate(data, "train", 16)
        assert loss == loss and stopped_loss != stopped_loss and stopped_accuracy != stopped_accuracy  # NaN


def test_auto_stacks_packs_and_leaves_single_runs_serial():
    assert resolve_learner("auto", 5) == "stacked" and resolve_learner("auto", 1) == "serial"
    assert resolve_learner("serial", 5) == "serial" and resolve_learner("stacked", 1) == "stacked"


OPTIMIZERS = {
    "sgd nesterov": dict(momentum=0.9, nesterov=True, weight_decay=5e-4),
    "adam": dict(optimizer="adam", betas=(0.8, 0.99), eps=1e-6, weight_decay=5e-4),
    "adamw": dict(optimizer="adamw", weight_decay=0.05),
}


@pytest.mark.parametrize("model_name", ["mlp", "cnn1d"])
@pytest.mark.parametrize("optimizer", OPTIMIZERS, ids=str)
def test_stacked_optimizers_and_schedules_equal_torch_optim_in_float64(model_name, optimizer):
    """The stacked update of each optimizer against torch.optim's in the serial learner, with the learning
    rate changed between steps as a schedule changes it (a warm-up, then a decay)."""
    shape = SHAPES[model_name]
    engine = resolve_engine(ENGINE, torch.device("cpu"), len(shape))
    torch.manual_seed(0)
    base = build_model(BUILTIN_MODELS[model_name], shape, 10).double()
    runs = [UpdateRule(lr=lr, **OPTIMIZERS[optimizer]) for lr in (0.001, 0.003, 0.01)]
    serial = build_learner("serial", base, runs, engine)
    stacked = build_learner("stacked", base, runs, engine)
    assert [type(each).__name__.lower() for each in serial.optimizers] == [runs[0].optimizer] * 3
    data = random_data(shape, 96, seed=1)
    batches = data.train_batches(16, torch.Generator().manual_seed(2))
    for factor, (inputs, labels) in zip((0.25, 0.5, 1.0, 0.8, 0.3, 0.1), batches, strict=True):
        for learner in (serial, stacked):
            learner.set_lr_factor(factor)
            learner.step(inputs, labels)
    for index, model in enumerate(serial.models):
        assert serial.optimizers[index].param_groups[0]["lr"] == pytest.approx(runs[index].lr * 0.1, rel=1e-15)
        for name, weight in model.named_parameters():
            assert relative_error(stacked.params[name][index], weight) < 1e-9, name
    first = next(iter(stacked.params))
    assert not torch.equal(stacked.params[first][0], stacked.params[first][1])
    # the optimizer's state goes through a checkpoint (saved, then read back with weights_only as a resumed
    # job reads it): a learner loaded from it takes the same next step
    saved = io.BytesIO()
    torch.save(stacked.state(), saved)
    saved.seek(0)
    restored = build_learner("stacked", base, runs, engine)
    restored.load(torch.load(saved, weights_only=True))
    inputs, labels = next(data.train_batches(16, torch.Generator().manual_seed(3)))
    for learner in (stacked, restored):
        learner.set_lr_factor(0.1)
        learner.step(inputs, labels)
    for name in stacked.params:
        assert torch.equal(stacked.params[name], restored.params[name]), name
