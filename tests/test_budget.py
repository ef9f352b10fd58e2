"""Training budgets as configured and planned: the arithmetic of steps, evaluations and measures (torch-free)."""

import json
import math
import warnings

import pytest

from bslr.budget import Budget, budget_kind
from bslr.config import ConfigError, RunSpec, job_resources, run_spec, validate_config
from bslr.plan import Plan, Run
from conftest import tiny_config

MNIST1D = 4000  # training examples


def spec(batch_size: int = 64, **experiment) -> RunSpec:
    """A run's typed settings; `epochs=None` leaves the experiment without epochs (a step budget)."""
    config = tiny_config(**experiment)
    if config["experiments"]["tiny"]["epochs"] is None:
        del config["experiments"]["tiny"]["epochs"]
    return run_spec(validate_config(config), Run("tiny", "mlp", "mnist1d", batch_size, 0.1, 0))


def settings(batch_size: int = 64, **experiment) -> dict:
    """A run's settings as its protocol and per-run file carry them."""
    return spec(batch_size, **experiment).settings()


def evaluations(budget: Budget) -> list[int]:
    return [step for step in range(1, budget.steps + 1) if budget.evaluates_at(step)]


def test_the_epoch_budget_is_the_paper_s_and_changes_no_setting():
    run = settings(epochs=3)
    assert not {"budget", "evaluation", "measures", "measurement"} & set(run)  # as before budgets existed
    budget = spec(epochs=3).training_budget(MNIST1D)
    assert (budget.kind, budget.steps_per_epoch, budget.steps, budget.epochs) == ("epochs", 62, 186, 3)
    assert evaluations(budget) == [62, 124, 186]  # the end of every epoch
    assert [budget.epoch_of(step) for step in (1, 62, 63, 186)] == [1, 1, 2, 3]
    # a batch size 4 times as large takes 4 times fewer steps
    assert spec(batch_size=256, epochs=3).training_budget(MNIST1D).steps == 3 * 15


def test_a_step_budget_gives_every_batch_size_the_same_steps_and_ends_mid_epoch():
    for batch_size in (16, 64, 256):
        budget = spec(batch_size, budget={"steps": 100}, epochs=None).training_budget(MNIST1D)
        assert budget.kind == "steps" and budget.steps == 100
        assert budget.epochs == math.ceil(100 / (MNIST1D // batch_size))
    budget = spec(64, budget={"steps": 100}, epochs=None).training_budget(MNIST1D)
    assert evaluations(budget) == [62, 100]  # the epoch's end, and the last step always


def test_evaluation_every_n_steps_or_epochs_and_at_the_measured_epochs():
    steps = {"every": 40, "unit": "steps"}
    assert evaluations(spec(64, epochs=3, evaluation=steps).training_budget(MNIST1D)) == [40, 80, 120, 160, 186]
    every_two = {"every": 2, "unit": "epochs"}
    assert evaluations(spec(64, epochs=5, evaluation=every_two).training_budget(MNIST1D)) == [124, 248, 310]
    measured = spec(64, epochs=5, evaluation=every_two, measures=["weight_norm"], measurement={"epochs": [1]})
    budget = measured.training_budget(MNIST1D)
    assert evaluations(budget) == [62, 124, 248, 310] and budget.measures_at(62) and not budget.measures_at(124)


def test_a_target_is_reached_at_or_below_a_loss_and_at_or_above_an_accuracy():
    loss = spec(budget={"target": {"metric": "train_loss", "value": 0.5}}, epochs=4).training_budget(MNIST1D)
    assert loss.kind == "target" and loss.steps == 4 * 62  # epochs are the maximum
    assert loss.reached({"train_loss": 0.5}) and not loss.reached({"train_loss": 0.51})
    assert not loss.reached({"train_loss": float("nan")})
    accuracy = {"target": {"metric": "train_acc", "value": 0.9}, "steps": 1000}
    budget = spec(budget=accuracy, epochs=None).training_budget(MNIST1D)
    assert budget.steps == 1000 and budget.reached({"train_acc": 0.9}) and not budget.reached({"train_acc": 0.89})
    assert not spec(epochs=2).training_budget(MNIST1D).reached({"train_loss": 0.0})  # no target, never reached


def test_budget_kinds_are_read_from_a_run_s_settings():
    assert budget_kind(spec(epochs=2).budget) == "epochs"
    assert budget_kind(spec(budget={"steps": 10}, epochs=None).budget) == "steps"
    assert budget_kind(spec(budget={"target": {"metric": "train_loss", "value": 1}}, epochs=2).budget) == "target"


def without_epochs(**experiment) -> dict:
    config = tiny_config(**experiment)
    del config["experiments"]["tiny"]["epochs"]
    return config


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        (without_epochs(), "experiments.tiny.epochs is missing: give the number of epochs of every run, or a number"),
        (tiny_config(budget={"steps": 100}), "gives both epochs (2) and budget.steps (100); keep one"),
        (tiny_config(budget={"target": {"metric": "train_acc", "value": 90}}), "value = 90: accuracies are fractions"),
        (tiny_config(budget={"target": {"metric": "test_acc", "value": 0.9}}), "budget.target"),
        (tiny_config(budget={"steps": 0}), "budget.steps"),
        (tiny_config(evaluation={"every": 2, "unit": "batches"}), "evaluation.unit"),
        (tiny_config(measures=["sharpness"]), "measures[0]"),
        (tiny_config(measures=["weight_norm"], measurement={"epochs": [3]}), "measurement.epochs [3] lie beyond"),
        (tiny_config(budget={"steps": 10.5}), "budget.steps = 10.5 is invalid: give one of: null; an integer >= 1"),
        # 100 steps are 2 epochs at batch size 64 but 7 at 256: epoch 5 would be measured for some runs only
        (
            without_epochs(budget={"steps": 100}, measures=["weight_norm"], measurement={"epochs": [5]}),
            "measurement.epochs [5] lie beyond the 2 epochs its shortest runs train",
        ),
        (
            {**tiny_config(), "analysis": {"outcomes": ["final_test_acc", "fluctuation"]}},
            "analysis.outcomes names fluctuation, which no experiment measures; add fluctuation to training.measures",
        ),
    ],
)
def test_bad_budgets_name_the_key(config, expected):
    with pytest.raises(ConfigError) as caught:
        validate_config(config)
    assert expected in str(caught.value)


def test_a_target_checked_per_epoch_warns_that_its_resolution_depends_on_the_batch_size():
    target = {"target": {"metric": "train_loss", "value": 0.5}}
    with pytest.warns(UserWarning, match=r"experiments.tiny: its target is checked every 1 epoch\(s\)"):
        validate_config(tiny_config(budget=target))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # every N steps: the same resolution for every batch size, no warning
        validate_config(tiny_config(budget=target, evaluation={"every": 10, "unit": "steps"}))


def test_a_step_budget_in_training_serves_every_experiment_without_epochs():
    config = without_epochs()
    config["training"] = {"budget": {"steps": 500}}
    config["experiments"]["paper"] = dict(tiny_config()["experiments"]["tiny"], budget={})  # back to epochs
    validated = validate_config(config)
    assert run_spec(validated, Run("tiny", "mlp", "mnist1d", 64, 0.1, 0)).budget["steps"] == 500
    assert "budget" not in run_spec(validated, Run("paper", "mlp", "mnist1d", 64, 0.1, 0)).settings()


def test_budget_settings_are_protocol_and_measurement_only_with_measures():
    run = settings(epochs=2, measurement={"probes": 8})
    assert "measurement" not in run  # no measure: its settings change nothing
    run = settings(epochs=2, measures=["hessian_trace"], measurement={"probes": 8})
    assert run["measures"] == ["hessian_trace"] and run["measurement"]["probes"] == 8
    assert run["measurement"]["subset"] == 1000  # the rest of it at its defaults
    plan = Plan(tiny_config(evaluation={"every": 10, "unit": "steps"}))
    assert json.loads(plan.protocol_json("tiny"))["evaluation"] == {"every": 10, "unit": "steps"}


def test_job_time_limits_follow_the_longest_budget_of_an_experiment():
    epochs = validate_config(tiny_config(epochs=10, device="cpu"))
    steps = without_epochs(budget={"steps": 150}, device="cpu")  # batch size 256: 15 steps an epoch, 10 epochs
    assert job_resources(validate_config(steps), "tiny", "mlp", "mnist1d") == job_resources(
        epochs, "tiny", "mlp", "mnist1d"
    )


def test_job_time_limits_count_extra_evaluations_and_the_measures():
    """100 epochs of the MLP on MNIST-1D: 100 x 0.05 x 1.5 = 7.5 minutes, plus 10; evaluated every 10 steps
    at batch size 64 (62 steps an epoch), 620 evaluations, each further one half an epoch: 360 epochs."""

    def runtime(**experiment) -> int:
        config = validate_config(tiny_config(epochs=100, device="cpu", **experiment))
        return job_resources(config, "tiny", "mlp", "mnist1d")["runtime"]

    assert runtime() == 18
    assert runtime(evaluation={"every": 10, "unit": "steps"}) == math.ceil(360 * 0.05 * 1.5) + 10 == 37
    assert runtime(evaluation={"every": 5, "unit": "epochs"}) == 18  # fewer evaluations: never less time
    assert runtime(measures=["weight_norm"]) == math.ceil(7.5 * 1.35) + 10 == 21


def test_the_measures_figure_only_where_measured_and_the_budgets_figure_where_budgets_differ():
    config = tiny_config()
    config["experiments"]["steps"] = dict(tiny_config()["experiments"]["tiny"], measures=["weight_norm"])
    del config["experiments"]["steps"]["epochs"]
    config["experiments"]["steps"]["budget"] = {"steps": 100}
    files = Plan(config).figure_files()
    assert "results/figures/steps/mnist1d/mlp/measures_vs_ratio.png" in files
    assert "results/figures/tiny/mnist1d/mlp/measures_vs_ratio.png" not in files
    assert "results/figures/budgets.png" in files
    assert "results/figures/budgets.png" not in Plan(tiny_config()).figure_files()
    other_model = dict(config["experiments"]["steps"], models=["cnn1d"])
    assert not Plan(
        {**config, "experiments": {"tiny": config["experiments"]["tiny"], "steps": other_model}}
    ).compares_budgets()
