"""A run's training budget as SGD steps, and the steps at which it is evaluated and measured.

Torch-free arithmetic shared by the training loop, planning (job time limits) and aggregation. Steps are
counted from 1 over the whole run; an epoch is `steps_per_epoch` steps (the training set's size divided by
the batch size, rounded down: the last, smaller batch is dropped), so step s falls in epoch ceil(s / spe).

- `epochs` (the paper's, and the default): every run trains `epochs` epochs, so a batch size twice as large
  takes half the steps.
- `steps`: every run trains the same number of steps, whatever its batch size; the last epoch may be partial.
- `target`: a run stops at the first evaluation at which its training loss is at most (or its accuracy at
  least) the target, at most `epochs` epochs or `steps` steps; one that never reaches it is censored.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from bslr.errors import ConfigError


def budget_kind(budget: Mapping[str, Any]) -> str:
    """`epochs`, `steps` or `target`: which budget a run's `budget` settings give."""
    if budget.get("target") is not None:
        return "target"
    return "steps" if budget.get("steps") is not None else "epochs"


@dataclass(frozen=True)
class Budget:
    """The most steps a run trains, when it is evaluated and when it is measured."""

    kind: str  # epochs | steps | target
    steps: int  # the most SGD steps of the run (its length, unless it reaches a target first)
    steps_per_epoch: int
    every: int  # evaluate every `every` ...
    unit: str  # ... epochs or steps (and at the last step, always)
    target: dict[str, Any] | None = None  # {"metric": "train_loss" | "train_acc", "value": float}
    measure_epochs: frozenset[int] = frozenset()  # epochs at whose end the measures are taken too

    @classmethod
    def of(
        cls,
        train_size: int,
        *,
        batch_size: int,
        epochs: int | None,
        budget: Mapping[str, Any],
        evaluation: Mapping[str, Any],
        measure_epochs: Iterable[int] = (),
    ) -> Budget:
        """The budget of a run at `batch_size` on a training set of `train_size` examples: `epochs` epochs,
        or `budget["steps"]` steps, evaluated as `evaluation` says (`every`, `unit`)."""
        steps_per_epoch = train_size // batch_size
        if steps_per_epoch == 0:
            raise ConfigError(f"batch size {batch_size} is larger than the {train_size} training examples")
        steps = budget["steps"] if budget.get("steps") is not None else epochs * steps_per_epoch
        return cls(
            kind=budget_kind(budget),
            steps=steps,
            steps_per_epoch=steps_per_epoch,
            every=evaluation["every"],
            unit=evaluation["unit"],
            target=budget.get("target"),
            measure_epochs=frozenset(measure_epochs),
        )

    @property
    def epochs(self) -> int:
        """Epochs begun by a run that trains all its steps."""
        return math.ceil(self.steps / self.steps_per_epoch)

    def epoch_of(self, step: int) -> int:
        """The epoch in which step `step` (counted from 1) is taken."""
        return math.ceil(step / self.steps_per_epoch)

    def ends_epoch(self, step: int) -> bool:
        return step % self.steps_per_epoch == 0

    def measures_at(self, step: int) -> bool:
        """Whether a step ends one of the epochs the measures are also asked at (the end of a run always is)."""
        return self.ends_epoch(step) and step // self.steps_per_epoch in self.measure_epochs

    def evaluates_at(self, step: int) -> bool:
        """Every `every` epochs or steps, at the epochs the measures are asked at, and at the last step."""
        if step == self.steps or self.measures_at(step):
            return True
        if self.unit == "steps":
            return step % self.every == 0
        return self.ends_epoch(step) and (step // self.steps_per_epoch) % self.every == 0

    def reached(self, metrics: dict[str, float]) -> bool:
        """Whether evaluated metrics reach the target (never, without one)."""
        if self.target is None:
            return False
        value = metrics[self.target["metric"]]
        return value <= self.target["value"] if self.target["metric"] == "train_loss" else value >= self.target["value"]
