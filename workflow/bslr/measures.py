"""The theory's quantities, measured on a run's weights (`training.measures`).

He, Liu & Tao model SGD near a minimum as an Ornstein-Uhlenbeck process whose stationary spread scales as
learning rate / batch size; their bound and the flat-minimum literature turn on the curvature and the
gradient noise there. Each quantity here is measured on one run, written once for both learners (through
`Learner.functional` and `Learner.flat_weights`):

- `hessian_trace`: Hutchinson's estimate tr(H) ~ mean of v'Hv over Rademacher probes v, Hessian-vector
  products by forward-over-reverse differentiation (`torch.func.jvp` of `torch.func.grad`); standard error
  from the spread of the probes.
- `hessian_top`: the largest-magnitude eigenvalue of H by power iteration, and the residual ||Hv - lv|| of
  the last iterate, which bounds its distance to an eigenvalue of H.
- `gradient_noise`: from per-example gradients g_i (`torch.func.vmap` of `grad`): the trace of their
  covariance, tr S = sum ||g_i - mean||^2 / (n - 1), and McCandlish et al. (2018)'s simple noise scale
  tr S / |G|^2, with |G|^2 estimated without bias as ||mean||^2 - tr S / n; jackknife standard errors.
- `fluctuation`: the mean squared distance of the weights, after each step of a window of the last steps
  (`window`: a number of epochs or of steps), to their mean over those steps (the trace of their
  covariance), with a batch-means standard error over the window's WINDOW_BLOCKS blocks; and
  `fluctuation_local`, the same to each block's own mean, which leaves out drift slower than a block.
- `weight_norm` and `init_distance`: ||w|| and ||w - w0||, exact.

The curvature and noise measures use one fixed subset of the training set, drawn from the run's seed (so
every run of a seed is measured on the same examples, with the same probes), in eval mode (BatchNorm's
running statistics: the function the run's accuracy is measured on). Their standard errors are those of
the probes or of the examples within that subset. Nothing here draws from the training's random streams.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch.func import grad, jvp, vmap

from bslr.catalog import MEASURE_COLUMNS
from bslr.config import RunSpec
from bslr.data import LoaderData, MemoryData
from bslr.learners import Learner, Weights

CURVATURE = ("hessian_trace", "hessian_top", "gradient_noise")  # the measures that need the subset
# Per-example gradients are held a chunk at a time, a chunk x weights tensor: at most this many entries
# (1 GiB in float32), so that VGG-19's 20 million weights take 13 examples at once, not the evaluation
# batch's 1,000 (80 GB); models of under 268,000 weights keep the evaluation batch.
PER_EXAMPLE_ENTRIES = 2**28


def flat(weights: Weights) -> torch.Tensor:
    return torch.cat([tensor.reshape(-1) for tensor in weights.values()])


def unflat(vector: torch.Tensor, like: Weights) -> Weights:
    shaped, start = {}, 0
    for name, tensor in like.items():
        shaped[name] = vector[start : start + tensor.numel()].view_as(tensor).to(tensor.dtype)
        start += tensor.numel()
    return shaped


@dataclass
class Objective:
    """The mean cross-entropy of a model over fixed examples, differentiated in chunks of `chunk` examples
    (sums of per-chunk results, so the memory is one chunk's whatever the subset's size)."""

    logits: Callable[[Weights, torch.Tensor], torch.Tensor]
    inputs: torch.Tensor
    labels: torch.Tensor
    chunk: int

    def chunks(self, size: int | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        size = size or self.chunk
        for start in range(0, len(self.labels), size):
            yield self.inputs[start : start + size], self.labels[start : start + size]

    def summed_loss(self, weights: Weights, inputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(self.logits(weights, inputs), labels, reduction="sum")

    def gradient(self, weights: Weights) -> torch.Tensor:
        """The gradient of the mean loss, flat, in float64."""
        total = sum(flat(grad(self.summed_loss)(weights, x, y)).double() for x, y in self.chunks())
        return total / len(self.labels)

    def hessian_vector_product(self, weights: Weights, vector: Weights) -> torch.Tensor:
        """H v for the mean loss, flat, in float64: the directional derivative of the gradient along v."""
        total = 0
        for x, y in self.chunks():
            _, product = jvp(lambda w, x=x, y=y: grad(self.summed_loss)(w, x, y), (weights,), (vector,))
            total = total + flat(product).double()
        return total / len(self.labels)

    def per_example_gradients(self, weights: Weights) -> Iterator[torch.Tensor]:
        """Each example's gradient, a (chunk, weights) tensor per chunk."""

        def one(w: Weights, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return F.cross_entropy(self.logits(w, x[None]), y[None])

        per_example = vmap(grad(one), in_dims=(None, 0, 0))
        size = max(1, min(self.chunk, PER_EXAMPLE_ENTRIES // sum(t.numel() for t in weights.values())))
        for x, y in self.chunks(size):
            gradients = per_example(weights, x, y)
            yield torch.cat([tensor.reshape(len(y), -1) for tensor in gradients.values()], dim=1)


def rademacher(like: Weights, generator: torch.Generator) -> Weights:
    """A probe of independent +-1 entries, drawn on the CPU so that every device draws the same."""
    return {
        name: (torch.randint(0, 2, tensor.shape, generator=generator) * 2 - 1).to(tensor.device, tensor.dtype)
        for name, tensor in like.items()
    }


def hessian_trace(
    objective: Objective, weights: Weights, probes: int, generator: torch.Generator
) -> tuple[float, float]:
    """Hutchinson's estimate of tr(H) and its standard error over the probes: E[v'Hv] = tr(H) for any v of
    independent entries of mean 0 and variance 1."""
    values = []
    for _ in range(probes):
        probe = rademacher(weights, generator)
        values.append(float(flat(probe).double() @ objective.hessian_vector_product(weights, probe)))
    samples = torch.tensor(values, dtype=torch.float64)
    return float(samples.mean()), float(samples.std() / math.sqrt(probes))


def top_eigenvalue(
    objective: Objective, weights: Weights, iterations: int, generator: torch.Generator
) -> tuple[float, float]:
    """Power iteration from a seeded Gaussian start: (the Rayleigh quotient l = v'Hv of the last iterate,
    ||Hv - lv||). H is symmetric, so some eigenvalue lies within that residual of l; the iteration finds
    the eigenvalue of largest magnitude, which near a minimum is the largest."""
    vector = torch.randn(sum(t.numel() for t in weights.values()), generator=generator, dtype=torch.float64)
    vector = vector.to(next(iter(weights.values())).device)
    vector /= vector.norm()
    eigenvalue, residual = 0.0, 0.0
    for _ in range(iterations):
        product = objective.hessian_vector_product(weights, unflat(vector, weights))
        eigenvalue = float(vector @ product)
        residual = float((product - eigenvalue * vector).norm())
        norm = product.norm()
        if norm == 0:
            break
        vector = product / norm
    return eigenvalue, residual


def jackknife_se(leave_one_out: torch.Tensor) -> float:
    n = len(leave_one_out)
    return float(torch.sqrt((n - 1) / n * ((leave_one_out - leave_one_out.mean()) ** 2).sum()))


def noise_statistics(squares: torch.Tensor, dots: torch.Tensor, mean_square: float) -> dict[str, float]:
    """Gradient noise from per-example scalars: `squares` ||g_i||^2, `dots` g_i . mean, `mean_square`
    ||mean||^2. Leave-one-out values follow from these alone (no gradient is stored), hence jackknife errors.
    The noise scale is NaN where the estimate of |G|^2 is not positive (the noise swamps the signal)."""
    n = len(squares)
    total = squares.sum()

    def trace_and_scale(sum_squares, mean_sq, count):
        trace = (sum_squares - count * mean_sq) / (count - 1)
        signal = mean_sq - trace / count
        return trace, torch.where(signal > 0, trace / signal, torch.nan)

    trace, scale = trace_and_scale(total, torch.tensor(mean_square, dtype=torch.float64), n)
    mean_sq_out = (n**2 * mean_square - 2 * n * dots + squares) / (n - 1) ** 2
    traces_out, scales_out = trace_and_scale(total - squares, mean_sq_out, n - 1)
    return {
        "covariance_trace": float(trace),
        "covariance_trace_se": jackknife_se(traces_out),
        "noise_scale": float(scale),
        "noise_scale_se": jackknife_se(scales_out),
    }


def gradient_noise(objective: Objective, weights: Weights) -> dict[str, float]:
    mean = objective.gradient(weights)
    squares, dots = [], []
    for gradients in objective.per_example_gradients(weights):
        gradients = gradients.double()
        squares.append((gradients * gradients).sum(dim=1))
        dots.append(gradients @ mean)
    return noise_statistics(torch.cat(squares).cpu(), torch.cat(dots).cpu(), float(mean @ mean))


WINDOW_BLOCKS = 5  # batch means of the fluctuation's window


class Window:
    """The weights after each of the last steps, kept as the last `blocks` blocks of `block` steps (counted
    from the run's first step; the last block may be partial), each per run as (steps, mean, summed squared
    deviations), updated per step (Welford) and merged exactly (Chan et al. 1979): the spread over the
    window without storing a single step's weights. A run that ends is measured then, over its own last
    blocks."""

    def __init__(self, block: int, blocks: int = WINDOW_BLOCKS) -> None:
        self.block, self.length = block, blocks
        self.blocks: list[dict[str, Any]] = []  # oldest first

    def add(self, step: int, weights: torch.Tensor, active: list[bool]) -> None:
        """Add the (K, weights) weights after step `step` (from 1), for the runs still active."""
        weights = weights.double()
        number = (step - 1) // self.block
        if not self.blocks or self.blocks[-1]["number"] != number:
            zeros = weights.new_zeros(len(weights))
            self.blocks.append(
                {"number": number, "count": zeros, "mean": torch.zeros_like(weights), "m2": zeros.clone()}
            )
            del self.blocks[: -self.length]
        block = self.blocks[-1]
        taken = torch.tensor(active, dtype=torch.float64, device=weights.device)
        block["count"] += taken
        delta = weights - block["mean"]
        block["mean"] += delta * (taken / block["count"].clamp(min=1))[:, None]
        block["m2"] += taken * (delta * (weights - block["mean"])).sum(dim=1)

    def spread(self, index: int) -> dict[str, float]:
        """Run `index`'s mean squared distance to its window's mean, with a batch-means standard error over
        the window's blocks (NaN with one); the same to each block's own mean (a running mean: drift slower
        than a block left out); and the number of steps."""
        blocks = [block for block in self.blocks if block["count"][index] > 0]
        if not blocks:
            return dict.fromkeys(("fluctuation", "fluctuation_se", "fluctuation_local"), math.nan) | {
                "fluctuation_steps": 0
            }
        counts = torch.stack([block["count"][index] for block in blocks])
        means = torch.stack([block["mean"][index] for block in blocks])
        m2 = torch.stack([block["m2"][index] for block in blocks])
        steps = counts.sum()
        centre = (counts[:, None] * means).sum(dim=0) / steps
        offsets = ((means - centre) ** 2).sum(dim=1)
        per_block = m2 / counts + offsets  # each block's mean squared distance to the window's mean
        se = float(per_block.std() / math.sqrt(len(blocks))) if len(blocks) > 1 else math.nan
        return {
            "fluctuation": float((m2 + counts * offsets).sum() / steps),
            "fluctuation_se": se,
            "fluctuation_local": float(m2.sum() / steps),
            "fluctuation_steps": int(steps),
        }

    def state(self) -> list[dict[str, Any]]:
        return self.blocks

    def load(self, blocks: list[dict[str, Any]], device: torch.device) -> None:
        self.blocks = [
            {key: value.to(device) if torch.is_tensor(value) else value for key, value in block.items()}
            for block in blocks
        ]


class Measurer:
    """The measures a pack's runs asked for (the `measures` and `measurement` of their RunSpec)."""

    def __init__(
        self,
        run: RunSpec,
        data: MemoryData | LoaderData,
        initial: torch.Tensor,
        steps_per_epoch: int,
        chunk: int,
        last_step: int | None = None,
    ) -> None:
        """`last_step`: the step at which every run ends and is measured, where that is known in advance (no
        target, no measures before the end): the window's steps are then the only ones observed."""
        self.names = list(run.measures)
        self.options = run.measurement
        self.seed = run.seed
        self.initial = initial.double()
        self.chunk = chunk
        window = self.options["window"]
        length = window["length"] * (steps_per_epoch if window["unit"] == "epochs" else 1)
        self.window = Window(math.ceil(length / WINDOW_BLOCKS)) if "fluctuation" in self.names else None
        self.first_observed = 1
        if self.window is not None and last_step is not None:  # the first step of the window's first block
            self.first_observed = max(
                1, ((last_step - 1) // self.window.block - WINDOW_BLOCKS + 1) * self.window.block + 1
            )
        self.subset: tuple[torch.Tensor, torch.Tensor] | None = None
        if set(CURVATURE) & set(self.names):
            size = data.size("train")
            order = torch.randperm(size, generator=torch.Generator().manual_seed(self.seed))
            self.subset = data.examples(order[: min(self.options["subset"], size)].sort().values)

    @property
    def columns(self) -> list[str]:
        return [column for name in self.names for column in MEASURE_COLUMNS[name]]

    def observe(self, learner: Learner, step: int) -> None:
        """After each step: the weights enter the fluctuation's window (copying K models' weights in float64,
        so steps that cannot be in the final window are skipped where the run's end is known)."""
        if self.window is not None and step >= self.first_observed:
            self.window.add(step, learner.flat_weights(), learner.active)

    def measure(self, learner: Learner, index: int) -> dict[str, float]:
        """Every asked measure of run `index` at its current weights."""
        logits, weights = learner.functional(index)
        values: dict[str, float] = {}
        vector = flat(weights).double()
        if "weight_norm" in self.names:
            values["weight_norm"] = float(vector.norm())
        if "init_distance" in self.names:
            values["init_distance"] = float((vector - self.initial).norm())
        if self.window is not None:
            values.update(self.window.spread(index))
        if self.subset is None:
            return values
        objective = Objective(logits, *self.subset, self.chunk)
        if "hessian_trace" in self.names:
            trace, se = hessian_trace(objective, weights, self.options["probes"], self.generator())
            values.update(hessian_trace=trace, hessian_trace_se=se)
        if "hessian_top" in self.names:
            top, residual = top_eigenvalue(objective, weights, self.options["iterations"], self.generator())
            values.update(hessian_top=top, hessian_top_residual=residual)
        if "gradient_noise" in self.names:
            values.update(gradient_noise(objective, weights))
        return values

    def generator(self) -> torch.Generator:
        """The same probes for every run of a seed and every measurement: differences between runs are not
        differences between probes."""
        return torch.Generator().manual_seed(self.seed)

    def state(self) -> dict[str, Any]:
        return {"window": self.window.state() if self.window is not None else []}

    def load(self, state: dict[str, Any]) -> None:
        if self.window is not None:
            self.window.load(state["window"], self.initial.device)
