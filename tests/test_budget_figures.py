"""The figures of budgets and measures: legible at their printed size, their numbers the statistics', and
byte-identical when redrawn."""

import hashlib

import matplotlib
import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import PolyCollection
from matplotlib.colors import to_rgb

from bslr import stats
from bslr.catalog import FIGURES, figure_names
from bslr.figures import (
    CENSORED_COLOUR,
    COLUMN,
    DIVERGED_COLOUR,
    PAGE,
    SMALL_SIZE,
    draw,
    grid_cells,
    render,
)
from bslr.plan import Plan
from conftest import tiny_config
from paper_grid import paper_runs
from test_figures import PAGE_HEIGHT, overlapping, texts
from test_stats_budgets import measured_runs

SCENARIO_FIGURES, EXPERIMENT_FIGURES = figure_names("scenario", "always"), figure_names("experiment")

OUTCOMES = ["final_test_acc", "final_train_acc", "gap"]


def measure_tables() -> dict[str, pd.DataFrame]:
    runs = measured_runs().assign(weight_norm=[1 + 0.01 * index for index in range(25)], hessian_trace=2.0)
    measures = ["fluctuation", "weight_norm", "hessian_trace"]
    return {"runs": runs, "measure_slopes": stats.measure_slopes(stats.cell_table(runs, measures, "exclude"), measures)}


def budget_tables() -> dict[str, pd.DataFrame]:
    """The same grid under three budgets; two runs of the target budget censored, one diverged."""
    frames = []
    for kind in ("epochs", "steps", "target"):
        runs = measured_runs(seed=len(frames)).assign(experiment=kind, budget=kind, steps=1000, final_train_acc=0.95)
        runs["reached_target"] = pd.array([True if kind == "target" else pd.NA] * len(runs), dtype="boolean")
        frames.append(runs)
    runs = pd.concat(frames, ignore_index=True)
    runs.loc[runs.index[-2:], "reached_target"] = False
    runs.loc[runs.index[-3], ["diverged", "final_test_acc", "gap"]] = [True, float("nan"), float("nan")]
    correlations = stats.correlations(stats.without_censored(runs), OUTCOMES, ["spearman"], "exclude")
    return {"runs": runs, "correlations": stats.add_intervals(correlations, runs, 100, 0, "exclude")}


CASES = {
    "measures_vs_ratio": (measure_tables, ("e", "d", "mlp")),
    "budgets": (budget_tables, (None, None, None)),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_legible_at_the_printed_size_and_identical_when_redrawn(name, tmp_path):
    make_tables, scenario = CASES[name]
    settings = Plan(tiny_config()).figure_settings(name)
    made = make_tables()
    tables = {table: made[table] for table in FIGURES[name].tables}
    figure, source = render(name, tables, scenario, settings)
    width, height = figure.get_size_inches()
    assert width == pytest.approx(COLUMN if width < 4 else PAGE) and height <= PAGE_HEIGHT
    found = texts(figure)
    assert {text.get_fontname() for text in found} == {"DejaVu Sans"}
    assert not [text.get_text() for text in found if text.get_fontsize() < SMALL_SIZE]
    renderer = figure.canvas.get_renderer()
    clashes = overlapping([text.get_window_extent(renderer) for text in found])
    assert not clashes, [(found[i].get_text(), found[j].get_text()) for i, j in clashes[:5]]
    matplotlib.pyplot.close(figure)
    assert len(source) and "value" in source
    digests = []
    for attempt in range(2):
        outputs = {extension: tmp_path / f"{attempt}.{extension}" for extension in ("pdf", "png", "csv")}
        draw(name, tables, scenario, settings, outputs)
        digests.append(hashlib.sha256(b"".join(path.read_bytes() for path in outputs.values())).hexdigest())
    assert digests[0] == digests[1]


def test_the_measures_figure_prints_the_statistics_exponent():
    tables = measure_tables()
    figure, source = render(
        "measures_vs_ratio", tables, ("e", "d", "mlp"), Plan(tiny_config()).figure_settings("measures_vs_ratio")
    )
    fit = tables["measure_slopes"].set_index("measure").loc["fluctuation"]
    printed = [text.get_text() for text in texts(figure) if "exponent" in text.get_text()]
    assert any(f"{fit['slope']:.2f}" in text for text in printed)
    assert source.loc[source["measure"] == "fluctuation", "printed_slope"].iloc[0] == fit["slope"]
    matplotlib.pyplot.close(figure)


def test_the_budgets_figure_leaves_censored_runs_out_as_the_statistics_do():
    tables = budget_tables()
    _, source = render("budgets", tables, (None, None, None), Plan(tiny_config()).figure_settings("budgets"))
    target = source[(source["experiment"] == "target") & (source["outcome"] == "final_test_acc")]
    assert target["value"].notna().sum() == 22  # 25 cells, 2 censored, 1 diverged
    matplotlib.pyplot.close("all")


# --- censored runs: left out of every figure as the statistics leave them out, and marked ----------------------


def censored_tables() -> dict[str, pd.DataFrame]:
    """A 5 x 5 grid with two seeds under a target budget: every run at batch size 256 censored (target not
    reached), and the runs at batch sizes 16 and 32, learning rate 0.2 diverged (also not at the target: diverged,
    not censored). Statistics computed as `bslr stats` computes them."""
    runs = paper_runs(
        seeds=(0, 1), batch_sizes=(16, 32, 64, 128, 256), learning_rates=(0.04, 0.08, 0.12, 0.16, 0.2), scenarios=1
    )
    runs["reached_target"] = pd.array((runs["batch_size"] != 256) & ~runs["diverged"], dtype="boolean")
    counted = stats.without_censored(runs)
    correlations = stats.correlations(counted, OUTCOMES, ["spearman"], "exclude")
    return {
        "runs": runs,
        "correlations": stats.add_intervals(correlations, counted, 100, 0, "exclude"),
        "iso_ratio": stats.iso_ratio(counted, OUTCOMES, "exclude"),
    }


def test_grid_cells_leave_censored_runs_out_and_mark_their_cells():
    tables = censored_tables()
    cells = grid_cells(tables["runs"], "final_test_acc", "exclude")
    censored = cells["batch_size"] == 256
    assert cells.loc[censored, ["final_test_acc", "final_test_acc_sd"]].isna().all().all()
    assert not cells.loc[censored, "counted_in_statistics"].any()
    ratio = tables["correlations"].query("group == 'ratio' and outcome == 'final_test_acc'")
    assert cells["counted_in_statistics"].sum() == ratio["n"].iloc[0] == 25 - 5 - 2
    assert cells["censored"].tolist() == censored.tolist() and cells["diverged"].sum() == 2


def test_the_heatmap_neither_draws_nor_counts_censored_runs_and_hatches_their_cells():
    tables = censored_tables()
    settings = Plan(tiny_config()).figure_settings("heatmap")
    figure, source = render("heatmap", {"runs": tables["runs"]}, ("paper", "cifar10", "resnet110"), settings)
    axes = figure.get_axes()[0]
    values = np.ma.masked_invalid(axes.collections[0].get_array()).reshape(5, 5)
    assert values.mask[4].all() and int(values.mask.sum()) == 5 + 2  # batch size 256 (the top row), 2 diverged
    hatches = [(patch.get_hatch(), to_rgb(patch.get_edgecolor())) for patch in axes.patches if patch.get_hatch()]
    assert sorted(hatches) == [("////", to_rgb(CENSORED_COLOUR))] * 5 + [("xxxx", to_rgb(DIVERGED_COLOUR))] * 2
    assert not source.loc[source["censored"], "counted_in_statistics"].any()
    assert "censored run (target not reached)" in [text.get_text() for text in texts(figure)]
    matplotlib.pyplot.close(figure)


@pytest.mark.parametrize(
    "name", sorted(name for name in {*SCENARIO_FIGURES, *EXPERIMENT_FIGURES} if "runs" in FIGURES[name].tables)
)
def test_every_figure_marks_censored_cells_and_never_draws_them(name):
    """Each figure of the runs, at its printed size: no censored cell among its values, a mark and a key
    entry for them, and no text over text."""
    tables = censored_tables()
    settings = Plan(tiny_config()).figure_settings(name)
    scenario = ("paper", None, None) if name in EXPERIMENT_FIGURES else ("paper", "cifar10", "resnet110")
    figure, source = render(name, {table: tables[table] for table in FIGURES[name].tables}, scenario, settings)
    values = [column for column in ("final_test_acc", "gap", "value") if column in source]
    assert source["censored"].any() and source.loc[source["censored"], values].isna().all().all()
    assert not source.loc[source["censored"], "counted_in_statistics"].any()
    found = texts(figure)
    assert any("censored run" in text.get_text() for text in found)
    renderer = figure.canvas.get_renderer()
    boxes = [text.get_window_extent(renderer) for text in found]
    assert all(figure.bbox.contains(box.x0, box.y0) and figure.bbox.contains(box.x1, box.y1) for box in boxes)
    assert not overlapping(boxes)
    if name not in ("heatmap", "heatmap_gap"):  # open circles in the strip at the bottom
        circles = [
            collection
            for axes in figure.get_axes()
            for collection in axes.collections
            if len(collection.get_edgecolor())
            and np.allclose(collection.get_edgecolor()[0, :3], to_rgb(CENSORED_COLOUR))
        ]
        marked = int(source.drop_duplicates(stats.CELL)["censored"].sum())  # iso_ratio: the cells sharing a ratio
        assert circles and all(len(circle.get_offsets()) == marked for circle in circles)
    matplotlib.pyplot.close(figure)


# --- training curves along SGD steps where a run is evaluated more often than once an epoch ----------------------


def curve_epochs(seeds: tuple[int, ...], budget: str, every_epoch: bool = False) -> pd.DataFrame:
    """An epochs.parquet-shaped table on 4,000 examples (250 steps an epoch at batch size 16, 62 at 64), each
    run evaluated every 100 SGD steps up to step 1,000 (or at the end of each of 4 epochs): at batch size 16
    two or three evaluations fall in one epoch. Accuracy rises with the step; seed s adds 0.01 * s."""
    rows = []
    for batch_size in (16, 64):
        per_epoch = 4000 // batch_size
        steps = [per_epoch * epoch for epoch in range(1, 5)] if every_epoch else range(100, 1001, 100)
        for lr in (0.1, 0.2):
            for seed in seeds:
                for step in steps:
                    accuracy = 0.2 + 0.0005 * step * lr / 0.2 + 0.01 * seed
                    rows.append(
                        dict(experiment="e", model="mlp", dataset="mnist1d", batch_size=batch_size, lr=lr, seed=seed)
                        | dict(epoch=-(-step // per_epoch), train_loss=2 - accuracy, train_acc=accuracy)
                        | dict(test_loss=2.1 - accuracy, test_acc=accuracy - 0.02, seconds=1.0)
                        | dict(step=step, samples_seen=step * batch_size, budget=budget)
                    )
    return pd.DataFrame(rows)


def curves(epochs: pd.DataFrame) -> tuple:
    settings = Plan(tiny_config()).figure_settings("training_curves")
    figure, _ = render("training_curves", {"epochs": epochs}, ("e", "mnist1d", "mlp"), settings)
    return figure, figure.get_axes()[0]


@pytest.mark.parametrize("budget", ["steps", "epochs"])
def test_training_curves_run_along_steps_when_evaluated_within_epochs(budget):
    """Every evaluation is a point of its own, and the band is the spread across seeds at that step: never
    the spread of the evaluations that share an epoch."""
    epochs = curve_epochs(seeds=(0, 1), budget=budget)
    figure, train = curves(epochs)
    steps = np.arange(100, 1001, 100)
    lines = train.get_lines()
    assert len(lines) == 4 and all(np.array_equal(line.get_xdata(), steps) for line in lines)
    assert train.get_xlabel() == "SGD step"
    bands = [collection for collection in train.collections if isinstance(collection, PolyCollection)]
    assert len(bands) == 4
    seed_sd = np.std([0.0, 0.01], ddof=1)
    for band in bands:
        vertices = band.get_paths()[0].vertices
        widths = [np.ptp(vertices[np.isclose(vertices[:, 0], step), 1]) for step in steps]
        np.testing.assert_allclose(widths, 2 * seed_sd, rtol=1e-9)
    matplotlib.pyplot.close(figure)
    figure, train = curves(curve_epochs(seeds=(0,), budget=budget))
    assert not [collection for collection in train.collections if isinstance(collection, PolyCollection)]
    matplotlib.pyplot.close(figure)


def test_training_curves_of_the_papers_protocol_stay_along_epochs():
    """An epochs budget evaluated at the end of each epoch: one point per epoch, as the paper draws them; a
    steps budget evaluated at epoch ends is drawn along steps, where its runs all end at one x."""
    figure, train = curves(curve_epochs(seeds=(0, 1), budget="epochs", every_epoch=True))
    assert train.get_xlabel() == "epoch"
    assert all(np.array_equal(line.get_xdata(), [1, 2, 3, 4]) for line in train.get_lines())
    matplotlib.pyplot.close(figure)
    figure, train = curves(curve_epochs(seeds=(0, 1), budget="steps", every_epoch=True))
    assert train.get_xlabel() == "SGD step"
    matplotlib.pyplot.close(figure)
