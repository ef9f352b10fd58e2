"""A config's own models and data sets at planning: resolved torch-free, in the protocol, refused when wrong."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import yaml

from bslr.config import ConfigError, expand_values, validate_config
from bslr.plan import Plan
from conftest import REPO, tiny_config
from user_entries import user_config, write_image_folder, write_npz

HEAVY = ("torch", "torchvision", "matplotlib", "seaborn", "pandas", "scipy", "statsmodels", "timm")


MODELS = {"cnn": {"factory": "mynets:small_cnn", "kwargs": {"width": 4}, "display": "Small CNN"}}
DATASETS = {"images": {"format": "npz", "path": "data/images.npz"}}


def test_the_train_rules_of_every_shipped_config_are_what_they_were():
    """Golden protocols, resources, inputs and outputs of every training rule, recorded before the registry
    existed: reorganising the code re-trains no user's results and changes no job's request."""
    golden = json.loads((REPO / "tests/golden/train_rules.json").read_text())
    for name, rules in golden.items():
        plan = Plan(yaml.safe_load((REPO / name).read_text()))
        planned = {
            rule.name: {
                "protocol": rule.protocol,
                "resources": rule.resources,
                "inputs": rule.inputs,
                "outputs": rule.outputs,
            }
            for rule in plan.train_rules()
        }
        assert planned == rules, name


def test_an_npz_data_set_is_read_at_planning_and_named_in_the_protocol(workdir):
    plan = Plan(user_config(MODELS, DATASETS, models=["cnn", "mlp"]))
    spec = plan.catalog.datasets["images"]
    assert (spec.input_shape, spec.num_classes, spec.train_size) == ((1, 8, 8), 4, 96)
    rules = {rule.model: rule for rule in plan.train_rules()}
    assert rules["cnn"].inputs == ["data/images.npz"]  # the rule's input: replacing the file re-trains
    protocol = json.loads(rules["cnn"].protocol)
    source = (workdir / "mynets.py").read_bytes()
    assert protocol["model_spec"] == {
        "factory": "mynets:small_cnn",
        "kwargs": {"width": 4},
        "source_sha256": __import__("hashlib").sha256(b"mynets.py\0" + source + b"\0").hexdigest(),
    }
    assert protocol["dataset_spec"] == {
        "format": "npz",
        "path": "data/images.npz",
        "augment": "none",
        "kwargs": {},
        "input_shape": [1, 8, 8],
        "num_classes": 4,
        "train_size": 96,
    }
    assert "model_spec" not in json.loads(rules["mlp"].protocol)  # a built-in model's protocol is as it was
    assert plan.figure_settings("heatmap")["display_names"] == {"cnn": "Small CNN"}
    assert plan.catalog.display_name("cnn") == "Small CNN" and plan.catalog.display_name("images") == "images"


def test_editing_a_model_s_source_changes_only_its_runs_protocol(workdir):
    models = {**MODELS, "other": {"factory": "helpers.py:other"}}
    (workdir / "helpers.py").write_text("from mynets import small_cnn as other\n")
    before = {rule.name: rule.protocol for rule in Plan(user_config(models, DATASETS)).train_rules()}
    with open(workdir / "mynets.py", "a") as handle:
        handle.write("\n# a comment is an edit too: the hash is of the file\n")
    after = {rule.name: rule.protocol for rule in Plan(user_config(models, DATASETS)).train_rules()}
    changed = sorted(name for name in before if before[name] != after[name])
    assert changed == ["train_tiny_images_cnn"]


def test_library_factories_plan_without_importing_them(workdir):
    models = {"rn18": {"factory": "torchvision:resnet18"}, "vit": {"factory": "timm:vit_tiny_patch16_224"}}
    code = (
        "import sys, json\nfrom bslr.plan import Plan\n"
        f"plan = Plan(json.loads({json.dumps(json.dumps(user_config({**MODELS, **models}, DATASETS)))}))\n"
        "assert len(plan.train_rules()) == 3\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r}))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=workdir)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"  # planning with a user's module, torchvision and timm imports none


def test_an_image_folder_is_counted_at_planning(workdir):
    write_image_folder(workdir / "pictures")
    plan = Plan(user_config(MODELS, {"pictures": {"format": "imagefolder", "path": "pictures", "image_size": 12}}))
    spec = plan.catalog.datasets["pictures"]
    assert (spec.input_shape, spec.num_classes, spec.train_size) == ((3, 12, 12), 4, 96)
    assert plan.train_rules()[0].inputs == []


def test_log_spaced_grids_round_to_three_digits_and_distinct_batch_sizes():
    assert expand_values({"start": 0.001, "stop": 1.0, "num": 4, "scale": "log"}, "k", False) == [0.001, 0.01, 0.1, 1.0]
    assert expand_values({"start": 0.001, "stop": 1.0, "num": 7, "scale": "log"}, "k", False) == [
        0.001,
        0.00316,
        0.01,
        0.0316,
        0.1,
        0.316,
        1.0,
    ]
    assert expand_values({"start": 16, "stop": 512, "num": 6, "scale": "log"}, "k", True) == [16, 32, 64, 128, 256, 512]
    assert expand_values({"start": 0.02, "stop": 0.1, "num": 5}, "k", False) == [0.02, 0.04, 0.06, 0.08, 0.1]
    with pytest.raises(ConfigError, match=r"repeated values when rounded to integers \(\[1, 1, 2, 2\]\)"):
        expand_values({"start": 1, "stop": 2, "num": 4, "scale": "log"}, "experiments.tiny.batch_sizes", True)
    config = validate_config(tiny_config(batch_sizes={"start": 16, "stop": 64, "num": 3, "scale": "log"}))
    assert config["experiments"]["tiny"]["batch_sizes"] == [16, 32, 64]


BAD_ENTRIES = [
    ({"models": {"cnn": {"factory": "mynets"}}}, "config key models.cnn.factory = 'mynets' is not a factory"),
    ({"models": {"cnn": {"factory": "absent:net"}}}, "module absent is not found in"),
    ({"models": {"cnn": {"factory": "mynets:wide_resnet"}}}, "mynets.py defines no wide_resnet"),
    ({"models": {"cnn": {"factory": "nets/missing.py:net"}}}, "file nets/missing.py does not exist"),
    ({"models": {"mlp": {"factory": "mynets:small_cnn"}}}, "models.mlp: mlp is a built-in model"),
    ({"models": {"cnn": {"factory": "bslr:mlp"}}}, "built-in models are named directly"),
    (
        {"datasets": {"images": {"format": "npz", "path": "data/none.npz"}}},
        "datasets.images.path = 'data/none.npz': no",
    ),
    ({"datasets": {"mnist1d": {"format": "npz", "path": "data/images.npz"}}}, "mnist1d is a built-in data set"),
    ({"datasets": {"images": {"format": "npz"}}}, "config key datasets.images.path is missing"),
    ({"datasets": {"images": {"format": "imagefolder", "path": "data", "image_size": 8}}}, "has no train/ or test/"),
    ({"datasets": {"images": {"format": "npz", "path": "data/images.npz", "mean": [0.5, 0.5]}}}, "2 values for 1"),
    ({"training": {"gpus": 2}}, "config key training.gpus = 2: a training job trains on one GPU"),
    ({"experiment": {"runtime": "auto"}}, "experiments.tiny.runtime = auto cannot estimate the time of cnn, images"),
    ({"datasets": {"hub": {"factory": "mynets:small_cnn"}}}, "datasets.hub (format factory) is missing input_shape"),
]


@pytest.mark.parametrize(("change", "message"), BAD_ENTRIES, ids=[message[:40] for _, message in BAD_ENTRIES])
def test_a_bad_entry_is_one_error_naming_the_key_and_the_fix_at_planning(workdir, change, message):
    config = user_config(MODELS, DATASETS, **change.get("experiment", {}))
    for section in ("models", "datasets"):
        if section in change:
            config[section] = change[section]
            name = next(iter(change[section]))
            config["experiments"]["tiny"][section] = [name]
    config.setdefault("training", {}).update(change.get("training", {}))
    with pytest.raises(ConfigError) as caught:
        validate_config(config)
    assert message in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"y_test": None}, "has no array y_test"),
        ({"y_train": np.full(96, 7, dtype=np.int64), "y_test": np.full(32, -1, dtype=np.int64)}, "labels run from -1"),
        ({"y_train": np.zeros(96, dtype=np.float32)}, "array y_train is float32"),
        ({"x_test": np.zeros((32, 1, 9, 9), dtype=np.uint8)}, "must be (examples, *input_shape) of one shape"),
        ({"y_train": np.zeros(95, dtype=np.int64)}, "has 96 x_train but 95 y_train"),
    ],
)
def test_an_npz_with_missing_arrays_or_bad_labels_is_refused_at_planning(workdir, arrays, message):
    write_npz(workdir / "data" / "images.npz", **arrays)
    with pytest.raises(ConfigError, match="config key datasets.images.path") as caught:
        validate_config(user_config(MODELS, DATASETS))
    assert message in str(caught.value)


def test_a_missing_timm_is_named_with_how_to_install_it(workdir, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "timm" else real(name, *a))
    with pytest.raises(ConfigError, match=r"needs timm, which is not installed: pip install 'bslr\[timm\]'"):
        validate_config(user_config({"vit": {"factory": "timm:vit_tiny_patch16_224"}}, DATASETS))
