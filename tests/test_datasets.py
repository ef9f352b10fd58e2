"""The real torchvision loaders on small files in the true on-disk formats, and every model trained
one epoch on them through Snakemake."""

import os

import pandas as pd
import pytest
import torch
import torchvision.datasets.cifar

from bslr.catalog import BUILTIN_DATASETS
from bslr.cli import main
from bslr.config import validate_config
from bslr.data import DataError, load_dataset
from bslr.plan import Plan
from conftest import planned_jobs, snakemake, training_jobs, write_config
from fake_data import MD5_PATCH, write_cifar, write_imagefolder, write_mnist

CPU = torch.device("cpu")
ONE_POINT = {"batch_sizes": [20], "learning_rates": [0.01], "epochs": 1}


@pytest.fixture
def no_md5(monkeypatch):
    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", lambda *args, **kwargs: True)


@pytest.mark.parametrize(("name", "classes"), [("cifar10", 10), ("cifar100", 100)])
def test_cifar_loads_as_uint8_on_the_device_and_normalises(tmp_path, no_md5, name, classes):
    write_cifar(tmp_path, classes)
    data = load_dataset(BUILTIN_DATASETS[name], tmp_path, False, "standard", CPU, seed=0)
    assert data.x_train.shape == (100, 3, 32, 32) and data.x_train.dtype == torch.uint8
    assert data.y_train.max() < classes and len(data.y_test) == data.size("test")
    inputs, labels = next(data.eval_batches("train", 1000))
    assert inputs.dtype == torch.float32 and inputs.shape == (100, 3, 32, 32)
    # normalised with the data set's per-channel constants
    expected = (data.x_train[:, 0].float() / 255 - data.mean[0, 0]) / data.std[0, 0]
    torch.testing.assert_close(inputs[:, 0], expected)


def test_crop_and_flip_are_seeded_and_keep_pixels(tmp_path, no_md5):
    write_cifar(tmp_path, 10)
    first = load_dataset(BUILTIN_DATASETS["cifar10"], tmp_path, False, "standard", CPU, seed=5)
    second = load_dataset(BUILTIN_DATASETS["cifar10"], tmp_path, False, "standard", CPU, seed=5)
    images = first.x_train[:64]
    augmented = first.augment(images)
    assert augmented.shape == images.shape and augmented.dtype == torch.uint8
    torch.testing.assert_close(augmented, second.augment(images))
    assert not torch.equal(augmented, images)
    # every output is a 32x32 window of the zero-padded image, possibly mirrored
    padded = torch.nn.functional.pad(images, (4, 4, 4, 4))
    for index in range(8):
        windows = [padded[index, :, y : y + 32, x : x + 32] for y in range(9) for x in range(9)]
        candidates = windows + [window.flip(2) for window in windows]
        assert any(torch.equal(augmented[index], window) for window in candidates)


def test_augment_none_turns_it_off(tmp_path, no_md5):
    write_cifar(tmp_path, 10)
    data = load_dataset(BUILTIN_DATASETS["cifar10"], tmp_path, False, "none", CPU, seed=0)
    generator = torch.Generator().manual_seed(0)
    inputs, _ = next(data.train_batches(100, generator))
    order = torch.randperm(100, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(inputs, data.prepare(data.x_train[order]))


def test_mnist_reads_idx_files(tmp_path):
    write_mnist(tmp_path)
    data = load_dataset(BUILTIN_DATASETS["mnist"], tmp_path, False, "standard", CPU, seed=0)
    assert data.x_train.shape == (60, 1, 28, 28) and not data.crop_flip
    assert data.size("test") == 20


def test_imagenet_reads_an_imagefolder_tree(tmp_path):
    write_imagefolder(tmp_path)
    data = load_dataset(BUILTIN_DATASETS["imagenet"], tmp_path, False, "standard", CPU, seed=0, workers=0)
    images, labels = next(data.train_batches(4, torch.Generator().manual_seed(0)))
    assert images.shape == (4, 3, 224, 224) and labels.shape == (4,)
    assert data.size("train") == 6 and data.size("test") == 6


@pytest.mark.parametrize("name", ["cifar10", "cifar100", "mnist", "imagenet"])
def test_missing_data_names_the_directory_and_the_switch(tmp_path, name):
    with pytest.raises(DataError) as caught:
        load_dataset(BUILTIN_DATASETS[name], tmp_path, False, "standard", CPU, seed=0, workers=0)
    message = str(caught.value)
    assert str(tmp_path) in message and "data.download" in message and "expected" in message


def test_corrupt_cifar_is_reported(tmp_path, no_md5):
    write_cifar(tmp_path, 10)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").write_bytes(b"not a pickle")
    with pytest.raises(DataError, match="cifar10 not found or corrupt"):
        load_dataset(BUILTIN_DATASETS["cifar10"], tmp_path, False, "standard", CPU, seed=0)


def test_every_model_trains_one_epoch_as_its_job_runs_and_the_workflow_aggregates_them(tmp_path, no_md5):
    """Each model's job, 9 of them: eight run in this process as their rules call `bslr train` (the command
    line, the rule's protocol and execution options), the ninth through Snakemake, which then aggregates all
    nine. A job's own process costs about 5 s of imports before it trains; the workflow's side is the same in
    every job, and the models differ only in what they train."""
    root = tmp_path / "data"
    write_cifar(root, 10, per_batch=4)  # 20 training images: one SGD step at batch size 20 trains each model
    write_cifar(root, 100, per_batch=4)
    write_mnist(root)
    write_imagefolder(root)
    patches = tmp_path / "patches"
    patches.mkdir()
    (patches / "sitecustomize.py").write_text(MD5_PATCH)
    config = {
        "experiments": {
            "cifar": {"models": ["resnet110", "vgg19", "alexnet"], "datasets": ["cifar10", "cifar100"], **ONE_POINT},
            "mnist": {"models": ["mlp"], "datasets": ["mnist"], "mlp_hidden": [32], **ONE_POINT},
            "imagenet": {
                "models": ["resnet18", "resnet50"],
                "datasets": ["imagenet"],
                **ONE_POINT,
                "batch_sizes": [3],
                "workers": 0,
            },
        },
        "training": {"device": "cpu"},
        "data": {"root": str(root)},
    }
    config_path = write_config(tmp_path, config)
    assert training_jobs(planned_jobs(tmp_path, config_path)) == 9

    plan = Plan(validate_config(config))
    through_snakemake = "train_cifar_cifar10_alexnet"
    for rule in plan.train_rules():
        if rule.name == through_snakemake:
            continue
        execution = tmp_path / rule.execution
        if not execution.exists():
            options = plan.execution_options_json(rule.experiment)
            assert main(["execution-options", "--options", options, "--output", str(execution)]) == 0
        scenario = (rule.experiment, rule.dataset, rule.model)
        (run,) = [run for run in plan.runs if (run.experiment, run.dataset, run.model) == scenario]
        command = ["train", "--protocol", rule.protocol, "--output", str(tmp_path / run.path), "--threads", "2"]
        assert main([*command, "--execution", str(execution), "--checkpoint", "auto"]) == 0

    env_path = os.pathsep.join(filter(None, [str(patches), os.environ.get("PYTHONPATH")]))
    os.environ["PYTHONPATH"], previous = env_path, os.environ.get("PYTHONPATH")
    try:
        # up to the runs table: statistics and figures are tested on their own
        assert planned_jobs(tmp_path, config_path, "results/aggregate/runs.parquet") == {
            through_snakemake: 1,
            "aggregate": 1,
        }
        snakemake(tmp_path, config_path, "--cores", "2", "results/aggregate/runs.parquet")
    finally:
        if previous is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = previous
    runs = pd.read_parquet(tmp_path / "results/aggregate/runs.parquet")
    assert sorted(zip(runs["model"], runs["dataset"], strict=True)) == sorted(
        [(m, d) for m in ("resnet110", "vgg19", "alexnet") for d in ("cifar10", "cifar100")]
        + [("mlp", "mnist"), ("resnet18", "imagenet"), ("resnet50", "imagenet")]
    )
    assert (runs["epochs"] == 1).all() and runs["final_test_acc"].between(0, 1).all()


def train_only_job(config: dict, directory) -> int:
    """`bslr train` of the config's one training job, as its rule would call it; the exit status."""
    plan = Plan(validate_config(config))
    (rule,) = plan.train_rules()
    execution = directory / "execution.json"
    options = plan.execution_options_json(rule.experiment)
    assert main(["execution-options", "--options", options, "--output", str(execution)]) == 0
    output = str(directory / plan.runs[0].path)
    return main(["train", "--protocol", rule.protocol, "--output", output, "--execution", str(execution)])


def test_missing_cifar_is_refused_before_any_job_and_named_by_the_dry_run_and_validate(tmp_path, capsys):
    """Without its files (and data.download false) a built-in data set would fail every job, and on the
    SLURM profile each would be resubmitted: a real run stops before the first job with the job's own
    message; a dry run (which plans without data) and `bslr validate` say the same as a warning. A job
    started anyway (files removed after planning) still ends in that one line, not a traceback."""
    config = {
        "experiments": {"paper": {"models": ["alexnet"], "datasets": ["cifar10"], **ONE_POINT}},
        "data": {"root": str(tmp_path / "nowhere")},
        "training": {"device": "cpu"},
    }
    config_path = write_config(tmp_path, config)
    result = snakemake(tmp_path, config_path, "--cores", "1", check=False)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert f"bslr: data set cifar10 not found or corrupt under {tmp_path / 'nowhere'}" in result.stderr
    assert "missing: cifar-10-batches-py/data_batch_1" in result.stderr and "data.download: true" in result.stderr
    assert not (tmp_path / "logs").exists() and not (tmp_path / "results").exists()  # no job started
    dry = snakemake(tmp_path, config_path, "-n")
    assert "bslr: warning: data set cifar10 not found or corrupt under" in dry.stderr
    assert main(["validate", str(config_path)]) == 0
    assert "warning: data set cifar10 not found or corrupt" in capsys.readouterr().out

    write_cifar(tmp_path / "nowhere", classes=10)  # in place: nothing is refused
    assert Plan(validate_config(config)).missing_data() == []
    (tmp_path / "nowhere/cifar-10-batches-py/test_batch").unlink()
    code = train_only_job(config, tmp_path)
    error = capsys.readouterr().err
    assert code == 1 and error.startswith("bslr train: error: data set cifar10 not found or corrupt under")
    assert "Traceback" not in error and len(error.strip().splitlines()) == 1


def test_cuda_asked_where_no_gpu_is_visible_ends_the_job_in_one_line(tmp_path, capsys, mnist1d_root):
    if torch.cuda.is_available():
        pytest.skip("a GPU is visible: training.device cuda is valid here")
    config = {
        "experiments": {"tiny": {"models": ["mlp"], "datasets": ["mnist1d"], **ONE_POINT}},
        "data": {"root": str(mnist1d_root)},
        "training": {"device": "cuda"},
    }
    code = train_only_job(config, tmp_path)
    error = capsys.readouterr().err
    assert code == 1 and "Traceback" not in error
    assert error.strip() == (
        "bslr train: error: training.device is 'cuda' but no CUDA device is visible to this job; set "
        "training.device: auto (or cpu), or run the job where a GPU is (on SLURM: training.gpus)"
    )
