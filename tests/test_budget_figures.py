"""The figures of budgets and measures: drawn, and byte-identical when redrawn."""

import hashlib

import numpy as np
import pandas as pd

from bslr.config import validate_config
from bslr.figures import draw, draw_study
from conftest import tiny_config
from test_stats_budgets import measured_runs


def budget_runs() -> pd.DataFrame:
    """The same grid under three budgets; two runs of the target budget censored, one diverged."""
    frames = []
    for name, kind in (("epochs", "epochs"), ("steps", "steps"), ("target", "target")):
        runs = measured_runs(seed=len(frames)).assign(experiment=name, budget=kind, steps=1000, final_train_acc=0.95)
        runs["reached_target"] = pd.array([True if kind == "target" else pd.NA] * len(runs), dtype="boolean")
        frames.append(runs)
    runs = pd.concat(frames, ignore_index=True)
    runs.loc[runs.index[-2:], "reached_target"] = False
    runs.loc[runs.index[-3], "diverged"] = True
    return runs


def digest_of(draw_once, tmp_path) -> list[str]:
    digests = []
    for attempt in range(2):
        pdf, png = tmp_path / f"{attempt}.pdf", tmp_path / f"{attempt}.png"
        draw_once(str(pdf), str(png))
        assert pdf.read_bytes().startswith(b"%PDF") and png.read_bytes().startswith(b"\x89PNG")
        digests.append(hashlib.sha256(pdf.read_bytes() + png.read_bytes()).hexdigest())
    return digests


def test_the_measures_figure_is_drawn_and_identical_when_redrawn(tmp_path):
    settings = validate_config(tiny_config())["figures"]["measures_vs_ratio"]
    runs = measured_runs().assign(fluctuation_se=0.01, weight_norm=np.linspace(1, 2, 25))
    first, second = digest_of(
        lambda pdf, png: draw("measures_vs_ratio", runs, ("e", "d", "mlp"), settings, pdf, png), tmp_path
    )
    assert first == second


def test_the_budgets_figure_is_drawn_and_identical_when_redrawn(tmp_path):
    settings = validate_config(tiny_config())["figures"]["budgets"]
    assert settings["outcomes"] == ["final_test_acc", "final_train_acc", "gap"]
    first, second = digest_of(lambda pdf, png: draw_study("budgets", budget_runs(), settings, pdf, png), tmp_path)
    assert first == second
