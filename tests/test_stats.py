import itertools

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from bslr.errors import ConfigError
from bslr.stats import (
    CORRELATION_COLUMNS,
    MIN_INTERVAL_N,
    MONTE_CARLO_MAX_N,
    RANK_PERMUTATIONS,
    Primary,
    analyse,
    coefficient,
    correlate,
    correlation_test,
    correlations,
)
from bslr.tables import Latex, Markdown, markdown_table, paper_tables
from conftest import enumerated_p, exact_spearman, rank_numerators
from paper_grid import adam_runs, with_optimizer

TESTS = {"pearson": scipy_stats.pearsonr, "spearman": scipy_stats.spearmanr, "kendall": scipy_stats.kendalltau}


def monte_carlo_p(x, y, method: str, resamples: int, seed: int) -> float:
    """Two-sided Monte Carlo permutation p, (b + 1) / (R + 1) per side, from numpy's own shuffles."""
    rank_x, rank_y = scipy_stats.rankdata(x), scipy_stats.rankdata(y)
    shuffled = np.random.default_rng(seed).permuted(np.tile(rank_y, (resamples, 1)), axis=1)
    numerators, observed = rank_numerators(rank_x, shuffled, method), rank_numerators(rank_x, rank_y, method)
    return min(1.0, 2 * (min((numerators >= observed).sum(), (numerators <= observed).sum()) + 1) / (resamples + 1))


def reference(x, y, method: str) -> tuple[float, float, float]:
    """(statistic, p, tolerance of p) under the documented rules, computed apart from bslr. Pearson: scipy's
    t test. Rank methods: every pairing enumerated up to 9 pairs; Kendall without ties, scipy's exact null;
    otherwise an independent Monte Carlo permutation p (numpy's shuffles, another seed, 10^5 pairings), to
    within 5 standard errors of the difference of two such estimates."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    statistic = TESTS[method](x, y).statistic
    untied = len(np.unique(x)) == len(x) and len(np.unique(y)) == len(y)
    if method == "pearson":
        return statistic, TESTS[method](x, y).pvalue, 0.0
    if method == "kendall" and untied and len(x) > 9:
        return statistic, scipy_stats.kendalltau(x, y, method="exact").pvalue, 0.0
    if len(x) <= 9:
        return statistic, enumerated_p(x, y, method), 0.0
    resamples = 100_000
    p_value = monte_carlo_p(x, y, method, resamples, seed=12345)
    one_sided = p_value / 2  # two-sided p = 2 q: each estimate's variance 4 q (1 - q) / R
    return statistic, p_value, 5 * np.sqrt(2 * 4 * one_sided * (1 - one_sided) / resamples) + 2 / (resamples + 1)


def synthetic_runs(seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for model in ("mlp", "cnn1d"):
        for batch_size in (16, 32, 48, 64):
            for lr in (0.05, 0.1, 0.15):
                accuracy = 0.9 - 0.001 * batch_size / lr * 0.01 + rng.normal(0, 0.01)
                rows.append(
                    dict(
                        experiment="e",
                        model=model,
                        dataset="d",
                        batch_size=batch_size,
                        lr=lr,
                        seed=0,
                        ratio=batch_size / lr,
                        final_test_acc=accuracy,
                        gap=rng.uniform(),
                    )
                )
    return pd.DataFrame(rows)


def test_groups_follow_the_paper():
    table = correlations(synthetic_runs(), ["final_test_acc"], ["pearson", "spearman"])
    assert list(table.columns)[: len(CORRELATION_COLUMNS)] == CORRELATION_COLUMNS
    groups = table[(table["model"] == "mlp") & (table["method"] == "spearman")]
    assert groups["group"].tolist() == ["lr=0.05", "lr=0.1", "lr=0.15", "bs=16", "bs=32", "bs=48", "bs=64", "ratio"]
    assert groups["x"].tolist() == ["batch_size"] * 3 + ["lr"] * 4 + ["ratio"]
    assert groups["n"].tolist() == [4, 4, 4, 3, 3, 3, 3, 12]
    # 2 scenarios x (3 + 4 + 1) groups x 1 outcome x 2 methods
    assert len(table) == 32


def test_every_row_equals_scipy():
    runs = synthetic_runs()
    table = correlations(runs, ["final_test_acc", "gap"], ["pearson", "spearman", "kendall"])
    for row in table.itertuples():
        members = runs[runs["model"] == row.model]
        if row.group.startswith("lr="):
            members = members[members["lr"] == float(row.group[3:])]
        elif row.group.startswith("bs="):
            members = members[members["batch_size"] == int(row.group[3:])]
        statistic, p_value, tolerance = reference(members[row.x], members[row.outcome], row.method)
        assert row.statistic == pytest.approx(statistic, abs=1e-12)
        assert row.p_value == pytest.approx(p_value, rel=1e-9, abs=max(tolerance, 1e-300))


def test_hand_computed_case():
    # y falls exactly as x rises: r = rho = -1; for x = 1..4 against 1, 2, 3, 5 Pearson r = 0.9827.
    assert correlate([1, 2, 3, 4], [4, 3, 2, 1], "spearman")[0] == pytest.approx(-1)
    assert correlate([1, 2, 3, 4], [1, 2, 3, 5], "pearson")[0] == pytest.approx(0.98270762, abs=1e-8)


def test_undefined_tests_give_nan():
    assert np.isnan(correlate([1, 2], [2, 1], "pearson")[0])
    assert all(np.isnan(correlate([1, 2, 3], [0.5, 0.5, 0.5], "spearman")))
    assert correlate([1, 2, 3, np.nan], [1, 2, 3, 4], "spearman")[0] == pytest.approx(1)


def test_markdown_lists_every_group():
    text = markdown_table(analyse(synthetic_runs(), ["final_test_acc"], ["pearson", "spearman"], resamples=100), 0.05)
    assert text.startswith("# Correlations") and "## e: mlp on d, final_test_acc (primary outcome)" in text
    assert "| group | x | n | pearson statistic | pearson 95% CI | pearson p | pearson p (Holm) | spearman" in text
    assert text.count("| ratio | ratio | 12 |") == 2


def test_paper_grid_has_164_groups():
    from bslr.config import load_config_file
    from bslr.plan import expand_grid
    from conftest import REPO

    config = load_config_file(REPO / "config" / "paper.yaml")
    runs = pd.DataFrame([vars(run) for run in expand_grid(config)])
    runs["ratio"] = runs["batch_size"] / runs["lr"]
    runs["final_test_acc"] = 1 / runs["ratio"]
    table = correlations(runs, ["final_test_acc"], ["spearman"])
    assert len(table) == 164 == 4 * (20 + 20 + 1)
    assert table.groupby(["model", "dataset"]).size().tolist() == [41] * 4
    assert (table.loc[table["group"] == "ratio", "statistic"] == -1).all()


def test_diverged_runs_follow_the_policy():
    runs = synthetic_runs()
    runs["diverged"] = runs["lr"] == 0.15
    runs["final_test_acc"] = runs["final_test_acc"].where(~runs["diverged"], 0.1)  # chance, as a diverged run ends
    excluded = correlations(runs, ["final_test_acc"], ["spearman"], diverged="exclude")
    included = correlations(runs, ["final_test_acc"], ["spearman"], diverged="include")

    def ratio_n(table):
        return table.loc[(table["group"] == "ratio") & (table["model"] == "mlp"), "n"].item()

    assert ratio_n(excluded) == 8 and ratio_n(included) == 12
    assert "lr=0.15" not in set(excluded["group"]) and "lr=0.15" in set(included["group"])
    text = markdown_table(analyse(runs, ["final_test_acc"], ["spearman"], resamples=100), 0.05)
    assert "12 runs; 4 diverged, cells with any diverged seed excluded from the tests" in text


def test_holm_and_benjamini_hochberg_by_hand():
    from bslr.stats import benjamini_hochberg, holm

    p_values = np.array([0.01, 0.04, 0.03, np.nan, 0.005])
    # Holm: sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1, kept monotone
    np.testing.assert_allclose(holm(p_values), [0.03, 0.06, 0.06, np.nan, 0.02])
    # BH: p * m / rank, monotone from the top: 0.04*4/4, 0.03*4/3, 0.01*4/2, 0.005*4/1
    np.testing.assert_allclose(benjamini_hochberg(p_values), [0.02, 0.04, 0.04, np.nan, 0.02])


def test_corrections_are_made_within_each_family():
    table = correlations(synthetic_runs(), ["final_test_acc", "gap"], ["spearman", "pearson"])
    for _, family in table.groupby(["outcome", "method", "family"]):
        tested = family[np.isfinite(family["p_value"])]
        assert (tested["p_holm"] >= tested["p_value"]).all() and (tested["p_bh"] >= tested["p_value"]).all()
        smallest = tested["p_value"].idxmin()
        assert tested.loc[smallest, "p_holm"] == pytest.approx(min(1, tested.loc[smallest, "p_value"] * len(tested)))
    assert set(table.loc[table["x"] == "lr", "expected_sign"]) == {1, -1}  # accuracy +, gap -


def step_down_holm(p_values: list[float]) -> list[float]:
    """Holm (1979) by its definition: the k-th smallest p times (m - k + 1), running maximum, capped at 1."""
    order = sorted(range(len(p_values)), key=lambda index: p_values[index])
    adjusted, running = [0.0] * len(p_values), 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[index]))
        adjusted[index] = running
    return adjusted


def test_the_ratio_tests_are_their_own_holm_family_apart_from_the_per_group_tests():
    """The headline's family is the ratio test of each scenario; the lr= and bs= groups are another, so the
    ratio test's Holm p is not multiplied by the group count."""
    table = correlations(synthetic_runs(), ["final_test_acc"], ["spearman"])
    ratio, groups = table[table["group"] == "ratio"], table[table["group"] != "ratio"]
    assert set(ratio["family"]) == {"ratio"} and set(groups["family"]) == {"groups"}
    assert len(ratio) == 2 and len(groups) == 14  # 2 scenarios; 3 learning rates + 4 batch sizes each
    for family in (ratio, groups):
        tested = family[np.isfinite(family["p_value"])]
        np.testing.assert_allclose(tested["p_holm"], step_down_holm(tested["p_value"].tolist()), rtol=1e-12)


def test_bootstrap_interval_is_seeded_and_covers_the_estimate():
    from bslr.stats import bootstrap_interval

    rng = np.random.default_rng(1)
    x = rng.normal(size=60)
    y = -x + rng.normal(scale=0.5, size=60)
    first = bootstrap_interval(x, y, "spearman", 500, seed=3)
    assert first == bootstrap_interval(x, y, "spearman", 500, seed=3)
    rho = scipy_stats.spearmanr(x, y).statistic
    assert first[0] < rho < first[1] < 0


def test_granulated_kendall_averages_tau_per_axis():
    from bslr.stats import granulated_kendall

    runs = synthetic_runs()
    psi = granulated_kendall(runs, ["final_test_acc"]).set_index("model").loc["mlp"]
    mlp = runs[runs["model"] == "mlp"]
    by_lr = [scipy_stats.kendalltau(g["batch_size"], g["final_test_acc"]).statistic for _, g in mlp.groupby("lr")]
    by_bs = [-scipy_stats.kendalltau(g["lr"], g["final_test_acc"]).statistic for _, g in mlp.groupby("batch_size")]
    assert psi["psi_batch_size"] == pytest.approx(np.mean(by_lr))
    assert psi["psi_learning_rate"] == pytest.approx(np.mean(by_bs))
    assert psi["psi"] == pytest.approx((np.mean(by_lr) + np.mean(by_bs)) / 2)


def test_iso_ratio_separates_within_from_between_sets():
    from bslr.stats import iso_ratio

    rows = []
    for batch_size, lr in [(16, 0.01), (32, 0.02), (64, 0.04), (16, 0.02), (32, 0.04), (64, 0.08), (16, 0.04)]:
        ratio = batch_size / lr
        rows.append(
            dict(
                experiment="e",
                model="m",
                dataset="d",
                batch_size=batch_size,
                lr=lr,
                ratio=ratio,
                final_test_acc=1 - ratio / 10000 + (0.001 if batch_size == 32 else 0),
            )
        )
    result = iso_ratio(pd.DataFrame(rows).assign(seed=0), ["final_test_acc"]).iloc[0]
    assert result["ratio_sets"] == 2 and result["cells"] == 6  # 1600 and 800; the lone 400 does not count
    assert result["within_sd"] < result["between_sd"] and result["eta_squared"] > 0.9
    assert np.isnan(result["seed_sd"])  # one seed: no noise floor to read within_sd against


def default_grid_runs(accuracy, seeds=(0,), noise: float = 0.0, rng_seed: int = 0) -> pd.DataFrame:
    """The default study's 5 x 5 grid (batch sizes doubling, learning rates evenly spaced: 13 cells share a
    ratio, in 5 sets), one row per run."""
    rng = np.random.default_rng(rng_seed)
    rows = [
        dict(experiment="e", model="m", dataset="d", batch_size=batch_size, lr=lr, seed=seed, diverged=False)
        | dict(ratio=batch_size / lr, final_test_acc=accuracy(batch_size, lr) + rng.normal(0, noise))
        for batch_size in (16, 32, 64, 128, 256)
        for lr in (0.04, 0.08, 0.12, 0.16, 0.2)
        for seed in seeds
    ]
    return pd.DataFrame(rows)


def test_iso_ratio_eta_squared_is_read_against_chance_and_invariance_against_the_seeds():
    """Known truths, simulated: under pure noise eta squared averages (k - 1) / (N - 1) and its permutation
    p is uniform; an outcome of batch size alone gives eta squared far above chance (the sets differ) yet
    fails the invariance test against seed noise, which a ratio-only outcome passes."""
    from bslr.stats import iso_ratio

    rng = np.random.default_rng(0)
    noise = [
        iso_ratio(
            default_grid_runs(lambda b, lr: 0.0, noise=1.0, rng_seed=draw), ["final_test_acc"], "exclude", 199, draw
        )
        for draw in rng.integers(0, 2**31, size=250)
    ]
    etas, p_values = (
        np.array([row["eta_squared"].iloc[0] for row in noise]),
        np.array([row["p_permutation"].iloc[0] for row in noise]),
    )
    assert noise[0]["ratio_sets"].iloc[0] == 5 and noise[0]["cells"].iloc[0] == 13
    assert noise[0]["eta_squared_chance"].iloc[0] == pytest.approx(4 / 12)
    assert etas.mean() == pytest.approx(4 / 12, abs=0.03)  # the mean of 250 draws: standard error 0.01
    assert 0.02 <= (p_values <= 0.05).mean() <= 0.09  # a valid test: about 5% (binomial SD 1.4%)
    by_batch_size = iso_ratio(
        default_grid_runs(lambda b, lr: -0.01 * np.log2(b), (0, 1, 2), 0.002), ["final_test_acc"]
    ).iloc[0]
    by_ratio = iso_ratio(
        default_grid_runs(lambda b, lr: -0.01 * np.log2(b / lr), (0, 1, 2), 0.002), ["final_test_acc"]
    ).iloc[0]
    assert by_batch_size["eta_squared"] > 0.6 and by_batch_size["p_permutation"] < 0.1
    assert by_batch_size["p_invariance"] < 1e-6 and by_ratio["p_invariance"] > 0.01
    assert by_ratio["seed_sd"] == pytest.approx(0.002, rel=0.3)
    assert np.isnan(
        iso_ratio(default_grid_runs(lambda b, lr: -b, noise=0.1), ["final_test_acc"]).iloc[0]["p_invariance"]
    )


def test_paper_tables_state_the_primary_analysis_the_prediction_and_both_sign_counts():
    analysis = analyse(synthetic_runs(), ["final_test_acc", "gap"], ["pearson"], resamples=100)
    markdown, latex = paper_tables(analysis, 0.05)
    assert "Primary analysis (analysis.primary): Spearman's rho of final_test_acc" in markdown
    assert "judged after Holm over its confirmatory family, the 2 ratio tests of e (one per scenario)" in markdown
    assert "The per-group tests (fixed learning rate, fixed batch size) are a separate family of 14" in markdown
    assert "**Primary analysis, e: Spearman's rho of final_test_acc against batch size" in markdown
    assert "**Sensitivity analysis, e: Pearson's r of gap against learning rate" in markdown
    assert "with the predicted sign" in markdown and "with the opposite sign" in markdown
    assert "| mlp on d | final_test_acc (primary outcome) | batch size within learning rate | − |" in markdown
    assert "| mlp on d | gap (sensitivity) | learning rate within batch size | − |" in markdown
    assert "Only the ratio?" in markdown and "p (only the ratio)" in markdown
    assert latex.count("\\begin{table}") == markdown.count("\n**") and "\\toprule" in latex
    assert "ratio" not in set(analysis.stratified["x"])


def test_small_spearman_groups_get_exact_p_values():
    # rho = 1 over three runs: 2 of the 3! = 6 pairings are as extreme, p = 1/3 (scipy's t approximation says 0)
    rho, p_value = correlate([1, 2, 3], [0.1, 0.5, 0.9], "spearman")
    assert rho == 1 and p_value == pytest.approx(1 / 3)
    rho, p_value = correlate([1, 2, 3, 4, 5], [2, 1, 4, 3, 5], "spearman")
    assert p_value == pytest.approx(exact_spearman([1, 2, 3, 4, 5], [2, 1, 4, 3, 5]).pvalue)


def test_several_seeds_are_tested_on_their_means():
    runs = pd.concat([synthetic_runs(seed).assign(seed=seed) for seed in (0, 1)], ignore_index=True)
    table = correlations(runs, ["final_test_acc"], ["pearson"])
    ratio = table[(table["group"] == "ratio") & (table["model"] == "mlp")].iloc[0]
    means = runs[runs["model"] == "mlp"].groupby(["batch_size", "lr"], as_index=False)["final_test_acc"].mean()
    expected = scipy_stats.pearsonr(means["batch_size"] / means["lr"], means["final_test_acc"])
    assert ratio["n"] == 12 and ratio["statistic"] == pytest.approx(expected.statistic)


def test_paper_tables_say_how_many_runs_diverged():
    runs = synthetic_runs().assign(diverged=lambda frame: frame["lr"] == 0.15)
    markdown, _ = paper_tables(analyse(runs, ["final_test_acc"], ["spearman"], resamples=100), 0.05)
    assert markdown.count("12 runs; 4 diverged, cells with any diverged seed excluded from the tests") == 2


def test_vectorised_coefficients_equal_scipy_with_ties():
    rng = np.random.default_rng(4)
    x = rng.integers(0, 4, size=9).astype(float)
    rows = rng.integers(0, 3, size=(5, 9)).astype(float)
    for method in ("pearson", "spearman", "kendall"):
        expected = [TESTS[method](x, row).statistic for row in rows]
        np.testing.assert_allclose(coefficient(x, rows, method), expected, rtol=1e-12)


def test_smallest_attainable_p_and_why_small_groups_cannot_pass_holm():
    test = correlation_test([16, 32, 48, 64, 80], [0.9, 0.8, 0.7, 0.6, 0.5], "spearman")
    assert test.p_value == pytest.approx(2 / 120) and test.p_min == pytest.approx(2 / 120)
    tied = correlation_test([16, 32, 48, 64, 80], [0.9, 0.9, 0.7, 0.6, 0.5], "kendall")
    assert tied.p_min > 2 / 120 and tied.p_method == "exact permutation (all 120 pairings)"
    nine = correlation_test(np.arange(9), np.arange(9) ** 2, "spearman")  # the largest exact group: 2 of 9!
    assert nine.p_value == pytest.approx(2 / 362_880) and nine.p_min == pytest.approx(2 / 362_880)
    ten = correlation_test(np.arange(10), np.arange(10) ** 2, "spearman")  # Monte Carlo: floor 2 / (R + 1)
    assert ten.p_min == pytest.approx(2 / (RANK_PERMUTATIONS + 1)) and ten.p_value >= ten.p_min
    runs = synthetic_runs()  # groups of 3 and 4 cells: exact p at least 1/3 and 1/12
    markdown, _ = paper_tables(analyse(runs, ["final_test_acc"], ["spearman"], resamples=100), 0.05)
    assert "Smallest p these groups' tests can give: 0.0833; Holm's first step needs p < 0.05/14" in markdown
    assert "so none of these groups can be significant after Holm" in markdown


def test_fisher_intervals_cover_at_the_threshold():
    """Reported intervals start at MIN_INTERVAL_N pairs: there, under bivariate normality with rho = 0.5,
    they cover the population coefficient in about 95% of samples (2,000 seeded samples: +-0.01)."""
    from bslr.stats import fisher_interval

    rng = np.random.default_rng(0)
    rho = 0.5
    population = {"pearson": rho, "spearman": 6 / np.pi * np.arcsin(rho / 2), "kendall": 2 / np.pi * np.arcsin(rho)}
    samples = rng.multivariate_normal([0, 0], [[1, rho], [rho, 1]], size=(2000, MIN_INTERVAL_N))
    for method, truth in population.items():
        covered = []
        for sample in samples:
            low, high = fisher_interval(TESTS[method](sample[:, 0], sample[:, 1]).statistic, MIN_INTERVAL_N, method)
            covered.append(low <= truth <= high)
        assert 0.93 <= np.mean(covered) <= 0.98, method
    assert np.isnan(fisher_interval(0.5, MIN_INTERVAL_N - 1, "pearson")[0])


def grid(accuracy, seeds=(0,), noise=0.0, rng_seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(rng_seed)
    rows = [
        dict(experiment="e", model="m", dataset="d", batch_size=b, lr=lr, seed=s, ratio=b / lr)
        | dict(final_test_acc=accuracy(b, lr) + rng.normal(0, noise), diverged=False)
        for b in (16, 32, 64, 128, 256)
        for lr in (0.02, 0.04, 0.08, 0.16)
        for s in seeds
    ]
    return pd.DataFrame(rows)


def test_ratio_regression_slopes_intervals_and_sum_test():
    from bslr.stats import cell_table, ratio_regressions

    only_ratio = grid(lambda b, lr: 0.8 - 0.03 * np.log2(b / lr), seeds=(0, 1, 2), noise=0.01)
    result = ratio_regressions(cell_table(only_ratio, ["final_test_acc"], "exclude"), ["final_test_acc"], Primary())
    row = result.iloc[0]
    assert row["cells"] == 20 and row["role"] == "primary"  # cell means, not the 60 runs
    means = only_ratio.groupby(["batch_size", "lr"], as_index=False)["final_test_acc"].mean()
    design = np.column_stack([np.ones(20), np.log2(means["batch_size"]), np.log2(means["lr"])])
    beta, *_ = np.linalg.lstsq(design, means["final_test_acc"], rcond=None)
    assert (row["slope_batch_size"], row["slope_lr"]) == pytest.approx(beta[1:], abs=1e-12)
    # HC3 by hand: (X'X)^-1 X' diag(e^2 / (1 - h)^2) X (X'X)^-1, t with 17 degrees of freedom
    bread = np.linalg.inv(design.T @ design)
    leverage = np.einsum("ij,jk,ik->i", design, bread, design)
    residual = means["final_test_acc"].to_numpy() - design @ beta
    covariance = bread @ (design.T * (residual / (1 - leverage)) ** 2) @ design @ bread
    contrast = np.array([0, 1, 1])
    half = scipy_stats.t.ppf(0.975, 17) * np.sqrt(contrast @ covariance @ contrast)
    assert (row["slope_sum_low"], row["slope_sum_high"]) == pytest.approx(
        (beta[1] + beta[2] - half, beta[1] + beta[2] + half), abs=1e-12
    )
    assert row["slope_sum_low"] < 0 < row["slope_sum_high"] and row["p_beyond_ratio"] > 0.05
    assert row["slope_batch_size"] == pytest.approx(-0.03, abs=0.005)

    batch_size_only = grid(lambda b, lr: 0.8 - 0.03 * np.log2(b), noise=0.005)
    cells = cell_table(batch_size_only, ["final_test_acc"], "exclude")
    row = ratio_regressions(cells, ["final_test_acc"], Primary()).iloc[0]
    assert row["slope_sum"] == pytest.approx(-0.03, abs=0.005) and row["p_beyond_ratio"] < 1e-6
    assert row["beyond_ratio"] == pytest.approx(-0.03, abs=0.005)


def test_only_the_ratio_is_tested_by_nested_models_that_keep_their_level_on_a_curved_ratio_truth():
    """Known truth, simulated on the default grid: accuracy a curved (exponential) function of the ratio
    alone. The linear slopes then do not cancel (their sum is 0.01, beside slopes of 0.05): a test of the
    sum would reject a true claim as the noise shrinks. The nested test (smooth function of log ratio, plus
    log2 batch size) rejects in about 5% of 200 draws at alpha 0.05, and finds a batch-size effect of 0.003
    per doubling at noise 0.003 in most draws."""
    from bslr.stats import cell_table, ratio_regressions

    def truth(b, lr):
        return 0.95 - 0.02 * np.exp(0.5 * (np.log2(b / lr) - np.log2(16 / 0.2)))

    rng = np.random.default_rng(7)
    rejected, found, sums = [], [], []
    for draw in rng.integers(0, 2**31, size=200):
        for effect, record in ((0.0, rejected), (-0.003, found)):
            runs = default_grid_runs(lambda b, lr, e=effect: truth(b, lr) + e * np.log2(b), noise=0.003, rng_seed=draw)
            row = ratio_regressions(cell_table(runs, ["final_test_acc"], "exclude"), ["final_test_acc"], Primary())
            record.append(row["p_beyond_ratio"].iloc[0] < 0.05)
            if effect == 0:
                sums.append(row["slope_sum"].iloc[0])
    assert np.mean(sums) == pytest.approx(0.0107, abs=0.002)  # biased away from 0 under a ratio-only truth
    assert np.mean(rejected) <= 0.085  # the level holds (binomial SD at 5%: 1.5%)
    assert np.mean(found) >= 0.6


def test_stratified_test_matches_the_exact_within_group_permutation_null():
    from bslr.stats import cell_table, stratified_tests

    # two learning rates of three batch sizes: 3! x 3! = 36 equally likely within-group permutations
    values = {0.02: [0.3, 0.1, 0.2], 0.04: [0.3, 0.2, 0.1]}  # at batch sizes 16, 32, 64: rho -0.5 and -1
    runs = grid(lambda b, lr: values[lr][[16, 32, 64].index(b)] if lr in values and b <= 64 else np.nan)
    runs = runs.dropna(subset=["final_test_acc"])
    cells = cell_table(runs, ["final_test_acc"], "exclude")
    row = stratified_tests(cells, ["final_test_acc"], Primary(), 9999, 0).set_index("x").loc["batch_size"]
    rhos = [scipy_stats.spearmanr([1, 2, 3], order).statistic for order in itertools.permutations([1, 2, 3])]
    observed = np.mean([scipy_stats.spearmanr([16, 32, 64], values[lr]).statistic for lr in values])
    exact = np.mean([abs(a + b) / 2 >= abs(observed) - 1e-12 for a in rhos for b in rhos])
    assert row["groups"] == 2 and row["statistic"] == pytest.approx(observed)
    assert exact == pytest.approx(10 / 36) and row["p_value"] == pytest.approx(exact, abs=0.015)  # Monte Carlo

    monotone = cell_table(grid(lambda b, lr: 1 - b / 1000), ["final_test_acc"], "exclude")
    row = stratified_tests(monotone, ["final_test_acc"], Primary(), 999, 0).set_index("x").loc["batch_size"]
    assert row["statistic"] == pytest.approx(-1) and row["p_value"] == pytest.approx(1 / 1000)  # never 0


def test_the_primary_analysis_is_declared_and_always_computed():
    from bslr.config import validate_config
    from conftest import tiny_config

    assert validate_config(tiny_config())["analysis"]["primary"] == {"method": "spearman", "outcome": "final_test_acc"}
    analysis = analyse(synthetic_runs(), ["gap"], ["pearson"], Primary("kendall", "final_test_acc"), resamples=100)
    table = analysis.correlations
    assert set(table["method"]) == {"pearson", "kendall"} and set(table["outcome"]) == {"gap", "final_test_acc"}
    primary = (table["method"] == "kendall") & (table["outcome"] == "final_test_acc")
    assert (table.loc[primary, "role"] == "primary").all() and (table.loc[~primary, "role"] == "sensitivity").all()
    assert set(analysis.headline["method"]) == {"kendall"}
    with pytest.raises(ConfigError, match="analysis.primary"):
        analyse(synthetic_runs(), ["gap"], ["pearson"], Primary("spearman", "accuracy"))


def test_numbers_print_with_real_minus_signs_and_p_values_never_as_zero():
    markdown, latex = Markdown(), Latex()
    assert markdown.number(-0.8431) == "−0.843" and latex.number(-0.8431) == "$-0.843$"
    assert markdown.p(1e-16) == "< 1e−16" and latex.p(1e-16) == "$<10^{-16}$"
    assert markdown.p(2.14e-5) == "2.1e−5" and latex.p(2.14e-5) == "$2.1\\times10^{-5}$"
    assert markdown.p(1 / 60) == "0.017" and markdown.p(np.nan) == "–"
    assert latex.text("mlp_mnist 95% & $x^2$") == "mlp\\_mnist 95\\% \\& \\$x\\textasciicircum{}2\\$"


# --- rank-test p-values in the tails, against brute-force enumeration -------------------------------------------


def three_by_three(noise: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A researcher's 3 x 3 grid (batch sizes 32, 64, 128; learning rates 0.05, 0.1, 0.2): the ratio takes
    5 values over 9 cells (640 three times), accuracy falls with it, plus noise."""
    batch_sizes, learning_rates = np.meshgrid([32, 64, 128], [0.05, 0.1, 0.2])
    ratio = (batch_sizes / learning_rates).ravel()
    accuracy = 0.9 - 0.05 * np.log2(ratio) + np.random.default_rng(seed).normal(0, noise, ratio.size)
    return ratio, accuracy


def test_tied_3x3_grid_p_values_are_every_pairing_not_the_t_or_normal_approximation():
    ratio, accuracy = three_by_three(noise=0.01, seed=1)
    for method in ("spearman", "kendall"):
        test = correlation_test(ratio, accuracy, method)
        assert test.statistic < -0.9 and test.p_method == "exact permutation (all 362880 pairings)"
        assert test.p_value == pytest.approx(enumerated_p(ratio, accuracy, method), rel=1e-12)
        approximate = TESTS[method](ratio, accuracy).pvalue  # t for Spearman, normal for Kendall
        assert abs(np.log(test.p_value / approximate)) > np.log(1.5), method  # the approximations were far off


def test_monte_carlo_p_matches_every_pairing_and_never_falls_below_its_resolution():
    """10 cells: 10! = 3.6 million pairings are enumerated (about 3 s), against which the Monte Carlo p
    (10^5 pairings) must agree to within 5 standard errors plus its +1 offset."""
    x = np.arange(10.0)
    resolution = 2 / (RANK_PERMUTATIONS + 1)
    for y in (x + np.random.default_rng(3).normal(0, 2.2, 10), np.array([0, 1, 3, 2, 4, 6, 5, 7, 9, 8.0])):
        test = correlation_test(x, y, "spearman")
        exact = enumerated_p(x, y, "spearman")
        assert test.p_method == f"Monte Carlo permutation ({RANK_PERMUTATIONS} pairings, p >= {resolution:.1e})"
        standard_error = 2 * np.sqrt(exact / 2 * (1 - exact / 2) / RANK_PERMUTATIONS)
        assert abs(test.p_value - exact) <= 5 * standard_error + resolution, (test.p_value, exact)
    perfect = correlation_test(x, x**3, "spearman")  # every pairing gives 2 / 10! = 5.5e-7: unresolvable
    assert resolution <= perfect.p_value <= 3 * resolution and perfect.p_min == pytest.approx(resolution)


def test_large_tied_kendall_groups_are_not_reported_below_the_monte_carlo_resolution():
    x = np.repeat(np.arange(20.0), 3)  # 60 cells, each value three times: ties, above MONTE_CARLO_MAX_N
    assert len(x) > MONTE_CARLO_MAX_N
    test = correlation_test(x, -x, "kendall")
    assert scipy_stats.kendalltau(x, -x).pvalue < 1e-20  # the normal approximation resolves nothing like it
    assert test.p_value == pytest.approx(2 / (RANK_PERMUTATIONS + 1)) and test.p_min == test.p_value
    assert test.p_method.startswith("normal approximation (not reported below")


# --- the headline read with train accuracy and the gap -----------------------------------------------------------


def trained_runs(test_accuracy, train_accuracy, noise: float = 0.003) -> pd.DataFrame:
    """The default grid with given test and train accuracy per cell; gap = train - test, as aggregate
    computes it."""
    runs = default_grid_runs(test_accuracy, noise=noise, rng_seed=1)
    train = runs.apply(lambda row: train_accuracy(row["batch_size"], row["lr"]), axis=1)
    train += np.random.default_rng(2).normal(0, noise, len(runs))
    return runs.assign(final_train_acc=train, gap=train - runs["final_test_acc"])


def test_headline_names_a_ratio_effect_that_is_one_of_how_far_runs_trained(tmp_path):
    """Known truths: test accuracy falls with the ratio in both; in one, train accuracy falls as steeply
    (the gap falls: how far the runs trained), in the other train accuracy is flat and the gap rises (the
    paper's prediction). The beside rows equal scipy's rho over the cell means, and the closing summary
    (bslr summary) prints the reading."""
    from bslr.status import summary

    falling = lambda b, lr: 0.9 - 0.05 * np.log2(b / lr)  # noqa: E731
    cases = {
        "how far the runs trained": trained_runs(falling, lambda b, lr: 1.02 - 0.06 * np.log2(b / lr)),
        "as the paper predicts": trained_runs(falling, lambda b, lr: 1.0 + 0 * b),
    }
    for expected, runs in cases.items():
        analysis = analyse(runs, ["final_test_acc"], ["spearman"], resamples=100)
        headline = analysis.headline
        primary = headline[(headline["analysis"] == "ratio") & (headline["diverged_policy"] == "exclude")].iloc[0]
        assert primary["reading"].startswith(expected)
        for outcome in ("final_train_acc", "gap"):
            row = headline[(headline["analysis"] == "beside") & (headline["outcome"] == outcome)].iloc[0]
            assert row["statistic"] == pytest.approx(scipy_stats.spearmanr(runs["ratio"], runs[outcome]).statistic)
        markdown, _ = paper_tables(analysis, 0.05)
        assert f"Reading: {expected}" in markdown and "final_train_acc, exclude (beside the primary)" in markdown
        headline.to_csv(tmp_path / "headline.csv", index=False)
        printed = summary(tmp_path / "none.parquet", tmp_path / "headline.csv", "exclude", "f", "t")
        assert f"    reading: {expected}" in printed and "beside it, against the ratio: final_train_acc" in printed


def test_include_summarizes_a_cell_by_its_seeds_median_so_one_diverged_seed_is_not_a_dead_cell():
    """Five seeds per cell; in one cell one seed diverged, in another all five. Under include the first
    keeps a finite value, the median of its four finite accuracies and the diverged run's worst value
    (here the second smallest accuracy), so Pearson and the regression use it; only the dead cell is
    infinite. Under exclude both cells are dropped."""
    from bslr.stats import cell_table

    runs = default_grid_runs(lambda b, lr: 0.9 - 0.05 * np.log2(b / lr), seeds=range(5), noise=0.01)
    one = (runs["batch_size"] == 64) & (runs["lr"] == 0.12)
    dead = (runs["batch_size"] == 16) & (runs["lr"] == 0.2)
    diverged = (one & (runs["seed"] == 3)) | dead
    runs = runs.assign(diverged=diverged, final_test_acc=runs["final_test_acc"].mask(diverged))
    included = cell_table(runs, ["final_test_acc"], "include").set_index(["batch_size", "lr"])["final_test_acc"]
    survivors = np.sort(runs.loc[one & ~diverged, "final_test_acc"].to_numpy())
    assert included[(64, 0.12)] == survivors[1]  # the median of (-inf, four values): the second smallest
    assert included[(16, 0.2)] == -np.inf and np.isfinite(included.drop((16, 0.2))).all()
    include = correlations(runs, ["final_test_acc"], ["pearson"], "include")
    exclude = correlations(runs, ["final_test_acc"], ["pearson"], "exclude")
    ratio_include, ratio_exclude = (table[table["group"] == "ratio"].iloc[0] for table in (include, exclude))
    assert (ratio_include["n"], ratio_include["n_dropped"], ratio_exclude["n"]) == (24, 1, 23)


def test_ratio_intervals_say_what_they_resample_and_are_conservative_for_a_fixed_grid():
    """The ratio rows' BCa interval resamples cells as if they were a random sample of settings, and
    `ci_method` says so. For repeats of one fixed grid (simulated: the default grid, accuracy linear in log
    ratio, 60 noise draws) it is conservative, as docs/statistics.md states: it covers the median estimate more
    than 95% of the time and is wider than the estimate's own spread."""
    from bslr.stats import CELL_BOOTSTRAP, bootstrap_interval

    table = analyse(synthetic_runs(), ["final_test_acc"], ["spearman"], resamples=100).correlations
    assert set(table.loc[table["group"] == "ratio", "ci_method"]) == {CELL_BOOTSTRAP}
    assert "random sample of settings" in CELL_BOOTSTRAP and "conservative" in CELL_BOOTSTRAP
    rng = np.random.default_rng(0)
    runs = [
        default_grid_runs(lambda b, lr: 0.9 - 0.02 * np.log2(b / lr), noise=0.01, rng_seed=draw)
        for draw in rng.integers(0, 2**31, 60)
    ]
    estimates = np.array([scipy_stats.spearmanr(run["ratio"], run["final_test_acc"]).statistic for run in runs])
    intervals = np.array(
        [
            bootstrap_interval(run["ratio"], run["final_test_acc"], "spearman", 400, draw)
            for draw, run in enumerate(runs)
        ]
    )
    centre = np.median(estimates)
    assert np.mean((intervals[:, 0] <= centre) & (centre <= intervals[:, 1])) >= 0.95
    assert np.mean(intervals[:, 1] - intervals[:, 0]) > 1.2 * 2 * 1.96 * estimates.std()


def test_the_reading_names_no_flat_gap_where_the_gap_falls():
    """Test accuracy falls with the ratio, the gap falls significantly and train accuracy's fall is not
    significant (noise can give it): neither the generalization nor the training-progress reading applies,
    and a flat gap is not claimed."""
    from bslr.stats import CorrelationTest, reading

    def test(statistic: float, p_value: float) -> CorrelationTest:
        return CorrelationTest(statistic, p_value, 25, 0, "", np.nan)

    tests = {"final_test_acc": test(-0.9, 1e-5), "final_train_acc": test(-0.3, 0.2), "gap": test(-0.6, 0.002)}
    text = reading(Primary(), tests, p_holm=4e-5, alpha=0.05)
    assert text.startswith("final_test_acc worsens with the ratio, but train accuracy and the gap move as neither")
    flat = tests | {"gap": test(-0.1, 0.6)}
    assert reading(Primary(), flat, p_holm=4e-5, alpha=0.05).startswith(
        "final_test_acc worsens with the ratio; neither"
    )


# --- the optimizer's own ratio ----------------------------------------------------------------------------------


OPTIMIZER_COLUMNS = ["optimizer", "effective_lr", "optimizer_ratio", "optimizer_ratio_name"]


def test_the_optimizers_own_ratio_is_tested_where_it_orders_the_cells_otherwise():
    """Adam runs whose outcomes depend on B/lr^2 alone, on a grid where cells share B/lr^2: the optimizer_ratio
    group is scipy's coefficient over the cells against B/lr^2, stronger than the paper's ratio's, in the ratio
    family for Holm, with a bootstrap interval along its own ratio; the headline stays the paper's ratio."""
    from bslr.stats import CELL_BOOTSTRAP, bootstrap_interval

    runs = adam_runs()
    cells = runs.groupby(["batch_size", "lr"], as_index=False)["final_test_acc"].mean()
    along_own = cells["batch_size"] / cells["lr"] ** 2
    analysis = analyse(runs, ["final_test_acc"], ["spearman", "pearson"], resamples=200, permutations=999)
    table = analysis.correlations
    own = table[table["group"] == "optimizer_ratio"].set_index("method")
    paper = table[table["group"] == "ratio"].set_index("method")
    assert list(own.index) == ["spearman", "pearson"] and set(own["x"]) == {"optimizer_ratio"}
    assert set(own["family"]) == {"ratio"} and set(own["expected_sign"]) == {-1}
    spearman = own.loc["spearman"]
    assert spearman["n"] == 25
    assert spearman["statistic"] == pytest.approx(scipy_stats.spearmanr(along_own, cells["final_test_acc"]).statistic)
    assert spearman["statistic"] < paper.loc["spearman", "statistic"] < 0  # B/lr^2 orders the cells better
    assert own.loc["pearson", "statistic"] == pytest.approx(
        scipy_stats.pearsonr(along_own, cells["final_test_acc"]).statistic
    )
    family = table[(table["family"] == "ratio") & (table["method"] == "spearman")]
    np.testing.assert_allclose(family["p_holm"], step_down_holm(family["p_value"].tolist()), rtol=1e-12)
    assert spearman["ci_method"] == CELL_BOOTSTRAP
    expected = bootstrap_interval(along_own.to_numpy(), cells["final_test_acc"].to_numpy(), "spearman", 200, 0)
    assert (spearman["ci_low"], spearman["ci_high"]) == pytest.approx(expected)
    headline = analysis.headline
    assert set(headline["x"]) == {"ratio"}
    primary = headline[(headline["analysis"] == "ratio") & (headline["diverged_policy"] == "exclude")].iloc[0]
    assert primary["statistic"] == paper.loc["spearman", "statistic"]
    assert primary["p_holm"] == paper.loc["spearman", "p_holm"]  # Holm over both ratios tested
    markdown, _ = paper_tables(analysis, 0.05)
    assert "the 2 ratio tests of adam (one per scenario, and 1 along the optimizer's own ratio" in markdown
    assert "test along the optimizer's own ratio significant after Holm over the ratio family" in markdown


def test_the_iso_ratio_check_runs_along_the_optimizers_own_ratio_where_it_differs():
    """Along B/lr^2 the Adam grid's cells fall into 7 sets of 23 cells that differ by seed noise alone; along
    B/lr they differ by far more. The rows along the paper's ratio are those of the same runs without the
    optimizer's columns."""
    from bslr.stats import iso_ratio

    runs = adam_runs()
    table = iso_ratio(runs, ["final_test_acc"], permutations=999)
    assert table["along"].tolist() == ["ratio", "optimizer_ratio"]
    paper, own = table.iloc[0], table.iloc[1]
    assert (own["ratio_sets"], own["cells"]) == (7, 23)
    assert own["eta_squared"] > paper["eta_squared"] and own["p_permutation"] < 0.01
    assert own["p_invariance"] > 0.05 > paper["p_invariance"]
    plain = iso_ratio(runs.drop(columns=OPTIMIZER_COLUMNS), ["final_test_acc"], permutations=999)
    pd.testing.assert_frame_equal(table.iloc[:1], plain, check_exact=True)


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_sgd_runs_gain_no_tests_along_their_own_ratio(momentum):
    """SGD's own ratio, B (1 - m) / lr, is proportional to B/lr within a scenario: every test along it would be
    the paper's ratio's, so the tables are those of a runs table written before the optimizer's columns. So is
    Adam's over a single learning rate."""
    from bslr.stats import cell_table, iso_ratio

    plain = synthetic_runs()
    runs = with_optimizer(plain, "sgd", momentum)
    cells = cell_table(runs, ["final_test_acc"], "exclude")
    np.testing.assert_allclose(cells["optimizer_ratio"], cells["ratio"] * (1 - momentum), rtol=1e-12)
    old = cell_table(plain, ["final_test_acc"], "exclude")
    np.testing.assert_allclose(old["optimizer_ratio"], old["ratio"], rtol=0)  # no column: plain SGD
    for tested in (runs, with_optimizer(plain[plain["lr"] == 0.1], "adam")):
        table = correlations(tested, ["final_test_acc"], ["spearman", "pearson"])
        iso = iso_ratio(tested, ["final_test_acc"], permutations=99)
        assert "optimizer_ratio" not in set(table["group"]) and set(iso["along"]) == {"ratio"}
    pd.testing.assert_frame_equal(
        correlations(runs, ["final_test_acc"], ["spearman"]), correlations(plain, ["final_test_acc"], ["spearman"])
    )
