"""The throughput benchmark runs end to end and writes its contract (speed itself is never asserted)."""

import subprocess
import sys

import pandas as pd

from conftest import REPO

COLUMNS = ["engine", "model", "dataset", "batch_size", "device", "precision", "images_per_s", "step_ms"]


def test_benchmark_writes_both_engines_packing_and_the_grid_projection(tmp_path):
    """The benchmark script as a user runs it (about 30 s on 2 cores: its own process importing torch, then
    four timed configurations of one epoch, each with its warm-up)."""
    output = tmp_path / "throughput.csv"
    command = [
        sys.executable,
        str(REPO / "benchmarks/throughput.py"),
        "--models",
        "mlp",
        "--batch-sizes",
        "256",
        "--epochs",
        "1",
        "--workers",
        "0",
        "--pack",
        "2",
        "--project-grid",
        str(REPO / "config/config.yaml"),
        "--output",
        str(output),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    table = pd.read_csv(output)
    assert list(table.columns[: len(COLUMNS)]) == COLUMNS
    assert table["engine"].tolist() == ["reference", "project", "project", "project"]
    assert table["runs"].tolist() == [1, 1, 2, 2]
    assert table["options"].str.split(" pack").str[0].tolist()[2:] == ["serial", "stacked"]
    assert (table["images_per_s"] > 0).all() and (table["step_ms"] > 0).all()
    # the 40-100-100-10 MLP: forward and weight gradients 2 x 2 x 15,000 multiply-adds, input gradients
    # 2 x 11,000 (none for the first layer, whose input needs no gradient)
    assert table["train_flop_per_image"].iloc[0] == 2 * 2 * 15_000 + 2 * 11_000
    projection = pd.read_csv(tmp_path / "projection.csv")
    assert set(projection["model"]) == {"mlp"} and (projection["gpu_hours"] > 0).all()
    expected_flop = table["train_flop_per_image"].iloc[0] * 4000 * 20 * 25  # 20 epochs x 25 runs
    assert projection["train_eflop"].iloc[0] * 1e18 == expected_flop
    assert "median ratio on mnist1d" in result.stdout and "packing's gain" in result.stdout
