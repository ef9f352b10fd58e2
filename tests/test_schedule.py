"""The learning rate's schedule: a function of the step, the same in every learner and after a resume."""

import math

import pytest

from bslr.schedule import Schedule

STEPS_PER_EPOCH = 10


def factors(schedule: dict, total_steps: int = 100) -> list[float]:
    """The factor each step 1..total_steps uses."""
    course = Schedule.of(schedule, STEPS_PER_EPOCH, total_steps)
    return [course.factor(step) for step in range(1, total_steps + 1)]


def test_the_default_is_the_papers_constant_rate():
    course = Schedule.of({"decay": "constant", "unit": "epochs", "warmup": 0}, STEPS_PER_EPOCH, 100)
    assert course.constant and set(factors({"decay": "constant", "unit": "epochs", "warmup": 0})) == {1.0}


def test_a_linear_warm_up_reaches_the_rate_at_its_last_step_then_holds_it():
    course = factors({"decay": "constant", "unit": "epochs", "warmup": 2})  # 20 steps
    assert course[:20] == pytest.approx([step / 20 for step in range(1, 21)], rel=1e-15)
    assert course[20:] == [1.0] * 80
    assert factors({"decay": "constant", "unit": "steps", "warmup": 4})[:5] == [0.25, 0.5, 0.75, 1.0, 1.0]


def test_a_cosine_runs_from_the_rate_after_warm_up_to_final_at_the_budgets_last_step():
    course = factors({"decay": "cosine", "unit": "epochs", "warmup": 1, "final": 0.1})
    assert course[9] == 1.0 and course[10] == 1.0 and course[-1] == pytest.approx(0.1, rel=1e-12)
    # step 11 begins the cosine and step 100 ends it: step 40 is a third of the way (29 of 89 steps)
    assert course[39] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 29 / 89)), rel=1e-12)
    assert all(a >= b for a, b in zip(course[10:], course[11:], strict=False))


def test_a_step_decay_multiplies_by_gamma_after_each_milestone():
    course = factors({"decay": "step", "unit": "epochs", "warmup": 0, "milestones": [3, 6], "gamma": 0.5})
    assert course[:30] == [1.0] * 30 and course[30:60] == [0.5] * 30 and course[60:] == [0.25] * 40
