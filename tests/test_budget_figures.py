"""The figures of budgets and measures: legible at their printed size, their numbers the statistics', and
byte-identical when redrawn."""

import hashlib

import matplotlib
import pandas as pd
import pytest

from bslr import stats
from bslr.figures import COLUMN, PAGE, SMALL_SIZE, draw, render
from bslr.plan import FIGURE_TABLES, Plan
from conftest import tiny_config
from test_figures import PAGE_HEIGHT, overlapping, texts
from test_stats_budgets import measured_runs

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
    tables = {table: make_tables()[table] for table in FIGURE_TABLES[name]}
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
