"""How a pack of runs computes: the one thing that varies under the one training loop (`bslr.train`).

A learner holds the K models of a pack (runs that differ only in learning rate, K >= 1), steps every
active one on a shared batch, evaluates them on a split, and saves and loads its state:

- `SerialLearner`: K ordinary modules, each with its own torch.optim optimizer, stepped in turn. Each run's
  arithmetic is exactly that of the run trained alone, so on CPU its metrics are bitwise identical to a
  separate run's; the pack shares only the process, the data on the device, the batch order and the
  augmentation.
- `StackedLearner`: the K models stacked (`torch.func.stack_module_state`, BatchNorm statistics
  included) and run by one `vmap`ped `functional_call` per step, one batched kernel per layer for all K;
  the optimizer's update batched over the K models with a learning rate each, in torch.optim's arithmetic
  (SGD with momentum, Nesterov and weight decay; Adam; AdamW). Other kernels than a run alone, so equal to
  separate runs only up to rounding, which training amplifies.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Callable
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch.func import functional_call, stack_module_state, vmap

from bslr.config import UpdateRule
from bslr.data import LoaderData, MemoryData
from bslr.engine import Engine, autocast, optimizer, prepare_model, to_layout

LEARNERS = ("serial", "stacked")

Weights = dict[str, torch.Tensor]


class Learner(Protocol):
    """What the training loop asks of a pack's models."""

    active: list[bool]  # False once a run has ended (diverged, or reached its target): no longer stepped nor evaluated

    def step(self, inputs: torch.Tensor, labels: torch.Tensor) -> None:
        """One optimizer step of every active model on the same batch."""

    def set_lr_factor(self, factor: float) -> None:
        """Every model's learning rate from the next step on: its run's rate times `factor` (the schedule's)."""

    def evaluate(self, data: MemoryData | LoaderData, split: str, batch_size: int) -> list[tuple[float, float]]:
        """Each model's mean cross-entropy and accuracy over a whole split (NaN for inactive ones)."""

    def functional(self, index: int) -> tuple[Callable[[dict[str, torch.Tensor], torch.Tensor], torch.Tensor], Weights]:
        """Model `index` as a pure function of its weights (in eval mode, with its own buffers), and its weights
        (detached): what torch.func differentiates to measure it (`bslr.measures`)."""

    def flat_weights(self) -> torch.Tensor:
        """Every model's weights as one row of a (K, number of weights) tensor, in parameter order."""

    def state(self) -> dict[str, Any]:
        """Tensors and plain containers only: checkpoints are read with `weights_only=True`."""

    def load(self, state: dict[str, Any]) -> None: ...


def build_learner(name: str, model: torch.nn.Module, rules: list[UpdateRule], engine: Engine) -> Learner:
    """The learner `name` (resolved) for the runs of a pack (their update rules, in order), every model starting
    from `model`'s weights."""
    if name == "serial":
        return SerialLearner(model, rules, engine)
    if name == "stacked":
        return StackedLearner(model, rules, engine)
    raise ValueError(f"unknown learner {name!r}; known: {', '.join(LEARNERS)}")


def stacking_error(
    model: torch.nn.Module, engine: Engine, input_shape: tuple[int, ...], num_classes: int
) -> str | None:
    """Why the stacked learner cannot train `model` (what `vmap` raised on one step and one evaluation of two
    stacked copies, on zero inputs), or None. The copies are discarded and the random state restored, so
    the check changes nothing a run computes."""
    weight = next(model.parameters())
    probe_runs = [UpdateRule(lr=0.0)] * 2
    inputs = torch.zeros((2, *input_shape), device=weight.device)
    labels = torch.zeros(2, dtype=torch.int64, device=weight.device)
    devices = [weight.device] if weight.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        try:
            probe = StackedLearner(model, probe_runs, engine)
            probe.step(inputs, labels)
            with torch.inference_mode():
                probe.logits(probe.params, probe.buffers, to_layout(inputs, engine))
        except Exception as error:  # vmap raises several kinds on what it cannot batch
            return f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
    return None


def _accumulate(totals: torch.Tensor, counts: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor) -> None:
    """Add one evaluation batch's summed cross-entropy (float64) and correct predictions, per model."""
    losses = F.cross_entropy(logits.flatten(0, 1), labels.repeat(logits.shape[0]), reduction="none")
    totals += losses.view(logits.shape[0], -1).sum(dim=1).double()
    counts += (logits.argmax(dim=2) == labels).sum(dim=1)


def _means(totals: torch.Tensor, counts: torch.Tensor, size: int, active: list[bool]) -> list[tuple[float, float]]:
    losses, accuracies = (totals / size).tolist(), (counts.double() / size).tolist()
    nan = float("nan")
    return [
        (loss, accuracy) if on else (nan, nan) for loss, accuracy, on in zip(losses, accuracies, active, strict=True)
    ]


class SerialLearner:
    """K ordinary models and optimizers, each stepped as if it trained alone."""

    def __init__(self, model: torch.nn.Module, rules: list[UpdateRule], engine: Engine) -> None:
        self.engine = engine
        self.lrs = [rule.lr for rule in rules]
        self.models, self.forwards, self.optimizers = [], [], []
        for index, rule in enumerate(rules):
            replica = model if index == 0 else copy.deepcopy(model)
            replica, forward = prepare_model(replica, engine)
            self.models.append(replica)
            self.forwards.append(forward)
            self.optimizers.append(optimizer(replica.parameters(), rule, engine))
        self.active = [True] * len(rules)

    def set_lr_factor(self, factor: float) -> None:
        for lr, each in zip(self.lrs, self.optimizers, strict=True):
            for group in each.param_groups:
                group["lr"] = lr * factor

    def step(self, inputs: torch.Tensor, labels: torch.Tensor) -> None:
        inputs = to_layout(inputs, self.engine)
        for model, forward, update, active in zip(
            self.models, self.forwards, self.optimizers, self.active, strict=True
        ):
            if not active:
                continue
            model.train()
            with autocast(self.engine):
                loss = F.cross_entropy(forward(inputs), labels)
            update.zero_grad(set_to_none=True)
            loss.backward()
            update.step()

    @torch.inference_mode()
    def evaluate(self, data: MemoryData | LoaderData, split: str, batch_size: int) -> list[tuple[float, float]]:
        for model in self.models:
            model.eval()
        device = next(self.models[0].parameters()).device
        totals = torch.zeros(len(self.models), dtype=torch.float64, device=device)
        counts = torch.zeros(len(self.models), dtype=torch.int64, device=device)
        for inputs, labels in data.eval_batches(split, batch_size):
            inputs = to_layout(inputs, self.engine)
            for index, model in enumerate(self.models):
                if self.active[index]:
                    with autocast(self.engine):
                        logits = model(inputs).float()
                    _accumulate(totals[index : index + 1], counts[index : index + 1], logits[None], labels)
        return _means(totals, counts, data.size(split), self.active)

    def functional(self, index: int) -> tuple[Callable[[Weights, torch.Tensor], torch.Tensor], Weights]:
        model = self.models[index].eval()
        buffers = dict(model.named_buffers())

        def logits(weights: Weights, inputs: torch.Tensor) -> torch.Tensor:
            return functional_call(model, (weights, buffers), (to_layout(inputs, self.engine),))

        return logits, {name: weight.detach() for name, weight in model.named_parameters()}

    def flat_weights(self) -> torch.Tensor:
        return torch.stack(
            [torch.cat([weight.detach().reshape(-1) for weight in model.parameters()]) for model in self.models]
        )

    def state(self) -> dict[str, Any]:
        return {
            "models": [model.state_dict() for model in self.models],
            "optimizers": [optimizer.state_dict() for optimizer in self.optimizers],
            "active": list(self.active),
        }

    def load(self, state: dict[str, Any]) -> None:
        for model, update, model_state, optimizer_state in zip(
            self.models, self.optimizers, state["models"], state["optimizers"], strict=True
        ):
            model.load_state_dict(model_state)
            update.load_state_dict(optimizer_state)
        self.active = list(state["active"])


class StackedLearner:
    """K copies of one network as stacked tensors, trained and evaluated by one vmapped call."""

    def __init__(self, model: torch.nn.Module, rules: list[UpdateRule], engine: Engine) -> None:
        self.engine = engine
        if engine.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.params, self.buffers = stack_module_state([model] * len(rules))
        self.skeleton = copy.deepcopy(model).to("meta")  # structure only; weights come from the stacks
        weight = next(iter(self.params.values()))
        self.base_lr = torch.tensor([rule.lr for rule in rules], dtype=weight.dtype, device=weight.device)
        self.lr = self.base_lr
        self.rule = dataclasses.replace(rules[0], lr=0.0)  # what the pack's runs share: all but the rate
        self.velocity: dict[str, torch.Tensor] = {}  # SGD's momentum buffers
        self.moments: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}  # Adam's first and second moments
        self.steps = 0  # Adam's bias correction counts the steps taken
        self.active = [True] * len(rules)

        def logits(params, buffers, inputs):
            return functional_call(self.skeleton, (params, buffers), (inputs,))

        def loss(params, buffers, inputs, labels):
            return F.cross_entropy(logits(params, buffers, inputs), labels)

        self.losses = vmap(loss, in_dims=(0, 0, None, None))
        self.logits = vmap(logits, in_dims=(0, 0, None))
        if engine.compile != "false":
            mode = None if engine.compile == "default" else engine.compile
            self.losses = torch.compile(self.losses, mode=mode, dynamic=False)

    def _per_model(self, tensor: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        """`value` (one entry per model) shaped to broadcast against a stacked `tensor`."""
        return value.view(-1, *([1] * (tensor.ndim - 1)))

    def set_lr_factor(self, factor: float) -> None:
        self.lr = self.base_lr * factor

    def step(self, inputs: torch.Tensor, labels: torch.Tensor) -> None:
        """The sum of the K losses has, for each model's weights, that model's own gradient."""
        self.skeleton.train()
        names = list(self.params)
        with autocast(self.engine):
            losses = self.losses(self.params, self.buffers, to_layout(inputs, self.engine), labels)
        gradients = torch.autograd.grad(losses.sum(), [self.params[name] for name in names])
        active = torch.tensor(self.active, device=self.lr.device)
        lr = torch.where(active, self.lr, 0.0)  # a diverged model is left as it is
        self.steps += 1
        with torch.no_grad():
            for name, gradient in zip(names, gradients, strict=True):
                if self.rule.optimizer == "sgd":
                    self._sgd(name, gradient, lr)
                else:
                    self._adam(name, gradient, lr)

    def _sgd(self, name: str, gradient: torch.Tensor, lr: torch.Tensor) -> None:
        """torch.optim.SGD's update (no dampening), with a learning rate per model."""
        weight, rule = self.params[name], self.rule
        if rule.weight_decay:
            gradient = gradient.add(weight, alpha=rule.weight_decay)
        if rule.momentum:
            if name not in self.velocity:
                self.velocity[name] = gradient.clone()
            else:
                self.velocity[name].mul_(rule.momentum).add_(gradient)
            gradient = gradient.add(self.velocity[name], alpha=rule.momentum) if rule.nesterov else self.velocity[name]
        weight.sub_(gradient * self._per_model(gradient, lr))

    def _adam(self, name: str, gradient: torch.Tensor, lr: torch.Tensor) -> None:
        """torch.optim.Adam's update (AdamW's with decoupled weight decay), with a learning rate per model."""
        weight, rule = self.params[name], self.rule
        beta1, beta2 = rule.betas
        if rule.weight_decay and rule.optimizer == "adamw":
            weight.mul_(1 - self._per_model(weight, lr) * rule.weight_decay)
        elif rule.weight_decay:
            gradient = gradient.add(weight, alpha=rule.weight_decay)
        if name not in self.moments:
            self.moments[name] = (torch.zeros_like(weight), torch.zeros_like(weight))
        first, second = self.moments[name]
        first.lerp_(gradient, 1 - beta1)
        second.mul_(beta2).addcmul_(gradient, gradient, value=1 - beta2)
        step_size = self._per_model(weight, lr / (1 - beta1**self.steps))
        denominator = (second.sqrt() / math.sqrt(1 - beta2**self.steps)).add_(rule.eps)
        weight.sub_(step_size * first / denominator)

    @torch.inference_mode()
    def evaluate(self, data: MemoryData | LoaderData, split: str, batch_size: int) -> list[tuple[float, float]]:
        self.skeleton.eval()
        totals = torch.zeros(len(self.active), dtype=torch.float64, device=self.lr.device)
        counts = torch.zeros(len(self.active), dtype=torch.int64, device=self.lr.device)
        for inputs, labels in data.eval_batches(split, batch_size):
            with autocast(self.engine):
                logits = self.logits(self.params, self.buffers, to_layout(inputs, self.engine)).float()
            _accumulate(totals, counts, logits, labels)
        return _means(totals, counts, data.size(split), self.active)

    def functional(self, index: int) -> tuple[Callable[[Weights, torch.Tensor], torch.Tensor], Weights]:
        skeleton = self.skeleton.eval()
        buffers = {name: tensor[index] for name, tensor in self.buffers.items()}

        def logits(weights: Weights, inputs: torch.Tensor) -> torch.Tensor:
            return functional_call(skeleton, (weights, buffers), (to_layout(inputs, self.engine),))

        return logits, {name: tensor[index].detach() for name, tensor in self.params.items()}

    def flat_weights(self) -> torch.Tensor:
        return torch.cat([tensor.detach().reshape(len(self.active), -1) for tensor in self.params.values()], dim=1)

    def state(self) -> dict[str, Any]:
        state = {
            "params": {name: tensor.detach() for name, tensor in self.params.items()},
            "buffers": self.buffers,
            "velocity": self.velocity,
            "active": list(self.active),
        }
        if self.rule.optimizer != "sgd":
            state |= {"moments": {name: list(pair) for name, pair in self.moments.items()}, "steps": self.steps}
        return state

    def load(self, state: dict[str, Any]) -> None:
        with torch.no_grad():
            for name, tensor in state["params"].items():
                self.params[name].copy_(tensor)
            for name, tensor in state["buffers"].items():
                self.buffers[name].copy_(tensor)
        device = self.lr.device
        self.velocity = {name: tensor.to(device) for name, tensor in state["velocity"].items()}
        self.moments = {
            name: (first.to(device), second.to(device)) for name, (first, second) in state.get("moments", {}).items()
        }
        self.steps = state.get("steps", 0)
        self.active = list(state["active"])
