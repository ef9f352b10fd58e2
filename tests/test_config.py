import copy
import math

import pytest

from bslr.config import ConfigError, format_lr, job_resources, run_spec, training_settings, validate_config
from bslr.plan import Run, expand_grid, scenarios
from conftest import snakemake, tiny_config, write_config


def test_paper_ranges_expand_to_exact_values():
    config = validate_config(
        tiny_config(
            batch_sizes={"start": 16, "stop": 320, "step": 16},
            learning_rates={"start": 0.01, "stop": 0.20, "step": 0.01},
        )
    )
    experiment = config["experiments"]["tiny"]
    assert experiment["batch_sizes"] == list(range(16, 321, 16))
    assert [format_lr(lr) for lr in experiment["learning_rates"]] == [
        f"0.{i:02d}".rstrip("0") for i in range(1, 20)
    ] + ["0.2"]
    assert len(expand_grid(config)) == 400


@pytest.mark.parametrize(
    ("value", "text"),
    [(0.01, "0.01"), (0.2, "0.2"), (0.1 + 0.2, "0.30000000000000004"), (1e-5, "0.00001"), (1.0, "1.0")],
)
def test_format_lr_is_shortest_round_trip(value, text):
    assert format_lr(value) == text
    assert float(format_lr(value)) == value


def test_run_path_follows_the_contract():
    assert (
        Run("paper", "vgg19", "cifar10", 16, 0.1, 0).path == "results/runs/paper/cifar10/vgg19/bs16_lr0.1_seed0.parquet"
    )


def test_defaults_are_filled_and_threads_stay_out_of_the_protocol():
    config = validate_config(tiny_config())
    assert config["training"] == {
        "momentum": 0.0,
        "weight_decay": 0.0,
        "optimizer": {"name": "sgd", "nesterov": False},
        "schedule": {"decay": "constant", "unit": "epochs", "warmup": 0},
        "augment": "standard",
        "device": "auto",
        "eval_batch_size": 1000,
        "mlp_hidden": [100, 100],
        "threads": 1,
        "workers": 8,
        "gpus": "auto",
        "mem_mb": "auto",
        "runtime": "auto",
        "keep_checkpoints": False,
        "deterministic": False,
        "tensorboard": True,
        "precision": "fp32",
        "tf32": True,
        "channels_last": "auto",
        "compile": False,
        "pack": {"size": "auto", "learner": "serial"},
        "budget": {"steps": None, "target": None},
        "evaluation": {"every": 1, "unit": "epochs"},
        "measures": [],
        "measurement": {
            "subset": 1000,
            "probes": 32,
            "iterations": 20,
            "window": {"length": 2, "unit": "epochs"},
            "epochs": [],
        },
    }
    assert config["figures"]["heatmap"]["dpi"] == 60  # the user's value survives
    assert config["figures"]["acc_vs_ratio"]["dpi"] == 200
    assert config["analysis"]["outcomes"] == ["final_test_acc", "best_test_acc", "gap"]
    assert config["analysis"]["diverged"] == "exclude"
    settings = run_spec(config, Run("tiny", "mlp", "mnist1d", 64, 0.05, 0)).settings()
    execution = {
        "threads",
        "eval_batch_size",
        "workers",
        "gpus",
        "mem_mb",
        "runtime",
        "keep_checkpoints",
        "deterministic",
        "pack",
    }
    assert not execution & set(settings)
    assert settings["learner"] == "serial"  # how a pack computes is protocol; how many runs share a job is not
    # the engine options change a GPU run's arithmetic: they are part of its settings
    assert {"precision", "tf32", "channels_last", "compile"} <= set(settings)
    assert settings["mlp_hidden"] == [100, 100]
    assert settings["lr"] == 0.05 and settings["epochs"] == 2 and settings["momentum"] == 0.0


def test_strings_from_the_command_line_take_the_schema_types():
    # `snakemake --config "training={momentum: 0.9}"` passes nested values as strings
    raw = tiny_config(epochs="3", learning_rates=["0.05", "0.1"], compile="false")
    raw["training"] = {"momentum": "0.9", "pack": {"size": "all", "learner": "stacked"}, "runtime": "auto"}
    config = validate_config(raw, overrides=raw)
    assert config["training"]["momentum"] == 0.9 and config["training"]["pack"] == {"size": "all", "learner": "stacked"}
    assert config["training"]["runtime"] == "auto"
    experiment = config["experiments"]["tiny"]
    assert experiment["epochs"] == 3 and experiment["learning_rates"] == [0.05, 0.1] and experiment["compile"] is False
    with pytest.raises(ConfigError, match='training.momentum = "fast"'):
        fast = dict(tiny_config(), training={"momentum": "fast"})
        validate_config(fast, overrides=fast)


def test_a_command_line_number_out_of_range_is_refused_for_its_range_and_a_file_string_stays_refused(tmp_path):
    """From the command line the string is read first, so the message names the real problem; in a file
    a quoted number is a mistake the user made and is refused as one."""
    out_of_range = snakemake(
        tmp_path, write_config(tmp_path, tiny_config()), "-n", "--config", "training={momentum: 1.5}", check=False
    )
    assert out_of_range.returncode != 0 and "not of type" not in out_of_range.stderr
    assert (
        "invalid configuration: config key training.momentum = 1.5 is invalid: 1.5 is greater than"
        in out_of_range.stderr
    )
    quoted = tiny_config(learning_rates=["0.1", 0.2])
    with pytest.raises(ConfigError, match=r'learning_rates\[0\] = "0.1" is a string where a number is due: write it'):
        validate_config(quoted)
    assert validate_config(quoted, overrides=quoted)["experiments"]["tiny"]["learning_rates"] == [0.1, 0.2]


def test_an_unknown_key_suggests_the_closest_known_one():
    with pytest.raises(ConfigError, match=r"unknown config key training.momentun \(did you mean momentum\?\)"):
        validate_config(dict(tiny_config(), training={"momentun": 0.9}))
    with pytest.raises(ConfigError, match=r"unknown config key training.zzz \(a typo\?\)"):
        validate_config(dict(tiny_config(), training={"zzz": 0.9}))


def test_experiment_overrides_training_defaults():
    raw = tiny_config(momentum=0.9)
    raw["training"] = {"momentum": 0.5, "weight_decay": 1e-4}
    config = validate_config(raw)
    settings = run_spec(config, Run("tiny", "mlp", "mnist1d", 64, 0.05, 0)).settings()
    assert settings["momentum"] == 0.9
    assert settings["weight_decay"] == 1e-4


def test_grid_is_the_full_cross_product():
    config = validate_config(tiny_config(models=["mlp", "cnn1d"], seeds=[0, 1]))
    runs = expand_grid(config)
    assert len(runs) == 2 * 3 * 3 * 2
    assert len({run.path for run in runs}) == len(runs)
    assert scenarios(config) == [("tiny", "mnist1d", "mlp"), ("tiny", "mnist1d", "cnn1d")]


def broken(path: list, value) -> dict:
    config = copy.deepcopy(tiny_config())
    target = config
    for key in path[:-1]:
        target = target.setdefault(key, {})
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return config


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        (["experiments", "tiny", "learning_rate"], [0.1], "unknown config key experiments.tiny.learning_rate"),
        (["training", "momentun"], 0.9, "unknown config key training.momentun"),
        (["figures", "heatmap", "dpii"], 100, "unknown config key figures.heatmap.dpii"),
        (["surprise"], 1, "unknown config key surprise"),
        (["experiments", "tiny", "models"], ["resnet9000"], "unknown model 'resnet9000'; known models:"),
        (["experiments", "tiny", "datasets"], ["svhn"], "unknown dataset 'svhn'; known datasets:"),
        (["experiments", "tiny", "learning_rates"], [0.1, 0.0], "experiments.tiny.learning_rates"),
        (["experiments", "tiny", "learning_rates"], [], "experiments.tiny.learning_rates"),
        (["experiments", "tiny", "learning_rates"], ["fast"], "experiments.tiny.learning_rates"),
        (["experiments", "tiny", "learning_rates"], {"start": 0.2, "stop": 0.1, "step": 0.01}, "start 0.2 is greater"),
        (["experiments", "tiny", "learning_rates"], {"start": 0.1, "stop": 0.2, "step": 0}, "learning_rates"),
        (["experiments", "tiny", "batch_sizes"], [16, 24.5], "experiments.tiny.batch_sizes"),
        (["experiments", "tiny", "batch_sizes"], [16, 16], "experiments.tiny.batch_sizes"),
        (["experiments", "tiny", "batch_sizes"], [0], "experiments.tiny.batch_sizes"),
        (["experiments", "tiny", "batch_sizes"], [8000], "larger than the 4000 training examples of mnist1d"),
        (["experiments", "tiny", "epochs"], 0, "experiments.tiny.epochs = 0"),
        (["experiments", "tiny", "epochs"], KeyError, "experiments.tiny.epochs is missing: give the number of epochs"),
        (["experiments"], {}, "experiments"),
        (["analysis", "outcomes"], ["final_test_accuracy"], "analysis.outcomes[0]"),
        (["training", "device"], "tpu", 'training.device = "tpu"'),
        (["training", "pack"], {"size": 0}, "training.pack.size = 0"),
        (["training", "pack"], {"size": "some"}, 'training.pack.size = "some"'),
        (["training", "pack"], {"learner": "vmap"}, 'training.pack.learner = "vmap"'),
        (["training", "pack_learning_rates"], True, "training.pack_learning_rates was renamed: pack_learning_rates is"),
    ],
)
def test_bad_configs_name_the_key(path, value, expected):
    with pytest.raises(ConfigError, match=None) as caught:
        validate_config(broken(path, value))
    assert expected in str(caught.value)


def test_job_resources_follow_model_data_set_and_pack():
    raw = tiny_config()
    raw["experiments"]["cifar"] = {
        **tiny_config()["experiments"]["tiny"],
        "models": ["resnet110"],
        "datasets": ["cifar10"],
    }
    raw["experiments"]["cpu"] = {**raw["experiments"]["cifar"], "device": "cpu", "runtime": 30}
    raw["experiments"]["stacked"] = {**raw["experiments"]["cifar"], "pack": {"size": "all", "learner": "stacked"}}
    config = validate_config(raw)
    assert job_resources(config, "tiny", "mlp", "mnist1d")["gpu"] == 0
    cifar = job_resources(config, "cifar", "resnet110", "cifar10")
    assert cifar["gpu"] == 1 and cifar["gpu_slots"] == 1 and cifar["mem_mb"] == 8000 and cifar["runtime"] > 10
    expected = {"gpu": 0, "gpu_slots": 0, "mem_mb": 8000, "runtime": 30}
    assert job_resources(config, "cpu", "resnet110", "cifar10") == expected
    # a stacked pack of 3 gets half of three runs' estimate; a serial pack of 3, three runs' time
    stacked = job_resources(config, "stacked", "resnet110", "cifar10", runs=3)
    assert stacked["runtime"] - 10 == math.ceil((cifar["runtime"] - 10) * 1.5) and stacked["gpu"] == 1
    serial = job_resources(config, "cifar", "resnet110", "cifar10", runs=3)
    assert serial["runtime"] - 10 == (cifar["runtime"] - 10) * 3


def test_model_and_data_set_of_different_ranks_are_refused():
    with pytest.raises(ConfigError, match="model cnn1d cannot take cifar10 inputs"):
        validate_config(tiny_config(models=["cnn1d"], datasets=["cifar10"]))


def test_bslr_validate_layers_files_as_snakemake_does(tmp_path, capsys):
    from bslr.cli import main

    base = write_config(tmp_path, tiny_config(), "base.yaml")
    override = write_config(tmp_path, {"experiments": {"tiny": {"seeds": [0, 1]}}}, "seeds.yaml")
    assert main(["validate", str(base), str(override)]) == 0
    out = capsys.readouterr().out
    assert "experiment tiny: 18 runs" in out and f"{base} + {override}: valid, 18 runs in all" in out


def test_a_quoted_number_in_a_configfile_is_refused_by_snakemake_too(tmp_path):
    """Snakemake hands its --configfile files to the workflow merged with --config: only --config's strings
    are the command line's."""
    quoted = write_config(tmp_path, tiny_config(learning_rates=["0.1", 0.2]))
    result = snakemake(tmp_path, quoted, "-n", check=False)
    assert result.returncode != 0 and 'learning_rates[0] = "0.1" is a string where a number is due' in result.stderr


BAD_OPTIMIZERS = [
    # a key another optimizer takes
    (
        dict(optimizer={"name": "sgd", "betas": [0.9, 0.99]}),
        "config key experiments.tiny.optimizer.betas: sgd takes no betas (adam and adamw do); remove it, or set "
        "name: adam",
    ),
    (dict(optimizer={"name": "adamw", "nesterov": True}), "adamw takes no nesterov (sgd do)"),
    (
        dict(optimizer={"name": "adam"}, momentum=0.9),
        "config key experiments.tiny.momentum = 0.9: adam takes no momentum (its first moment's decay is "
        "optimizer.betas[0]); set momentum: 0 for experiment tiny",
    ),
    (dict(optimizer={"name": "sgd", "nesterov": True}), "optimizer.nesterov needs momentum > 0 (it is 0.0)"),
    # a schedule key another decay takes, a step decay without milestones
    (dict(schedule={"decay": "cosine", "gamma": 0.5}), "schedule.gamma: a cosine decay takes no gamma"),
    (dict(schedule={"decay": "step"}), "decay: step needs milestones"),
    # a schedule longer than the budget: 2 epochs at every batch size; 2 x 15 steps at batch size 256
    (
        dict(schedule={"warmup": 2}),
        "schedule: warm-up or milestones [2] epochs do not end before the 2 epochs of the runs at batch size 64",
    ),
    (
        dict(schedule={"decay": "step", "unit": "steps", "milestones": [20, 40]}),
        "milestones [40] steps do not end before the 30 steps of the runs at batch size 256 on mnist1d",
    ),
    # a cosine under a target budget, whose last step nobody knows
    (
        dict(schedule={"decay": "cosine"}, budget={"target": {"metric": "train_loss", "value": 1.0}}),
        "a cosine decay ends at the budget's last step, which a target budget does not fix",
    ),
]


@pytest.mark.parametrize(("overrides", "message"), BAD_OPTIMIZERS)
def test_an_optimizer_or_schedule_the_run_cannot_take_is_refused_in_one_line(overrides, message):
    with pytest.raises(ConfigError) as caught:
        validate_config(tiny_config(**overrides))
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_an_adam_experiment_beside_sgd_ones_and_a_warm_up_validate():
    config = tiny_config(momentum=0.9)
    config["experiments"]["adam"] = dict(
        config["experiments"]["tiny"],
        momentum=0.0,
        optimizer={"name": "adamw", "eps": 1e-6},
        schedule={"warmup": 10, "unit": "steps", "decay": "cosine", "final": 0.1},
    )
    settings = validate_config(config)
    assert training_settings(settings, "tiny")["optimizer"] == {"name": "sgd", "nesterov": False}
    assert training_settings(settings, "adam")["optimizer"] == {"name": "adamw", "betas": [0.9, 0.999], "eps": 1e-6}
    assert training_settings(settings, "adam")["schedule"] == {
        "decay": "cosine",
        "unit": "steps",
        "warmup": 10,
        "final": 0.1,
    }
