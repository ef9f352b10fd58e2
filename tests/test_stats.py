import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from bslr.stats import CORRELATION_COLUMNS, correlate, correlations, markdown_table
from conftest import exact_spearman


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
        test = {"pearson": scipy_stats.pearsonr, "spearman": scipy_stats.spearmanr, "kendall": scipy_stats.kendalltau}
        expected = test[row.method](members[row.x], members[row.outcome])
        if row.method == "spearman" and len(members) <= 8:
            expected = exact_spearman(members[row.x], members[row.outcome])
        assert row.statistic == pytest.approx(expected.statistic, abs=1e-12)
        assert row.p_value == pytest.approx(expected.pvalue, rel=1e-9, abs=1e-300)


def test_hand_computed_case():
    # y falls exactly as x rises: r = rho = -1; for x = 1..4 against 1, 2, 3, 5 Pearson r = 0.9827.
    assert correlate([1, 2, 3, 4], [4, 3, 2, 1], "spearman")[0] == pytest.approx(-1)
    assert correlate([1, 2, 3, 4], [1, 2, 3, 5], "pearson")[0] == pytest.approx(0.98270762, abs=1e-8)


def test_undefined_tests_give_nan():
    assert np.isnan(correlate([1, 2], [2, 1], "pearson")[0])
    assert all(np.isnan(correlate([1, 2, 3], [0.5, 0.5, 0.5], "spearman")))
    assert correlate([1, 2, 3, np.nan], [1, 2, 3, 4], "spearman")[0] == pytest.approx(1)


def test_markdown_lists_every_group():
    table = correlations(synthetic_runs(), ["final_test_acc"], ["pearson", "spearman"])
    text = markdown_table(table)
    assert "## e: mlp on d, final_test_acc" in text
    assert "| group | x | n | pearson statistic | pearson p | spearman statistic | spearman p |" in text
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
    text = markdown_table(excluded, runs, "exclude")
    assert "12 runs; 4 diverged, excluded from the tests (analysis.diverged: exclude)." in text


def test_holm_and_benjamini_hochberg_by_hand():
    from bslr.stats import benjamini_hochberg, holm

    p_values = np.array([0.01, 0.04, 0.03, np.nan, 0.005])
    # Holm: sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1, kept monotone
    np.testing.assert_allclose(holm(p_values), [0.03, 0.06, 0.06, np.nan, 0.02])
    # BH: p * m / rank, monotone from the top: 0.04*4/4, 0.03*4/3, 0.01*4/2, 0.005*4/1
    np.testing.assert_allclose(benjamini_hochberg(p_values), [0.02, 0.04, 0.04, np.nan, 0.02])


def test_corrections_are_made_within_each_family():
    table = correlations(synthetic_runs(), ["final_test_acc", "gap"], ["spearman", "pearson"])
    for _, family in table.groupby(["outcome", "method"]):
        tested = family[np.isfinite(family["p_value"])]
        assert (tested["p_holm"] >= tested["p_value"]).all() and (tested["p_bh"] >= tested["p_value"]).all()
        smallest = tested["p_value"].idxmin()
        assert tested.loc[smallest, "p_holm"] == pytest.approx(min(1, tested.loc[smallest, "p_value"] * len(tested)))
    assert set(table.loc[table["x"] == "lr", "expected_sign"]) == {1, -1}  # accuracy +, gap -


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
    result = iso_ratio(pd.DataFrame(rows), ["final_test_acc"]).iloc[0]
    assert result["ratio_sets"] == 2 and result["runs"] == 6  # 1600 and 800; the lone 400 does not count
    assert result["within_sd"] < result["between_sd"] and result["eta_squared"] > 0.9


def test_paper_tables_state_the_prediction_and_summary():
    from bslr.stats import paper_tables

    markdown, latex = paper_tables(correlations(synthetic_runs(), ["final_test_acc"], ["spearman", "pearson"]), 0.05)
    assert "| ratio | 12 | − |" in markdown and "| bs=16 | 3 | + |" in markdown
    assert "groups significant at 0.05 with the predicted sign" in markdown
    assert latex.count("\\begin{table}") == 2 and "\\toprule" in latex and "ratio & 12 & $-$" in latex


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
    from bslr.stats import paper_tables

    runs = synthetic_runs().assign(diverged=lambda frame: frame["lr"] == 0.15)
    markdown, _ = paper_tables(correlations(runs, ["final_test_acc"], ["spearman"]), 0.05, runs, "exclude")
    assert markdown.count("12 runs; 4 diverged, excluded from the tests (analysis.diverged: exclude).") == 2
