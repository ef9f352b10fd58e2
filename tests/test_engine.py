"""Engine options (precision, channels_last, compile, TF32) and the local GPU claims, on CPU."""

import dataclasses
import json
import os

import pandas as pd
import torch

import bslr.engine
import bslr.train
from bslr.catalog import BUILTIN_MODELS
from bslr.config import UpdateRule
from bslr.data import MemoryData
from bslr.engine import claim_gpu, resolve_engine
from bslr.learners import build_learner
from bslr.models import build_model
from bslr.train import train_steps
from test_train import pack, settings, train_one

DEFAULTS = settings("unused")  # the engine options at their defaults: fp32, TF32 on, channels_last auto, no compile


def test_auto_options_resolve_per_device_and_model():
    cpu = resolve_engine(DEFAULTS, torch.device("cpu"), 3)
    assert (cpu.tf32, cpu.channels_last, cpu.fused_sgd, cpu.compile) == (False, False, False, "false")
    cuda = resolve_engine(DEFAULTS, torch.device("cuda", 0), 3)
    assert (cuda.tf32, cuda.channels_last, cuda.fused_sgd) == (True, True, True)
    signals = resolve_engine(dataclasses.replace(DEFAULTS, channels_last=True), torch.device("cuda", 0), 2)
    assert not signals.channels_last  # NHWC means nothing for 1-D signals
    assert not resolve_engine(dataclasses.replace(DEFAULTS, tf32=False), torch.device("cuda", 0), 3).tf32


def test_bf16_autocast_trains_close_to_fp32_and_is_recorded(mnist1d_root):
    fp32, fp32_metadata = train_one(settings(mnist1d_root, model="cnn1d", epochs=2))
    bf16, metadata = train_one(settings(mnist1d_root, model="cnn1d", epochs=2, precision="bf16"))
    assert json.loads(metadata["engine"]) == {
        "channels_last": False,
        "compile": "false",
        "device": "cpu",
        "fused_sgd": False,
        "precision": "bf16",
        "tf32": False,
    }
    assert json.loads(fp32_metadata["engine"])["precision"] == "fp32"
    assert not bf16["train_loss"].equals(fp32["train_loss"])  # the arithmetic really changed
    pd.testing.assert_series_equal(bf16["train_loss"], fp32["train_loss"], check_exact=False, atol=0.05)


def test_compiled_models_train_like_the_eager_ones(mnist1d_root, tmp_path, monkeypatch):
    """About 30 s on 2 cores, nearly all of it inductor compiling the MLP's kernels (one epoch trains in 1 s)."""
    # a cache of its own: inductor's shared one keeps a precompiled header per machine, not per CPU kernel
    # set, and fails to compile under ATEN_CPU_CAPABILITY=default after a run without it
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))
    # a serial pack of two: each model is compiled (once per model, within dynamo's recompile limit)
    eager = bslr.train.train_pack(pack(mnist1d_root, lrs=(0.05, 0.1), model="mlp", epochs=1))
    compiled = bslr.train.train_pack(pack(mnist1d_root, lrs=(0.05, 0.1), model="mlp", epochs=1, compile="default"))
    columns = ["train_loss", "test_loss", "train_acc", "test_acc"]
    for (frame, metadata), (expected, _) in zip(compiled, eager, strict=True):
        assert json.loads(metadata["engine"])["compile"] == "default"
        pd.testing.assert_frame_equal(frame[columns], expected[columns], check_exact=False, rtol=1e-4, atol=1e-4)


def cifar_shaped(count: int = 64) -> MemoryData:
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (count, 3, 32, 32), dtype=torch.uint8, generator=generator)
    labels = torch.randint(0, 10, (count,), generator=generator)
    return MemoryData(
        images,
        labels,
        images[:16],
        labels[:16],
        mean=torch.full((1, 3, 1, 1), 0.5),
        std=torch.full((1, 3, 1, 1), 0.25),
        crop_flip=True,
        augment_generator=torch.Generator().manual_seed(1),
    )


def test_channels_last_trains_the_same_model_in_nhwc():
    results = []
    for channels_last in (False, True):
        engine = resolve_engine(dataclasses.replace(DEFAULTS, channels_last=channels_last), torch.device("cpu"), 3)
        torch.manual_seed(0)
        learner = build_learner(
            "serial",
            build_model(BUILTIN_MODELS["resnet20"], (3, 32, 32), 10),
            [UpdateRule(lr=0.01)],
            engine,
        )
        if channels_last:
            assert learner.models[0].conv.weight.is_contiguous(memory_format=torch.channels_last)
        data = cifar_shaped()
        for _ in train_steps(learner, data, 16, torch.Generator().manual_seed(2)):
            pass
        results.append(learner.evaluate(data, "train", 1000)[0])
    (loss, accuracy), (nhwc_loss, nhwc_accuracy) = results
    assert abs(nhwc_loss - loss) < 1e-3 * loss and abs(nhwc_accuracy - accuracy) <= 1 / 64


def test_jobs_on_one_machine_spread_over_its_gpus(tmp_path, monkeypatch):
    monkeypatch.setattr(bslr.engine, "CLAIMS_DIR", tmp_path)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 3)
    (tmp_path / "0-1").touch()  # a live process (pid 1 always exists) holds GPU 0
    (tmp_path / "1-999999999").touch()  # a claim left by a process that is gone
    with claim_gpu() as first, claim_gpu() as second:
        assert (first, second) == (1, 2)
        assert sorted(path.name for path in tmp_path.glob("*-*")) == sorted(
            ["0-1", f"1-{os.getpid()}", f"2-{os.getpid()}"]
        )
        with claim_gpu() as third:
            assert third == 0  # every GPU holds one job: the lowest index takes the next
    assert sorted(path.name for path in tmp_path.glob("*-*")) == ["0-1"]


def test_a_single_visible_gpu_needs_no_claim(tmp_path, monkeypatch):
    monkeypatch.setattr(bslr.engine, "CLAIMS_DIR", tmp_path / "claims")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with claim_gpu() as index:
        assert index == 0
    assert not (tmp_path / "claims").exists()
