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


def heatmap_gap(runs: pd.DataFrame, settings: dict[str, Any]) -> plt.Figure:
    """The heatmap of the generalization gap (train − test accuracy) over the grid."""
    return heatmap(runs, settings)


def _pick(values: np.ndarray, wanted: list | None) -> list:
    """The configured values present in the data, or by default the smallest, middle and largest."""
    values = np.sort(np.unique(values))
    if wanted:
        return [value for value in values if any(np.isclose(value, w) for w in wanted)]
    return list(dict.fromkeys([values[0], values[len(values) // 2], values[-1]]))


def training_curves(epochs: pd.DataFrame, settings: dict[str, Any]) -> plt.Figure:
    """Test accuracy per epoch for a subset of runs: colour by learning rate, line style by batch size."""
    batch_sizes = _pick(epochs["batch_size"].to_numpy(), settings["batch_sizes"])
    rates = _pick(epochs["lr"].to_numpy(), settings["learning_rates"])
    figure, axes = plt.subplots(figsize=(settings["width"], settings["height"]))
    cmap = plt.get_cmap(settings["palette"])
    norm = Normalize(min(rates), max(rates)) if len(rates) > 1 else Normalize(rates[0] - 1, rates[0] + 1)
    styles = ["-", "--", ":", "-."]
    for style_index, batch_size in enumerate(batch_sizes):
        for lr in rates:
            run = epochs[(epochs["batch_size"] == batch_size) & (epochs["lr"] == lr)]
            curve = run.groupby("epoch", sort=True)[settings["metric"]].mean()
            axes.plot(
                curve.index,
                curve.to_numpy(),
                styles[style_index % len(styles)],
                color=cmap(norm(lr)),
                lw=1,
                label=f"B={int(batch_size)}, η={format_lr(lr)}",
            )
    axes.legend(fontsize=5, ncol=len(batch_sizes), frameon=False)
    axes.set(xlabel="epoch", ylabel=settings["metric"].replace("_", " "), title=_title(epochs))
    return figure


FIGURES: dict[str, Callable[[pd.DataFrame, dict[str, Any]], plt.Figure]] = {
    "acc_vs_batch_size": acc_vs_batch_size,
    "acc_vs_learning_rate": acc_vs_learning_rate,
    "acc_vs_ratio": acc_vs_ratio,
    "heatmap": heatmap,
    "heatmap_gap": heatmap_gap,
    "training_curves": training_curves,
}


def composite(runs: pd.DataFrame, settings: dict[str, Any]) -> plt.Figure:
    """The paper's Figure 1 for one experiment: a row per scenario; accuracy against batch size (a curve
    per learning rate), against learning rate (a curve per batch size), each column on one colour scale
    shared by all rows, and against the ratio with Spearman's rho (over seed means) in each panel."""
    scenarios = list(runs.groupby(["dataset", "model"], sort=True).groups)
    figure, grid = plt.subplots(
        len(scenarios),
        3,
        figsize=(settings["width"], settings["row_height"] * len(scenarios) + 0.8),
        squeeze=False,
        layout="constrained",
    )
    cmap = plt.get_cmap(settings["palette"])
    scales = {
        "lr": Normalize(runs["lr"].min(), runs["lr"].max()),
        "batch_size": Normalize(runs["batch_size"].min(), runs["batch_size"].max()),
    }
    for row, (dataset, model) in enumerate(scenarios):
        scenario = runs[(runs["dataset"] == dataset) & (runs["model"] == model)]
        for column, (x, hue) in enumerate((("batch_size", "lr"), ("lr", "batch_size"))):
            axes = grid[row, column]
            for value in np.sort(scenario[hue].unique()):
                points = scenario[scenario[hue] == value].groupby(x, sort=True)[settings["outcome"]].mean()
                axes.plot(
                    points.index, points.to_numpy(), marker="o", markersize=1.5, lw=0.8, color=cmap(scales[hue](value))
                )
            axes.set(xlabel=LABELS[x], ylabel=LABELS[settings["outcome"]] if column == 0 else "")
            axes.set_title(f"{model} on {dataset}", fontsize=7)
        axes = grid[row, 2]
        points = scenario.groupby(["batch_size", "lr"], as_index=False)[settings["outcome"]].mean()
        axes.scatter(
            points["batch_size"] / points["lr"],
            points[settings["outcome"]],
            s=4,
            linewidths=0,
            color=cmap(scales["batch_size"](points["batch_size"])),
        )
        axes.set_xscale("log")
        rho, p_value = correlate(points["batch_size"] / points["lr"], points[settings["outcome"]], "spearman")
        axes.set(xlabel=LABELS["ratio"])
        axes.set_title(f"ρ = {rho:.2f}, p = {p_value:.1g}", fontsize=7)
    for column, hue in enumerate(("lr", "batch_size")):
        bar = figure.colorbar(
            plt.cm.ScalarMappable(norm=scales[hue], cmap=cmap),
            ax=grid[:, column],
            location="top",
            shrink=0.8,
            aspect=30,
        )
        bar.set_label(LABELS[hue])
    return figure


def forest(table: pd.DataFrame, settings: dict[str, Any]) -> plt.Figure:
    """Every group's correlation with its 95% interval, filled where significant after correction."""
    rows = table[(table["method"] == settings["method"]) & (table["outcome"] == settings["outcome"])]
    rows = rows[np.isfinite(rows["statistic"])].reset_index(drop=True)
    significant = rows[f"p_{settings['correction']}"] < settings["alpha"]
    figure, axes = plt.subplots(figsize=(settings["width"], max(2.0, 0.09 * len(rows) + 0.8)))
    positions = np.arange(len(rows))[::-1]
    for flag, colour, label in (
        (True, "#0072B2", f"significant ({settings['correction']})"),
        (False, "#999999", "not significant"),
    ):
        chosen = significant == flag
        # a BCa interval need not contain the estimate: draw only the part on each side of it
        low = (rows["statistic"] - rows["ci_low"]).where(np.isfinite(rows["ci_low"]), 0).clip(lower=0)
        high = (rows["ci_high"] - rows["statistic"]).where(np.isfinite(rows["ci_high"]), 0).clip(lower=0)
        axes.errorbar(
            rows.loc[chosen, "statistic"],
            positions[chosen],
            xerr=[low[chosen], high[chosen]],
            fmt="o",
            markersize=2,
            color=colour,
            elinewidth=0.7,
            label=label,
        )
    axes.axvline(0, color="black", lw=0.6)
    labels = [f"{m}/{d} {g}" for m, d, g in zip(rows["model"], rows["dataset"], rows["group"], strict=True)]
    axes.set_yticks(positions, labels, fontsize=4)
    axes.set(xlabel=f"{settings['method']} correlation with {LABELS[settings['outcome']]}", xlim=(-1.05, 1.05))
    axes.legend(fontsize=5, frameon=False, loc="lower right")
    return figure


def iso_ratio(runs: pd.DataFrame, settings: dict[str, Any]) -> plt.Figure:
    """Runs sharing a batch size / learning rate ratio, a panel per scenario: each set's runs on one
    vertical line (coloured by batch size), so the spread within a set reads against the trend across."""
    scenarios = list(runs.groupby(["dataset", "model"], sort=True).groups)
    figure, grid = plt.subplots(
        1,
        len(scenarios),
        figsize=(settings["width"] * len(scenarios), settings["height"]),
        squeeze=False,
        layout="constrained",
    )
    cmap = plt.get_cmap("viridis")
    norm = Normalize(runs["batch_size"].min(), max(runs["batch_size"].max(), runs["batch_size"].min() + 1))
    for axes, (dataset, model) in zip(grid[0], scenarios, strict=True):
        scenario = runs[(runs["dataset"] == dataset) & (runs["model"] == model)]
        key = scenario["ratio"].map(lambda value: float(f"{value:.9g}"))
        shared = scenario[key.map(key.value_counts()) >= 2]
        for _, members in shared.groupby(key[shared.index]):
            axes.plot(members["ratio"], members[settings["outcome"]], color="#999999", lw=0.6, zorder=1)
        axes.scatter(
            shared["ratio"],
            shared[settings["outcome"]],
            c=shared["batch_size"],
            cmap=cmap,
            norm=norm,
            s=8,
            linewidths=0,
            zorder=2,
        )
        axes.set_xscale("log")
        axes.set(xlabel=LABELS["ratio"], ylabel=LABELS[settings["outcome"]], title=f"{model} on {dataset}")
    figure.colorbar(plt.cm.ScalarMappable(norm=norm, cmap=cmap), ax=grid[0, -1]).set_label(LABELS["batch_size"])
    return figure


EXPERIMENT_FIGURES: dict[str, Callable[[pd.DataFrame, dict[str, Any]], plt.Figure]] = {
    "composite": composite,
    "forest": forest,
    "iso_ratio": iso_ratio,
}


def draw(
    name: str,
    table: pd.DataFrame,
    scenario: tuple[str, str | None, str | None],
    settings: dict[str, Any],
    pdf: str,
    png: str,
) -> None:
    """Draw figure `name` for one experiment, or one (experiment, dataset, model), as PDF and PNG."""
    experiment, dataset, model = scenario
    selected = table[table["experiment"] == experiment]
    if dataset is not None:
        selected = selected[(selected["dataset"] == dataset) & (selected["model"] == model)]
    if selected.empty:
        raise ValueError(f"table has no rows of experiment {experiment}, dataset {dataset}, model {model}")
    apply_style()
    function = FIGURES.get(name) or EXPERIMENT_FIGURES[name]
    save(function(selected.reset_index(drop=True), settings), pdf, png, settings["dpi"])


# --- budgets and measures (issue 14) ------------------------------------------------------------------------

MEASURE_LABELS = {
    "hessian_trace": "Hessian trace",
    "hessian_top": "top Hessian eigenvalue",
    "covariance_trace": "gradient covariance trace",
    "noise_scale": "gradient noise scale",
    "fluctuation": "weight fluctuation",
    "fluctuation_local": "weight fluctuation (running mean)",
    "weight_norm": "weight norm",
    "init_distance": "distance from initialisation",
}
MEASURE_ERRORS = {"hessian_trace": "hessian_trace_se", "covariance_trace": "covariance_trace_se"}
MEASURE_ERRORS |= {"noise_scale": "noise_scale_se", "fluctuation": "fluctuation_se"}


def measures_vs_ratio(runs: pd.DataFrame, settings: dict[str, Any]) -> plt.Figure:
    """Each measured quantity against batch size / learning rate, log-log, a panel each, coloured by batch size,
    with its own standard error as a bar; the power law fitted over cells (`bslr.stats.measure_slopes`) as a
    line, its exponent in learning rate / batch size in the title (the fluctuation's predicted exponent: 1)."""
    from bslr.stats import cell_table, measure_slopes

    measured = [name for name in MEASURE_LABELS if name in runs and np.isfinite(runs[name].astype(float)).any()]
    columns = min(max(len(measured), 1), 4)
    rows = max(-(-len(measured) // columns), 1)
    figure, grid = plt.subplots(
        rows, columns, figsize=(settings["width"] * columns, settings["height"] * rows), layout="constrained"
    )
    grid = np.atleast_1d(grid).ravel()
    for axes in grid[len(measured) :]:
        axes.set_axis_off()
    if not measured:
        grid[0].text(0.5, 0.5, "no measures in this experiment", ha="center", va="center")
        return figure
    slopes = measure_slopes(cell_table(runs, measured, "exclude"), measured).set_index("measure")
    norm = Normalize(runs["batch_size"].min(), max(runs["batch_size"].max(), runs["batch_size"].min() + 1))
    cmap = plt.get_cmap("viridis")
    for axes, name in zip(grid, measured, strict=False):
        shown = runs[np.isfinite(runs[name].astype(float)) & (runs[name].astype(float) > 0)]
        error = shown[MEASURE_ERRORS[name]] if MEASURE_ERRORS.get(name) in shown else None
        axes.errorbar(shown["ratio"], shown[name], yerr=error, fmt="none", ecolor="#bbbbbb", elinewidth=0.6)
        axes.scatter(shown["ratio"], shown[name], c=shown["batch_size"], cmap=cmap, norm=norm, s=10, linewidths=0)
        axes.set_xscale("log")
        axes.set_yscale("log")
        fit, title = slopes.loc[name], MEASURE_LABELS[name]
        if np.isfinite(fit["slope"]):
            ratios = np.geomspace(shown["ratio"].min(), shown["ratio"].max(), 20)
            centre = np.exp(np.log(shown[name]).mean()) * (ratios / np.exp(np.log(shown["ratio"]).mean())) ** (
                -fit["slope"]
            )
            axes.plot(ratios, centre, color="black", lw=0.7)
            title += f"\nexponent in lr/B: {fit['slope']:.2f} [{fit['slope_low']:.2f}, {fit['slope_high']:.2f}]"
        axes.set(xlabel=LABELS["ratio"], ylabel=MEASURE_LABELS[name])
        axes.set_title(title, fontsize=7)
    figure.colorbar(plt.cm.ScalarMappable(norm=norm, cmap=cmap), ax=list(grid)).set_label(LABELS["batch_size"])
    figure.suptitle(_title(runs), fontsize=8)
    return figure


FIGURES["measures_vs_ratio"] = measures_vs_ratio


def budgets(runs: pd.DataFrame, settings: dict[str, Any]) -> plt.Figure:
    """The same scenario under each experiment's budget, side by side: a column per experiment, a row per
    scenario and outcome, the outcome against the ratio over cells (seed means) with Spearman's rho. Censored
    runs (target not reached) are hollow and left out of rho; diverged runs are left out."""
    shared = runs.groupby(["dataset", "model"])["experiment"].nunique()
    scenarios = sorted(shared[shared > 1].index)
    experiments = sorted(runs["experiment"].unique())
    rows = [(scenario, outcome) for scenario in scenarios for outcome in settings["outcomes"]]
    figure, grid = plt.subplots(
        max(len(rows), 1),
        len(experiments),
        figsize=(settings["width"] * len(experiments), settings["height"] * max(len(rows), 1)),
        squeeze=False,
        sharex=True,
        layout="constrained",
    )
    norm = Normalize(runs["batch_size"].min(), max(runs["batch_size"].max(), runs["batch_size"].min() + 1))
    cmap = plt.get_cmap("viridis")
    for row, ((dataset, model), outcome) in enumerate(rows):
        for column, experiment in enumerate(experiments):
            axes = grid[row, column]
            members = runs[(runs["experiment"] == experiment) & (runs["dataset"] == dataset) & (runs["model"] == model)]
            members = members[~members["diverged"].astype(bool)]
            censored = members["reached_target"].eq(False).fillna(False).to_numpy(dtype=bool)
            cells = members[~censored].groupby(["batch_size", "lr"], as_index=False)[outcome].mean()
            lost = members[censored].groupby(["batch_size", "lr"], as_index=False)[outcome].mean()
            colours = cmap(norm(cells["batch_size"]))
            axes.scatter(cells["batch_size"] / cells["lr"], cells[outcome], color=colours, s=10, linewidths=0)
            axes.scatter(
                lost["batch_size"] / lost["lr"],
                lost[outcome],
                facecolors="none",
                edgecolors=cmap(norm(lost["batch_size"])),
                s=10,
                linewidths=0.6,
            )
            axes.set_xscale("log")
            rho, p_value = correlate(cells["batch_size"] / cells["lr"], cells[outcome], "spearman")
            kind = members["budget"].iloc[0] if len(members) else "no runs"
            steps = f", median {members['steps'].median():.0f} steps" if len(members) else ""
            heading = f"{experiment} ({kind}{steps})\n" if row == 0 else ""
            extra = f", {int(censored.sum())} censored" if censored.any() else ""
            axes.set_title(f"{heading}{model} on {dataset}: ρ = {rho:.2f}, p = {p_value:.1g}{extra}", fontsize=6)
            axes.set(
                xlabel=LABELS["ratio"] if row == len(rows) - 1 else "", ylabel=LABELS[outcome] if column == 0 else ""
            )
    figure.colorbar(plt.cm.ScalarMappable(norm=norm, cmap=cmap), ax=grid[:, -1]).set_label(LABELS["batch_size"])
    return figure


STUDY_FIGURES: dict[str, Callable[[pd.DataFrame, dict[str, Any]], plt.Figure]] = {"budgets": budgets}


def draw_study(name: str, table: pd.DataFrame, settings: dict[str, Any], pdf: str, png: str) -> None:
    """Draw a figure of every experiment together (`STUDY_FIGURES`), as PDF and PNG."""
    apply_style()
    save(STUDY_FIGURES[name](table, settings), pdf, png, settings["dpi"])
