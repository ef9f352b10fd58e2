"""Figures of a batch size x learning rate study, drawn at the size they are printed.

- **Size and type**: each figure has a fixed size (a 3.25 in column or a 6.75 in page by default), text of
  at least 6 pt, and one font shipped with matplotlib (DejaVu Sans) embedded as TrueType, so that the
  output depends on the data alone and PDF checkers accept it (no Type 3 fonts). Tick labels that would
  overlap are thinned in a regular pattern (`fit_tick_labels`), at the printed size.
- **One source of truth**: every number a figure prints (rho, p, n, eta squared) is read from the
  statistics tables, never recomputed. The cells a figure draws are the tables' cells (`stats.cell_table`:
  seed means, under `analysis.diverged`); a cell with a diverged run is marked (a cross in a strip at the
  bottom, a hatched heatmap cell), never drawn as a result. So is a cell with a censored run (its budget's
  target not reached: an open circle, a differently hatched heatmap cell): `grid_cells` leaves its outcomes
  out with `stats.without_censored`, exactly as the statistics do, so no figure draws or counts it.
- **Scale**: batch sizes on log2 axes with a discrete colour key (16 and 32 get different colours), learning
  rates at fixed decimals, iso-ratio lines on heatmaps: legible at 20 x 20 cells and 4 scenarios.
- **Rebuilds**: `save` writes PDF, PNG and the figure's source data (CSV) without timestamps, so a figure
  rebuilt from the same tables is byte-identical.
"""

from __future__ import annotations

import string
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.colors import BoundaryNorm, ListedColormap, to_rgb  # noqa: E402
from matplotlib.figure import Figure, FigureBase  # noqa: E402
from matplotlib.font_manager import FontProperties  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch, Rectangle  # noqa: E402
from matplotlib.text import Text  # noqa: E402
from matplotlib.textpath import TextToPath  # noqa: E402
from matplotlib.ticker import (  # noqa: E402
    FixedLocator,
    Formatter,
    MaxNLocator,
    NullFormatter,
    NullLocator,
    ScalarFormatter,
)
from matplotlib.transforms import ScaledTranslation  # noqa: E402

from bslr import stats  # noqa: E402
from bslr.catalog import FIGURES, display_name  # noqa: E402
from bslr.config import RATIO_NAMES, format_lr  # noqa: E402
from bslr.storage import atomic_path, write_csv  # noqa: E402
from bslr.tables import Markdown  # noqa: E402

Tables = dict[str, pd.DataFrame]
Settings = dict[str, Any]

COLUMN, PAGE = 3.25, 6.75  # inches: one column and the full text width of a two-column paper
TEXT_SIZE, SMALL_SIZE = 7.0, 6.0  # points; nothing is printed smaller than SMALL_SIZE
FONT = "DejaVu Sans"  # shipped with matplotlib: the same glyphs on every host
DIVERGED_COLOUR = "#D55E00"  # Okabe-Ito vermillion, kept for diverged runs
CENSORED_COLOUR = "#CC79A7"  # Okabe-Ito reddish purple, kept for censored runs (target not reached)
ACCENT = "#0072B2"  # Okabe-Ito blue
STRIP = 0.05  # height of the strip of diverged and censored markers, as a fraction of the axes
NUMBERS = Markdown()  # numbers and p-values printed exactly as the Markdown tables print them

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
    "train_acc": "train accuracy",
    "test_acc": "test accuracy",
    "train_loss": "train loss",
    "test_loss": "test loss",
}


def apply_style() -> None:
    """The one place that sets the look: seaborn's paper theme in the shipped font at printed sizes."""
    sns.set_theme(
        context="paper",
        style="ticks",
        font=FONT,
        rc={
            "font.size": TEXT_SIZE,
            "axes.titlesize": TEXT_SIZE,
            "axes.labelsize": TEXT_SIZE,
            "figure.titlesize": TEXT_SIZE,
            "xtick.labelsize": SMALL_SIZE,
            "ytick.labelsize": SMALL_SIZE,
            "legend.fontsize": SMALL_SIZE,
            "legend.title_fontsize": SMALL_SIZE,
            "legend.frameon": False,
            "axes.grid": True,
            "grid.color": "#e6e6e6",
            "grid.linewidth": 0.4,
            "axes.linewidth": 0.6,
            "xtick.major.width": 0.6,
            "ytick.major.width": 0.6,
            "xtick.minor.width": 0.4,
            "ytick.minor.width": 0.4,
            "xtick.major.size": 2.5,
            "ytick.major.size": 2.5,
            "xtick.minor.size": 1.5,
            "ytick.minor.size": 1.5,
            "lines.linewidth": 0.9,
            "lines.markersize": 3,
            "hatch.linewidth": 0.6,
            "mathtext.fontset": "dejavusans",
            "pdf.fonttype": 42,  # TrueType, not Type 3: accepted by NeurIPS, IEEE and ACM checkers
            "ps.fonttype": 42,
            "svg.hashsalt": "bslr",
            "savefig.bbox": "standard",  # the figure keeps its printed size
            "figure.constrained_layout.h_pad": 0.02,
            "figure.constrained_layout.w_pad": 0.02,
        },
    )


def save(figure: Figure, source: pd.DataFrame, pdf: str | Path, png: str | Path, csv: str | Path, dpi: int) -> None:
    """Write PDF, PNG and the source data atomically, without the timestamps that would make rebuilds differ."""
    with atomic_path(pdf) as temporary:
        figure.savefig(
            temporary, format="pdf", dpi=dpi, metadata={"CreationDate": None, "Creator": None, "Producer": None}
        )
    with atomic_path(png) as temporary:
        figure.savefig(temporary, format="png", dpi=dpi, metadata={"Software": None})
    write_csv(source, csv)
    plt.close(figure)


# --- what is drawn: the statistics' cells and numbers ---------------------------------------------------------


def scenario_title(model: str, dataset: str, settings: Settings) -> str:
    """`ResNet-110 on CIFAR-10`: built-in names as printed, a config's own as it declares (`display_names`)."""
    names = settings.get("display_names", {})
    return f"{names.get(model) or display_name(model)} on {names.get(dataset) or display_name(dataset)}"


def scenarios_of(table: pd.DataFrame) -> list[tuple[str, str]]:
    """The (dataset, model) pairs of one experiment's table, in a stable order."""
    return list(table.groupby(["dataset", "model"], sort=True).groups)


def grid_cells(runs: pd.DataFrame, outcome: str, policy: str) -> pd.DataFrame:
    """Every grid cell of `runs`, one row each: the seed mean the statistics use (`stats.cell_table` under
    `policy`, after `stats.without_censored` as in `stats.analyse`), the seeds' standard deviation, whether
    any seed diverged or was censored, and whether the statistics count the cell. Every figure takes its
    cells from here, so a diverged or censored cell has no value in any of them: figures mark it and never
    draw it as a result."""
    censored = pd.Series(stats.censored(runs), index=runs.index)
    runs = stats.without_censored(runs)
    every = stats.divergence_cells(runs).rename(columns={"diverged": "diverged_runs"})
    censored_counts = censored.astype(int).groupby([runs[key] for key in stats.CELL], sort=True).sum()
    every = every.merge(censored_counts.rename("censored_runs").reset_index(), on=stats.CELL)
    used = stats.cell_table(runs, [outcome], policy)[stats.CELL + [outcome]]
    cells = every.merge(used, on=stats.CELL, how="left", indicator=True)
    cells["counted_in_statistics"] = (cells.pop("_merge") == "both") & cells[outcome].notna()
    cells["diverged"] = cells["diverged_runs"] > 0
    cells["censored"] = (cells["censored_runs"] > 0) & ~cells["diverged"]
    finite = stats.with_diverged(runs)
    spread = finite[~finite["diverged"]].groupby(stats.CELL)[outcome].std().rename(f"{outcome}_sd")
    cells = cells.merge(spread.reset_index(), on=stats.CELL, how="left")
    cells.loc[cells["diverged"] | cells["censored"], [outcome, f"{outcome}_sd"]] = np.nan
    return cells.drop(columns="rate")


def ratio_cells(runs: pd.DataFrame, outcome: str, settings: Settings) -> tuple[pd.DataFrame, str]:
    """`grid_cells` of a figure drawn along a ratio (its `x` setting: the paper's `ratio`, or `optimizer_ratio`,
    then a column after `ratio`), and the correlations group whose test it prints: the optimizer's own ratio
    where the statistics test it (`stats.optimizer_ratio_differs`), else the paper's, whose tests it would only
    repeat (SGD's B(1-m)/lr is proportional to B/lr)."""
    cells = grid_cells(runs, outcome, settings["diverged"])
    if settings.get("x", "ratio") == "ratio":
        return cells, "ratio"
    cells.insert(cells.columns.get_loc("ratio") + 1, "optimizer_ratio", stats.cell_optimizer_ratio(runs, cells))
    return cells, "optimizer_ratio" if stats.optimizer_ratio_differs(cells) else "ratio"


def ratio_label(runs: pd.DataFrame, x: str) -> str:
    """The axis label of the ratio `x`: the paper's in words, the optimizer's own by its runs.parquet name
    (B/lr^2 for Adam); a runs table without that name holds plain-SGD runs, whose ratio is B/lr."""
    if x == "ratio":
        return LABELS["ratio"]
    return str(runs["optimizer_ratio_name"].iloc[0]) if "optimizer_ratio_name" in runs else RATIO_NAMES["sgd"]


def primary_method(correlations: pd.DataFrame) -> str:
    """The method of the declared primary analysis, as the statistics table marks it."""
    return str(correlations.loc[correlations["role"] == "primary", "method"].iloc[0])


def correlation_row(
    correlations: pd.DataFrame,
    dataset: str,
    model: str,
    outcome: str,
    method: str | None = None,
    group: str = "ratio",
) -> pd.Series | None:
    """The statistics table's test along a ratio (`group`: bslr.stats.RATIO_GROUPS) of one scenario and outcome
    (primary method unless given)."""
    method = method or primary_method(correlations)
    rows = correlations[
        (correlations["dataset"] == dataset)
        & (correlations["model"] == model)
        & (correlations["group"] == group)
        & (correlations["outcome"] == outcome)
        & (correlations["method"] == method)
    ]
    return rows.iloc[0] if len(rows) else None


def p_text(value: float) -> str:
    text = NUMBERS.p(value)
    return f"p {text}" if text.startswith("<") else f"p = {text}"


def statistic_text(row: pd.Series | None, named: bool = True, interval: bool = False) -> str:
    """`Spearman ρ = −0.934, p < 1e−16, n = 396 cells` from a row of the statistics table, in the tables'
    number format; `ρ = −0.934, p < 1e−16, n = 396` where a panel is narrow; '' without a test."""
    if row is None or not np.isfinite(row["statistic"]):
        return ""
    symbol = NUMBERS.symbol(row["method"])
    text = f"{row['method'].capitalize()} {symbol}" if named else symbol
    text += f" = {NUMBERS.number(row['statistic'])}"
    if interval and np.isfinite(row["ci_low"]):
        text += f" {NUMBERS.interval(row['ci_low'], row['ci_high'])}"
    return f"{text}, {p_text(row['p_value'])}, n = {int(row['n'])}" + (" cells" if named else "")


def with_statistic(cells: pd.DataFrame, row: pd.Series | None) -> pd.DataFrame:
    """Source data with the printed test beside it, so a reader who re-plots has both."""
    columns = ["method", "n", "statistic", "p_value", "ci_low", "ci_high"]
    values = {f"printed_{name}": (row[name] if row is not None else np.nan) for name in columns}
    return cells.assign(**values)


# --- scales, keys and marks ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Key:
    """A discrete colour key: one colour per value, by rank, so that 16 and 32 differ as much as 288 and 304."""

    values: tuple[float, ...]
    colours: tuple[tuple[float, float, float], ...]
    labels: tuple[str, ...]
    title: str

    @classmethod
    def of(cls, values: Sequence[float], palette: str, column: str) -> Key:
        values = tuple(sorted(set(values)))
        colours = tuple(tuple(colour) for colour in sns.color_palette(palette, len(values)))
        labels = tuple(lr_labels(values) if column == "lr" else [str(int(value)) for value in values])
        return cls(values, colours, labels, LABELS[column])

    def colour(self, value: float) -> tuple[float, float, float]:
        return self.colours[int(np.argmin(np.abs(np.asarray(self.values) - value)))]

    def draw(self, figure: FigureBase, axes: Axes | Sequence[Axes], location: str = "right", **options: Any) -> None:
        """A colour bar of equal blocks, one per value, labelled with the values (thinned later if crowded)."""
        count = len(self.values)
        mappable = plt.cm.ScalarMappable(
            BoundaryNorm(np.arange(count + 1) - 0.5, count), ListedColormap(list(self.colours))
        )
        bar = figure.colorbar(mappable, ax=axes, location=location, ticks=np.arange(count), **options)
        bar.set_ticklabels(list(self.labels))
        bar.minorticks_off()
        bar.outline.set_linewidth(0.4)
        bar.ax.tick_params(length=1.5, width=0.4)
        bar.set_label(self.title)


def lr_labels(values: Sequence[float]) -> list[str]:
    """Learning rates at one number of decimals (0.10 and 0.11, never 0.1 beside 0.11)."""
    decimals = max(len(format_lr(value).partition(".")[2]) for value in values)
    return [f"{value:.{decimals}f}" for value in values]


def plain_number(value: float) -> str:
    """Tick labels of log axes as plain numbers (1600, not 1.6×10³)."""
    return f"{value:.0f}" if value >= 1 else f"{value:.2g}"


class Plain(Formatter):
    def __call__(self, value: float, position: int | None = None) -> str:
        return plain_number(value)


def x_axis(axes: Axes, column: str, values: Sequence[float]) -> None:
    """Batch sizes on a log2 axis; learning rates on an axis that follows the grid's spacing (`lr_axis`)."""
    if column == "batch_size":
        batch_size_axis(axes, values)
    else:
        lr_axis(axes, values)


def geometric(values: Sequence[float]) -> bool:
    """Whether a grid's values are spaced more evenly in log than in linear terms, over more than a factor
    of 4 (0.001, 0.01, 0.1, 1: yes; 0.04, 0.08, ..., 0.2: no): such a grid gets a log axis, on which its
    points are as far apart as they were chosen to be."""
    values = np.sort(np.unique(np.asarray(values, dtype=float)))
    if len(values) < 3 or values[0] <= 0 or values[-1] / values[0] <= 4:
        return False

    def unevenness(steps: np.ndarray) -> float:
        return float(np.std(steps) / np.mean(steps))

    return unevenness(np.diff(np.log(values))) < unevenness(np.diff(values))


def batch_size_axis(axes: Axes, values: Sequence[float]) -> None:
    """A log2 x axis: the powers of two of the grid labelled, every batch size a minor tick."""
    values = np.sort(np.unique(values))
    axes.set_xscale("log", base=2)
    axis = axes.xaxis
    powers = [2**k for k in range(int(np.ceil(np.log2(values[0]))), int(np.floor(np.log2(values[-1]))) + 1)]
    axis.set_major_locator(FixedLocator(powers if len(powers) >= 2 else values))
    axis.set_minor_locator(FixedLocator(values))
    axis.set_major_formatter(Plain())
    axis.set_minor_formatter(NullFormatter())


def lr_axis(axes: Axes, values: Sequence[float]) -> None:
    """A learning-rate x axis: log, labelled at the grid's values, where the grid is geometric; else linear
    with a few round ticks, all at one number of decimals."""
    if geometric(values):
        axes.set_xscale("log")
        axes.xaxis.set_major_locator(FixedLocator(np.sort(np.unique(values))))
        axes.xaxis.set_major_formatter(Plain())
        axes.xaxis.set_minor_locator(NullLocator())
        return
    axes.xaxis.set_major_locator(MaxNLocator(nbins=5, steps=[1, 2, 2.5, 5, 10]))
    formatter = ScalarFormatter(useOffset=False)
    formatter.set_scientific(False)
    axes.xaxis.set_major_formatter(formatter)


def ratio_axis(axes: Axes) -> None:
    """A log ratio axis labelled with plain numbers at 1-2-5 steps, 1-3 steps beyond 1.5 decades, or decades
    beyond 3 (then 100, 300, 1000, ... rather than labels that run into each other)."""
    low, high = axes.get_xlim()
    decades = np.log10(high / low)
    steps = (1, 2, 5) if decades <= 1.5 else (1, 3) if decades <= 3 else (1,)
    exponents = range(int(np.floor(np.log10(low))), int(np.ceil(np.log10(high))) + 1)
    ticks = [step * 10.0**exponent for exponent in exponents for step in steps]
    axes.xaxis.set_major_locator(FixedLocator([tick for tick in ticks if low <= tick <= high]))
    axes.xaxis.set_major_formatter(Plain())
    axes.xaxis.set_minor_formatter(NullFormatter())


def mark_not_results(axes: Axes, cells: pd.DataFrame, x: str) -> None:
    """Marks in a strip along the bottom of the axes at the x of each cell that is not a result: a cross
    where a run diverged, an open circle where a run was censored. Seen, never read as a value (a diverged
    run's chance accuracy would stretch the axis and pose as the worst result; a censored run's final
    metrics are not at its target)."""
    diverged, censored = cells.loc[cells["diverged"], x], cells.loc[cells["censored"], x]
    if len(diverged) + len(censored) == 0:
        return
    low, high = axes.get_ylim()
    axes.set_ylim(low - 2.2 * STRIP * (high - low), high)
    marked = np.concatenate([diverged.to_numpy(float), censored.to_numpy(float)])
    left, right = sorted(axes.get_xlim())
    if marked.min() < left or marked.max() > right:  # a row or column of cells without a result: keep it in view
        axes.update_datalim(np.column_stack([marked, np.full(len(marked), low)]), updatey=False)
        axes.autoscale_view(scaley=False)
    strip = {"transform": axes.get_xaxis_transform(), "s": 9, "linewidths": 0.7, "clip_on": False, "zorder": 4}
    if len(diverged):
        axes.scatter(diverged, np.full(len(diverged), STRIP), marker="x", color=DIVERGED_COLOUR, **strip)
    if len(censored):
        axes.scatter(
            censored, np.full(len(censored), STRIP), marker="o", facecolors="none", edgecolors=CENSORED_COLOUR, **strip
        )


def not_result_entries(cells: pd.DataFrame, policy: str) -> list[tuple[Line2D, str]]:
    """The key's entries for the marks `mark_not_results` draws, for the kinds present in `cells`."""
    entries = []
    if cells["diverged"].any():
        how = "left out of the statistics" if policy == "exclude" else "kept in the statistics"
        marker = Line2D([], [], ls="none", marker="x", ms=3, mew=0.7, color=DIVERGED_COLOUR)
        entries.append((marker, f"cell with a diverged run: not a result ({how})"))
    if cells["censored"].any():
        marker = Line2D([], [], ls="none", marker="o", ms=3, mew=0.7, mfc="none", mec=CENSORED_COLOUR)
        entries.append((marker, "cell with a censored run (target not reached): left out"))
    return entries


def key_row(figure: Figure, entries: Sequence[tuple[Any, str]]) -> None:
    """A legend below the panels, where it covers nothing: its entries side by side, or one per line where
    side by side they would be wider than the figure."""
    if not entries:
        return
    handles, labels = zip(*entries, strict=True)
    legend = figure.legend(handles, labels, loc="outside lower center", ncols=len(entries), handlelength=1.5)
    if len(entries) > 1 and legend.get_window_extent(figure.canvas.get_renderer()).width > figure.bbox.width:
        legend.remove()
        figure.legend(handles, labels, loc="outside lower center", ncols=1, handlelength=1.5)


def panel_letter(index: int) -> str:
    """a, b, ..., z, then aa, ab, ...: a figure may hold more than 26 panels (six experiments compared)."""
    letters = string.ascii_lowercase
    if index < len(letters):
        return letters[index]
    return panel_letter(index // len(letters) - 1) + letters[index % len(letters)]


def panel_title(axes: Axes, index: int | None, title: str, note: str = "") -> None:
    """A left-aligned title with its panel letter, and a note (a test's result) on a second, smaller line;
    a panel without a title gets the note on its letter's line."""
    letter = f"({panel_letter(index)}) " if index is not None else ""
    if not title:
        axes.set_title(f"{letter}{note}", loc="left", fontsize=SMALL_SIZE if note else TEXT_SIZE, pad=3)
        return
    axes.set_title(f"{letter}{title}", loc="left", fontsize=TEXT_SIZE, pad=13 if note else 3)
    if note:
        above = axes.transAxes + ScaledTranslation(0, 2 / 72, axes.figure.dpi_scale_trans)
        axes.text(0, 1, note, transform=above, fontsize=SMALL_SIZE, va="bottom", ha="left")


def text_width(text: str, size: float) -> float:
    """Width in points of `text` in the figures' font."""
    return TextToPath().get_text_width_height_descent(text, FontProperties(family=FONT, size=size), ismath=False)[0]


# --- tick labels at the printed size ---------------------------------------------------------------------


class Every(Formatter):
    """Another formatter's labels at the kept positions only."""

    def __init__(self, inner: Formatter, kept: Sequence[float]) -> None:
        self.inner, self.kept = inner, np.asarray(kept, dtype=float)

    def set_locs(self, locs: Sequence[float]) -> None:
        super().set_locs(locs)
        self.inner.set_locs(locs)

    def __call__(self, value: float, position: int | None = None) -> str:
        keep = np.isclose(self.kept, value, rtol=1e-9, atol=0).any()
        return self.inner(value, position) if keep else ""


def shown_tick_labels(axis: Any) -> list[tuple[float, Text]]:
    """(position, label) of the major tick labels an axis prints: inside its view, visible, not empty."""
    low, high = sorted(axis.get_view_interval())
    slack = 1e-9 * max(abs(low), abs(high))
    locations = axis.get_majorticklocs()
    shown = []
    for location, tick in zip(locations, axis.get_major_ticks(len(locations)), strict=True):
        if low - slack <= location <= high + slack:
            shown += [
                (location, label) for label in (tick.label1, tick.label2) if label.get_visible() and label.get_text()
            ]
    return shown


def _labels(axis: Any, renderer: Any) -> list[tuple[float, Any]]:
    """(position, window extent) of the labels an axis prints, in order."""
    return sorted(
        ((location, label.get_window_extent(renderer)) for location, label in shown_tick_labels(axis)),
        key=lambda item: item[0],
    )


def _crowded(boxes: Sequence[Any], horizontal: bool, gap: float) -> bool:
    spans = sorted((box.x0, box.x1) if horizontal else (box.y0, box.y1) for box in boxes)
    return any(second[0] - first[1] < gap for first, second in zip(spans, spans[1:], strict=False))


def fit_tick_labels(figure: Figure) -> None:
    """Keep every k-th tick label of each axis, k as small as leaves 2 pt between neighbours, measured at
    the printed size with the figure laid out."""
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    gap = 2 * figure.dpi / 72
    for axes in figure.get_axes():
        for axis, horizontal in ((axes.xaxis, True), (axes.yaxis, False)):
            labels = _labels(axis, renderer)
            step = 1
            while step < len(labels) and _crowded([box for _, box in labels[::step]], horizontal, gap):
                step += 1
            if step > 1:
                axis.set_major_formatter(Every(axis.get_major_formatter(), [loc for loc, _ in labels[::step]]))


# --- per scenario ---------------------------------------------------------------------------------------------


def _curves(tables: Tables, settings: Settings, x: str, hue: str) -> tuple[Figure, pd.DataFrame]:
    """The outcome against `x`, a line per value of `hue` coloured from a discrete key; several seeds give
    a band of one standard deviation."""
    runs, outcome = tables["runs"], settings["outcome"]
    cells = grid_cells(runs, outcome, settings["diverged"])
    figure, axes = plt.subplots(figsize=(settings["width"], settings["height"]), layout="constrained")
    key = Key.of(cells[hue], settings["palette"], hue)
    draw_lines(axes, cells, outcome, x, hue, key)
    x_axis(axes, x, cells[x])
    axes.set(xlabel=LABELS[x], ylabel=LABELS[outcome])
    mark_not_results(axes, cells, x)
    panel_title(axes, None, scenario_title(runs["model"].iloc[0], runs["dataset"].iloc[0], settings))
    key.draw(figure, axes, fraction=0.05, pad=0.02)
    key_row(figure, not_result_entries(cells, settings["diverged"]))
    return figure, cells


def draw_lines(axes: Axes, cells: pd.DataFrame, outcome: str, x: str, hue: str, key: Key) -> None:
    for value, line in cells.groupby(hue, sort=True):
        line = line.sort_values(x)
        colour = key.colour(value)
        axes.plot(line[x], line[outcome], marker="o", markersize=1.8, linewidth=0.8, color=colour)
        spread = line[f"{outcome}_sd"]
        if spread.notna().any():
            axes.fill_between(
                line[x], line[outcome] - spread, line[outcome] + spread, color=colour, alpha=0.15, linewidth=0
            )


def acc_vs_batch_size(tables: Tables, settings: Settings) -> tuple[Figure, pd.DataFrame]:
    """The paper's Figure 1 (left): the outcome against batch size, a line per learning rate."""
    return _curves(tables, settings, x="batch_size", hue="lr")


def acc_vs_learning_rate(tables: Tables, settings: Settings) -> tuple[Figure, pd.DataFrame]:
    """The paper's Figure 1 (right): the outcome against learning rate, a line per batch size."""
    return _curves(tables, settings, x="lr", hue="batch_size")


def scatter_ratio(
    axes: Axes, cells: pd.DataFrame, outcome: str, key: Key, log_x: bool = True, x: str = "ratio"
) -> None:
    """Cells against a ratio (the column `x`), coloured by batch size; seeds' standard deviation as vertical
    bars."""
    results = cells[cells[outcome].notna()]
    colours = [key.colour(value) for value in results["batch_size"]]
    spread = results[f"{outcome}_sd"]
    if spread.notna().any():
        axes.errorbar(results[x], results[outcome], yerr=spread.fillna(0), fmt="none", ecolor="#b0b0b0", elinewidth=0.4)
    axes.scatter(results[x], results[outcome], c=colours, s=5, linewidths=0, zorder=3)
    if log_x:
        axes.set_xscale("log")
        axes.set_xlim(cells[x].min() / 1.15, cells[x].max() * 1.15)
        ratio_axis(axes)
    mark_not_results(axes, cells, x)


def acc_vs_ratio(tables: Tables, settings: Settings) -> tuple[Figure, pd.DataFrame]:
    """The outcome of every cell against batch size / learning rate (or the optimizer's own ratio: `x`), with
    the statistics' test along it."""
    runs, outcome, x = tables["runs"], settings["outcome"], settings.get("x", "ratio")
    dataset, model = runs["dataset"].iloc[0], runs["model"].iloc[0]
    cells, group = ratio_cells(runs, outcome, settings)
    row = correlation_row(tables["correlations"], dataset, model, outcome, group=group)
    figure, axes = plt.subplots(figsize=(settings["width"], settings["height"]), layout="constrained")
    key = Key.of(cells["batch_size"], settings["palette"], "batch_size")
    scatter_ratio(axes, cells, outcome, key, settings["log_x"], x)
    axes.set(xlabel=ratio_label(runs, x), ylabel=LABELS[outcome])
    panel_title(axes, None, scenario_title(model, dataset, settings), statistic_text(row))
    key.draw(figure, axes, fraction=0.05, pad=0.02)
    key_row(figure, not_result_entries(cells, settings["diverged"]))
    return figure, with_statistic(cells, row)


def train_test_vs_ratio(tables: Tables, settings: Settings) -> tuple[Figure, pd.DataFrame]:
    """What separates optimisation from generalisation: test accuracy, train accuracy and their gap against
    the ratio (or the optimizer's own: `x`), side by side. Where train accuracy falls as steeply as test
    accuracy, large ratios are under-trained in the epoch budget rather than generalising worse."""
    runs, x = tables["runs"], settings.get("x", "ratio")
    dataset, model = runs["dataset"].iloc[0], runs["model"].iloc[0]
    figure, panels = plt.subplots(1, 3, figsize=(settings["width"], settings["height"]), layout="constrained")
    key = Key.of(runs["batch_size"], settings["palette"], "batch_size")
    sources = []
    for index, (axes, outcome) in enumerate(zip(panels, ("final_test_acc", "final_train_acc", "gap"), strict=True)):
        cells, group = ratio_cells(runs, outcome, settings)
        row = correlation_row(tables["correlations"], dataset, model, outcome, group=group)
        scatter_ratio(axes, cells, outcome, key, x=x)
        axes.set(xlabel=ratio_label(runs, x), ylabel=LABELS[outcome])
        panel_title(axes, index, LABELS[outcome].capitalize(), statistic_text(row, named=False))
        source = with_statistic(cells, row).rename(columns={outcome: "value", f"{outcome}_sd": "value_sd"})
        sources.append(source.assign(outcome=outcome))
    method = primary_method(tables["correlations"])
    along = "the ratio" if x == "ratio" else ratio_label(runs, x)
    tested = f": {method.capitalize()} {NUMBERS.symbol(method)} of each outcome with {along}, over cells"
    figure.suptitle(scenario_title(model, dataset, settings) + tested, fontsize=TEXT_SIZE)
    key.draw(figure, panels, fraction=0.03, pad=0.01)
    key_row(figure, not_result_entries(sources[0], settings["diverged"]))
    return figure, pd.concat(sources, ignore_index=True)


def iso_ratio_lines(batch_sizes: np.ndarray, lrs: np.ndarray) -> list[tuple[float, np.ndarray, np.ndarray]]:
    """Up to four ratios that two or more cells of the grid share (the statistics' iso-ratio sets), each as
    the path through those cells' centres in cell coordinates (column: learning rate, row: batch size), so
    that a line joins exactly the cells it names. The largest sets first; of more than four, four spread
    over the range of ratios. None where no two cells share a ratio."""
    sets: dict[float, list[tuple[int, int]]] = {}
    for row, size in enumerate(batch_sizes):
        for column, lr in enumerate(lrs):
            sets.setdefault(stats.ratio_set(size / lr), []).append((column, row))
    shared = {ratio: cells for ratio, cells in sets.items() if len(cells) >= 2}
    largest = sorted(shared, key=lambda ratio: (-len(shared[ratio]), ratio))[:8]
    chosen = sorted(largest)
    if len(chosen) > 4:
        chosen = [chosen[int(round(index))] for index in np.linspace(0, len(chosen) - 1, 4)]
    lines = []
    for ratio in chosen:
        columns, rows = np.array(sorted(shared[ratio]), dtype=float).T
        lines.append((ratio, columns, rows))
    return lines


def heatmap(tables: Tables, settings: Settings) -> tuple[Figure, pd.DataFrame]:
    """The outcome over the batch size x learning rate grid, cell means, with iso-ratio lines; cells with a
    diverged or a censored run hatched, each in its own pattern and colour; values written in the cells
    where they fit at 6 pt."""
    runs, outcome = tables["runs"], settings["outcome"]
    cells = grid_cells(runs, outcome, settings["diverged"])
    batch_sizes, lrs = np.sort(cells["batch_size"].unique()), np.sort(cells["lr"].unique())
    grid = cells.pivot(index="batch_size", columns="lr", values=outcome).reindex(index=batch_sizes, columns=lrs)
    figure, axes = plt.subplots(figsize=(settings["width"], settings["height"]), layout="constrained")
    mesh = axes.pcolormesh(
        np.arange(len(lrs) + 1) - 0.5, np.arange(len(batch_sizes) + 1) - 0.5, grid.to_numpy(), cmap=settings["palette"]
    )
    axes.grid(False)
    marks = {"diverged": (DIVERGED_COLOUR, "xxxx"), "censored": (CENSORED_COLOUR, "////")}
    for kind, (colour, hatch) in marks.items():
        marked = cells[cells[kind]]
        for size, lr in zip(marked["batch_size"], marked["lr"], strict=True):
            row, column = int(np.searchsorted(batch_sizes, size)), int(np.searchsorted(lrs, lr))
            axes.add_patch(
                Rectangle((column - 0.5, row - 0.5), 1, 1, facecolor="white", edgecolor=colour, hatch=hatch, lw=0)
            )
    lines = iso_ratio_lines(batch_sizes, lrs)
    for _, column, row in lines:
        axes.plot(column, row, color="white", lw=1.6, solid_capstyle="butt")
        axes.plot(column, row, color="black", lw=0.6, ls=(0, (3, 2)))
    axes.set_xticks(np.arange(len(lrs)), lr_labels(lrs))
    axes.set_yticks(np.arange(len(batch_sizes)), [str(int(size)) for size in batch_sizes])
    axes.tick_params(length=0)
    axes.set(xlabel=LABELS["lr"], ylabel=LABELS["batch_size"])
    axes.set_xlim(-0.5, len(lrs) - 0.5)
    axes.set_ylim(-0.5, len(batch_sizes) - 0.5)
    panel_title(axes, None, scenario_title(runs["model"].iloc[0], runs["dataset"].iloc[0], settings))
    figure.colorbar(mesh, ax=axes, fraction=0.05, pad=0.02).set_label(LABELS[outcome])
    ratios = ", ".join(plain_number(ratio) for ratio, _, _ in lines)
    entries = (
        [(Line2D([], [], color="black", lw=0.6, ls=(0, (3, 2))), f"equal ratio (B/η = {ratios})")] if lines else []
    )
    if cells["diverged"].any():
        entries.append((Patch(facecolor="white", edgecolor=DIVERGED_COLOUR, hatch="xxxx", lw=0), "diverged run"))
    if cells["censored"].any():
        patch = Patch(facecolor="white", edgecolor=CENSORED_COLOUR, hatch="////", lw=0)
        entries.append((patch, "censored run (target not reached)"))
    key_row(figure, entries)
    figure.canvas.draw()
    rotate_crowded_labels(figure, axes)
    if settings["annotate"]:
        annotate_cells(figure, axes, grid, mesh)
    return figure, cells


def rotate_crowded_labels(figure: Figure, axes: Axes) -> None:
    """Turn the x tick labels upright when side by side they would touch (20 learning rates in a column)."""
    renderer = figure.canvas.get_renderer()
    if _crowded([box for _, box in _labels(axes.xaxis, renderer)], True, 2 * figure.dpi / 72):
        axes.tick_params(axis="x", labelrotation=90)


def annotate_cells(figure: Figure, axes: Axes, grid: pd.DataFrame, mesh: Any) -> None:
    """Each cell's value at 6 pt when every value fits inside its cell; dark text on light cells."""
    box = axes.get_window_extent()
    width, height = box.width * 72 / figure.dpi / grid.shape[1], box.height * 72 / figure.dpi / grid.shape[0]
    texts = {(i, j): NUMBERS.number(value, 2) for (i, j), value in np.ndenumerate(grid.to_numpy())}
    widest = max(text_width(text, SMALL_SIZE) for text in texts.values())
    if widest + 2 > width or height < SMALL_SIZE * 1.4:
        return
    for (i, j), text in texts.items():
        value = grid.to_numpy()[i, j]
        if not np.isfinite(value):
            continue
        background = to_rgb(mesh.cmap(mesh.norm(value)))
        colour = "black" if np.dot(background, (0.299, 0.587, 0.114)) > 0.5 else "white"
        # on a box of the cell's own colour, so that an iso-ratio line through the cell passes behind it
        box = {"facecolor": background, "edgecolor": "none", "pad": 0.6}
        axes.text(j, i, text, ha="center", va="center", fontsize=SMALL_SIZE, color=colour, bbox=box, zorder=5)


def heatmap_gap(tables: Tables, settings: Settings) -> tuple[Figure, pd.DataFrame]:
    """The heatmap of the generalisation gap (train − test accuracy)."""
    return heatmap(tables, settings)


def _pick(values: np.ndarray, wanted: list | None) -> list:
    """The configured values present in the data, or by default the smallest, middle and largest."""
    values = np.sort(np.unique(values))
    if wanted:
        return [value for value in values if any(np.isclose(value, w) for w in wanted)]
    return list(dict.fromkeys([values[0], values[len(values) // 2], values[-1]]))


def curve_axis(epochs: pd.DataFrame) -> str:
    """What the training curves run along: `epoch` under the paper's protocol (an epochs budget, every
    evaluation at the end of an epoch, so one row per epoch), as they always have; `step` (SGD steps)
    otherwise, so that the evaluations within one epoch are distinct points and the runs of a steps budget
    end at one x. A table from before budgets (no `step`) has the paper's protocol."""
    if "step" not in epochs:
        return "epoch"
    if "budget" in epochs and (epochs["budget"] != "epochs").any():
        return "step"
    run = [epochs[key] for key in [*stats.CELL, "seed"]]
    steps, epoch = epochs["step"].astype(int), epochs["epoch"].astype(int)
    per_epoch = (steps // epoch).groupby(run).transform("nunique")  # steps per epoch, if every row ends one
    at_epoch_ends = (steps % epoch == 0) & (per_epoch == 1)
    one_per_epoch = not epochs.duplicated([*stats.CELL, "seed", "epoch"]).any()
    return "epoch" if at_epoch_ends.all() and one_per_epoch else "step"


def training_curves(tables: Tables, settings: Settings) -> tuple[Figure, pd.DataFrame]:
    """Train and test curves of a few runs, side by side: whether the budget let each run converge. Along
    epochs under the paper's protocol, along SGD steps otherwise (`curve_axis`). Colour: learning rate; line
    style: batch size; seeds averaged at each evaluation with a band of one standard deviation across seeds;
    a diverged run's curve stops before its non-finite evaluation, marked with a cross."""
    epochs = tables["epochs"]
    x = curve_axis(epochs)
    batch_sizes = _pick(epochs["batch_size"].to_numpy(), settings["batch_sizes"])
    rates = _pick(epochs["lr"].to_numpy(), settings["learning_rates"])
    chosen = epochs[epochs["batch_size"].isin(batch_sizes) & epochs["lr"].isin(rates)]
    chosen = chosen.drop(columns="seconds", errors="ignore")  # wall time: the source data must rebuild identically
    chosen["diverged"] = ~np.isfinite(chosen["train_loss"].astype(float))
    metrics = ("train_acc", "test_acc") if settings["metric"] == "accuracy" else ("train_loss", "test_loss")
    figure, panels = plt.subplots(
        1, 2, figsize=(settings["width"], settings["height"]), sharey=True, layout="constrained"
    )
    colours = dict(zip(rates, sns.color_palette(settings["palette"], len(rates)), strict=True))
    styles = dict(zip(batch_sizes, ["-", "--", ":", "-."] * len(batch_sizes), strict=False))
    for index, (axes, metric) in enumerate(zip(panels, metrics, strict=True)):
        for (size, lr), run in chosen.groupby(["batch_size", "lr"], sort=True):
            finite = run[~run["diverged"]].groupby(x, sort=True)[metric].agg(["mean", "std"])
            axes.plot(finite.index, finite["mean"], styles[size], color=colours[lr], lw=0.9)
            if finite["std"].notna().any():
                low, high = finite["mean"] - finite["std"], finite["mean"] + finite["std"]
                axes.fill_between(finite.index, low, high, color=colours[lr], alpha=0.15, linewidth=0)
            stopped = run.loc[run["diverged"], x]
            if len(stopped) and len(finite):
                axes.plot(finite.index[-1], finite["mean"].iloc[-1], "x", color=DIVERGED_COLOUR, ms=3.5, mew=0.8)
        axes.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=6))
        axes.set(xlabel="epoch" if x == "epoch" else "SGD step", ylabel=settings["metric"] if index == 0 else "")
        panel_title(axes, index, LABELS[metric].capitalize())
    figure.suptitle(scenario_title(epochs["model"].iloc[0], epochs["dataset"].iloc[0], settings), fontsize=TEXT_SIZE)
    figure.legend(
        [Line2D([], [], color=colours[lr], lw=1.2) for lr in rates],
        lr_labels(rates),
        title="learning rate",
        loc="outside right upper",
    )
    figure.legend(
        [Line2D([], [], color="#555555", ls=styles[size], lw=0.9) for size in batch_sizes],
        [str(int(size)) for size in batch_sizes],
        title="batch size",
        loc="outside right lower",
        handlelength=2.5,
    )
    if chosen["diverged"].any():
        key_row(figure, [(Line2D([], [], ls="none", marker="x", color=DIVERGED_COLOUR), "run diverged after this")])
    return figure, chosen


# --- per experiment ---------------------------------------------------------------------------------------------


def panel_grid(count: int, settings: Settings, columns: int = 2) -> tuple[Figure, np.ndarray]:
    """A page-wide grid of `count` panels, `columns` per row, the unused ones removed."""
    columns = min(columns, count)
    rows = -(-count // columns)
    figure, grid = plt.subplots(
        rows,
        columns,
        figsize=(settings["width"], settings["row_height"] * rows + 0.35),
        squeeze=False,
        layout="constrained",
    )
    for axes in grid.flat[count:]:
        axes.remove()
    return figure, grid


def composite(tables: Tables, settings: Settings) -> tuple[Figure, pd.DataFrame]:
    """The paper's Figure 1 for one experiment: a row per scenario; the outcome against batch size (a line per
    learning rate), against learning rate (a line per batch size), and every cell against the ratio with the
    statistics' test. Colours are keyed once per column, above it; rows share their y axis."""
    runs, outcome, policy = tables["runs"], settings["outcome"], settings["diverged"]
    scenarios = scenarios_of(runs)
    figure, grid = plt.subplots(
        len(scenarios),
        3,
        figsize=(settings["width"], settings["row_height"] * len(scenarios) + 0.75),
        squeeze=False,
        sharey="row",
        sharex="col",
        layout="constrained",
    )
    keys = {
        "lr": Key.of(runs["lr"], settings["palette"], "lr"),
        "batch_size": Key.of(runs["batch_size"], settings["palette"], "batch_size"),
    }
    sources = []
    for row, (dataset, model) in enumerate(scenarios):
        scenario = runs[(runs["dataset"] == dataset) & (runs["model"] == model)]
        cells = grid_cells(scenario, outcome, policy)
        test = correlation_row(tables["correlations"], dataset, model, outcome)
        for column, (x, hue) in enumerate((("batch_size", "lr"), ("lr", "batch_size"))):
            axes = grid[row, column]
            draw_lines(axes, cells, outcome, x, hue, keys[hue])
            x_axis(axes, x, cells[x])
        scatter_ratio(grid[row, 2], cells, outcome, keys["batch_size"])
        for axes, x in zip(grid[row], ("batch_size", "lr", "ratio"), strict=True):
            if x != "ratio":  # scatter_ratio marks its own
                mark_not_results(axes, cells, x)
            axes.set(xlabel=LABELS[x] if row == len(scenarios) - 1 else "")
        grid[row, 0].set_ylabel(LABELS[outcome])
        panel_title(grid[row, 0], 3 * row, scenario_title(model, dataset, settings))
        panel_title(grid[row, 1], 3 * row + 1, "")
        panel_title(grid[row, 2], 3 * row + 2, "", statistic_text(test, named=False))
        sources.append(with_statistic(cells, test))
    keys["lr"].draw(figure, grid[:, 0], location="top", aspect=25, pad=0.01)
    keys["batch_size"].draw(figure, grid[:, 1:], location="top", aspect=50, pad=0.01)
    source = pd.concat(sources, ignore_index=True)
    key_row(figure, not_result_entries(source, policy))
    return figure, source


def group_correlations(tables: Tables, settings: Settings) -> tuple[Figure, pd.DataFrame]:
    """The paper's groups in one page: per scenario, the correlation with batch size at each fixed learning
    rate and with learning rate at each fixed batch size, with the tables' 95% intervals as ribbons; filled
    where significant after the configured correction; the ratio test in the scenario's title."""
    table = tables["correlations"]
    method = settings["method"] or primary_method(table)
    outcome = settings["outcome"] or str(table.loc[table["role"] == "primary", "outcome"].iloc[0])
    rows = table[(table["method"] == method) & (table["outcome"] == outcome)]
    if rows.empty:
        raise ValueError(f"the statistics have no {method} test of {outcome}: add it to analysis.methods/outcomes")
    scenarios = scenarios_of(rows)
    columns = min(2, len(scenarios))
    count = -(-len(scenarios) // columns)
    figure = plt.figure(figsize=(settings["width"], settings["row_height"] * count + 0.3), layout="constrained")
    blocks = np.atleast_1d(figure.subfigures(count, columns, wspace=0.04, hspace=0.04)).ravel()
    corrected = f"p_{settings['correction']}"
    symbol = NUMBERS.symbol(method)
    for index, (block, (dataset, model)) in enumerate(zip(blocks, scenarios, strict=False)):
        part = rows[(rows["dataset"] == dataset) & (rows["model"] == model)]
        pair = block.subplots(1, 2, sharey=True)
        for axes, x, fixed in ((pair[0], "batch_size", "lr"), (pair[1], "lr", "batch_size")):
            groups = part[part["x"] == x].copy()
            groups["fixed"] = groups["group"].str.split("=").str[1].astype(float)
            groups = groups.sort_values("fixed")
            axes.fill_between(groups["fixed"], groups["ci_low"], groups["ci_high"], color=ACCENT, alpha=0.18, lw=0)
            axes.plot(groups["fixed"], groups["statistic"], color=ACCENT, lw=0.7)
            significant = groups[corrected] < settings["alpha"]
            axes.scatter(
                groups.loc[significant, "fixed"], groups.loc[significant, "statistic"], s=7, color=ACCENT, zorder=3
            )
            axes.scatter(
                groups.loc[~significant, "fixed"],
                groups.loc[~significant, "statistic"],
                s=7,
                facecolor="white",
                edgecolor=ACCENT,
                linewidths=0.6,
                zorder=3,
            )
            axes.axhline(0, color="black", lw=0.5)
            axes.set_ylim(-1.05, 1.05)
            x_axis(axes, fixed, groups["fixed"])
            axes.set(xlabel=f"fixed {LABELS[fixed]}")
            axes.set_title(f"{symbol} with {LABELS[x]}", fontsize=SMALL_SIZE, pad=2)
        pair[0].set_ylabel(f"{method.capitalize()} {symbol} of\n{LABELS[outcome]}")
        ratio = part[part["group"] == "ratio"]
        note = statistic_text(ratio.iloc[0], named=False, interval=True) if len(ratio) else ""
        block.suptitle(
            f"({string.ascii_lowercase[index]}) {scenario_title(model, dataset, settings)}\nratio: {note}",
            fontsize=SMALL_SIZE,
            x=0.02,
            ha="left",
        )
    name = {"holm": "Holm", "bh": "Benjamini-Hochberg"}[settings["correction"]]
    key_row(
        figure,
        [
            (
                Line2D([], [], ls="none", marker="o", ms=3, color=ACCENT),
                f"significant after {name} at {settings['alpha']:g}",
            ),
            (Line2D([], [], ls="none", marker="o", ms=3, mfc="white", mec=ACCENT), "not significant"),
            (Patch(color=ACCENT, alpha=0.18, lw=0), "95% interval, unadjusted (none below 10 cells)"),
        ],
    )
    return figure, rows.reset_index(drop=True)


def iso_ratio(tables: Tables, settings: Settings) -> tuple[Figure, pd.DataFrame]:
    """Cells sharing a batch size / learning rate ratio, a panel per scenario: each set's cells on one
    vertical line, coloured by batch size, so the spread within a set reads against the trend across sets;
    eta squared (the share of variance the sets explain) from the statistics' iso-ratio table."""
    runs, outcome = tables["runs"], settings["outcome"]
    scenarios = scenarios_of(runs)
    figure, grid = panel_grid(len(scenarios), settings)
    key = Key.of(runs["batch_size"], settings["palette"], "batch_size")
    summary = tables["iso_ratio"]
    sources = []
    for index, (axes, (dataset, model)) in enumerate(zip(grid.flat, scenarios, strict=False)):
        scenario = runs[(runs["dataset"] == dataset) & (runs["model"] == model)]
        cells = grid_cells(scenario, outcome, settings["diverged"])
        cells["ratio_set"] = cells["ratio"].map(stats.ratio_set)
        shared = cells[cells["ratio_set"].map(cells["ratio_set"].value_counts()) >= 2]
        results = shared[shared[outcome].notna()]
        spans = results.groupby("ratio_set")[outcome].agg(["min", "max"])
        axes.vlines(spans.index, spans["min"], spans["max"], color="#9a9a9a", lw=0.6, zorder=1)
        axes.scatter(
            results["ratio"],
            results[outcome],
            c=[key.colour(size) for size in results["batch_size"]],
            s=5,
            linewidths=0,
            zorder=2,
        )
        axes.set_xscale("log")
        axes.set_xlim(cells["ratio"].min() / 1.15, cells["ratio"].max() * 1.15)
        ratio_axis(axes)
        mark_not_results(axes, shared, "ratio")
        axes.set(xlabel=LABELS["ratio"], ylabel=LABELS[outcome])
        if shared.empty:  # a grid whose two axes step by different factors (log spaced, say) may share none
            axes.set_yticks([])
            axes.text(
                0.5,
                0.5,
                "no two cells of this grid share a ratio:\nspace batch sizes and learning rates alike to test it",
                transform=axes.transAxes,
                ha="center",
                va="center",
                fontsize=SMALL_SIZE,
                color="#555555",
            )
        row = summary[
            (summary["dataset"] == dataset)
            & (summary["model"] == model)
            & (summary["outcome"] == outcome)
            & (summary["along"] == "ratio")  # the sets this figure draws
        ]
        note = ""
        if len(row) and np.isfinite(row["eta_squared"].iloc[0]):
            first = row.iloc[0]
            # eta squared against its chance value; with seeds, the within-set spread against seed noise
            eta, chance = (NUMBERS.number(first[name], 2) for name in ("eta_squared", "eta_squared_chance"))
            note = f"η² = {eta} (chance {chance}, p = {NUMBERS.p(first['p_permutation'])}), "
            if np.isfinite(first["p_invariance"]):
                note += f"within sets vs seeds p = {NUMBERS.p(first['p_invariance'])}"
            else:
                note += f"{int(first['ratio_sets'])} sets of {int(first['cells'])} cells"
        panel_title(axes, index, scenario_title(model, dataset, settings), note)
        sources.append(shared)
    # the last column's panels that hold a scenario (an odd count leaves the last row's second one removed)
    column = [axes for axes in grid[:, -1] if axes.figure is figure]
    key.draw(figure, column if len(scenarios) > 1 else grid[0, 0], fraction=0.04, pad=0.02)
    source = pd.concat(sources, ignore_index=True)
    key_row(figure, not_result_entries(source, settings["diverged"]))
    return figure, source


def select(tables: Tables, scenario: tuple[str, str | None, str | None]) -> Tables:
    """Each table's rows of one experiment, or of one (experiment, dataset, model); every row where the
    experiment is None (a figure of the whole config, scope `study`)."""
    experiment, dataset, model = scenario
    selected = {}
    for name, table in tables.items():
        rows = table if experiment is None else table[table["experiment"] == experiment]
        if dataset is not None:
            rows = rows[(rows["dataset"] == dataset) & (rows["model"] == model)]
        if rows.empty:
            raise ValueError(f"{name} table has no rows of experiment {experiment}, dataset {dataset}, model {model}")
        selected[name] = rows.reset_index(drop=True)
    return selected


def render(
    name: str, tables: Tables, scenario: tuple[str, str | None, str | None], settings: Settings
) -> tuple[Figure, pd.DataFrame]:
    """Figure `name` of one experiment or scenario, laid out at its printed size, and its source data."""
    apply_style()
    figure, source = DRAWERS[name](select(tables, scenario), settings)
    fit_tick_labels(figure)
    figure.canvas.draw()
    figure.set_layout_engine("none")  # what is saved is the layout just checked, in PDF and PNG alike
    return figure, source


def draw(
    name: str,
    tables: Tables,
    scenario: tuple[str, str | None, str | None],
    settings: Settings,
    outputs: dict[str, str | Path],
) -> None:
    """Draw figure `name` to outputs["pdf"], outputs["png"] and its source data to outputs["csv"]."""
    figure, source = render(name, tables, scenario, settings)
    save(figure, source, outputs["pdf"], outputs["png"], outputs["csv"], settings["dpi"])


# --- budgets and measures (issue 14) ------------------------------------------------------------------------

MEASURE_LABELS = {
    "hessian_trace": "Hessian trace",
    "hessian_top": "top Hessian eigenvalue",
    "covariance_trace": "gradient covariance trace",
    "noise_scale": "gradient noise scale",
    "fluctuation": "weight fluctuation",
    "fluctuation_local": "fluctuation, running mean",
    "weight_norm": "weight norm",
    "init_distance": "distance from initialisation",
}


def log_y_axis(axes: Axes) -> None:
    """A log y axis labelled with plain numbers at 1-2-5 steps (every digit where that leaves fewer than two)."""
    low, high = axes.get_ylim()
    exponents = range(int(np.floor(np.log10(low))), int(np.ceil(np.log10(high))) + 1)
    for steps in ((1,), (1, 2, 5), tuple(range(1, 10))):
        ticks = [step * 10.0**exponent for exponent in exponents for step in steps]
        ticks = [tick for tick in ticks if low <= tick <= high]
        if len(ticks) >= 2:
            break
    axes.yaxis.set_major_locator(FixedLocator(ticks))
    axes.yaxis.set_major_formatter(Plain())
    axes.yaxis.set_minor_formatter(NullFormatter())


def measures_vs_ratio(tables: Tables, settings: Settings) -> tuple[Figure, pd.DataFrame]:
    """Each measured quantity of one scenario against batch size / learning rate, log-log, over cells (seed
    means, censored runs left out by `grid_cells` as the statistics leave them), with the power law the
    statistics fitted (`measure_slopes.csv`) as a line through the cells' centre of logs, its exponent in lr/B
    printed."""
    runs = tables["runs"]
    slopes = tables["measure_slopes"].set_index("measure")
    dataset, model = runs["dataset"].iloc[0], runs["model"].iloc[0]
    measured = [name for name in MEASURE_LABELS if name in slopes.index and np.isfinite(slopes.loc[name, "slope"])]
    figure, grid = panel_grid(max(len(measured), 1), settings, columns=3)
    key = Key.of(runs["batch_size"], settings["palette"], "batch_size")
    sources = []
    for index, (axes, name) in enumerate(zip(grid.flat, measured, strict=False)):
        cells = grid_cells(runs, name, settings["diverged"])
        shown = cells[cells[name] > 0]
        axes.scatter(
            shown["ratio"], shown[name], c=[key.colour(b) for b in shown["batch_size"]], s=5, linewidths=0, zorder=3
        )
        fit = slopes.loc[name]
        centre_x, centre_y = np.log(shown["ratio"]).mean(), np.log(shown[name]).mean()
        ratios = np.geomspace(shown["ratio"].min(), shown["ratio"].max(), 20)
        axes.plot(ratios, np.exp(centre_y - fit["slope"] * (np.log(ratios) - centre_x)), color="black", lw=0.6)
        axes.set_xscale("log")
        axes.set_yscale("log")
        axes.set_xlim(cells["ratio"].min() / 1.15, cells["ratio"].max() * 1.15)
        ratio_axis(axes)
        log_y_axis(axes)
        axes.set(xlabel=LABELS["ratio"] if index >= len(measured) - 3 else "")
        exponent = f"{NUMBERS.number(fit['slope'], 2)} {NUMBERS.interval(fit['slope_low'], fit['slope_high'])}"
        panel_title(axes, index, MEASURE_LABELS[name], f"lr/B exponent {exponent}")
        printed = {f"printed_{column}": fit[column] for column in ("slope", "slope_low", "slope_high", "p_predicted")}
        source = cells.rename(columns={name: "value", f"{name}_sd": "value_sd"}).assign(measure=name, **printed)
        sources.append(source)
    if not measured:
        grid.flat[0].text(0.5, 0.5, "nothing measured", ha="center", va="center", transform=grid.flat[0].transAxes)
    figure.suptitle(f"{scenario_title(model, dataset, settings)}: the measures against the ratio", fontsize=TEXT_SIZE)
    key.draw(figure, list(grid.flat[: max(len(measured), 1)]), fraction=0.03, pad=0.01)
    return figure, pd.concat(sources, ignore_index=True) if sources else pd.DataFrame()


def budgets(tables: Tables, settings: Settings) -> tuple[Figure, pd.DataFrame]:
    """The scenarios two experiments share, under each experiment's budget side by side: a column per
    experiment, a row per scenario and outcome, every cell against the ratio with the statistics' ratio test
    (primary method). Censored runs (their target not reached) are not results, as in the statistics: marked
    by `grid_cells` and `scatter_ratio` like diverged ones, never drawn."""
    runs, correlations = tables["runs"], tables["correlations"]
    shared = runs.groupby(["dataset", "model"])["experiment"].nunique()
    scenarios = sorted(shared[shared > 1].index)
    experiments = sorted(runs["experiment"].unique())
    rows = [(scenario, outcome) for scenario in scenarios for outcome in settings["outcomes"]]
    figure, grid = plt.subplots(
        len(rows),
        len(experiments),
        figsize=(settings["width"], settings["row_height"] * len(rows) + 0.5),
        squeeze=False,
        sharex=True,
        layout="constrained",
    )
    key = Key.of(runs["batch_size"], settings["palette"], "batch_size")
    sources = []
    for row, ((dataset, model), outcome) in enumerate(rows):  # each panel its own y range: budgets differ
        for column, experiment in enumerate(experiments):
            axes = grid[row, column]
            members = runs[(runs["experiment"] == experiment) & (runs["dataset"] == dataset) & (runs["model"] == model)]
            test = correlation_row(correlations[correlations["experiment"] == experiment], dataset, model, outcome)
            cells = grid_cells(members, outcome, settings["diverged"]) if len(members) else pd.DataFrame()
            if len(cells):
                scatter_ratio(axes, cells, outcome, key)
                sources.append(
                    with_statistic(cells, test).rename(columns={outcome: "value", f"{outcome}_sd": "value_sd"})
                )
                sources[-1] = sources[-1].assign(outcome=outcome)
            heading = f"{experiment} ({members['budget'].iloc[0]} budget)" if row == 0 and len(members) else ""
            panel_title(axes, row * len(experiments) + column, heading, statistic_text(test, named=False))
            axes.set(xlabel=LABELS["ratio"] if row == len(rows) - 1 else "")
        grid[row, 0].set_ylabel(f"{scenario_title(model, dataset, settings)}\n{LABELS[outcome]}")
    key.draw(figure, grid, fraction=0.03, pad=0.01)
    source = pd.concat(sources, ignore_index=True) if sources else pd.DataFrame()
    key_row(figure, not_result_entries(source, settings["diverged"]) if len(source) else [])
    return figure, source


# How each figure of the registry (`bslr.catalog.FIGURES`) is drawn: from the tables it reads, of its
# experiment or scenario, and its settings, a figure and the data it shows (its CSV).
DRAWERS: dict[str, Callable[[Tables, Settings], tuple[Figure, pd.DataFrame]]] = {
    "acc_vs_batch_size": acc_vs_batch_size,
    "acc_vs_learning_rate": acc_vs_learning_rate,
    "acc_vs_ratio": acc_vs_ratio,
    "train_test_vs_ratio": train_test_vs_ratio,
    "heatmap": heatmap,
    "heatmap_gap": heatmap_gap,
    "training_curves": training_curves,
    "measures_vs_ratio": measures_vs_ratio,
    "composite": composite,
    "group_correlations": group_correlations,
    "iso_ratio": iso_ratio,
    "budgets": budgets,
}
if DRAWERS.keys() != FIGURES.keys():
    raise ImportError(
        f"bslr.figures.DRAWERS draws {sorted(DRAWERS.keys() ^ FIGURES.keys())} that bslr.catalog.FIGURES does not "
        "register, or the reverse: a figure is declared in both, under one name"
    )
