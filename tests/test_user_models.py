"""A config's own models and data sets in training: each factory kind, each format, stacked and serial, and
the bad models refused before any step with one line."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from bslr.catalog import ModelSpec
from bslr.config import run_spec, validate_config
from bslr.data import channel_statistics, load_dataset
from bslr.errors import DataError, ModelError
from bslr.models import build_model
from bslr.plan import Plan, Run
from bslr.registry import catalog_of
from bslr.storage import read_run
from bslr.train import RunOptions, train_pack
from conftest import planned_jobs, snakemake, write_config
from user_entries import image_arrays, user_config, write_image_folder

DATASETS = {"images": {"format": "npz", "path": "data/images.npz"}}


def pack_settings(models: dict, model: str, lrs=(0.05, 0.1), datasets=DATASETS, dataset="images", **training):
    config = validate_config(user_config(models, datasets, models=[model], datasets=[dataset], **training))
    catalog = catalog_of(config)
    return [run_spec(config, Run("tiny", model, dataset, 16, lr, 0), catalog) for lr in lrs]


def metrics(results) -> list[list[float]]:
    return [frame[["train_loss", "test_loss", "test_acc"]].to_numpy().ravel().tolist() for frame, _ in results]


def test_a_user_module_model_trains_serial_as_alone_and_stacked_close_to_it(workdir):
    models = {"cnn": {"factory": "mynets:small_cnn", "kwargs": {"width": 4}}}
    serial = train_pack(pack_settings(models, "cnn", pack={"size": "all", "learner": "serial"}))
    alone = [train_pack(pack_settings(models, "cnn", lrs=(lr,)))[0] for lr in (0.05, 0.1)]
    assert metrics(serial) == metrics(alone)  # bitwise: each run of a serial pack computes as if alone
    stacked = train_pack(pack_settings(models, "cnn", pack={"size": "all", "learner": "stacked"}))
    assert stacked[0][1]["learner"] == "stacked"
    # other kernels than a run alone: one epoch of 6 steps agrees to float32 rounding, amplified a little
    np.testing.assert_allclose(metrics(stacked), metrics(serial), rtol=0, atol=1e-4)
    settings = json.loads(serial[0][1]["settings"])
    assert settings["model_spec"]["factory"] == "mynets:small_cnn"
    assert len(settings["model_spec"]["source_sha256"]) == 64


def test_a_model_vmap_cannot_stack_is_refused_before_any_step_or_trained_serially_under_auto(workdir):
    models = {"gated": {"factory": "mynets:gated"}}
    refusal = r"model gated \(mynets:gated\) cannot be stacked .* set training.pack.learner: serial"
    with pytest.raises(ModelError, match=refusal):
        train_pack(pack_settings(models, "gated", pack={"size": "all", "learner": "stacked"}))
    results = train_pack(pack_settings(models, "gated", pack={"size": "all", "learner": "auto"}))
    assert [metadata["learner"] for _, metadata in results] == ["serial", "serial"]


def test_torchvision_and_timm_factories_build_untrained_models_of_the_data_set_s_classes(workdir):
    torchvision_model = build_model(ModelSpec("rn18", "torchvision:resnet18"), (3, 16, 16), 7)
    assert sum(p.numel() for p in torchvision_model.parameters()) == 11_180_103  # resnet18 with a 7-way head
    assert torchvision_model(torch.zeros(2, 3, 16, 16)).shape == (2, 7)
    pytest.importorskip("timm")
    timm_model = build_model(ModelSpec("rn", "timm:resnet10t", kwargs={"drop_rate": 0.0}), (1, 8, 8), 4)
    assert timm_model.eval()(torch.zeros(2, 1, 8, 8)).shape == (2, 4)  # in_chans from the data set's shape


def test_a_torchvision_model_trains_on_an_image_folder_in_memory(workdir):
    write_image_folder(workdir / "pictures")
    datasets = {"pictures": {"format": "imagefolder", "path": "pictures", "image_size": 8, "augment": "crop_flip"}}
    models = {"mn": {"factory": "torchvision:mobilenet_v3_small"}}
    runs = pack_settings(models, "mn", lrs=(0.01,), datasets=datasets, dataset="pictures")
    data = load_dataset(runs[0].dataset_entry, "", False, "standard", torch.device("cpu"), seed=0)
    arrays = image_arrays()
    assert data.crop_flip and data.x_train.shape == (96, 3, 8, 8)
    # the PNGs decode to the arrays they were written from (grey as RGB), in ImageFolder's class order
    order = np.argsort([f"class{label}/{index:04d}" for index, label in enumerate(arrays["y_train"])], kind="stable")
    assert np.array_equal(data.x_train[:, 0].numpy(), arrays["x_train"][order, 0])
    frame, metadata = train_pack(runs)[0]
    assert len(frame) == 1 and np.isfinite(frame["train_loss"]).all()


def test_an_npz_is_normalised_per_channel_with_its_training_set(workdir):
    spec = catalog_of(validate_config(user_config({}, DATASETS, models=["mlp"]))).datasets["images"]
    data = load_dataset(spec, "", False, "standard", torch.device("cpu"), seed=0)
    x_train = image_arrays()["x_train"].astype(np.float64) / 255
    mean, std = channel_statistics(image_arrays()["x_train"])
    assert mean == (x_train.mean(),) and std == (x_train.std(),)
    inputs, _ = next(data.eval_batches("train", 1000))
    assert abs(float(inputs.mean())) < 1e-6 and abs(float(inputs.std(unbiased=False)) - 1) < 1e-5


def test_a_model_with_the_wrong_output_is_one_line_from_bslr_train_and_writes_nothing(workdir):
    models = {"bad": {"factory": "mynets:wrong_output"}}
    settings = pack_settings(models, "bad", lrs=(0.1,))[0]
    output = workdir / "run.parquet"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "bslr.cli",
            "train",
            "--settings",
            json.dumps(settings.settings()),
            "--output",
            str(output),
        ],
        capture_output=True,
        text=True,
        cwd=workdir,
    )
    assert result.returncode != 0 and not output.exists()
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert "model bad: mynets:wrong_output returns (2, 5) for a batch of 2 inputs of shape (1, 8, 8)" in result.stderr
    assert "must return logits of shape (batch, 4)" in result.stderr


def test_a_user_model_trains_through_snakemake_and_editing_its_source_re_trains_exactly_its_runs(workdir):
    """About 25 s on 2 cores: four training jobs (two models, two batch sizes) started by Snakemake, then a
    dry run. Planning alone is tested in test_registry; this is Snakemake's own invalidation of the jobs."""
    models = {"cnn": {"factory": "mynets:small_cnn", "kwargs": {"width": 4}}}
    config = user_config(models, DATASETS, models=["cnn", "mlp"], pack={"size": "all", "learner": "auto"})
    config_path = write_config(workdir, config)
    runs = Plan(config).run_files()
    snakemake(workdir, config_path, "--cores", "2", *runs)
    settings = json.loads(read_run(workdir / "results/runs/tiny/images/cnn/bs16_lr0.05_seed0.parquet")[1]["settings"])
    assert settings["model_spec"]["factory"] == "mynets:small_cnn" and settings["model_spec"]["kwargs"] == {"width": 4}
    assert planned_jobs(workdir, config_path, *runs) == {}  # nothing to do until a source changes
    with open(workdir / "mynets.py", "a") as handle:
        handle.write("\n# a comment is an edit too: the hash is of the file\n")
    assert planned_jobs(workdir, config_path, *runs) == {"train_tiny_images_cnn": 2}  # its two batch sizes alone


DATA_MODULE = '''
"""A researcher's own data-set callables: arrays to hold in memory, or torch Datasets with their own reading."""
import numpy as np
import torch
from torch.utils.data import TensorDataset

from user_entries import image_arrays


def arrays(seed=0):
    return image_arrays(seed)


def tensors(train=96):
    made = image_arrays(0, train=train)
    def dataset(split):
        x = torch.from_numpy(made[f"x_{split}"]).float() / 255
        return TensorDataset(x, torch.from_numpy(made[f"y_{split}"]))
    return dataset("train"), dataset("test")


def nothing():
    return np.zeros(3)
'''


@pytest.mark.parametrize("factory", ["mydata:arrays", "mydata:tensors"])
def test_a_factory_data_set_trains_from_arrays_in_memory_or_from_its_own_datasets(workdir, factory):
    (workdir / "mydata.py").write_text(DATA_MODULE)
    datasets = {"hub": {"factory": factory, "input_shape": [1, 8, 8], "num_classes": 4, "train_size": 96}}
    runs = pack_settings({}, "mlp", lrs=(0.05, 0.1), datasets=datasets, dataset="hub")
    data = load_dataset(runs[0].dataset_entry, "", False, "standard", torch.device("cpu"), seed=0, workers=0)
    assert type(data).__name__ == ("MemoryData" if factory == "mydata:arrays" else "LoaderData")
    assert data.size("train") == 96 and data.size("test") == 32
    results = train_pack(runs, RunOptions(workers=0))
    assert [len(frame) for frame, _ in results] == [1, 1]
    assert all(np.isfinite(frame["train_loss"]).all() and frame["test_acc"].between(0, 1).all() for frame, _ in results)
    assert json.loads(results[0][1]["settings"])["dataset_spec"]["factory"] == factory


@pytest.mark.parametrize(
    ("factory", "train_size", "message"),
    [
        ("mydata:tensors", 95, "mydata:tensors made 96 training examples, not 95"),
        ("mydata:nothing", 96, "mydata:nothing returned a ndarray; return a dict of arrays"),
    ],
)
def test_a_factory_data_set_that_is_not_what_it_declares_is_one_error(workdir, factory, train_size, message):
    (workdir / "mydata.py").write_text(DATA_MODULE)
    datasets = {"hub": {"factory": factory, "input_shape": [1, 8, 8], "num_classes": 4, "train_size": train_size}}
    runs = pack_settings({}, "mlp", lrs=(0.05,), datasets=datasets, dataset="hub", batch_sizes=[16])
    with pytest.raises(DataError, match=message):
        train_pack(runs, RunOptions(workers=0))
