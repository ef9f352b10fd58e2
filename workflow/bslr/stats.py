"""Correlation tests in the paper's grouping.

Per scenario (experiment, model, dataset), as in He, Liu & Tao (2019), Section 5:
- within each fixed learning rate, the outcome against batch size (group `lr=0.01`, x `batch_size`);
- within each fixed batch size, the outcome against learning rate (group `bs=16`, x `lr`);
- over all runs, the outcome against the ratio batch size / learning rate (group `ratio`, x `ratio`).
Each group is tested with every method (Pearson r, Spearman rho; scipy.stats) and reports n and the
two-sided p-value (Spearman's exact by permutation for up to 8 runs, else scipy's t approximation).
Diverged runs (NaN or infinite loss) are dropped first under the policy `exclude`; `include` keeps them
with the metrics of their last epoch.

Beyond the paper:
- Kendall's tau (scipy.stats.kendalltau) as a third method, and the granulated Kendall coefficient of
  Jiang et al. 2019 ("Fantastic Generalization Measures and Where to Find Them", Section 4.1): for each
  hyperparameter axis, the mean Kendall tau between the ratio and the outcome over the groups in which
  only that axis varies; Psi is the mean over the axes.
- 95% bootstrap confidence intervals (scipy.stats.bootstrap, paired resampling of runs, BCa, seeded)
  for every ratio correlation; Fisher-z intervals for the smaller groups.
- Multiple-testing correction within each family of tests (one experiment, outcome and method: all its
  scenarios and groups): Holm's step-down (Holm 1979) and Benjamini-Hochberg (1995,
  scipy.stats.false_discovery_control), next to the raw p-values.
- The iso-ratio check: runs sharing a batch size / learning rate ratio should score alike if the ratio
  is what matters (Smith et al. 2018 and the paper's rebuttal); see `iso_ratio`.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats

from bslr.config import format_lr
from bslr.errors import ConfigError

SCENARIO = ["experiment", "model", "dataset"]
CORRELATION_COLUMNS = SCENARIO + ["group", "x", "outcome", "method", "n", "statistic", "p_value"]
EXTRA_COLUMNS = ["expected_sign", "p_holm", "p_bh", "ci_low", "ci_high", "ci_method"]

METHODS: dict[str, Callable] = {
    "pearson": scipy_stats.pearsonr,
    "spearman": scipy_stats.spearmanr,
    "kendall": scipy_stats.kendalltau,
}

# The paper's prediction for accuracy: worse with batch size and with the ratio, better with learning
# rate. Outcomes where lower is better (gap, losses) flip the sign.
PREDICTED_SIGN = {"batch_size": -1, "lr": 1, "ratio": -1}
OUTCOME_DIRECTION = {
    "final_test_acc": 1,
    "best_test_acc": 1,
    "final_train_acc": 1,
    "gap": -1,
    "final_test_loss": -1,
    "final_train_loss": -1,
}


def usable_pairs(x: Sequence[float], y: Sequence[float], minimum: int) -> tuple[np.ndarray, np.ndarray] | None:
    """The finite (x, y) pairs, or None when fewer than `minimum` remain or either side is constant."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    if len(x) < minimum or np.ptp(x) == 0 or np.ptp(y) == 0:
        return None
    return x, y


def correlate(x: Sequence[float], y: Sequence[float], method: str) -> tuple[float, float]:
    """(statistic, two-sided p-value), NaN where the test is undefined."""
    pairs = usable_pairs(x, y, 3)
    if pairs is None:
        return float("nan"), float("nan")
    x, y = pairs
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = METHODS[method](x, y)
    if method == "spearman" and len(x) <= EXACT_SPEARMAN_MAX_N:
        return float(result.statistic), exact_spearman_p(x, y, float(result.statistic))
    return float(result.statistic), float(result.pvalue)


# Up to this many runs, Spearman's p-value is exact (all n! pairings) rather than scipy's t approximation,
# which is far too small for a handful of runs (rho = 1 over 3 runs has exact p = 1/3, not 0).
# Kendall's tau is exact for small n in scipy already.
EXACT_SPEARMAN_MAX_N = 8


def exact_spearman_p(x: np.ndarray, y: np.ndarray, rho: float) -> float:
    """Two-sided permutation p-value of Spearman's rho over every pairing of x with y."""
    rank_x = scipy_stats.rankdata(x)
    rank_x = (rank_x - rank_x.mean()) / np.linalg.norm(rank_x - rank_x.mean())
    rank_y = scipy_stats.rankdata(y)
    permuted = np.array(list(itertools.permutations(rank_y)))
    permuted = permuted - permuted.mean(axis=1, keepdims=True)
    rhos = permuted @ rank_x / np.linalg.norm(permuted, axis=1)
    return float(np.mean(np.abs(rhos) >= abs(rho) - 1e-12))


def groups(scenario_runs: pd.DataFrame) -> list[tuple[str, str, pd.DataFrame]]:
    """The paper's groups of one scenario: (group label, x column, runs of the group)."""
    found = [(f"lr={format_lr(lr)}", "batch_size", runs) for lr, runs in scenario_runs.groupby("lr", sort=True)]
    found += [(f"bs={int(bs)}", "lr", runs) for bs, runs in scenario_runs.groupby("batch_size", sort=True)]
    found.append(("ratio", "ratio", scenario_runs))
    return found


def apply_diverged_policy(runs: pd.DataFrame, policy: str) -> pd.DataFrame:
    if policy not in ("include", "exclude"):
        raise ConfigError(f"analysis.diverged must be include or exclude, not {policy!r}")
    return runs[~runs["diverged"].astype(bool)] if policy == "exclude" else runs


def seed_means(runs: pd.DataFrame, outcomes: Sequence[str]) -> pd.DataFrame:
    """With several seeds per grid point, test the seed means: one point per (batch size, learning rate),
    so that n counts grid points, not runs that share a setting."""
    keys = SCENARIO + ["batch_size", "lr"]
    if not runs.duplicated(keys).any():
        return runs
    means = runs.groupby(keys, sort=True, as_index=False)[list(outcomes)].mean()
    return means.assign(ratio=means["batch_size"] / means["lr"])


def correlations(
    runs: pd.DataFrame, outcomes: Sequence[str], methods: Sequence[str], diverged: str = "exclude"
) -> pd.DataFrame:
    """One row per (scenario, group, outcome, method), in a stable order."""
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        raise ConfigError(f"unknown correlation methods {unknown}; known: {', '.join(sorted(METHODS))}")
    if "diverged" in runs:
        runs = apply_diverged_policy(runs, diverged)
    runs = seed_means(runs, outcomes)
    rows = []
    for (experiment, model, dataset), scenario_runs in runs.groupby(SCENARIO, sort=True):
        for group, x, members in groups(scenario_runs):
            for outcome in outcomes:
                n = int((np.isfinite(members[x]) & np.isfinite(members[outcome])).sum())
                for method in methods:
                    statistic, p_value = correlate(members[x], members[outcome], method)
                    rows.append([experiment, model, dataset, group, x, outcome, method, n, statistic, p_value])
    table = pd.DataFrame(rows, columns=CORRELATION_COLUMNS)
    table["expected_sign"] = [
        PREDICTED_SIGN[x] * OUTCOME_DIRECTION[o] for x, o in zip(table["x"], table["outcome"], strict=True)
    ]
    return adjust_p_values(table)


def holm(p_values: np.ndarray) -> np.ndarray:
    """Holm's step-down adjusted p-values (NaN stays NaN and does not count as a test)."""
    adjusted = np.full(len(p_values), np.nan)
    tested = np.flatnonzero(np.isfinite(p_values))
    order = tested[np.argsort(p_values[tested], kind="stable")]
    count = len(order)
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (count - rank) * p_values[index]))
        adjusted[index] = running
    return adjusted


def benjamini_hochberg(p_values: np.ndarray) -> np.ndarray:
    adjusted = np.full(len(p_values), np.nan)
    tested = np.isfinite(p_values)
    if tested.any():
        adjusted[tested] = scipy_stats.false_discovery_control(p_values[tested], method="bh")
    return adjusted


def adjust_p_values(table: pd.DataFrame) -> pd.DataFrame:
    """Holm and Benjamini-Hochberg within each family: one experiment, outcome and method."""
    table = table.assign(p_holm=np.nan, p_bh=np.nan)
    for _, family in table.groupby(["experiment", "outcome", "method"], sort=False):
        p_values = family["p_value"].to_numpy(dtype=float)
        table.loc[family.index, "p_holm"] = holm(p_values)
        table.loc[family.index, "p_bh"] = benjamini_hochberg(p_values)
    return table


def bootstrap_interval(
    x: np.ndarray, y: np.ndarray, method: str, resamples: int, seed: int, level: float = 0.95
) -> tuple[float, float]:
    """Bias-corrected and accelerated (BCa) bootstrap interval of a correlation, resampling (x, y) pairs."""
    pairs = usable_pairs(x, y, 4)
    if pairs is None:
        return float("nan"), float("nan")
    x, y = pairs
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = scipy_stats.bootstrap(
            (x, y),
            lambda a, b: correlate(a, b, method)[0],
            paired=True,
            vectorized=False,
            n_resamples=resamples,
            confidence_level=level,
            method="BCa",
            rng=np.random.default_rng(seed),
        )
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


# Variance of the Fisher z of each coefficient (Fieller, Hartley & Pearson 1957): 1/(n-3) for Pearson,
# 1.06/(n-3) for Spearman, 0.437/(n-4) for Kendall.
FISHER_VARIANCE = {"pearson": (1.0, 3), "spearman": (1.06, 3), "kendall": (0.437, 4)}


def fisher_interval(statistic: float, n: int, method: str, level: float = 0.95) -> tuple[float, float]:
    scale, offset = FISHER_VARIANCE[method]
    if not np.isfinite(statistic) or n <= offset:
        return float("nan"), float("nan")
    z = np.arctanh(np.clip(statistic, -0.999999, 0.999999))
    half = scipy_stats.norm.ppf(0.5 + level / 2) * np.sqrt(scale / (n - offset))
    return float(np.tanh(z - half)), float(np.tanh(z + half))


def add_intervals(table: pd.DataFrame, runs: pd.DataFrame, resamples: int, seed: int, diverged: str) -> pd.DataFrame:
    """95% intervals: bootstrap (BCa) for the ratio rows, the paper's headline tests; Fisher z for the
    smaller per-rate and per-size groups, where a bootstrap of a few runs is unreliable."""
    runs = apply_diverged_policy(runs, diverged) if "diverged" in runs else runs
    table = table.assign(ci_low=np.nan, ci_high=np.nan, ci_method="")
    for index, row in table.iterrows():
        if row["group"] == "ratio":
            members = runs[
                (runs["experiment"] == row["experiment"])
                & (runs["model"] == row["model"])
                & (runs["dataset"] == row["dataset"])
            ]
            x, y = members["ratio"].to_numpy(), members[row["outcome"]].to_numpy()
            interval, how = bootstrap_interval(x, y, row["method"], resamples, seed), "bootstrap"
        else:
            interval, how = fisher_interval(row["statistic"], row["n"], row["method"]), "fisher_z"
        if np.isfinite(interval[0]):
            table.loc[index, ["ci_low", "ci_high", "ci_method"]] = [interval[0], interval[1], how]
    return table


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
        rows.append(
            [
                experiment,
                model,
                dataset,
                outcome,
                psi_batch_size,
                psi_learning_rate,
                np.nanmean([psi_batch_size, psi_learning_rate]),
            ]
        )
    return pd.DataFrame(rows, columns=SCENARIO + ["outcome", "psi_batch_size", "psi_learning_rate", "psi"])


def iso_ratio(runs: pd.DataFrame, outcomes: Sequence[str], diverged: str = "exclude") -> pd.DataFrame:
    """How much the outcome varies within sets of runs sharing one ratio, against across those sets.

    Runs are grouped by their exact ratio (to 9 significant digits); only sets with at least two runs
    count. `within_sd` is the pooled standard deviation inside the sets, `between_sd` that of the set
    means, and `eta_squared` the share of the outcome's variance (over those runs) that the ratio set
    explains: near 1 means equal ratios give equal results.
    """
    runs = apply_diverged_policy(runs, diverged) if "diverged" in runs else runs
    rows = []
    for (experiment, model, dataset), scenario in runs.groupby(SCENARIO, sort=True):
        key = scenario["ratio"].map(lambda value: float(f"{value:.9g}"))
        for outcome in outcomes:
            values = scenario[outcome].astype(float)
            sizes = key.map(key.value_counts())
            shared = values[(sizes >= 2) & np.isfinite(values)]
            sets = shared.groupby(key[shared.index])
            if sets.ngroups < 2:
                rows.append([experiment, model, dataset, outcome, sets.ngroups, len(shared), np.nan, np.nan, np.nan])
                continue
            within = ((shared - sets.transform("mean")) ** 2).sum()
            total = ((shared - shared.mean()) ** 2).sum()
            within_sd = float(np.sqrt(within / max(len(shared) - sets.ngroups, 1)))
            between_sd = float(sets.mean().std(ddof=1))
            eta_squared = float(1 - within / total) if total > 0 else np.nan
            rows.append(
                [experiment, model, dataset, outcome, sets.ngroups, len(shared), within_sd, between_sd, eta_squared]
            )
    return pd.DataFrame(
        rows, columns=SCENARIO + ["outcome", "ratio_sets", "runs", "within_sd", "between_sd", "eta_squared"]
    )


def markdown_table(table: pd.DataFrame, runs: pd.DataFrame | None = None, diverged: str = "exclude") -> str:
    """One Markdown section per scenario and outcome: groups as rows, methods side by side.

    Given the runs table, each section says how many runs there were and how many diverged.
    """
    lines = ["# Correlations of outcome with batch size, learning rate and their ratio", ""]
    for (experiment, model, dataset, outcome), part in table.groupby(SCENARIO + ["outcome"], sort=True):
        methods = list(dict.fromkeys(part["method"]))
        header = ["group", "x", "n"] + [f"{method} {value}" for method in methods for value in ("statistic", "p")]
        lines += [f"## {experiment}: {model} on {dataset}, {outcome}", ""]
        note = diverged_note(runs, (experiment, model, dataset), diverged)
        lines += [note, ""] if note else []
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for (group, x), rows in part.groupby(["group", "x"], sort=False):
            by_method = rows.set_index("method")
            cells = [group, x, str(rows["n"].iloc[0])]
            for method in methods:
                cells += [f"{by_method.at[method, 'statistic']:.3f}", f"{by_method.at[method, 'p_value']:.3g}"]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def _cell(value: float, digits: str) -> str:
    return "–" if not np.isfinite(value) else format(value, digits)


def significance_summary(part: pd.DataFrame, alpha: float) -> str:
    """How many groups of one scenario and outcome support the paper's prediction, per method."""
    texts = []
    for method, rows in part.groupby("method", sort=False):
        tested = rows[np.isfinite(rows["p_value"])]
        agrees = np.sign(tested["statistic"]) == tested["expected_sign"]
        raw = int(((tested["p_value"] < alpha) & agrees).sum())
        corrected = int(((tested["p_holm"] < alpha) & agrees).sum())
        texts.append(
            f"{method}: {raw} of {len(tested)} groups significant at {alpha:g} with the predicted sign "
            f"({corrected} after Holm)"
        )
    return "; ".join(texts)


def diverged_note(runs: pd.DataFrame | None, scenario: tuple[str, str, str], policy: str) -> str:
    if runs is None or "diverged" not in runs:
        return ""
    experiment, model, dataset = scenario
    members = runs[(runs["experiment"] == experiment) & (runs["model"] == model) & (runs["dataset"] == dataset)]
    count = int(members["diverged"].astype(bool).sum())
    action = "excluded from" if policy == "exclude" else "included in"
    return f"{len(members)} runs; {count} diverged, {action} the tests (analysis.diverged: {policy})."


def paper_tables(
    table: pd.DataFrame, alpha: float, runs: pd.DataFrame | None = None, diverged: str = "exclude"
) -> tuple[str, str]:
    """The paper's tables, one per scenario and outcome, as Markdown and as LaTeX (booktabs)."""
    methods = list(dict.fromkeys(table["method"]))
    markdown = [
        "# Correlation tables",
        "",
        "Predicted sign: − for batch size and ratio, + for learning rate (for accuracy; flipped for the gap "
        f"and losses). Significance level {alpha:g}.",
        "",
    ]
    latex = ["% bslr correlation tables; needs \\usepackage{booktabs}"]
    for (experiment, model, dataset, outcome), part in table.groupby(SCENARIO + ["outcome"], sort=True):
        header = ["group", "n", "predicted"] + [f"{m} {v}" for m in methods for v in ("statistic", "p", "p (Holm)")]
        markdown += [
            f"## {experiment}: {model} on {dataset}, {outcome}",
            "",
            "| " + " | ".join(header) + " |",
            "|" + "---|" * len(header),
        ]
        latex_outcome = outcome.replace("_", "\\_")
        latex += [
            "",
            "\\begin{table}[t]",
            "\\centering",
            f"\\caption{{{experiment}: {model} on {dataset}, {latex_outcome}. {significance_summary(part, alpha)}.}}",
            "\\begin{tabular}{l r r " + "r r r " * len(methods) + "}",
            "\\toprule",
            " & ".join(["group", "$n$", "pred."] + [f"{m} & $p$ & $p_\\mathrm{{Holm}}$" for m in methods]) + " \\\\",
            "\\midrule",
        ]
        for (group, _), rows in part.groupby(["group", "x"], sort=False):
            by_method = rows.set_index("method")
            sign = "−" if rows["expected_sign"].iloc[0] < 0 else "+"
            cells = [group, str(rows["n"].iloc[0]), sign]
            for method in methods:
                row = by_method.loc[method]
                cells += [_cell(row["statistic"], ".3f"), _cell(row["p_value"], ".2g"), _cell(row["p_holm"], ".2g")]
            markdown.append("| " + " | ".join(cells) + " |")
            latex.append(
                " & ".join(
                    [cells[0].replace("=", "$=$"), cells[1], "$-$" if sign == "−" else "$+$"] + cells[3:]
                ).replace("–", "--")
                + " \\\\"
            )
        note = diverged_note(runs, (experiment, model, dataset), diverged)
        markdown += ["", significance_summary(part, alpha) + ". " + note, ""]
        latex += ["\\bottomrule", "\\end{tabular}", "\\end{table}"]
    return "\n".join(markdown), "\n".join(latex) + "\n"
