"""Each measure of `bslr.measures` against an exact computation, on an MLP of 307 weights whose full Hessian
and per-example gradients are formed directly (torch.autograd, not torch.func), in float64.

Where an estimate is random (Hutchinson's probes, a subset of examples), its reported standard error is
checked against the spread it claims to describe: the exact variance of Hutchinson's estimate, and the
spread of the covariance trace over subsets of a population of examples.
"""

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

from bslr import measures
from bslr.catalog import BUILTIN_MODELS
from bslr.config import RunSpec, UpdateRule
from bslr.data import MemoryData
from bslr.engine import resolve_engine
from bslr.learners import build_learner
from bslr.measures import (
    Measurer,
    Objective,
    Window,
    flat,
    gradient_noise,
    hessian_trace,
    noise_statistics,
    top_eigenvalue,
    unflat,
)
from bslr.models import build_model
from test_train import settings

SHAPE, CLASSES, HIDDEN = (1, 8), 3, (16, 8)  # 8*16+16 + 16*8+8 + 8*3+3 = 307 weights


def run_measuring(measures: list[str], measurement: dict) -> RunSpec:
    """A run of seed 0 taking `measures` as `measurement` says (the schema's defaults for what it leaves out)."""
    run = settings("unused", model="mlp", seed=0, measures=measures)
    return dataclasses.replace(run, measurement=run.measurement | measurement)


def small_mlp(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model(BUILTIN_MODELS["mlp"], SHAPE, CLASSES, HIDDEN).double().eval()


def examples(count: int, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs labelled by a fixed linear teacher, so that the mean gradient is more than noise."""
    generator = torch.Generator().manual_seed(seed)
    inputs = torch.randn(count, *SHAPE, generator=generator, dtype=torch.float64)
    teacher = torch.randn(SHAPE[-1], CLASSES, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    return inputs, (inputs.flatten(1) @ teacher).argmax(dim=1)


def objective_of(model: torch.nn.Module, inputs, labels, chunk: int = 1000) -> tuple[Objective, dict]:
    weights = {name: weight.detach() for name, weight in model.named_parameters()}
    return Objective(lambda w, x: functional_call(model, w, (x,)), inputs, labels, chunk), weights


def exact_hessian(model: torch.nn.Module, inputs, labels) -> torch.Tensor:
    """The full Hessian of the mean loss in the flat weights, by double backpropagation."""
    weights = {name: weight.detach() for name, weight in model.named_parameters()}

    def loss(vector: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(functional_call(model, unflat(vector, weights), (inputs,)), labels)

    return torch.autograd.functional.hessian(loss, flat(weights))


def exact_per_example_gradients(model: torch.nn.Module, inputs, labels) -> torch.Tensor:
    rows = []
    for x, y in zip(inputs, labels, strict=True):
        model.zero_grad()
        F.cross_entropy(model(x[None]), y[None]).backward()
        rows.append(torch.cat([weight.grad.reshape(-1) for weight in model.parameters()]))
    return torch.stack(rows)


def test_the_model_is_small_enough_to_form_its_hessian():
    assert sum(weight.numel() for weight in small_mlp().parameters()) == 307


@pytest.mark.parametrize("chunk", [64, 10])  # one chunk, or uneven chunks summed
def test_hessian_vector_products_equal_the_full_hessian_times_the_vector(chunk):
    model, (inputs, labels) = small_mlp(), examples(64)
    objective, weights = objective_of(model, inputs, labels, chunk)
    hessian = exact_hessian(model, inputs, labels)
    vector = torch.randn(307, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    product = objective.hessian_vector_product(weights, unflat(vector, weights))
    assert torch.allclose(product, hessian @ vector, rtol=1e-10, atol=1e-13)
    model.zero_grad()
    F.cross_entropy(model(inputs), labels).backward()
    gradient = torch.cat([weight.grad.reshape(-1) for weight in model.parameters()])
    assert torch.allclose(objective.gradient(weights), gradient, rtol=1e-10, atol=1e-14)


def test_hutchinson_is_unbiased_and_its_standard_error_is_its_spread():
    """For Rademacher probes, Var(v'Hv) = 2 * sum of the squared off-diagonal entries of H, exactly: over
    400 estimates of 8 probes each, their mean is within 4 standard errors of tr(H) (measured: 0.46 below),
    their variance and the mean reported squared standard error are both within 20% of the exact variance
    (measured: 1.08 and 0.996 of it; the relative sampling error of a variance from 400 estimates is 7%)."""
    model, (inputs, labels) = small_mlp(), examples(64)
    objective, weights = objective_of(model, inputs, labels)
    hessian = exact_hessian(model, inputs, labels)
    trace = float(hessian.trace())
    variance = 2 * float((hessian**2).sum() - (hessian.diagonal() ** 2).sum()) / 8
    results = torch.tensor(
        [hessian_trace(objective, weights, 8, torch.Generator().manual_seed(seed)) for seed in range(400)],
        dtype=torch.float64,
    )
    estimates, errors = results[:, 0], results[:, 1]
    assert abs(float(estimates.mean()) - trace) < 4 * math.sqrt(variance / 400)
    assert float(estimates.var()) / variance == pytest.approx(1, abs=0.2)
    assert float((errors**2).mean()) / variance == pytest.approx(1, abs=0.2)
    one, se = hessian_trace(objective, weights, 32, torch.Generator().manual_seed(0))
    assert abs(one - trace) < 4 * se


def test_power_iteration_finds_the_top_eigenvalue_within_its_residual():
    model, (inputs, labels) = small_mlp(), examples(64)
    objective, weights = objective_of(model, inputs, labels)
    eigenvalues = torch.linalg.eigvalsh(exact_hessian(model, inputs, labels))
    largest = float(eigenvalues[eigenvalues.abs().argmax()])
    for iterations in (3, 10, 200):
        estimate, residual = top_eigenvalue(objective, weights, iterations, torch.Generator().manual_seed(0))
        # H is symmetric: some eigenvalue lies within the residual of a Rayleigh quotient
        assert float((eigenvalues - estimate).abs().min()) <= residual + 1e-12
    assert abs(estimate - largest) <= residual + 1e-12 and residual < 1e-6 * abs(largest)  # 1e-12: rounding


def jackknife(values: torch.Tensor) -> float:
    n = len(values)
    return float(torch.sqrt((n - 1) / n * ((values - values.mean()) ** 2).sum()))


def exact_noise(gradients: torch.Tensor) -> tuple[float, float]:
    """(trace of the covariance, noise scale) from per-example gradients, by their definitions."""
    n = len(gradients)
    trace = float(gradients.var(dim=0).sum())
    signal = float(gradients.mean(dim=0).square().sum()) - trace / n
    return trace, trace / signal


@pytest.mark.parametrize("chunk", [50, 7])
def test_gradient_noise_equals_its_definition_with_jackknife_errors(chunk):
    model = small_mlp()
    inputs, labels = examples(50)
    objective, weights = objective_of(model, inputs, labels, chunk)
    gradients = exact_per_example_gradients(model, inputs, labels)
    trace, scale = exact_noise(gradients)
    out = [exact_noise(torch.cat([gradients[:i], gradients[i + 1 :]])) for i in range(len(gradients))]
    measured = gradient_noise(objective, weights)
    assert scale > 0
    assert measured["covariance_trace"] == pytest.approx(trace, rel=1e-10)
    assert measured["noise_scale"] == pytest.approx(scale, rel=1e-9)
    assert measured["covariance_trace_se"] == pytest.approx(
        jackknife(torch.tensor([t for t, _ in out], dtype=torch.float64)), rel=1e-7
    )
    assert measured["noise_scale_se"] == pytest.approx(
        jackknife(torch.tensor([s for _, s in out], dtype=torch.float64)), rel=1e-7
    )


def test_per_example_gradients_of_a_large_model_come_in_chunks_that_fit_the_memory_cap(monkeypatch):
    """A model too large for an evaluation batch of per-example gradients at once (VGG-19 at 1,000 examples
    would take 80 GB) gets chunks of at most PER_EXAMPLE_ENTRIES entries, with the same statistics."""
    model = small_mlp()
    inputs, labels = examples(50)
    objective, weights = objective_of(model, inputs, labels, chunk=50)
    whole = gradient_noise(objective, weights)
    monkeypatch.setattr(measures, "PER_EXAMPLE_ENTRIES", 4 * 307)  # room for 4 examples' gradients
    assert [len(chunk) for chunk in objective.per_example_gradients(weights)] == [4] * 12 + [2]
    chunked = gradient_noise(objective, weights)
    for key, value in whole.items():
        assert chunked[key] == pytest.approx(value, rel=1e-12), key


def test_the_noise_scale_is_unknown_where_the_noise_swamps_the_gradient():
    squares = torch.tensor([1.0, 1.0, 1.0], dtype=torch.float64)
    assert math.isnan(noise_statistics(squares, torch.zeros(3, dtype=torch.float64), 0.0)["noise_scale"])


def test_the_covariance_trace_standard_error_is_its_spread_over_subsets():
    """A population of 3,000 examples, 60 random subsets of 100: the mean jackknife standard error of one
    subset's estimate matches the estimates' spread within 30% (measured: 1.19 of it for the covariance
    trace, 1.22 for the noise scale; the jackknife errs on the large side, and a spread from 60 estimates
    has a relative error of 9%), and their mean is the population's trace within 4 standard errors of that
    mean (measured: 0.05)."""
    model = small_mlp()
    inputs, labels = examples(3000, seed=5)
    objective, weights = objective_of(model, inputs, labels, chunk=500)
    population, _ = exact_noise(torch.cat(list(objective.per_example_gradients(weights))))
    results = []
    for seed in range(60):
        subset = torch.randperm(3000, generator=torch.Generator().manual_seed(seed))[:100]
        measured = gradient_noise(*objective_of(model, inputs[subset], labels[subset]))
        results.append([measured[key] for key in ("covariance_trace", "covariance_trace_se", "noise_scale")])
        results[-1].append(measured["noise_scale_se"])
    estimates, errors, scales, scale_errors = torch.tensor(results, dtype=torch.float64).T
    assert float(errors.mean() / estimates.std()) == pytest.approx(1, abs=0.3)
    assert float(scale_errors.mean() / scales.std()) == pytest.approx(1, abs=0.3)
    assert abs(float(estimates.mean()) - population) < 4 * float(estimates.std()) / math.sqrt(len(estimates))


def mean_square_distance(kept: torch.Tensor) -> float:
    return float(((kept - kept.mean(dim=0)) ** 2).sum(dim=1).mean())


def test_the_window_holds_the_spread_of_the_last_epochs_exactly():
    """Two runs, a window of 2 blocks of 4 steps; the second run ends after step 7 (and is measured then, as
    the training loop does), the first goes on to step 11."""
    weights = torch.randn(11, 2, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64).cumsum(0)
    window = Window(block=4, blocks=2)
    for step in range(1, 12):
        window.add(step, weights[step - 1], active=[True, step <= 7])
        if step == 7:  # blocks 1 and 2 of run 1: steps 1 to 7
            assert window.spread(1)["fluctuation"] == pytest.approx(mean_square_distance(weights[:7, 1]), rel=1e-12)
            assert window.spread(1)["fluctuation_steps"] == 7
    spread = window.spread(0)  # blocks 2 and 3: steps 5 to 11
    assert spread["fluctuation"] == pytest.approx(mean_square_distance(weights[4:, 0]), rel=1e-12)
    assert spread["fluctuation_steps"] == 7
    centre = weights[4:, 0].mean(dim=0)  # batch means: each block's mean squared distance to the window's mean
    blocks = (weights[4:8, 0], weights[8:, 0])
    per_block = torch.stack([((block - centre) ** 2).sum(dim=1).mean() for block in blocks])
    assert spread["fluctuation_se"] == pytest.approx(float(per_block.std() / math.sqrt(2)), rel=1e-12)
    local = sum(((block - block.mean(dim=0)) ** 2).sum() for block in blocks) / 7  # to each block's own mean
    assert spread["fluctuation_local"] == pytest.approx(float(local), rel=1e-12)
    assert window.spread(1)["fluctuation_steps"] == 3  # block 1 has left the window: run 1 keeps block 2
    copy = Window(block=4, blocks=2)
    copy.load(window.state(), torch.device("cpu"))
    assert copy.spread(0) == spread


@pytest.mark.parametrize("last_step", [40, 37, 5])
def test_a_window_observed_only_from_its_first_possible_step_is_the_same(last_step):
    """Knowing the run's last step, the measurer skips the steps that cannot be in its window: the blocks it
    keeps, and so the fluctuation, are bitwise those of observing every step."""
    model = small_mlp()
    initial = flat({key: weight.detach() for key, weight in model.named_parameters()}).clone()
    settings = run_measuring(["fluctuation"], {"window": {"length": 10, "unit": "steps"}})
    data = MemoryData(*examples(8), *examples(8))
    every = Measurer(settings, data, initial, steps_per_epoch=4, chunk=8)
    skipping = Measurer(settings, data, initial, steps_per_epoch=4, chunk=8, last_step=last_step)
    assert skipping.first_observed == {40: 31, 37: 29, 5: 1}[last_step]  # blocks of 2 steps, 5 of them
    engine = resolve_engine(settings, torch.device("cpu"), 1)
    learner = build_learner("serial", model, [UpdateRule(lr=0.1)], engine)
    for step in range(1, last_step + 1):
        learner.step(*examples(4, seed=step))
        every.observe(learner, step)
        skipping.observe(learner, step)
    assert skipping.measure(learner, 0) == every.measure(learner, 0)
    assert skipping.measure(learner, 0)["fluctuation_steps"] == every.measure(learner, 0)["fluctuation_steps"] > 0


def test_both_learners_give_the_same_measures():
    """The serial and stacked learners' views of a pack (float64) give the same measures, for each run."""
    inputs, labels = examples(64)
    data = MemoryData(inputs, labels, inputs[:10], labels[:10])
    settings = run_measuring(
        ["hessian_trace", "hessian_top", "gradient_noise", "fluctuation", "weight_norm", "init_distance"],
        {"subset": 40, "probes": 4, "iterations": 3, "window": {"length": 1, "unit": "epochs"}},
    )
    engine = resolve_engine(settings, torch.device("cpu"), 2)
    measured = {}
    for name in ("serial", "stacked"):
        model = small_mlp()
        initial = flat({key: weight.detach() for key, weight in model.named_parameters()}).clone()
        runs = [UpdateRule(lr=lr) for lr in (0.05, 0.2)]
        learner = build_learner(name, model, runs, engine)
        measurer = Measurer(settings, data, initial, steps_per_epoch=8, chunk=16)
        for step, (x, y) in enumerate(data.train_batches(8, torch.Generator().manual_seed(2)), 1):
            learner.step(x, y)
            measurer.observe(learner, step)
        measured[name] = [measurer.measure(learner, index) for index in range(2)]
    for serial, stacked in zip(measured["serial"], measured["stacked"], strict=True):
        assert serial.keys() == stacked.keys() and len(serial) == 14
        for key, value in serial.items():
            assert stacked[key] == pytest.approx(value, rel=1e-9, nan_ok=True), key
    assert measured["serial"][0]["init_distance"] < measured["serial"][1]["init_distance"]  # lr 0.05 < 0.2
