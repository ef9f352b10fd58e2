"""Statistics of budgets and measures: measures as outcomes, their power law in lr/B, censored runs left out."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from bslr.stats import SLOPE_COLUMNS, analyse, cell_table, censored_count, measure_slopes
from bslr.tables import markdown_table, paper_tables

BATCH_SIZES, LRS = (16, 32, 64, 128, 256), (0.04, 0.08, 0.12, 0.16, 0.2)


def measured_runs(exponent: float = 1.0, seed: int = 0) -> pd.DataFrame:
    """A 5 x 5 grid whose fluctuation is 3 (lr / B)^exponent times log-normal noise of 5%."""
    rng = np.random.default_rng(seed)
    rows = []
    for batch_size in BATCH_SIZES:
        for lr in LRS:
            rows.append(
                dict(
                    experiment="e",
                    model="mlp",
                    dataset="d",
                    batch_size=batch_size,
                    lr=lr,
                    seed=0,
                    ratio=batch_size / lr,
                    final_test_acc=0.9 - 1e-5 * batch_size / lr + rng.normal(0, 0.01),
                    gap=rng.uniform(),
                    diverged=False,
                    fluctuation=3 * (lr / batch_size) ** exponent * np.exp(rng.normal(0, 0.05)),
                    hessian_trace=np.nan,  # not measured
                )
            )
    return pd.DataFrame(rows)


def hand_hc3(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """Slope of y on x with its 95% HC3 interval (t, n - 2 degrees of freedom), from the definitions."""
    design = np.column_stack([np.ones_like(x), x])
    inverse = np.linalg.inv(design.T @ design)
    coefficients = inverse @ design.T @ y
    residuals = y - design @ coefficients
    leverage = np.einsum("ij,jk,ik->i", design, inverse, design)
    meat = design.T @ np.diag(residuals**2 / (1 - leverage) ** 2) @ design
    se = np.sqrt((inverse @ meat @ inverse)[1, 1])
    half = scipy_stats.t.ppf(0.975, len(x) - 2) * se
    return coefficients[1], coefficients[1] - half, coefficients[1] + half


def test_the_fluctuation_s_exponent_in_lr_over_batch_size_is_a_log_log_ols_with_hc3_intervals():
    runs = measured_runs(exponent=1.0)
    slopes = measure_slopes(cell_table(runs, ["fluctuation"], "exclude"), ["fluctuation"])
    assert list(slopes.columns) == SLOPE_COLUMNS
    row = slopes.iloc[0]
    slope, low, high = hand_hc3(
        np.log(runs["lr"] / runs["batch_size"]).to_numpy(), np.log(runs["fluctuation"]).to_numpy()
    )
    assert (row["slope"], row["slope_low"], row["slope_high"]) == pytest.approx((slope, low, high), rel=1e-10)
    assert row["predicted_slope"] == 1 and row["cells"] == 25 and row["slope"] == pytest.approx(1, abs=0.05)
    t = (slope - 1) / ((high - low) / 2 / scipy_stats.t.ppf(0.975, 23))  # the test of the predicted exponent
    assert row["p_predicted"] == pytest.approx(2 * scipy_stats.t.sf(abs(t), 23), rel=1e-8)
    # fitted apart, learning rate and batch size have opposite exponents when only their ratio counts
    assert row["slope_lr"] == pytest.approx(1, abs=0.05) and row["slope_batch_size"] == pytest.approx(-1, abs=0.05)
    half = measure_slopes(cell_table(measured_runs(exponent=0.5), ["fluctuation"], "exclude"), ["fluctuation"])
    assert half["slope"].iloc[0] == pytest.approx(0.5, abs=0.02) and half["p_predicted"].iloc[0] < 1e-6


def test_measures_are_outcomes_with_the_theory_s_sign_and_an_unmeasured_one_is_left_alone():
    analysis = analyse(measured_runs(), ["final_test_acc", "fluctuation"], ["spearman"], resamples=100)
    ratio = analysis.correlations[(analysis.correlations["group"] == "ratio")].set_index("outcome")
    # the fluctuation rises with lr / B, so it falls with the ratio: the sign the paper predicts for accuracy
    assert ratio.loc["fluctuation", "expected_sign"] == -1 and ratio.loc["fluctuation", "statistic"] < -0.9
    assert analysis.measure_slopes["measure"].tolist() == ["fluctuation"]  # hessian_trace: all NaN, not fitted
    markdown, latex = paper_tables(analysis, 0.05)
    assert all("Measures against learning rate / batch size" in text for text in (markdown, latex))
    assert analysis.measure_slopes["p_zero"].iloc[0] == 1e-16  # the floor, never 0


def test_censored_runs_are_left_out_of_every_test_and_counted():
    runs = measured_runs().assign(reached_target=True)
    censored = runs["batch_size"] == 256  # the largest batch size never reached the target
    runs.loc[censored, "reached_target"] = False
    runs["reached_target"] = runs["reached_target"].astype("boolean")
    analysis = analyse(runs, ["final_test_acc", "fluctuation"], ["spearman"], resamples=100)
    ratio = analysis.correlations[(analysis.correlations["group"] == "ratio")].set_index("outcome")
    assert ratio.loc["final_test_acc", "n"] == 20 and ratio.loc["final_test_acc", "n_dropped"] == 5
    assert analysis.measure_slopes["cells"].iloc[0] == 20
    assert "5 censored (their budget's target not reached): left out of the tests" in markdown_table(analysis, 0.05)
    kept = analyse(runs.drop(columns="reached_target"), ["final_test_acc"], ["spearman"], resamples=100)
    assert kept.correlations.query("group == 'ratio'")["n"].iloc[0] == 25  # no target column, nothing censored


def test_a_diverged_run_is_not_also_counted_as_censored():
    """Files written before the distinction say reached_target false for a run that diverged under a target."""
    runs = measured_runs().assign(reached_target=True)
    runs.loc[0, ["diverged", "reached_target", "final_test_acc"]] = [True, False, np.nan]
    runs.loc[1, "reached_target"] = False
    runs["reached_target"] = runs["reached_target"].astype("boolean")
    assert censored_count(runs) == 1
    analysis = analyse(runs, ["final_test_acc"], ["spearman"], resamples=100, diverged="include")
    note = markdown_table(analysis, 0.05)
    assert "1 censored" in note and "2 censored" not in note


def test_under_include_a_diverged_run_s_missing_measure_stays_missing():
    runs = measured_runs()
    runs.loc[0, ["diverged", "fluctuation", "final_test_acc"]] = [True, np.nan, np.nan]
    cells = cell_table(runs, ["final_test_acc", "fluctuation"], "include")
    first = cells.iloc[0]
    assert first["final_test_acc"] == -np.inf and np.isnan(first["fluctuation"])
