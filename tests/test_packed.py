"""The packed trainer (all learning rates in one vmapped job) against separate runs, on CPU."""

import copy
import json
import signal

import bslr.packed
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from bslr.packed import StackedModels, train_packed, train_packed_to_files

from bslr import checkpoint
from bslr.config import Run, run_settings, validate_config
from bslr.engine import resolve_engine
from bslr.errors import ConfigError, Interrupted
from bslr.models import build_model
from bslr.storage import RUN_COLUMNS, read_run
from bslr.train import RunOptions, train_run
from conftest import planned_jobs, snakemake, tiny_config, write_config

METRICS = [column for column in RUN_COLUMNS if column != "seconds"]
LOSSES = ["train_loss", "test_loss"]
ACCURACIES = ["train_acc", "test_acc"]


def group(root, model="cnn1d", lrs=(0.05, 0.1, 0.2), batch_size=32, **overrides) -> list[dict]:
    raw = tiny_config(models=[model], epochs=overrides.pop("epochs", 3), device="cpu", **overrides)
    raw["data"] = {"root": str(root)}
    config = validate_config(raw)
    return [run_settings(config, Run("tiny", model, "mnist1d", batch_size, lr, 0)) for lr in lrs]


def assert_same_metrics(packed: pd.DataFrame, separate: pd.DataFrame) -> None:
    """Equal up to float rounding: losses to 1e-5, accuracies to one example in a thousand."""
    assert packed["epoch"].tolist() == separate["epoch"].tolist()
    assert (packed[["lr", "batch_size"]].to_numpy() == separate[["lr", "batch_size"]].to_numpy()).all()
    pd.testing.assert_frame_equal(packed[LOSSES], separate[LOSSES], check_exact=False, rtol=1e-5, atol=1e-5)
    assert (packed[ACCURACIES] - separate[ACCURACIES]).abs().max().max() <= 1e-3


@pytest.mark.parametrize("model", ["mlp", "cnn1d"])
def test_packed_runs_equal_separate_runs_under_the_paper_protocol(mnist1d_root, model):
    runs = group(mnist1d_root, model)
    packed = train_packed(runs)
    assert len(packed) == 3
    for (frame, metadata), settings in zip(packed, runs, strict=True):
        separate, _ = train_run(settings)
        assert_same_metrics(frame, separate)
        assert json.loads(metadata["settings"]) == settings
        assert json.loads(metadata["packed_learning_rates"]) == [0.05, 0.1, 0.2]
        assert json.loads(metadata["engine"])["device"] == "cpu"


def test_momentum_and_weight_decay_follow_torch_sgd(mnist1d_root):
    # a small learning rate: with momentum 0.9, larger steps make any rounding difference grow chaotically
    runs = group(mnist1d_root, "cnn1d", lrs=(0.005, 0.01), momentum=0.9, weight_decay=5e-4, epochs=2)
    for (frame, _), settings in zip(train_packed(runs), runs, strict=True):
        assert_same_metrics(frame, train_run(settings)[0])


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    actual, expected = actual.detach().double(), expected.detach().double()
    return float((actual - expected).norm() / expected.norm().clamp_min(1e-30))


def test_batch_norm_statistics_are_stacked_and_updated_per_model():
    # float64: a 20-layer network on random data is ill-conditioned enough that float32 gradients carry
    # relative errors near 1e-2 whichever way they are computed; in float64 both ways agree to 1e-9
    torch.manual_seed(0)
    base = build_model("resnet20", (3, 32, 32), 10).double()
    engine = resolve_engine(
        {"channels_last": "auto", "precision": "fp32", "tf32": True, "compile": False}, torch.device("cpu"), 3
    )
    lrs = [0.01, 0.02]
    stacked = StackedModels(copy.deepcopy(base), lrs, {"momentum": 0.0, "weight_decay": 0.0}, engine)
    singles = [copy.deepcopy(base) for _ in lrs]
    optimizers = [torch.optim.SGD(model.parameters(), lr=lr) for model, lr in zip(singles, lrs, strict=True)]
    generator = torch.Generator().manual_seed(1)
    for _ in range(3):
        inputs = torch.randn(16, 3, 32, 32, generator=generator, dtype=torch.float64)
        labels = torch.randint(0, 10, (16,), generator=generator)
        stacked.step(inputs, labels)
        for model, optimizer in zip(singles, optimizers, strict=True):
            model.train()
            optimizer.zero_grad()
            F.cross_entropy(model(inputs), labels).backward()
            optimizer.step()
    stacked.skeleton.eval()
    inputs = torch.randn(32, 3, 32, 32, generator=generator, dtype=torch.float64)
    with torch.no_grad():
        logits = stacked.logits(stacked.params, stacked.buffers, inputs)
    for index, model in enumerate(singles):
        for name, weight in model.named_parameters():
            assert relative_error(stacked.params[name][index], weight) < 1e-9, name
        for name, buffer in model.named_buffers():  # running means, variances and batch counts
            assert relative_error(stacked.buffers[name][index], buffer) < 1e-9, name
        counts = [name for name in stacked.buffers if name.endswith("num_batches_tracked")]
        assert counts and all(int(stacked.buffers[name][index]) == 3 for name in counts)
        model.eval()
        with torch.no_grad():
            assert relative_error(logits[index], model(inputs)) < 1e-9
    # the two learning rates really trained two different models
    assert not torch.equal(stacked.params["linear.weight"][0], stacked.params["linear.weight"][1])


def test_a_diverged_learning_rate_stops_alone(mnist1d_root):
    runs = group(mnist1d_root, "mlp", lrs=(0.1, 1e4), batch_size=16, epochs=3)
    (good, good_metadata), (bad, bad_metadata) = train_packed(runs)
    assert bad_metadata["diverged"] == "true" and len(bad) == json.loads(bad_metadata["diverged_epoch"]) < 3
    assert good_metadata["diverged"] == "false" and len(good) == 3
    # the diverged model's NaNs stay in its own slice of the stacks: its partner trains as if alone
    (alone, _), *_ = train_packed(runs[:1])
    pd.testing.assert_frame_equal(good[METRICS], alone[METRICS], check_exact=False, rtol=1e-6, atol=1e-7)


def test_signal_mid_epoch_checkpoints_and_the_pack_resumes_identically(mnist1d_root, tmp_path, monkeypatch):
    runs = group(mnist1d_root, "cnn1d", lrs=(0.05, 0.1), epochs=2)
    reference = train_packed(runs)
    path = tmp_path / "pack.pt"
    real, calls = bslr.packed.F.cross_entropy, []

    def cross_entropy(*args, **kwargs):
        calls.append(1)
        if len(calls) == 140:  # epoch 2, step 10: each epoch is 125 training steps and 5 evaluation batches
            signal.raise_signal(signal.SIGUSR1)
        return real(*args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(bslr.packed.F, "cross_entropy", cross_entropy)
        with pytest.raises(Interrupted, match="received signal SIGUSR1 in epoch 2"):
            train_packed(runs, RunOptions(checkpoint=str(path)))
    state = checkpoint.load(path, checkpoint.settings_hash({"packed": runs}))
    assert [len(rows) for rows in state["rows"]] == [1, 1] and state["partial"]["step"] == 10
    resumed = train_packed(runs, RunOptions(checkpoint=str(path)))
    for (frame, metadata), (expected, _) in zip(resumed, reference, strict=True):
        assert metadata["resumed"] == "true"
        pd.testing.assert_frame_equal(frame[METRICS], expected[METRICS], check_exact=True)


def test_runs_that_differ_in_more_than_lr_are_refused(mnist1d_root, tmp_path):
    runs = group(mnist1d_root, "mlp", lrs=(0.1, 0.2))
    runs[1] = dict(runs[1], batch_size=64)
    with pytest.raises(ConfigError, match=r"differ only in lr, but these settings differ too: \['batch_size'\]"):
        train_packed(runs)
    with pytest.raises(ConfigError, match="2 packed runs but 1 output files"):
        train_packed_to_files(runs[:1] * 2, [str(tmp_path / "one.parquet")])


def test_packing_in_config_plans_one_job_per_batch_size_and_writes_every_run(tmp_path):
    config = tiny_config(models=["mlp"], pack_learning_rates=True)
    config["experiments"]["separate"] = dict(tiny_config()["experiments"]["tiny"], batch_sizes=[64])
    config_path = write_config(tmp_path, config)
    jobs = planned_jobs(tmp_path, config_path)
    assert jobs["train_packed_tiny"] == 3 and jobs["train"] == 3  # 3 batch sizes packed; 3 lrs separate
    snakemake(tmp_path, config_path, "--cores", "2", "results/aggregate/runs.parquet")
    runs = pd.read_parquet(tmp_path / "results/aggregate/runs.parquet")
    assert len(runs) == 12 and not runs["diverged"].any()
    for lr in ("0.05", "0.1", "0.15"):
        packed, metadata = read_run(tmp_path / f"results/runs/tiny/mnist1d/mlp/bs64_lr{lr}_seed0.parquet")
        assert json.loads(metadata["packed_learning_rates"]) == [0.05, 0.1, 0.15]
        separate, _ = read_run(tmp_path / f"results/runs/separate/mnist1d/mlp/bs64_lr{lr}_seed0.parquet")
        assert_same_metrics(packed, separate)
    log = (tmp_path / "logs/train/tiny/mnist1d/mlp/bs64_seed0_packed.log").read_text()
    assert log.count("wrote results/runs/tiny/mnist1d/mlp/bs64_lr") == 3
    assert not list((tmp_path / "results").glob("checkpoints/**/*.pt"))
