"""The statistics benchmark runs end to end on a small grid (its time is measured, never asserted)."""

import subprocess
import sys

import pandas as pd

from conftest import REPO


def test_stats_benchmark_runs_and_finds_no_zero_p_value(tmp_path):
    command = [sys.executable, str(REPO / "benchmarks/stats_scale.py"), "--grid", "4", "--output-dir", str(tmp_path)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "bslr stats on 64 runs (4 scenarios x 4 batch sizes x 4 learning rates, 8 diverged)" in result.stdout
    assert "no p-value is 0" in result.stdout
    assert len(pd.read_csv(tmp_path / "results/stats/correlations.csv")) == 4 * (4 + 4 + 1) * 3 * 3
