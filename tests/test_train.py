import json

import pandas as pd
import pyarrow.parquet as pq
import pytest

from bslr.config import Run, run_settings, validate_config
from bslr.storage import RUN_COLUMNS, read_run
from bslr.train import train_run, train_to_file
from conftest import tiny_config


def settings(root, model="cnn1d", batch_size=64, lr=0.1, seed=3, **overrides) -> dict:
    """A run's settings resolved from a real config, as the workflow passes them to `bslr train`."""
    raw = tiny_config(models=[model], epochs=overrides.pop("epochs", 2), device="cpu", **overrides)
    raw["data"] = {"root": str(root)}
    return run_settings(validate_config(raw), Run("tiny", model, "mnist1d", batch_size, lr, seed))


def test_same_settings_give_identical_metrics(mnist1d_root):
    first, _ = train_run(settings(mnist1d_root))
    second, _ = train_run(settings(mnist1d_root))
    metrics = [column for column in RUN_COLUMNS if column != "seconds"]
    pd.testing.assert_frame_equal(first[metrics], second[metrics], check_exact=True)


def test_seed_changes_the_run(mnist1d_root):
    first, _ = train_run(settings(mnist1d_root, seed=0))
    second, _ = train_run(settings(mnist1d_root, seed=1))
    assert not first["train_loss"].equals(second["train_loss"])


def test_training_learns_and_records_every_epoch(mnist1d_root):
    frame, metadata = train_run(settings(mnist1d_root, epochs=3, lr=0.2, batch_size=16))
    assert list(frame.columns) == RUN_COLUMNS
    assert frame["epoch"].tolist() == [1, 2, 3]
    assert frame["train_loss"].is_monotonic_decreasing
    assert frame["test_acc"].iloc[-1] > 0.4  # chance is 0.1
    assert frame[["train_acc", "test_acc"]].stack().between(0, 1).all()
    assert (frame["lr"] == 0.2).all() and (frame["batch_size"] == 16).all()
    assert metadata["diverged"] == "false"


def test_divergence_stops_the_run_and_is_recorded(mnist1d_root):
    frame, metadata = train_run(settings(mnist1d_root, model="mlp", lr=1e4, batch_size=16, epochs=5))
    assert metadata["diverged"] == "true"
    assert len(frame) == json.loads(metadata["diverged_epoch"]) < 5


def test_per_run_parquet_carries_provenance(mnist1d_root, tmp_path):
    output = tmp_path / "runs" / "bs64_lr0.1_seed3.parquet"
    train_to_file(settings(mnist1d_root), str(output))
    frame, metadata = read_run(output)
    assert len(frame) == 2
    assert json.loads(metadata["settings"]) == settings(mnist1d_root)
    for key in ("bslr_version", "torch_version", "cuda_version", "device", "host", "slurm_job_id"):
        assert key in metadata
    assert metadata["device"].startswith("cpu")
    assert list(output.parent.iterdir()) == [output]  # no temporary file left behind
    assert pq.read_metadata(output).num_rows == 2


def test_missing_data_names_the_file_and_the_fix(tmp_path):
    from bslr.data import DataError

    with pytest.raises(DataError, match=r"mnist1d\.npz is missing; generate it with `bslr prepare-data"):
        train_run(settings(tmp_path))
