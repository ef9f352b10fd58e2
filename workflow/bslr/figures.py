"""Figures of one scenario (experiment, dataset, model), each drawn from runs.parquet and its settings.

`apply_style` is the one place that sets the look. `save` strips the creation date and software stamps
so that a figure rebuilt from the same table is byte-identical.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.colors import Normalize  # noqa: E402

from bslr.config import format_lr  # noqa: E402
from bslr.stats import correlate  # noqa: E402
from bslr.storage import atomic_path  # noqa: E402

LABELS = {
    "batch_size": "batch size",
    "lr": "learning rate",
    "ratio": "batch size / learning rate",
    "final_test_acc": "final test accuracy",
    "best_test_acc": "best test accuracy",
    "final_train_acc": "final train accuracy",
    "gap": "train − test accuracy",
    "final_test_loss": "final test loss",
    "final_train_loss": "final train loss",
}


def apply_style() -> None:
    """Paper-column style: small serif-free type, light grid, deterministic output."""
    sns.set_theme(context="paper", style="whitegrid", font_scale=0.9)
    plt.rcParams.update({"savefig.bbox": "tight", "savefig.pad_inches": 0.02, "svg.hashsalt": "bslr"})


def save(figure: plt.Figure, pdf: str | Path, png: str | Path, dpi: int) -> None:
    """Write PDF and PNG atomically, without the timestamps that would make rebuilds differ."""
    with atomic_path(pdf) as temporary:
        figure.savefig(
            temporary, format="pdf", dpi=dpi, metadata={"CreationDate": None, "Creator": None, "Producer": None}
        )
    with atomic_path(png) as temporary:
        figure.savefig(temporary, format="png", dpi=dpi, metadata={"Software": None})
    plt.close(figure)


def _title(runs: pd.DataFrame) -> str:
    first = runs.iloc[0]
    return f"{first['model']} on {first['dataset']} ({first['experiment']})"


def _curves(runs: pd.DataFrame, settings: dict[str, Any], x: str, hue: str) -> plt.Figure:
    """Outcome against `x`, one line per value of `hue` coloured on a sequential scale with a colour bar.

    Several seeds at one point are averaged, with their standard deviation as a band.
    """
    outcome = settings["outcome"]
    figure, axes = plt.subplots(figsize=(settings["width"], settings["height"]))
    values = np.sort(runs[hue].unique())
    norm = Normalize(values.min(), values.max()) if len(values) > 1 else Normalize(values[0] - 1, values[0] + 1)
    cmap = plt.get_cmap(settings["palette"])
    for value in values:
        points = runs[runs[hue] == value].groupby(x, sort=True)[outcome].agg(["mean", "std", "count"])
        colour = cmap(norm(value))
        axes.plot(points.index, points["mean"], marker="o", markersize=2.5, linewidth=1, color=colour)
        if (points["count"] > 1).any():
            spread = points["std"].fillna(0)
            axes.fill_between(points.index, points["mean"] - spread, points["mean"] + spread, color=colour, alpha=0.15)
    colourbar = figure.colorbar(plt.cm.ScalarMappable(norm=norm, cmap=cmap), ax=axes)
    colourbar.set_label(LABELS[hue])
    axes.set(xlabel=LABELS[x], ylabel=LABELS[outcome], title=_title(runs))
    return figure


def acc_vs_batch_size(runs: pd.DataFrame, settings: dict[str, Any]) -> plt.Figure:
    return _curves(runs, settings, x="batch_size", hue="lr")


def acc_vs_learning_rate(runs: pd.DataFrame, settings: dict[str, Any]) -> plt.Figure:
    return _curves(runs, settings, x="lr", hue="batch_size")


def acc_vs_ratio(runs: pd.DataFrame, settings: dict[str, Any]) -> plt.Figure:
    """Scatter of the outcome against batch size / learning rate, with Spearman's rho in the title."""
    outcome = settings["outcome"]
    figure, axes = plt.subplots(figsize=(settings["width"], settings["height"]))
    norm = Normalize(runs["batch_size"].min(), max(runs["batch_size"].max(), runs["batch_size"].min() + 1))
    points = axes.scatter(
        runs["ratio"], runs[outcome], c=runs["batch_size"], cmap="viridis", norm=norm, s=14, linewidths=0
    )
    figure.colorbar(points, ax=axes).set_label(LABELS["batch_size"])
    if settings["log_x"]:
        axes.set_xscale("log")
    rho, p_value = correlate(runs["ratio"], runs[outcome], "spearman")
    axes.set(xlabel=LABELS["ratio"], ylabel=LABELS[outcome])
    axes.set_title(f"{_title(runs)}\nSpearman ρ = {rho:.3f}, p = {p_value:.2g}, n = {len(runs)}")
    return figure


def heatmap(runs: pd.DataFrame, settings: dict[str, Any]) -> plt.Figure:
    """Outcome over the batch size × learning rate grid (mean over seeds)."""
    outcome = settings["outcome"]
    grid = runs.pivot_table(index="batch_size", columns="lr", values=outcome, aggfunc="mean").sort_index()
    grid.columns = [format_lr(lr) for lr in grid.columns]
    figure, axes = plt.subplots(figsize=(settings["width"], settings["height"]))
    sns.heatmap(
        grid,
        annot=settings["annotate"],
        fmt=".2f",
        annot_kws={"fontsize": 5},
        cmap=settings["palette"],
        cbar_kws={"label": LABELS[outcome]},
        ax=axes,
    )
    axes.invert_yaxis()
    axes.set(xlabel=LABELS["lr"], ylabel=LABELS["batch_size"], title=_title(runs))
    return figure


FIGURES: dict[str, Callable[[pd.DataFrame, dict[str, Any]], plt.Figure]] = {
    "acc_vs_batch_size": acc_vs_batch_size,
    "acc_vs_learning_rate": acc_vs_learning_rate,
    "acc_vs_ratio": acc_vs_ratio,
    "heatmap": heatmap,
}


def draw(
    name: str, runs: pd.DataFrame, scenario: tuple[str, str, str], settings: dict[str, Any], pdf: str, png: str
) -> None:
    """Draw figure `name` for one (experiment, dataset, model) and write it as PDF and PNG."""
    experiment, dataset, model = scenario
    selected = runs[(runs["experiment"] == experiment) & (runs["dataset"] == dataset) & (runs["model"] == model)]
    if selected.empty:
        raise ValueError(f"runs table has no runs of experiment {experiment}, dataset {dataset}, model {model}")
    apply_style()
    save(FIGURES[name](selected.reset_index(drop=True), settings), pdf, png, settings["dpi"])
