"""Statistics of a batch size x learning rate grid: the paper's correlation tests, and the tests that its
claim needs beyond them.

The unit of analysis is the grid cell (experiment, model, dataset, batch size, learning rate): replicate
seeds are averaged within their cell before any test, so n counts cells, intervals resample cells, and
seeds sharing a setting never pose as independent evidence.

As in He, Liu & Tao (2019), Section 5, per scenario (experiment, model, dataset):
- within each fixed learning rate, the outcome against batch size (group `lr=0.01`, x `batch_size`);
- within each fixed batch size, the outcome against learning rate (group `bs=16`, x `lr`);
- over all cells, the outcome against the ratio batch size / learning rate (group `ratio`, x `ratio`);
- over all cells, the outcome against the optimizer's own ratio (group and x `optimizer_ratio`: runs.parquet's
  `optimizer_ratio`, B / lr^2 for Adam and AdamW, Malladi et al. 2022), where it orders the cells otherwise
  than the paper's ratio; SGD's, B (1 - m) / lr, is proportional to B / lr within a scenario, so every test
  along it would repeat the ratio's and none is made (`optimizer_ratio_differs`).
Every test is two-sided. Pearson's r, Spearman's rho and Kendall's tau-b come from scipy.stats; Pearson's
p is the t test's. The rank methods' p is a permutation p (scipy.stats.permutation_test, ties as
midranks): exact over every pairing up to EXACT_MAX_N cells, seeded Monte Carlo above (resolving
2 / (RANK_PERMUTATIONS + 1)); Kendall's null is counted exactly where there are no ties, and with ties
above MONTE_CARLO_MAX_N cells it is the normal approximation, floored at the Monte Carlo resolution. No
p-value is reported below P_FLOOR.

One analysis is declared primary (analysis.primary: a method and an outcome, Spearman on final test
accuracy by default, as in the paper); it carries the headline and the tables' summary lines. Every other
method and outcome is labelled a sensitivity analysis.

Beyond the paper:
- the ratio as a hypothesis (`ratio_regressions`): OLS of the cell means on log2 batch size and log2
  learning rate, slopes per doubling with HC3 intervals, and the test that the two slopes sum to zero
  (only the ratio matters);
- one stratified permutation test per axis (`stratified_tests`), pooling the small per-group tests;
- divergence as an outcome (`divergence_cells`, `headline`): its rate per cell and its correlation with
  the ratio, and the primary ratio test under both divergence policies;
- the theory's measures (`training.measures`) as outcomes, and the power law of each against learning
  rate / batch size (`measure_slopes`: the fluctuation's exponent is predicted to be 1);
- censored runs (a target budget's runs that did not reach it) left out of every test (`without_censored`);
- intervals (`add_intervals`): a BCa bootstrap over cells for the ratio rows (an interval for the grid's
  cells taken as a random sample of settings, conservative for repeats of the same grid: CELL_BOOTSTRAP),
  Fisher z for the groups,
  none below MIN_INTERVAL_N cells or at |r| = 1;
- Holm (1979) and Benjamini-Hochberg (1995) within each family (statsmodels' multipletests): an
  experiment's ratio tests of one method and outcome (for the primary analysis, the confirmatory family
  of the headline), and apart from them its per-group tests (FAMILIES);
- Kendall's tau, Jiang et al. 2019's granulated Kendall coefficient, and the iso-ratio check (along the
  paper's ratio, and along the optimizer's own where it differs).
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats

from bslr.config import format_lr
from bslr.errors import ConfigError

SCENARIO = ["experiment", "model", "dataset"]
CELL = SCENARIO + ["batch_size", "lr"]
CORRELATION_COLUMNS = SCENARIO + ["group", "x", "outcome", "method", "n", "statistic", "p_value"]
EXTRA_COLUMNS = [
    "role",
    "expected_sign",
    "n_dropped",
    "p_method",
    "p_min",
    "family",
    "p_holm",
    "p_bh",
    "ci_low",
    "ci_high",
    "ci_method",
]
POLICIES = ("exclude", "include")

METHODS: dict[str, Callable] = {
    "pearson": scipy_stats.pearsonr,
    "spearman": scipy_stats.spearmanr,
    "kendall": scipy_stats.kendalltau,
}
RANK_METHODS = ("spearman", "kendall")

# Up to this many cells, rank tests get the exact permutation p-value over all n! pairings (9! = 362,880,
# a 3 x 3 grid); the t and normal approximations are far too small in the tails there (rho = -0.975 on a
# tied 3 x 3 grid, its ratios sharing values: t gives 8e-6, every pairing 1.3e-4).
EXACT_MAX_N = 9
# Above it, seeded random pairings: the Monte Carlo p resolves down to 2 / (R + 1) = 2e-5. The t
# approximation to Spearman's null is too small there even at 51 cells (0.68 times the permutation p at
# 1e-5, 0.86 at 1e-4: 10^7 pairings), so Spearman stays Monte Carlo at any n (its null is cached per
# tie pattern, so a grid's groups share it).
RANK_PERMUTATIONS = 100_000
# Kendall with ties above this many cells takes the normal approximation (its O(n^2) coefficient makes
# 10^5 pairings slow there); without ties its null is counted exactly at any n. The normal approximation
# was conservative in Kendall's tails where it could be checked against the counted null (51 cells, no
# ties: 1.6 times the exact p at 2e-5, 3.8 times at 6e-8); with ties there is no exact null to check it by.
MONTE_CARLO_MAX_N = 50
# Smallest p-value reported. Below it the t and normal approximations are far outside the range where
# their relative error is known, and no decision depends on the difference: Holm over a million tests at
# 0.05 needs p < 5e-8. Smaller values are reported as P_FLOOR and printed "< 1e-16".
P_FLOOR = 1e-16
# No interval from fewer cells: at n = 5 Fisher-z intervals cover a strong correlation in about 75% of
# samples (bivariate normal simulation); from 10 cells Bonett & Wright (2000) report adequate coverage.
MIN_INTERVAL_N = 10
# Fewest cells, spanning at least two batch sizes and two learning rates, for the ratio regression.
MIN_REGRESSION_CELLS = 9

# The paper's prediction for accuracy: worse with batch size and with the ratio, better with learning
# rate. Outcomes where lower is better (gap, losses) flip the sign.
PREDICTED_SIGN = {"batch_size": -1, "lr": 1, "ratio": -1, "optimizer_ratio": -1}
# The groups over all cells of a scenario, each along a ratio: the paper's, and the optimizer's own.
RATIO_GROUPS = ("ratio", "optimizer_ratio")
OUTCOME_DIRECTION = {
    "final_test_acc": 1,
    "best_test_acc": 1,
    "final_train_acc": 1,
    "gap": -1,
    "final_test_loss": -1,
    "final_train_loss": -1,
}
# The measures (`training.measures`) as outcomes, signed like accuracy when the theory predicts they rise with
# learning rate / batch size: the weights' fluctuation (He, Liu & Tao's Ornstein-Uhlenbeck spread, which
# scales as that), and, inversely, the curvature and the gradient covariance (flatter, quieter minima at
# large learning rate / batch size: Keskar et al. 2017, Jastrzebski et al. 2017). 0: no prediction.
MEASURE_DIRECTION = {
    "fluctuation": 1,
    "fluctuation_local": 1,
    "hessian_trace": -1,
    "hessian_top": -1,
    "covariance_trace": -1,
    "noise_scale": 0,
    "weight_norm": 0,
    "init_distance": 0,
}
OUTCOME_DIRECTION |= MEASURE_DIRECTION
# The log-log slope of a measure against learning rate / batch size that the theory predicts (NaN: none).
PREDICTED_SLOPE = {"fluctuation": 1.0, "fluctuation_local": 1.0}


@dataclass(frozen=True)
class Primary:
    """The declared primary analysis (analysis.primary): the one method and outcome of the headline."""

    method: str = "spearman"
    outcome: str = "final_test_acc"

    def role(self, method: str, outcome: str) -> str:
        return "primary" if (method, outcome) == (self.method, self.outcome) else "sensitivity"


# --- the analysis unit ----------------------------------------------------------------------------------


def with_diverged(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs with a boolean `diverged` column; a table without one (hand-made, or from an older
    version) is read as the aggregate stage defines it: a run diverged when its final training loss is
    not finite."""
    if "diverged" in runs:
        return runs.assign(diverged=runs["diverged"].fillna(False).astype(bool))
    if "final_train_loss" in runs:
        return runs.assign(diverged=~np.isfinite(runs["final_train_loss"].astype(float)))
    return runs.assign(diverged=False)


def censored(runs: pd.DataFrame) -> np.ndarray:
    """Which runs are censored: a target budget's runs that used their whole budget without reaching it.
    A diverged run is diverged, not censored (files written before the distinction may say both)."""
    if "reached_target" not in runs:
        return np.zeros(len(runs), dtype=bool)
    missed = runs["reached_target"].eq(False).fillna(False).to_numpy(dtype=bool)
    return missed & ~with_diverged(runs)["diverged"].to_numpy(dtype=bool)


def without_censored(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs with every outcome and measure of a censored run unknown: its final metrics are not at the
    target, so they are left out of every test (counted in `n_dropped`), never mixed in."""
    columns = [column for column in OUTCOME_DIRECTION if column in runs]
    runs = runs.copy()
    runs.loc[censored(runs), columns] = np.nan
    return runs


def censored_count(runs: pd.DataFrame) -> int:
    return int(censored(runs).sum())


def check_policy(policy: str) -> None:
    if policy not in POLICIES:
        raise ConfigError(f"analysis.diverged must be include or exclude, not {policy!r}")


def cell_table(runs: pd.DataFrame, outcomes: Sequence[str], policy: str) -> pd.DataFrame:
    """One row per grid cell: the seed summary of each outcome, its number of runs and of diverged runs.

    exclude: a cell in which any seed diverged is dropped whole, so that no cell mean rests on the seeds
    that happened to survive; the summary is the seed mean. include: every run counts; a diverged run's
    non-finite outcome (a NaN loss) becomes the worst possible value (-inf for accuracies, +inf for the gap
    and losses) and the summary is the seed median, so that one diverged seed of five moves the cell's
    value down the order instead of making it infinite: only a cell where at least half the seeds diverged
    is infinite, which the rank methods order last and Pearson and the regression must drop (counted in
    their `n_dropped`). With one seed both summaries are the run's value.
    """
    check_policy(policy)
    missing = sorted(set(outcomes) - set(runs.columns))
    if missing:
        raise ConfigError(f"outcomes {missing} are not columns of the runs table")
    runs = with_diverged(runs)
    values = runs[list(outcomes)].astype(float)
    if policy == "include":
        for outcome in outcomes:
            if outcome in MEASURE_DIRECTION:  # a diverged run has no measure, and no worst one either
                continue
            worst = -np.inf if OUTCOME_DIRECTION.get(outcome, 1) > 0 else np.inf
            values[outcome] = values[outcome].mask(runs["diverged"] & ~np.isfinite(values[outcome]), worst)
    keys = [runs[key] for key in CELL]
    grouped = values.groupby(keys, sort=True)
    means = grouped.median() if policy == "include" else grouped.mean()
    means = means.mask(values.isna().groupby(keys, sort=True).any())  # a NaN seed makes the mean unknown
    counts = runs.groupby(CELL, sort=True)["diverged"].agg(runs="size", diverged="sum")
    cells = counts.join(means).reset_index()
    if policy == "exclude":
        cells = cells[cells["diverged"] == 0].reset_index(drop=True)
    cells.insert(len(CELL), "ratio", cells["batch_size"] / cells["lr"])
    cells.insert(len(CELL) + 1, "optimizer_ratio", cell_optimizer_ratio(runs, cells))
    return cells


def cell_optimizer_ratio(runs: pd.DataFrame, cells: pd.DataFrame) -> np.ndarray:
    """The optimizer's own ratio of each of `cells` (rows with the CELL columns), from the runs' `optimizer_ratio`;
    one value per cell, as a cell is one batch size and learning rate of one experiment, which has one optimizer.
    A runs table without the column holds plain-SGD runs (the only optimizer such a table can hold), whose
    ratio is the paper's."""
    if "optimizer_ratio" not in runs:
        return (cells["batch_size"] / cells["lr"]).to_numpy(dtype=float)
    per_cell = runs.groupby(CELL, sort=True)["optimizer_ratio"].first()
    return per_cell.reindex(pd.MultiIndex.from_frame(cells[CELL])).to_numpy(dtype=float)


def optimizer_ratio_differs(cells: pd.DataFrame) -> bool:
    """Whether the optimizer's own ratio orders one scenario's `cells` otherwise than the paper's ratio: only
    then do tests along it say anything new. Where it is proportional to B / lr (SGD's B (1 - m) / lr, or Adam's
    B / lr^2 over a single learning rate) every correlation and every iso-ratio set along it is the ratio's."""
    quotient = (cells["optimizer_ratio"] / cells["ratio"]).to_numpy(dtype=float)
    return len(quotient) > 0 and bool(np.ptp(quotient) > 1e-9 * np.abs(quotient).max())


def in_scenario(frame: pd.DataFrame, scenario: Sequence[str]) -> pd.Series:
    """The rows of one scenario (experiment, model, dataset)."""
    experiment, model, dataset = scenario
    return (frame["experiment"] == experiment) & (frame["model"] == model) & (frame["dataset"] == dataset)


def groups(scenario_cells: pd.DataFrame) -> list[tuple[str, str, pd.DataFrame]]:
    """The paper's groups of one scenario, and the optimizer's own ratio where it orders the cells otherwise:
    (group label, x column, cells of the group)."""
    found = [(f"lr={format_lr(lr)}", "batch_size", cells) for lr, cells in scenario_cells.groupby("lr", sort=True)]
    found += [(f"bs={int(bs)}", "lr", cells) for bs, cells in scenario_cells.groupby("batch_size", sort=True)]
    found.append(("ratio", "ratio", scenario_cells))
    if optimizer_ratio_differs(scenario_cells):
        found.append(("optimizer_ratio", "optimizer_ratio", scenario_cells))
    return found


# --- one correlation test ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class CorrelationTest:
    """A two-sided test of one correlation: `n` pairs used, `n_dropped` left out as non-finite, `p_min`
    the smallest p-value the test can give: over every pairing with these ties, or the Monte Carlo floor
    2 / (R + 1) (NaN for the t test and Kendall's counted null, which resolve far smaller p)."""

    statistic: float
    p_value: float
    n: int
    n_dropped: int
    p_method: str
    p_min: float


def usable_pairs(x: Sequence[float], y: Sequence[float], method: str) -> tuple[np.ndarray, np.ndarray, int]:
    """The pairs a method can use and how many it drops: NaN never counts; the rank methods keep
    infinite values (the worst value of a diverged run), Pearson cannot."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    keep = np.isfinite(x) & np.isfinite(y) if method == "pearson" else ~(np.isnan(x) | np.isnan(y))
    return x[keep], y[keep], int((~keep).sum())


def coefficient(x: np.ndarray, y: np.ndarray, method: str) -> np.ndarray:
    """The correlation along the last axis, vectorised over the leading axes (permutations, resamples)
    because scipy's coefficient functions are not. Spearman is Pearson's r on midranks; Kendall is tau-b,
    from the signs of all pairwise differences (O(n^2): small groups, or in batches)."""
    if method == "spearman":
        x, y = scipy_stats.rankdata(x, axis=-1), scipy_stats.rankdata(y, axis=-1)
    if method == "kendall":
        first, second = np.triu_indices(x.shape[-1], 1)
        sign_x = np.sign(x[..., first] - x[..., second])
        sign_y = np.sign(y[..., first] - y[..., second])
        return (sign_x * sign_y).sum(axis=-1) / np.sqrt((sign_x**2).sum(axis=-1) * (sign_y**2).sum(axis=-1))
    centred_x = x - x.mean(axis=-1, keepdims=True)
    centred_y = y - y.mean(axis=-1, keepdims=True)
    return (centred_x * centred_y).sum(axis=-1) / (
        np.linalg.norm(centred_x, axis=-1) * np.linalg.norm(centred_y, axis=-1)
    )


# Permuted ranks are still ranks: the coefficient to compute on them, without ranking again.
ON_RANKS = {"pearson": "pearson", "spearman": "pearson", "kendall": "kendall"}


@functools.cache
def permutation_null(sorted_x: bytes, sorted_y: bytes, method: str, resamples: int, seed: int) -> np.ndarray:
    """The coefficient's null distribution over pairings of two rank vectors (given sorted, as bytes of
    float64: the null of a uniformly random pairing does not depend on the order either side comes in).
    Every pairing when `resamples` is 0, else `resamples` random ones (scipy.stats.permutation_test).
    Cached: in a grid most groups share their ranks' tie pattern, and so their null."""
    rank_x, rank_y = np.frombuffer(sorted_x), np.frombuffer(sorted_y)
    width = len(rank_x) * (len(rank_x) - 1) // 2 if ON_RANKS[method] == "kendall" else len(rank_x)
    result = scipy_stats.permutation_test(
        (rank_y,),
        lambda y, axis=-1: coefficient(rank_x, np.moveaxis(y, axis, -1), ON_RANKS[method]),
        permutation_type="pairings",
        n_resamples=resamples or np.inf,
        vectorized=True,
        batch=max(1, 4_000_000 // width),  # pairings at once: about 100 MB of coefficient terms
        rng=np.random.default_rng(seed),
    )
    return result.null_distribution


def permutation_p(rank_x: np.ndarray, rank_y: np.ndarray, method: str, seed: int) -> tuple[float, float, str]:
    """(two-sided permutation p, smallest p the test can give, how it was computed) of a rank coefficient.

    Two-sided is twice the smaller one-sided p, capped at 1. Up to EXACT_MAX_N cells every pairing is
    enumerated; above, RANK_PERMUTATIONS seeded random pairings give the Monte Carlo p (b + 1) / (R + 1)
    per side (Phipson & Smyth 2010), so never below 2 / (R + 1)."""
    n = len(rank_x)
    exact = n <= EXACT_MAX_N
    null = permutation_null(
        np.sort(rank_x).tobytes(), np.sort(rank_y).tobytes(), method, 0 if exact else RANK_PERMUTATIONS, seed
    )
    observed = float(coefficient(rank_x, rank_y, ON_RANKS[method]))
    tolerance = 1e-12
    above, below = int((null >= observed - tolerance).sum()), int((null <= observed + tolerance).sum())
    if exact:
        p_value = 2 * min(above, below) / len(null)
        extreme = min((null >= null.max() - tolerance).sum(), (null <= null.min() + tolerance).sum())
        return min(1.0, p_value), min(1.0, 2 * extreme / len(null)), f"exact permutation (all {len(null)} pairings)"
    p_value = 2 * (min(above, below) + 1) / (RANK_PERMUTATIONS + 1)
    floor = 2 / (RANK_PERMUTATIONS + 1)
    return min(1.0, p_value), floor, f"Monte Carlo permutation ({RANK_PERMUTATIONS} pairings, p >= {floor:.1e})"


def correlation_test(x: Sequence[float], y: Sequence[float], method: str, seed: int = 0) -> CorrelationTest:
    """Statistic and two-sided p-value of one group; NaN where fewer than 3 pairs or a constant side.

    Pearson: the t test (exact for bivariate normal data). Spearman and Kendall: a permutation p (exact
    up to EXACT_MAX_N cells, Monte Carlo up to MONTE_CARLO_MAX_N), or Kendall's exact null counted where
    neither side has ties (any n); above MONTE_CARLO_MAX_N, Spearman stays Monte Carlo and Kendall with
    ties takes the normal approximation, never reported below the Monte Carlo floor 2 / (R + 1)."""
    x, y, dropped = usable_pairs(x, y, method)
    n = len(x)
    if n < 3 or len(np.unique(x)) < 2 or len(np.unique(y)) < 2:
        return CorrelationTest(np.nan, np.nan, n, dropped, "", np.nan)
    if method == "pearson":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = scipy_stats.pearsonr(x, y)
        return CorrelationTest(
            float(result.statistic), max(float(result.pvalue), P_FLOOR), n, dropped, "t (bivariate normal)", np.nan
        )
    rank_x, rank_y = scipy_stats.rankdata(x), scipy_stats.rankdata(y)
    statistic = float(METHODS[method](rank_x, rank_y).statistic)  # scipy's, as reported everywhere else
    untied = len(np.unique(x)) == n and len(np.unique(y)) == n
    if method == "kendall" and untied and n > EXACT_MAX_N:
        p_value = float(scipy_stats.kendalltau(rank_x, rank_y, method="exact").pvalue)
        return CorrelationTest(statistic, max(p_value, P_FLOOR), n, dropped, "exact (null counted)", np.nan)
    if method == "kendall" and n > MONTE_CARLO_MAX_N:
        floor = 2 / (RANK_PERMUTATIONS + 1)
        p_value = max(float(scipy_stats.kendalltau(rank_x, rank_y, method="asymptotic").pvalue), floor)
        return CorrelationTest(
            statistic, p_value, n, dropped, f"normal approximation (not reported below {floor:.1e})", floor
        )
    p_value, p_min, how = permutation_p(rank_x, rank_y, method, seed)
    return CorrelationTest(statistic, p_value, n, dropped, how, p_min)


def correlate(x: Sequence[float], y: Sequence[float], method: str) -> tuple[float, float]:
    """(statistic, two-sided p-value), NaN where the test is undefined."""
    test = correlation_test(x, y, method)
    return test.statistic, test.p_value


# --- the paper's tests, with their families ------------------------------------------------------------------


def correlations(
    runs: pd.DataFrame,
    outcomes: Sequence[str],
    methods: Sequence[str],
    diverged: str = "exclude",
    primary: Primary = Primary(),
    seed: int = 0,
) -> pd.DataFrame:
    """One row per (scenario, group, outcome, method) over the grid cells, in a stable order; `seed` seeds
    the Monte Carlo permutation p-values."""
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        raise ConfigError(f"unknown correlation methods {unknown}; known: {', '.join(sorted(METHODS))}")
    cells = cell_table(runs, outcomes, diverged)
    rows = []
    for (experiment, model, dataset), scenario_cells in cells.groupby(SCENARIO, sort=True):
        for group, x, members in groups(scenario_cells):
            for outcome in outcomes:
                for method in methods:
                    test = correlation_test(members[x], members[outcome], method, seed)
                    rows.append(
                        [experiment, model, dataset, group, x, outcome, method, test.n, test.statistic, test.p_value]
                        + [primary.role(method, outcome), PREDICTED_SIGN[x] * OUTCOME_DIRECTION[outcome]]
                        + [test.n_dropped, test.p_method, test.p_min]
                    )
    table = pd.DataFrame(rows, columns=CORRELATION_COLUMNS + EXTRA_COLUMNS[:5])  # corrections and intervals follow
    return adjust_p_values(table)


def _adjusted(p_values: np.ndarray, method: str) -> np.ndarray:
    from statsmodels.stats.multitest import multipletests

    adjusted = np.full(len(p_values), np.nan)
    tested = np.isfinite(p_values)
    if tested.any():
        adjusted[tested] = multipletests(p_values[tested], method=method)[1]
    return adjusted


def holm(p_values: np.ndarray) -> np.ndarray:
    """Holm's step-down adjusted p-values; NaN stays NaN and does not count as a test."""
    return _adjusted(np.asarray(p_values, dtype=float), "holm")


def benjamini_hochberg(p_values: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values; NaN stays NaN and does not count as a test."""
    return _adjusted(np.asarray(p_values, dtype=float), "fdr_bh")


# The two multiplicity families of one experiment, outcome and method. The ratio rows (one per scenario, and one
# along the optimizer's own ratio where it differs) are the confirmatory family for the primary analysis: the
# headline is judged by them alone, and a second ratio tested makes it pay for the second look. The per-group rows
# (lr=..., bs=..., the paper's tables) are a separate family: at 5 cells a group's smallest p (0.0167) could
# never pass Holm's first step in a family of 22: pooled with the ratio tests, they would only multiply the
# ratio tests' p-values (21 times on the default grid).
FAMILIES = {
    "ratio": "the ratio test of each scenario, and its test along the optimizer's own ratio where that differs",
    "groups": "the fixed-learning-rate and fixed-batch-size groups of every scenario",
}


def adjust_p_values(table: pd.DataFrame) -> pd.DataFrame:
    """Holm and Benjamini-Hochberg within each family (FAMILIES): one experiment, outcome and method, and
    either its scenarios' ratio tests or its per-group tests."""
    family = np.where(table["group"].isin(RATIO_GROUPS), "ratio", "groups")
    table = table.assign(family=family, p_holm=np.nan, p_bh=np.nan)
    for _, family in table.groupby(["experiment", "outcome", "method", "family"], sort=False):
        p_values = family["p_value"].to_numpy(dtype=float)
        table.loc[family.index, "p_holm"] = holm(p_values)
        table.loc[family.index, "p_bh"] = benjamini_hochberg(p_values)
    return table


# --- intervals -------------------------------------------------------------------------------------------------


# What the ratio rows' interval resamples, as `ci_method` says it. The grid is a design, not a sample: for
# repeats of the same grid (new noise, the cells fixed) the interval is conservative. On the default 5 x 5
# grid, Spearman, 200 simulated repeats: at rho = -0.96 it covered the median estimate 99% of the time and was
# 1.73 times as wide as the estimate's own spread (1.52 at rho = -0.86); Fisher z's, the same formula as the
# groups', is as wide (1.63, 1.56). Holding the design fixed instead (a wild or seed bootstrap) was tried and
# mis-covers: the resampled noise attenuates rank coefficients near +-1 further, and the percentile, basic and
# bias-corrected intervals covered 55-90% at 2-5 seeds.
CELL_BOOTSTRAP = "BCa bootstrap over cells, as a random sample of settings (conservative for this fixed grid)"


def bootstrap_interval(
    x: np.ndarray, y: np.ndarray, method: str, resamples: int, seed: int, level: float = 0.95
) -> tuple[float, float]:
    """BCa bootstrap interval of a correlation, resampling (x, y) pairs: pass one pair per cell, the unit
    the estimate is computed on (CELL_BOOTSTRAP says what that interval is for). None (NaN) below
    MIN_INTERVAL_N pairs or at |r| = 1."""
    x, y, _ = usable_pairs(x, y, method)
    if method in RANK_METHODS:  # ranks keep the order of infinite values; resampled ranks rank alike
        x, y = scipy_stats.rankdata(x), scipy_stats.rankdata(y)
    constant = len(x) == 0 or np.ptp(x) == 0 or np.ptp(y) == 0
    statistic = np.nan if len(x) < MIN_INTERVAL_N or constant else float(coefficient(x, y, ON_RANKS[method]))
    if not np.isfinite(statistic) or abs(statistic) >= 1 - 1e-12:
        return float("nan"), float("nan")
    vectorized = method != "kendall"
    if vectorized:

        def statistic_of(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
            return coefficient(np.moveaxis(a, axis, -1), np.moveaxis(b, axis, -1), method)

    else:  # scipy's O(n log n) tau, resample by resample, beats O(n^2) pairwise signs on large groups

        def statistic_of(a: np.ndarray, b: np.ndarray) -> float:
            return scipy_stats.kendalltau(a, b).statistic

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = scipy_stats.bootstrap(
            (x, y),
            statistic_of,
            paired=True,
            vectorized=vectorized,
            n_resamples=resamples,
            confidence_level=level,
            method="BCa",
            rng=np.random.default_rng(seed),
        )
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


# Variance of the Fisher z of each coefficient: 1/(n-3) for Pearson; Bonett & Wright (2000)'s
# (1 + r^2/2)/(n-3) for Spearman; Fieller, Hartley & Pearson (1957)'s 0.437/(n-4) for Kendall.
FISHER_VARIANCE: dict[str, Callable[[float, int], float]] = {
    "pearson": lambda r, n: 1 / (n - 3),
    "spearman": lambda r, n: (1 + r**2 / 2) / (n - 3),
    "kendall": lambda r, n: 0.437 / (n - 4),
}


def fisher_interval(statistic: float, n: int, method: str, level: float = 0.95) -> tuple[float, float]:
    """Fisher-z interval; none (NaN) below MIN_INTERVAL_N pairs or at |r| = 1, where z is infinite."""
    if not np.isfinite(statistic) or n < MIN_INTERVAL_N or abs(statistic) >= 1 - 1e-12:
        return float("nan"), float("nan")
    half = scipy_stats.norm.ppf(0.5 + level / 2) * np.sqrt(FISHER_VARIANCE[method](statistic, n))
    z = np.arctanh(statistic)
    return float(np.tanh(z - half)), float(np.tanh(z + half))


def add_intervals(table: pd.DataFrame, runs: pd.DataFrame, resamples: int, seed: int, diverged: str) -> pd.DataFrame:
    """95% intervals: a BCa bootstrap over cells for the rows along a ratio (the headline tests, whose x is far
    from normal), Fisher z for the per-rate and per-size groups."""
    cells = cell_table(runs, list(dict.fromkeys(table["outcome"])), diverged)
    by_scenario = dict(list(cells.groupby(SCENARIO, sort=False)))
    low, high, methods = [], [], []
    for row in table.itertuples(index=False):
        if row.group in RATIO_GROUPS:
            members = by_scenario[(row.experiment, row.model, row.dataset)]
            x, y = members[row.x].to_numpy(), members[row.outcome].to_numpy()
            interval, how = bootstrap_interval(x, y, row.method, resamples, seed), CELL_BOOTSTRAP
        else:
            interval, how = fisher_interval(row.statistic, row.n, row.method), "Fisher z"
        finite = bool(np.isfinite(interval[0]))
        low.append(interval[0] if finite else np.nan)
        high.append(interval[1] if finite else np.nan)
        methods.append(how if finite else "")
    return table.assign(ci_low=np.array(low, dtype=float), ci_high=np.array(high, dtype=float), ci_method=methods)


# --- beyond single correlations ----------------------------------------------------------------------------------


def stratified_tests(
    cells: pd.DataFrame, outcomes: Sequence[str], primary: Primary, permutations: int, seed: int
) -> pd.DataFrame:
    """One test per scenario, outcome and axis: is the outcome monotone in batch size within learning
    rates (or in learning rate within batch sizes), pooled over all groups?

    The statistic is the mean of the groups' coefficients (primary method); its null comes from permuting
    the outcome within each group independently, which keeps every difference between groups. The p-value
    is Monte Carlo, (b + 1) / (permutations + 1) (Phipson & Smyth 2010): never below 1 / (permutations + 1).
    """
    method, rng = primary.method, np.random.default_rng(seed)
    rows = []
    for (experiment, model, dataset), scenario_cells in cells.groupby(SCENARIO, sort=True):
        for outcome in outcomes:
            for x, within in (("batch_size", "lr"), ("lr", "batch_size")):
                observed, null, used = 0.0, np.zeros(permutations), 0
                for _, members in scenario_cells.groupby(within, sort=True):
                    values_x, values_y, _ = usable_pairs(members[x], members[outcome], method)
                    if len(values_x) < 3 or len(np.unique(values_x)) < 2 or len(np.unique(values_y)) < 2:
                        continue
                    if method in RANK_METHODS:
                        values_x, values_y = scipy_stats.rankdata(values_x), scipy_stats.rankdata(values_y)
                    shuffled = rng.permuted(np.tile(values_y, (permutations, 1)), axis=1)
                    observed += float(coefficient(values_x, values_y, ON_RANKS[method]))
                    null += coefficient(values_x, shuffled, ON_RANKS[method])
                    used += 1
                statistic = observed / used if used else np.nan
                exceed = int((np.abs(null) >= abs(observed) - 1e-12).sum()) if used else 0
                rows.append(
                    [experiment, model, dataset, outcome, x, within, method, primary.role(method, outcome), used]
                    + [statistic, PREDICTED_SIGN[x] * OUTCOME_DIRECTION[outcome]]
                    + [(exceed + 1) / (permutations + 1) if used else np.nan, permutations]
                )
    return pd.DataFrame(
        rows,
        columns=SCENARIO
        + ["outcome", "x", "within", "method", "role", "groups", "statistic", "expected_sign", "p_value"]
        + ["permutations"],
    )


def ratio_spline(log_ratio: np.ndarray) -> np.ndarray:
    """A cubic B-spline basis in log2 ratio (its columns sum to 1, so it holds the intercept): at most 5
    columns (one interior knot, at the median distinct ratio), never more than the distinct ratios less
    one, so that batch size stays identifiable beside it. On the default grid (17 distinct ratios over 25
    cells) the test of batch size beside it keeps its level (3 to 5% at 0.05 for linear, quadratic,
    exponential and logistic ratio-only truths, 1,000 simulations each) and finds a batch-size effect of
    0.003 per doubling at a noise of 0.003 about 80% of the time."""
    from scipy.interpolate import BSpline

    distinct = np.unique(log_ratio)
    columns = min(5, len(distinct) - 1)
    degree = min(3, columns - 1)
    interior = np.quantile(distinct, np.linspace(0, 1, columns - degree + 1)[1:-1])
    knots = np.r_[[distinct[0]] * (degree + 1), interior, [distinct[-1]] * (degree + 1)]
    return BSpline.design_matrix(np.clip(log_ratio, distinct[0], distinct[-1]), knots, degree).toarray()


def ratio_regressions(cells: pd.DataFrame, outcomes: Sequence[str], primary: Primary) -> pd.DataFrame:
    """Per scenario and outcome: does batch size matter beyond the ratio? Nested models of the cell means.

    The test: OLS of the outcome on a smooth function of log2 ratio (`ratio_spline`, `ratio_df` columns)
    and log2 batch size; `beyond_ratio` is the change per doubling of the batch size at a fixed ratio,
    with its 95% interval (HC3 errors, t), and `p_beyond_ratio` tests it against zero, the model where
    only the ratio matters (whatever the shape of its effect); NaN where no two cells share a ratio, as
    the coefficient would then rest on the spline's shape alone. The description: OLS on log2(batch size)
    and log2(learning rate), `slope_batch_size` and `slope_lr` the change per doubling of one with the
    other fixed, and `slope_sum` their sum, with HC3 intervals. The sum is zero under a ratio-only truth
    only when the outcome is linear in log ratio or the two axes are spaced alike: on the default grid
    (learning rates equally spaced, batch sizes doubling) a curved ratio-only truth gives slope sums of
    0.01 beside slopes of 0.05, so the sum is described, not tested. Seeds enter as cell means: the cell
    is the cluster (seeds of one cell share its lack of fit), and as every seed covers every cell, seed
    effects cancel from the slopes.
    """
    import statsmodels.api as sm

    columns = ["slope_batch_size", "slope_lr", "slope_sum"]
    bounds = [f"{name}_{end}" for name in columns for end in ("low", "high")]
    rows = []
    for (experiment, model, dataset), scenario_cells in cells.groupby(SCENARIO, sort=True):
        for outcome in outcomes:
            y = scenario_cells[outcome].to_numpy(dtype=float)
            keep = np.isfinite(y)
            members = scenario_cells[keep]
            estimates = [np.nan] * (3 + 6 + 2 + 1 + 1 + 4)
            enough = (
                keep.sum() >= MIN_REGRESSION_CELLS
                and members["batch_size"].nunique() >= 2
                and members["lr"].nunique() >= 2
                and np.ptp(y[keep]) > 0
            )
            if enough:
                design = pd.DataFrame(
                    {
                        "const": 1.0,
                        "log2_batch_size": np.log2(members["batch_size"].to_numpy(dtype=float)),
                        "log2_lr": np.log2(members["lr"].to_numpy(dtype=float)),
                    }
                )
                spline = ratio_spline(design["log2_batch_size"].to_numpy() - design["log2_lr"].to_numpy())
                nested = np.column_stack([spline, design["log2_batch_size"].to_numpy()])
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    fit = sm.OLS(y[keep], design).fit(cov_type="HC3", use_t=True)
                    both = fit.t_test("log2_batch_size + log2_lr = 0")
                    beyond = sm.OLS(y[keep], nested).fit(cov_type="HC3", use_t=True)
                intervals = fit.conf_int(0.05)
                sum_interval = np.asarray(both.conf_int(0.05)).ravel()
                estimates = (
                    [fit.params["log2_batch_size"], fit.params["log2_lr"], float(np.squeeze(both.effect))]
                    + list(intervals.loc["log2_batch_size"])
                    + list(intervals.loc["log2_lr"])
                    + list(sum_interval)
                    + [max(float(fit.pvalues[term]), P_FLOOR) for term in ("log2_batch_size", "log2_lr")]
                    + [fit.rsquared, spline.shape[1]]
                )
                # batch size at a fixed ratio is seen only where two cells share a ratio; elsewhere its
                # coefficient would rest on the spline's shape alone
                ratios = (members["batch_size"] / members["lr"]).map(ratio_set)
                if ratios.duplicated().any():
                    estimates += [float(beyond.params[-1]), *np.asarray(beyond.conf_int(0.05))[-1]]
                    estimates += [max(float(beyond.pvalues[-1]), P_FLOOR)]
                else:
                    estimates += [np.nan] * 4
            rows.append(
                [experiment, model, dataset, outcome, primary.role(primary.method, outcome), int(keep.sum())]
                + [int((~keep).sum())]
                + estimates
            )
    return pd.DataFrame(
        rows,
        columns=SCENARIO
        + ["outcome", "role", "cells", "n_dropped"]
        + columns
        + bounds
        + ["p_batch_size", "p_lr", "r_squared", "ratio_df", "beyond_ratio", "beyond_ratio_low", "beyond_ratio_high"]
        + ["p_beyond_ratio"],
    )


SLOPE_COLUMNS = SCENARIO + ["measure", "cells", "predicted_slope", "slope", "slope_low", "slope_high"]
SLOPE_COLUMNS += ["p_predicted", "p_zero", "r_squared", "slope_lr", "slope_lr_low", "slope_lr_high"]
SLOPE_COLUMNS += ["slope_batch_size", "slope_batch_size_low", "slope_batch_size_high"]


def measure_slopes(cells: pd.DataFrame, measures: Sequence[str]) -> pd.DataFrame:
    """Per scenario and measure, OLS of log(measure) on log(learning rate / batch size) over the cells (seed
    means), HC3 errors and t(n - 2): the exponent of a power law, which for the fluctuation the
    Ornstein-Uhlenbeck model predicts to be 1 (`p_predicted` tests that; `p_zero`, no dependence at all).
    Then log(measure) on log(learning rate) and log(batch size) apart (HC3, t(n - 3)): if only the ratio
    counts, their slopes are opposite (1 and -1 for the fluctuation). Cells with a measure <= 0 or unknown
    are left out; none below MIN_REGRESSION_CELLS cells or with a single learning rate and batch size."""
    import statsmodels.api as sm

    rows = []
    for (experiment, model, dataset), scenario_cells in cells.groupby(SCENARIO, sort=True):
        for measure in measures:
            values = scenario_cells[measure].to_numpy(dtype=float)
            keep = np.isfinite(values) & (values > 0)
            if not keep.any():  # not measured in this scenario
                continue
            members = scenario_cells[keep]
            predicted = PREDICTED_SLOPE.get(measure, np.nan)
            estimates = [np.nan] * 12
            if (
                keep.sum() >= MIN_REGRESSION_CELLS
                and members["batch_size"].nunique() >= 2
                and members["lr"].nunique() >= 2
            ):
                log_lr = np.log(members["lr"].to_numpy(dtype=float))
                log_batch_size = np.log(members["batch_size"].to_numpy(dtype=float))
                y = np.log(values[keep])
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    ratio = sm.OLS(y, sm.add_constant(log_lr - log_batch_size)).fit(cov_type="HC3", use_t=True)
                    both = pd.DataFrame({"const": 1.0, "log_lr": log_lr, "log_batch_size": log_batch_size})
                    apart = sm.OLS(y, both).fit(cov_type="HC3", use_t=True)
                    p_predicted = (
                        float(ratio.t_test(([0.0, 1.0], predicted)).pvalue) if np.isfinite(predicted) else np.nan
                    )
                low, high = ratio.conf_int(0.05)[1]
                bounds = apart.conf_int(0.05)
                estimates = [
                    float(ratio.params[1]),
                    float(low),
                    float(high),
                    max(p_predicted, P_FLOOR) if np.isfinite(p_predicted) else np.nan,
                    max(float(ratio.pvalues[1]), P_FLOOR),
                    float(ratio.rsquared),
                    float(apart.params["log_lr"]),
                    *map(float, bounds.loc["log_lr"]),
                    float(apart.params["log_batch_size"]),
                    *map(float, bounds.loc["log_batch_size"]),
                ]
            rows.append([experiment, model, dataset, measure, int(keep.sum()), predicted, *estimates])
    return pd.DataFrame(rows, columns=SLOPE_COLUMNS)


def divergence_cells(runs: pd.DataFrame) -> pd.DataFrame:
    """Divergence as an outcome: per grid cell, its runs, how many diverged and the rate (every run)."""
    runs = with_diverged(runs)
    cells = runs.groupby(CELL, sort=True)["diverged"].agg(runs="size", diverged="sum").reset_index()
    cells["diverged"] = cells["diverged"].astype(int)
    cells.insert(len(CELL), "ratio", cells["batch_size"] / cells["lr"])
    return cells.assign(rate=cells["diverged"] / cells["runs"])


HEADLINE_COLUMNS = SCENARIO + ["analysis", "diverged_policy", "x", "outcome", "method", "n", "statistic"]
HEADLINE_COLUMNS += ["ci_low", "ci_high", "p_value", "p_holm", "runs", "diverged_runs", "reading"]
# Beside the primary outcome, the headline shows what else moved with the ratio: a fall of test accuracy
# that train accuracy matches, with no rise of the gap, is one of how far the runs trained (a large ratio
# takes fewer steps under equal epochs), not of generalization.
BESIDE_PRIMARY = ("final_train_acc", "gap")
READINGS = {
    "predicted": "as the paper predicts: {primary} worsens with the ratio and the gap rises with it",
    "trained_further": (
        "how far the runs trained: {primary} worsens with the ratio, train accuracy falls with it too and the gap "
        "does not rise; compare budgets (config/protocols.yaml) before reading it as generalization"
    ),
    "gap_flat": "{primary} worsens with the ratio; neither train accuracy nor the gap moves significantly with it",
    "unclear": (
        "{primary} worsens with the ratio, but train accuracy and the gap move as neither generalization (the gap "
        "rising) nor training progress (train accuracy falling) would: read their rows"
    ),
    "opposite": "against the paper: {primary} improves with the ratio",
    "none": "no significant effect of the ratio on {primary}",
}


def reading(primary: Primary, tests: dict[str, CorrelationTest], p_holm: float, alpha: float) -> str:
    """What the primary ratio test says, read with train accuracy and the gap (`tests` by outcome, raw p):
    one of READINGS, as text. Empty where the primary outcome is not a test-set accuracy or loss, or a test
    is missing."""
    test = tests.get(primary.outcome)
    if primary.outcome not in ("final_test_acc", "best_test_acc", "final_test_loss") or test is None:
        return ""
    if not np.isfinite(p_holm) or not np.isfinite(test.statistic):
        return ""
    toward = np.sign(test.statistic) * OUTCOME_DIRECTION[primary.outcome]  # -1: worse with the ratio
    if p_holm >= alpha:
        key = "none"
    elif toward > 0:
        key = "opposite"
    else:
        train, gap = tests["final_train_acc"], tests["gap"]
        gap_moves, train_moves = gap.p_value < alpha, train.p_value < alpha
        if gap_moves and gap.statistic > 0:
            key = "predicted"
        elif train_moves and train.statistic < 0:
            key = "trained_further"
        elif not gap_moves and not train_moves:
            key = "gap_flat"
        else:  # the gap falls, or train accuracy rises, significantly
            key = "unclear"
    return READINGS[key].format(primary=primary.outcome)


def headline(
    runs: pd.DataFrame,
    table: pd.DataFrame,
    primary: Primary,
    policy: str,
    resamples: int,
    seed: int,
    alpha: float = 0.05,
) -> pd.DataFrame:
    """Per scenario: the primary ratio test under both divergence policies (Holm from `table` for the
    configured one), train accuracy and the gap against the ratio beside it (configured policy, raw p), the
    reading of the three together (READINGS, on the configured policy's row), and the divergence rate
    against the ratio, so divergence is reported, not only filtered. Rows: analysis `ratio` (policy
    exclude, include), `beside` (one per BESIDE_PRIMARY outcome) and `divergence`."""
    divergence = divergence_cells(runs)
    beside = [outcome for outcome in BESIDE_PRIMARY if outcome != primary.outcome and outcome in runs]
    tables = {name: cell_table(runs, [primary.outcome], name) for name in POLICIES}
    beside_cells = cell_table(runs, beside, policy) if beside else None
    rows = []
    for scenario, cells in divergence.groupby(SCENARIO, sort=True):
        counts = [int(cells["runs"].sum()), int(cells["diverged"].sum())]
        tests: dict[str, CorrelationTest] = {}
        beside_rows = []
        for outcome in beside:
            members = beside_cells[in_scenario(beside_cells, scenario)]
            tests[outcome] = test = correlation_test(members["ratio"], members[outcome], primary.method, seed)
            interval = bootstrap_interval(
                members["ratio"].to_numpy(), members[outcome].to_numpy(), primary.method, resamples, seed
            )
            beside_rows.append(
                [*scenario, "beside", policy, "ratio", outcome, primary.method, test.n, test.statistic]
                + [*interval, test.p_value, np.nan, *counts, ""]
            )
        for name in POLICIES:
            members = tables[name]
            members = members[in_scenario(members, scenario)]
            test = correlation_test(members["ratio"], members[primary.outcome], primary.method, seed)
            interval = bootstrap_interval(
                members["ratio"].to_numpy(), members[primary.outcome].to_numpy(), primary.method, resamples, seed
            )
            p_holm, text = np.nan, ""
            if name == policy:
                chosen = table[
                    in_scenario(table, scenario)
                    & (table["group"] == "ratio")
                    & (table["method"] == primary.method)
                    & (table["outcome"] == primary.outcome)
                ]
                p_holm = float(chosen["p_holm"].iloc[0]) if len(chosen) else np.nan
                text = reading(primary, tests | {primary.outcome: test}, p_holm, alpha) if len(beside) == 2 else ""
            rows.append(
                [*scenario, "ratio", name, "ratio", primary.outcome, primary.method, test.n, test.statistic]
                + [*interval, test.p_value, p_holm, *counts, text]
            )
        rows += beside_rows
        test = correlation_test(cells["ratio"], cells["rate"], primary.method, seed)
        interval = bootstrap_interval(
            cells["ratio"].to_numpy(), cells["rate"].to_numpy(), primary.method, resamples, seed
        )
        rows.append(
            [*scenario, "divergence", "all runs", "ratio", "diverged_rate", primary.method, test.n, test.statistic]
            + [*interval, test.p_value, np.nan, *counts, ""]
        )
    return pd.DataFrame(rows, columns=HEADLINE_COLUMNS)


def granulated_kendall(runs: pd.DataFrame, outcomes: Sequence[str], diverged: str = "exclude") -> pd.DataFrame:
    """Jiang et al. 2019's granulated Kendall coefficient of the ratio as a predictor of each outcome.

    psi_batch_size: mean tau(ratio, outcome) over the groups with a fixed learning rate (only the batch
    size varies there, and the ratio is proportional to it); psi_learning_rate: the same over groups
    with a fixed batch size (the ratio falls as the learning rate rises, so tau(ratio, y) = -tau(lr, y));
    psi: their mean. Negative values mean the ratio predicts lower accuracy, as the paper claims.
    """
    kendall = correlations(runs, outcomes, ["kendall"], diverged)
    rows = []
    for (experiment, model, dataset, outcome), part in kendall.groupby(SCENARIO + ["outcome"], sort=True):
        psi_batch_size = part.loc[part["x"] == "batch_size", "statistic"].mean()
        psi_learning_rate = -part.loc[part["x"] == "lr", "statistic"].mean()
        psi = (
            np.nanmean([psi_batch_size, psi_learning_rate])
            if np.isfinite([psi_batch_size, psi_learning_rate]).any()
            else np.nan
        )
        rows.append([experiment, model, dataset, outcome, psi_batch_size, psi_learning_rate, psi])
    return pd.DataFrame(rows, columns=SCENARIO + ["outcome", "psi_batch_size", "psi_learning_rate", "psi"])


ISO_RATIO_COLUMNS = SCENARIO + ["outcome", "along", "ratio_sets", "cells", "within_sd", "between_sd", "eta_squared"]
ISO_RATIO_COLUMNS += ["eta_squared_chance", "p_permutation", "seed_sd", "invariance_f", "p_invariance"]


def eta_squared(values: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Share of the variance of `values` (..., cells) between the sets given by integer `labels` (cells)."""
    counts = np.bincount(labels)
    means = np.stack([np.bincount(labels, weights=row) for row in values.reshape(-1, values.shape[-1])])
    means = means.reshape(*values.shape[:-1], len(counts)) / counts
    within = ((values - means[..., labels]) ** 2).sum(axis=-1)
    total = ((values - values.mean(axis=-1, keepdims=True)) ** 2).sum(axis=-1)
    return 1 - within / total


def ratio_set(ratio: float) -> float:
    """The key of a ratio's iso-ratio set: the ratio to 9 significant digits, so that 16 / 0.02 and
    48 / 0.06 are one set whatever the rounding of their quotients."""
    return float(f"{ratio:.9g}")


def iso_ratio(
    runs: pd.DataFrame, outcomes: Sequence[str], diverged: str = "exclude", permutations: int = 9999, seed: int = 0
) -> pd.DataFrame:
    """How much the outcome varies among grid cells sharing one ratio, against across those sets.

    Cells (seed means; medians under include) are grouped by their exact ratio (to 9 significant digits);
    a set needs two or more distinct (batch size, learning rate) cells: replicate seeds of one cell are not
    an iso-ratio set.
    `within_sd` is the pooled standard deviation of the cell means inside the sets, `between_sd` that of
    the set means, `eta_squared` the share of the cell means' variance the ratio set explains.

    eta squared is large by chance on a small grid: with N cells in k sets its mean under random
    assignment is (k - 1) / (N - 1) (`eta_squared_chance`: 0.33 for 13 cells in 5 sets), and any outcome
    that varies smoothly over the grid (with batch size alone, say) gives a large one too. So it comes
    with `p_permutation`, the Monte Carlo permutation p of eta squared (cell values shuffled across the
    cells of the sets, (b + 1) / (R + 1), one-sided: large eta squared), which says the sets differ, not
    that only the ratio matters. The invariance itself needs seeds: if equal ratios give equal results,
    cells of one set differ only by seed noise, so the within-set variance of the cell means is the seeds'
    variance over the seeds per cell. `seed_sd` is the pooled standard deviation between seeds of one
    cell, `invariance_f` that ratio of variances and `p_invariance` its F test (small: cells sharing a
    ratio differ by more than their seeds do); all NaN with one seed, and the F test NaN under `include`,
    where a cell is its seeds' median.

    `along` names the ratio whose sets these are: `ratio` (the paper's, every scenario) or `optimizer_ratio`
    (the optimizer's own, B / lr^2 for Adam(W), in the scenarios where it orders the cells otherwise:
    `optimizer_ratio_differs`), so that the invariance each optimizer's theory predicts is checked too.
    """
    cells = cell_table(runs, outcomes, diverged)
    runs = with_diverged(runs)
    runs = runs if diverged == "include" else runs.merge(cells[CELL], on=CELL)
    rng = np.random.default_rng(seed)
    scenarios = list(cells.groupby(SCENARIO, sort=True))
    # every scenario along the paper's ratio first, so that those rows draw the permutations they draw alone
    checks = [("ratio", *pair) for pair in scenarios]
    checks += [("optimizer_ratio", *pair) for pair in scenarios if optimizer_ratio_differs(pair[1])]
    rows = []
    for along, (experiment, model, dataset), scenario in checks:
        key = scenario[along].map(ratio_set)
        scenario_runs = runs[in_scenario(runs, (experiment, model, dataset))]
        for outcome in outcomes:
            values = scenario[outcome].astype(float)
            finite = key[np.isfinite(values)]
            sizes = key.map(finite.value_counts()).fillna(0)
            shared = values[(sizes >= 2) & np.isfinite(values)]
            sets = shared.groupby(key[shared.index])
            seed_sd = pooled_seed_sd(scenario_runs, outcome)
            summary = [experiment, model, dataset, outcome, along, sets.ngroups, len(shared)]
            if sets.ngroups < 2:
                rows.append(summary + [np.nan] * 5 + [seed_sd, np.nan, np.nan])
                continue
            labels = pd.factorize(key[shared.index])[0]
            within = ((shared - sets.transform("mean")) ** 2).sum()
            degrees = max(len(shared) - sets.ngroups, 1)
            within_sd = float(np.sqrt(within / degrees))
            between_sd = float(sets.mean().std(ddof=1))
            chance = (sets.ngroups - 1) / (len(shared) - 1)
            constant = np.ptp(shared) <= 1e-12 * max(1.0, float(np.abs(shared).max()))
            observed, p_permutation = np.nan, np.nan
            if not constant:
                observed = float(eta_squared(shared.to_numpy(), labels))
                shuffled = rng.permuted(np.tile(shared.to_numpy(), (permutations, 1)), axis=1)
                exceed = int((eta_squared(shuffled, labels) >= observed - 1e-12).sum())
                p_permutation = (exceed + 1) / (permutations + 1)
            invariance_f, p_invariance = (
                seed_noise_test(scenario_runs, outcome, scenario.loc[shared.index], float(within), degrees)
                if diverged == "exclude"  # under include a cell is its seeds' median, whose variance is not s^2/m
                else (np.nan, np.nan)
            )
            rows.append(
                summary + [within_sd, between_sd, observed, chance, p_permutation, seed_sd, invariance_f, p_invariance]
            )
    return pd.DataFrame(rows, columns=ISO_RATIO_COLUMNS)


def seed_noise_test(runs: pd.DataFrame, outcome: str, cells: pd.DataFrame, within: float, degrees: int):
    """(F, p) of the within-set variance of the cell means, `within` / `degrees`, against what seed noise
    alone gives them: the pooled between-seed variance (all cells of the scenario) times the mean of
    1 / seeds over `cells`. NaN without replicate seeds."""
    variance, seed_degrees, seeds_per_cell = pooled_seed_variance(runs, outcome)
    seeds = seeds_per_cell.reindex(pd.MultiIndex.from_frame(cells[CELL])).to_numpy(dtype=float)
    if seed_degrees == 0 or variance == 0 or not np.isfinite(seeds).all():
        return np.nan, np.nan
    statistic = (within / degrees) / (variance * float(np.mean(1 / seeds)))
    return float(statistic), float(scipy_stats.f.sf(statistic, degrees, seed_degrees))


def pooled_seed_variance(runs: pd.DataFrame, outcome: str) -> tuple[float, int, pd.Series]:
    """(variance, degrees of freedom, finite seeds per cell) of an outcome between seeds of one cell,
    pooled over cells; NaN and 0 without replicates."""
    finite = runs[np.isfinite(runs[outcome].astype(float))]
    by_cell = finite.groupby(CELL)[outcome]
    degrees = int((by_cell.size() - 1).clip(lower=0).sum())
    if degrees == 0:
        return float("nan"), 0, by_cell.size()
    return float(((finite[outcome] - by_cell.transform("mean")) ** 2).sum() / degrees), degrees, by_cell.size()


def pooled_seed_sd(runs: pd.DataFrame, outcome: str) -> float:
    """Pooled standard deviation of an outcome between seeds of one cell; NaN without replicates."""
    return float(np.sqrt(pooled_seed_variance(runs, outcome)[0]))


# --- everything `bslr stats` writes ------------------------------------------------------------------------------


@dataclass
class Analysis:
    """Every table of one statistics run, with the settings they were computed under."""

    correlations: pd.DataFrame
    granulated_kendall: pd.DataFrame
    iso_ratio: pd.DataFrame
    regression: pd.DataFrame
    stratified: pd.DataFrame
    divergence: pd.DataFrame
    headline: pd.DataFrame
    primary: Primary
    policy: str
    runs: pd.DataFrame
    measure_slopes: pd.DataFrame


def analyse(
    runs: pd.DataFrame,
    outcomes: Sequence[str],
    methods: Sequence[str],
    primary: Primary = Primary(),
    diverged: str = "exclude",
    resamples: int = 1000,
    seed: int = 0,
    permutations: int = 9999,
    alpha: float = 0.05,
) -> Analysis:
    """All statistics of a runs table. The primary method and outcome are tested whatever `methods` and
    `outcomes` list."""
    check_policy(diverged)
    if primary.method not in METHODS or primary.outcome not in OUTCOME_DIRECTION:
        raise ConfigError(f"analysis.primary must name a known method and outcome, not {primary}")
    unknown = sorted(set(outcomes) - set(OUTCOME_DIRECTION))
    if unknown:
        raise ConfigError(f"unknown outcomes {unknown}; known: {', '.join(OUTCOME_DIRECTION)}")
    outcomes = list(dict.fromkeys([*outcomes, primary.outcome]))
    methods = list(dict.fromkeys([*methods, primary.method]))
    runs = with_diverged(without_censored(runs))
    table = correlations(runs, outcomes, methods, diverged, primary, seed)
    table = add_intervals(table, runs, resamples, seed, diverged)
    cells = cell_table(runs, outcomes, diverged)
    measured = [name for name in MEASURE_DIRECTION if name in runs and runs[name].notna().any()]
    return Analysis(
        correlations=table,
        granulated_kendall=granulated_kendall(runs, outcomes, diverged),
        iso_ratio=iso_ratio(runs, outcomes, diverged, permutations, seed),
        regression=ratio_regressions(cells, outcomes, primary),
        stratified=stratified_tests(cells, outcomes, primary, permutations, seed),
        divergence=divergence_cells(runs),
        headline=headline(runs, table, primary, diverged, resamples, seed, alpha),
        primary=primary,
        policy=diverged,
        runs=runs,
        measure_slopes=measure_slopes(cell_table(runs, measured, diverged), measured),
    )
