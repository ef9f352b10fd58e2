import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from bslr.stats import CORRELATION_COLUMNS, correlate, correlations, markdown_table


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
    assert list(table.columns) == CORRELATION_COLUMNS
    groups = table[(table["model"] == "mlp") & (table["method"] == "spearman")]
    assert groups["group"].tolist() == ["lr=0.05", "lr=0.1", "lr=0.15", "bs=16", "bs=32", "bs=48", "bs=64", "ratio"]
    assert groups["x"].tolist() == ["batch_size"] * 3 + ["lr"] * 4 + ["ratio"]
    assert groups["n"].tolist() == [4, 4, 4, 3, 3, 3, 3, 12]
    # 2 scenarios x (3 + 4 + 1) groups x 1 outcome x 2 methods
    assert len(table) == 32


def test_every_row_equals_scipy():
    runs = synthetic_runs()
    table = correlations(runs, ["final_test_acc", "gap"], ["pearson", "spearman"])
    for row in table.itertuples():
        members = runs[runs["model"] == row.model]
        if row.group.startswith("lr="):
            members = members[members["lr"] == float(row.group[3:])]
        elif row.group.startswith("bs="):
            members = members[members["batch_size"] == int(row.group[3:])]
        test = scipy_stats.pearsonr if row.method == "pearson" else scipy_stats.spearmanr
        expected = test(members[row.x], members[row.outcome])
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
    from bslr.config import expand_grid, load_config_file
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
