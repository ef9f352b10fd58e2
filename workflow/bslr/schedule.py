"""The learning rate's course over a run: a pure function of the SGD step, so that a resumed run, whose
checkpoint holds the step, continues its schedule exactly, and the serial and stacked learners apply the
same rate at every step.

A schedule multiplies the run's learning rate (its peak, the grid's value) by a factor: a linear warm-up
from 1 / W to 1 over its first W steps, then constant (the paper's protocol), a cosine from 1 down to
`final` at the budget's last step, or steps down by `gamma` after each milestone. Warm-up and milestones
count epochs or steps (`unit`); an epoch is the run's `steps_per_epoch` steps. torch.optim.lr_scheduler
composes the same shapes (LinearLR, CosineAnnealingLR, MultiStepLR under SequentialLR), but as objects with
state stepped beside the optimizer; a function of the step needs no state of its own to save or replay.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Schedule:
    """A run's schedule, in steps."""

    decay: str  # constant | cosine | step
    warmup_steps: int
    total_steps: int  # the budget's most steps: where a cosine reaches `final`
    final: float = 0.0
    milestone_steps: tuple[int, ...] = ()
    gamma: float = 0.1

    @classmethod
    def of(cls, schedule: Mapping[str, Any], steps_per_epoch: int, total_steps: int) -> Schedule:
        """A run's schedule (`training.schedule`, resolved) on a budget of `total_steps` steps."""
        per_unit = steps_per_epoch if schedule["unit"] == "epochs" else 1
        return cls(
            decay=schedule["decay"],
            warmup_steps=schedule["warmup"] * per_unit,
            total_steps=total_steps,
            milestone_steps=tuple(milestone * per_unit for milestone in schedule.get("milestones", ())),
            **{key: schedule[key] for key in ("final", "gamma") if key in schedule},
        )

    @property
    def constant(self) -> bool:
        return self.decay == "constant" and self.warmup_steps == 0

    def factor(self, step: int) -> float:
        """The factor of the learning rate at SGD step `step` (1-based: the rate the `step`-th update uses)."""
        if step <= self.warmup_steps:
            return step / self.warmup_steps
        if self.decay == "cosine":
            progress = (step - self.warmup_steps - 1) / max(1, self.total_steps - self.warmup_steps - 1)
            return self.final + (1 - self.final) * 0.5 * (1 + math.cos(math.pi * progress))
        if self.decay == "step":
            return self.gamma ** sum(step > milestone for milestone in self.milestone_steps)
        return 1.0
