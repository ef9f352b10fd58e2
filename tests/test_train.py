"""The training core: one loop for a pack of K >= 1 runs; a single run is a pack of one."""

import dataclasses
import json
import math

import pandas as pd
import pyarrow.parquet as pq
import pytest

from bslr.catalog import MEASURE_COLUMNS
from bslr.config import RunSpec, run_spec, validate_config
from bslr.errors import ConfigError
from bslr.plan import Run
from bslr.storage import RUN_COLUMNS, read_run
from bslr.train import RunOptions, train_pack, train_pack_to_files
from conftest import tiny_config

METRICS = [column for column in RUN_COLUMNS if column != "seconds"]


def settings(root, model="cnn1d", batch_size=64, lr=0.1, seed=3, **overrides) -> RunSpec:
    """A run's settings resolved from a real config, as the workflow passes them to `bslr train`."""
    raw = tiny_config(models=[model], epochs=overrides.pop("epochs", 2), device="cpu", **overrides)
    if raw["experiments"]["tiny"]["epochs"] is None:  # a step budget
        del raw["experiments"]["tiny"]["epochs"]
    raw["data"] = {"root": str(root)}
    return run_spec(validate_config(raw), Run("tiny", model, "mnist1d", batch_size, lr, seed))


def pack(root, lrs=(0.05, 0.1, 0.2), learner="serial", **overrides) -> list[RunSpec]:
    """Settings of runs that differ only in learning rate, for `learner`."""
    return [settings(root, lr=lr, pack={"size": "all", "learner": learner}, **overrides) for lr in lrs]


def train_one(run: RunSpec, options: RunOptions | None = None) -> tuple[pd.DataFrame, dict]:
    (result,) = train_pack([run], options or RunOptions())
    return result


def test_same_settings_give_identical_metrics(mnist1d_root):
    first, _ = train_one(settings(mnist1d_root))
    second, _ = train_one(settings(mnist1d_root))
    pd.testing.assert_frame_equal(first[METRICS], second[METRICS], check_exact=True)


def test_seed_changes_the_run(mnist1d_root):
    first, _ = train_one(settings(mnist1d_root, seed=0))
    second, _ = train_one(settings(mnist1d_root, seed=1))
    assert not first["train_loss"].equals(second["train_loss"])


def test_training_learns_and_records_every_epoch(mnist1d_root, capsys):
    frame, metadata = train_one(settings(mnist1d_root, epochs=3, lr=0.2, batch_size=16))
    assert list(frame.columns) == RUN_COLUMNS
    assert frame["epoch"].tolist() == [1, 2, 3]
    assert frame["train_loss"].is_monotonic_decreasing
    assert frame["test_acc"].iloc[-1] > 0.4  # chance is 0.1
    assert frame[["train_acc", "test_acc"]].stack().between(0, 1).all()
    assert (frame["lr"] == 0.2).all() and (frame["batch_size"] == 16).all()
    assert metadata["diverged"] == "false" and metadata["learner"] == "serial"
    assert json.loads(metadata["packed_learning_rates"]) == [0.2]
    # one progress line per epoch, with the time left
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("epoch ")]
    assert [line.split(" ", 2)[1] for line in lines] == ["1/3", "2/3", "3/3"]
    assert "s left): lr 0.2: train loss" in lines[0]


@pytest.mark.parametrize(("model", "threads"), [("mlp", 1), ("cnn1d", 1), ("cnn1d", 2)])
def test_a_serial_pack_is_bitwise_its_runs_trained_alone(mnist1d_root, model, threads):
    """Two epochs: the second runs on from the first's state and its own order of the examples. Two runs: the
    second steps after the first on every batch, which is what packing could disturb."""
    runs = pack(mnist1d_root, lrs=(0.05, 0.2), model=model, batch_size=64, epochs=2)
    options = RunOptions(threads=threads)  # the same thread count, so the same reductions, alone and packed
    packed = train_pack(runs, options)
    for (frame, metadata), run in zip(packed, runs, strict=True):
        alone, _ = train_one(run, options)
        pd.testing.assert_frame_equal(frame[METRICS], alone[METRICS], check_exact=True)
        assert json.loads(metadata["settings"]) == run.settings()
        assert json.loads(metadata["packed_learning_rates"]) == [0.05, 0.2]
        assert metadata["learner"] == "serial" and json.loads(metadata["engine"])["device"] == "cpu"


def test_serial_pack_with_momentum_and_weight_decay_is_bitwise_its_runs(mnist1d_root):
    runs = pack(mnist1d_root, lrs=(0.01, 0.05), model="mlp", momentum=0.9, weight_decay=5e-4)
    for (frame, _), run in zip(train_pack(runs), runs, strict=True):
        pd.testing.assert_frame_equal(frame[METRICS], train_one(run)[0][METRICS], check_exact=True)


@pytest.mark.parametrize("learner", ["serial", "stacked"])
def test_a_diverged_learning_rate_stops_alone(mnist1d_root, learner):
    runs = pack(mnist1d_root, lrs=(0.1, 1e4), learner=learner, model="mlp", batch_size=16, epochs=3)
    (good, good_metadata), (bad, bad_metadata) = train_pack(runs)
    assert bad_metadata["diverged"] == "true" and len(bad) == json.loads(bad_metadata["diverged_epoch"]) < 3
    assert good_metadata["diverged"] == "false" and len(good) == 3
    # the diverged model's NaNs stay in its own slice: its partner trains as with a finite partner (for
    # the stacked learner, a pack of the same shape runs the same kernels, so the comparison is bitwise)
    (expected, _), _ = train_pack([runs[0], dataclasses.replace(runs[1], lr=0.2)])
    pd.testing.assert_frame_equal(good[METRICS], expected[METRICS], check_exact=True)


def test_a_single_run_divergence_ends_the_run(mnist1d_root):
    frame, metadata = train_one(settings(mnist1d_root, model="mlp", lr=1e4, batch_size=16, epochs=5))
    assert metadata["diverged"] == "true"
    assert len(frame) == json.loads(metadata["diverged_epoch"]) < 5


def test_runs_that_differ_in_more_than_lr_are_refused(mnist1d_root, tmp_path):
    runs = pack(mnist1d_root, lrs=(0.1, 0.2), model="mlp")
    runs[1] = dataclasses.replace(runs[1], batch_size=64 * 2)
    with pytest.raises(ConfigError, match=r"differ only in lr, but these settings differ too: \['batch_size'\]"):
        train_pack(runs)
    with pytest.raises(ConfigError, match="distinct learning rates"):
        train_pack([runs[0], runs[0]])
    with pytest.raises(ConfigError, match="2 runs but 1 output files"):
        train_pack_to_files(runs[:1] * 2, [str(tmp_path / "one.parquet")])


def test_per_run_parquet_carries_provenance(mnist1d_root, tmp_path):
    output = tmp_path / "runs" / "bs64_lr0.1_seed3.parquet"
    train_pack_to_files([settings(mnist1d_root)], [str(output)])
    frame, metadata = read_run(output)
    assert len(frame) == 2
    assert json.loads(metadata["settings"]) == settings(mnist1d_root).settings()
    for key in ("bslr_version", "torch_version", "cuda_version", "device", "host", "slurm_job_id", "learner"):
        assert key in metadata
    assert metadata["device"].startswith("cpu")
    assert list(output.parent.iterdir()) == [output]  # no temporary file left behind
    assert pq.read_metadata(output).num_rows == 2


def test_missing_data_names_the_file_and_the_fix(tmp_path):
    from bslr.data import DataError

    with pytest.raises(DataError, match=r"mnist1d\.npz is missing; generate it with `bslr prepare-data"):
        train_one(settings(tmp_path))


def test_evaluating_more_often_changes_no_step_and_a_step_budget_ends_mid_epoch(mnist1d_root):
    """MLP, batch size 64: 62 steps an epoch. Evaluations draw nothing from the training's random streams."""
    by_epoch, _ = train_one(settings(mnist1d_root, model="mlp", batch_size=64))
    often, _ = train_one(settings(mnist1d_root, model="mlp", batch_size=64, evaluation={"every": 31, "unit": "steps"}))
    assert often["step"].tolist() == [31, 62, 93, 124] and often["epoch"].tolist() == [1, 1, 2, 2]
    at_epoch_ends = often[often["step"] % 62 == 0].reset_index(drop=True)
    pd.testing.assert_frame_equal(at_epoch_ends[METRICS], by_epoch[METRICS], check_exact=True)
    frame, metadata = train_one(settings(mnist1d_root, model="mlp", batch_size=64, epochs=None, budget={"steps": 100}))
    assert frame["step"].tolist() == [62, 100] and frame["epoch"].tolist() == [1, 2]
    assert frame["samples_seen"].tolist() == [62 * 64, 100 * 64]
    pd.testing.assert_frame_equal(frame[METRICS].iloc[:1], by_epoch[METRICS].iloc[:1], check_exact=True)
    assert metadata["budget"] == "steps" and json.loads(metadata["budget_steps"]) == 100
    assert json.loads(metadata["reached_target"]) is None  # no target: neither reached nor censored
    for batch_size in (16, 256):  # 250 and 15 steps an epoch: the same 100 steps
        frame, _ = train_one(
            settings(mnist1d_root, model="mlp", batch_size=batch_size, epochs=None, budget={"steps": 100})
        )
        assert frame["step"].iloc[-1] == 100 and frame["epoch"].iloc[-1] == math.ceil(100 / (4000 // batch_size))


@pytest.mark.parametrize("learner", ["serial", "stacked"])
def test_a_run_stops_at_its_target_and_one_that_never_reaches_it_is_censored(mnist1d_root, learner):
    """lr 0.2 reaches a training loss of 1.7 at step 100 of 186; lr 0.01 stays above 2.2."""
    target = {"target": {"metric": "train_loss", "value": 1.7}}
    runs = pack(
        mnist1d_root,
        lrs=(0.01, 0.2),
        learner=learner,
        model="mlp",
        batch_size=64,
        epochs=3,
        budget=target,
        evaluation={"every": 20, "unit": "steps"},
    )
    (slow, slow_metadata), (fast, fast_metadata) = train_pack(runs)
    assert (
        fast_metadata["reached_target"] == "true" and json.loads(fast_metadata["target_step"]) == fast["step"].iloc[-1]
    )
    assert fast["train_loss"].iloc[-1] <= 1.7 < fast["train_loss"].iloc[-2]  # the first evaluation that reached it
    assert slow_metadata["reached_target"] == "false" and json.loads(slow_metadata["target_step"]) is None
    assert slow["step"].iloc[-1] == 3 * 62 and (slow["train_loss"] > 1.7).all()  # trained to its maximum
    if learner == "serial":  # each run ends exactly as it would alone
        for frame, run in zip((slow, fast), runs, strict=True):
            pd.testing.assert_frame_equal(frame[METRICS], train_one(run)[0][METRICS], check_exact=True)


def test_a_run_that_diverges_under_a_target_is_diverged_not_censored(mnist1d_root):
    target = {"target": {"metric": "train_loss", "value": 0.01}}
    runs = pack(mnist1d_root, lrs=(0.01, 1e4), model="mlp", batch_size=16, epochs=3, budget=target)
    (slow, slow_metadata), (bad, bad_metadata) = train_pack(runs)
    assert bad_metadata["diverged"] == "true" and json.loads(bad_metadata["reached_target"]) is None
    assert slow_metadata["diverged"] == "false" and slow_metadata["reached_target"] == "false"  # censored


ALL_MEASURES = list(MEASURE_COLUMNS)
MEASURED = [column for columns in MEASURE_COLUMNS.values() for column in columns]


def test_measures_are_taken_at_the_asked_epochs_and_the_end_and_a_serial_pack_measures_as_alone(mnist1d_root):
    measurement = {
        "subset": 100,
        "probes": 4,
        "iterations": 3,
        "window": {"length": 1, "unit": "epochs"},
        "epochs": [1],
    }
    runs = pack(mnist1d_root, lrs=(0.05, 0.2), model="mlp", batch_size=64, epochs=3, measures=ALL_MEASURES)
    runs = [dataclasses.replace(run, measurement=measurement) for run in runs]
    for (frame, _), run in zip(train_pack(runs), runs, strict=True):
        assert list(frame.columns) == RUN_COLUMNS + MEASURED
        measured = frame[frame["epoch"] != 2]
        assert frame.loc[frame["epoch"] == 2, MEASURED].isna().all(axis=None)  # not asked for
        defined = [column for column in MEASURED if column not in ("noise_scale", "noise_scale_se")]  # may be NaN
        assert measured[defined].notna().all(axis=None) and measured["epoch"].tolist() == [1, 3]
        # a window of one epoch, 62 steps, in 5 blocks of 13: steps 1-62 at step 62; blocks 11-15 (131-186) at 186
        assert measured["fluctuation_steps"].tolist() == [62, 56]
        assert (measured["hessian_trace_se"] > 0).all() and (measured["weight_norm"] > 0).all()
        alone, _ = train_one(run)
        pd.testing.assert_frame_equal(frame.drop(columns="seconds"), alone.drop(columns="seconds"), check_exact=True)


def test_live_tensorboard_logs_are_the_export_of_the_files_for_diverged_measured_and_scheduled_runs(
    mnist1d_root, tmp_path
):
    """A pack of two MLP runs under a cosine schedule with a measure, one diverging, logged to TensorBoard as
    it trains; then its files exported: the event files, read by TensorBoard's own loader, hold the same
    scalars (the lr in force, the measure where taken, the diverged run's NaN), hyperparameters and ends of
    session (a failure for the diverged run)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import metadata as hparams_metadata

    from bslr.plan import tensorboard_dir
    from bslr.tensorboard import export

    runs = pack(
        mnist1d_root,
        lrs=(0.1, 1e4),
        model="mlp",
        batch_size=64,
        epochs=2,
        measures=["weight_norm"],
        schedule={"decay": "cosine"},
    )
    outputs = [str(tmp_path / Run("tiny", "mlp", "mnist1d", 64, run.lr, run.seed).path) for run in runs]
    live = tuple(tensorboard_dir(output, tmp_path / "live") for output in outputs)
    frames = train_pack_to_files(runs, outputs, RunOptions(tensorboard=live))
    exported = export(outputs, tmp_path / "exported")

    def logged(directory):
        events = EventAccumulator(str(directory))
        events.Reload()
        scalars = {  # NaN as text, so that equal logs compare equal
            tag: [(e.step, "nan" if math.isnan(e.value) else e.value) for e in events.Scalars(tag)]
            for tag in events.Tags()["scalars"]
        }
        session = events.PluginTagToContent(hparams_metadata.PLUGIN_NAME)
        return scalars, {
            tag: hparams_metadata.parse_session_start_info_plugin_data(content)
            if tag == hparams_metadata.SESSION_START_INFO_TAG
            else hparams_metadata.parse_session_end_info_plugin_data(content)
            for tag, content in session.items()
        }

    (good, good_session), (bad, bad_session) = (logged(directory) for directory in live)
    assert [logged(directory) for directory in exported] == [(good, good_session), (bad, bad_session)]
    steps = frames[0]["step"].tolist()
    assert [step for step, _ in good["lr"]] == steps and good["lr"][-1][1] < good["lr"][0][1]  # the cosine's fall
    assert [step for step, _ in good["measures/weight_norm"]] == steps[-1:]  # taken at the end only
    assert bad["loss/train"][-1][1] == "nan" and len(bad["loss/train"]) == len(frames[1]) < len(steps)
    assert bad_session[hparams_metadata.SESSION_END_INFO_TAG].status == 2  # STATUS_FAILURE
    assert good_session[hparams_metadata.SESSION_END_INFO_TAG].status == 1  # STATUS_SUCCESS
    assert good_session[hparams_metadata.SESSION_START_INFO_TAG].hparams["lr"].number_value == 0.1
