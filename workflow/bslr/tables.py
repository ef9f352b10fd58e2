"""The statistics as tables to read and to publish: Markdown, LaTeX (booktabs) and HTML (for the Snakemake
report) from one description.

Each table is built once from an `Analysis` and written by a `Style`, so the formats cannot say
different things. Numbers carry real minus signs (U+2212 in Markdown, math mode in LaTeX) and a fixed
number of decimals, right-aligned; p-values at the floor print as "< 1e-16", never 0; LaTeX escapes
every name and is pure ASCII, so it compiles with booktabs alone.
"""

from __future__ import annotations

import html
from collections.abc import Sequence

import numpy as np
import pandas as pd

from bslr.config import format_lr
from bslr.stats import MIN_INTERVAL_N, P_FLOOR, SCENARIO, Analysis, censored_count, in_scenario

METHOD_NAMES = {"pearson": "Pearson's r", "spearman": "Spearman's rho", "kendall": "Kendall's tau"}
OUTCOME_ROLES = {"primary": "primary outcome", "sensitivity": "sensitivity"}
AXIS_NAMES = {"batch_size": "batch size", "lr": "learning rate", "ratio": "batch size / learning rate"}


class Markdown:
    """GitHub-flavoured Markdown."""

    dash = "–"

    def text(self, value: str) -> str:
        return str(value).replace("|", "\\|")

    def number(self, value: float, digits: int = 3) -> str:
        return self.dash if not np.isfinite(value) else f"{value:.{digits}f}".replace("-", "−")

    def p(self, value: float) -> str:
        if not np.isfinite(value):
            return self.dash
        if value <= P_FLOOR * (1 + 1e-9):
            return "< 1e−16"
        if value < 1e-3:
            mantissa, exponent = f"{value:.1e}".split("e")
            return f"{mantissa}e−{int(exponent[1:])}"
        return f"{value:.3f}"

    def interval(self, low: float, high: float) -> str:
        if not (np.isfinite(low) and np.isfinite(high)):
            return self.dash
        return f"[{self.number(low)}, {self.number(high)}]"

    def symbol(self, method: str) -> str:
        return {"pearson": "r", "spearman": "ρ", "kendall": "τ"}[method]

    def heading(self, level: int, title: str) -> list[str]:
        return ["#" * level + " " + self.text(title), ""]

    def paragraph(self, text: str) -> list[str]:
        return [text, ""]

    def table(
        self,
        caption: str,
        header: Sequence[str],
        rows: Sequence[Sequence[str]],
        groups: Sequence[str] = (),
        left: int = 1,
    ) -> list[str]:
        """`groups`: a name per block of equal width after the first `left` columns (Markdown has no
        column groups, so each column's name is prefixed with its group's)."""
        if groups:
            width = (len(header) - left) // len(groups)
            header = list(header[:left]) + [
                f"{groups[(index - left) // width]}: {name}" for index, name in enumerate(header) if index >= left
            ]
        align = [":---"] * left + ["---:"] * (len(header) - left)
        lines = [f"**{caption}**", "", "| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |"]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        return lines + [""]

    def page_break(self) -> list[str]:
        return []


class Latex:
    """LaTeX with booktabs; ASCII only, every name escaped."""

    dash = "--"
    ESCAPES = {
        "\\": r"\textbackslash{}",
        "&": r"\&",
        "%": r"\%",
        "$": r"\$",
        "#": r"\#",
        "_": r"\_",
        "{": r"\{",
        "}": r"\}",
        "~": r"\textasciitilde{}",
        "^": r"\textasciicircum{}",
    }

    def text(self, value: str) -> str:
        return "".join(self.ESCAPES.get(character, character) for character in str(value))

    def number(self, value: float, digits: int = 3) -> str:
        if not np.isfinite(value):
            return self.dash
        return f"${value:.{digits}f}$" if value < 0 else f"{value:.{digits}f}"

    def p(self, value: float) -> str:
        if not np.isfinite(value):
            return self.dash
        if value <= P_FLOOR * (1 + 1e-9):
            return "$<10^{-16}$"
        if value < 1e-3:
            mantissa, exponent = f"{value:.1e}".split("e")
            return f"${mantissa}\\times10^{{{int(exponent)}}}$"
        return f"{value:.3f}"

    def interval(self, low: float, high: float) -> str:
        if not (np.isfinite(low) and np.isfinite(high)):
            return self.dash
        return f"$[{low:.3f}, {high:.3f}]$"

    def symbol(self, method: str) -> str:
        return {"pearson": "$r$", "spearman": r"$\rho$", "kendall": r"$\tau$"}[method]

    def heading(self, level: int, title: str) -> list[str]:
        command = {1: "section", 2: "subsection"}.get(level, "subsubsection")
        return [f"\\{command}*{{{self.text(title)}}}", ""]

    def paragraph(self, text: str) -> list[str]:
        return [text, ""]

    def table(
        self,
        caption: str,
        header: Sequence[str],
        rows: Sequence[Sequence[str]],
        groups: Sequence[str] = (),
        left: int = 1,
    ) -> list[str]:
        lines = [
            "\\begin{table}[htbp]",
            "\\centering",
            "\\scriptsize",
            f"\\caption{{{caption}}}",
            "\\begin{tabular}{" + "l" * left + "r" * (len(header) - left) + "}",
            "\\toprule",
        ]
        if groups:
            width = (len(header) - left) // len(groups)
            lines.append(
                " & ".join([""] * left + [f"\\multicolumn{{{width}}}{{c}}{{{name}}}" for name in groups]) + " \\\\"
            )
            lines.append(
                " ".join(
                    f"\\cmidrule(lr){{{left + 1 + index * width}-{left + (index + 1) * width}}}"
                    for index in range(len(groups))
                )
            )
        lines += [" & ".join(header) + " \\\\", "\\midrule"]
        lines += [" & ".join(row) + " \\\\" for row in rows]
        return lines + ["\\bottomrule", "\\end{tabular}", "\\end{table}", ""]

    def page_break(self) -> list[str]:
        return ["\\clearpage", ""]  # LaTeX holds at most 18 unplaced floats


class Html(Markdown):
    """An HTML page, for the report: Markdown's numbers, real tables with column groups."""

    def text(self, value: str) -> str:
        return html.escape(str(value), quote=False)

    def p(self, value: float) -> str:
        return html.escape(super().p(value), quote=False)  # "< 1e−16"

    def heading(self, level: int, title: str) -> list[str]:
        return [f"<h{level}>{self.text(title)}</h{level}>"]

    def paragraph(self, text: str) -> list[str]:
        return [f"<p>{text}</p>"]

    def table(
        self,
        caption: str,
        header: Sequence[str],
        rows: Sequence[Sequence[str]],
        groups: Sequence[str] = (),
        left: int = 1,
    ) -> list[str]:
        lines = ["<table>", f"<caption>{caption}</caption>", "<thead>"]
        if groups:
            width = (len(header) - left) // len(groups)
            spans = [f'<th colspan="{left}"></th>'] + [f'<th colspan="{width}">{name}</th>' for name in groups]
            lines.append("<tr>" + "".join(spans) + "</tr>")
        lines.append("<tr>" + "".join(f"<th>{name}</th>" for name in header) + "</tr>")
        lines.append("</thead>")
        lines.append("<tbody>")
        for row in rows:
            cells = [
                f'<td class="{"text" if index < left else "number"}">{cell}</td>' for index, cell in enumerate(row)
            ]
            lines.append("<tr>" + "".join(cells) + "</tr>")
        return lines + ["</tbody>", "</table>"]


HTML_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Statistics tables</title>
<style>
body {{ font-family: "DejaVu Sans", Verdana, sans-serif; font-size: 13px; margin: 1em; }}
table {{ border-collapse: collapse; margin: 0.5em 0 2em; }}
caption {{ caption-side: top; text-align: left; max-width: 60em; padding-bottom: 0.4em; }}
th, td {{ padding: 0.15em 0.6em; white-space: nowrap; }}
thead th {{ border-bottom: 1px solid #444; }}
tbody tr:nth-child(even) {{ background: #f4f4f4; }}
td.number {{ text-align: right; font-variant-numeric: tabular-nums; }}
</style>
</head>
<body>
{body}
</body>
</html>
"""


Style = Markdown | Latex


def significance_counts(rows: pd.DataFrame, alpha: float) -> dict[str, int]:
    """Groups significant with the predicted sign and with the opposite sign, raw and after Holm: a
    result against the prediction is a finding too, and is counted as one."""
    tested = rows[np.isfinite(rows["p_value"])]
    agrees = np.sign(tested["statistic"]) == tested["expected_sign"]
    opposes = np.sign(tested["statistic"]) == -tested["expected_sign"]
    raw, corrected = tested["p_value"] < alpha, tested["p_holm"] < alpha
    return {
        "tested": len(tested),
        "predicted": int((raw & agrees).sum()),
        "predicted_holm": int((corrected & agrees).sum()),
        "opposite": int((raw & opposes).sum()),
        "opposite_holm": int((corrected & opposes).sum()),
    }


# How a scenario's summary names the test of each group along a ratio (bslr.stats.RATIO_GROUPS).
RATIO_TEST_NAMES = {"ratio": "ratio test", "optimizer_ratio": "test along the optimizer's own ratio"}


def significance_summary(part: pd.DataFrame, alpha: float) -> str:
    """Per method, the scenario's ratio tests (the paper's, and the optimizer's own where it differs) and how
    many of its per-group tests are significant, in either direction, each judged by Holm within its own
    family."""
    texts = []
    for method, rows in part.groupby("method", sort=False):
        counts = significance_counts(rows[rows["family"] == "groups"], alpha)
        text = f"{method}: "
        for group, name in RATIO_TEST_NAMES.items():
            ratio = rows[rows["group"] == group]
            if not len(ratio) or not np.isfinite(ratio["p_value"].iloc[0]):
                continue
            row = ratio.iloc[0]
            sign = "predicted" if np.sign(row["statistic"]) == row["expected_sign"] else "opposite"
            verdict = "significant" if row["p_holm"] < alpha else "not significant"
            text += f"{name} {verdict} after Holm over the ratio family (coefficient of the {sign} sign); "
        texts.append(
            text + f"{counts['predicted']} of {counts['tested']} per-group tests significant at {alpha:g} with the "
            f"predicted sign ({counts['predicted_holm']} after Holm over the group family), {counts['opposite']} "
            f"with the opposite sign ({counts['opposite_holm']} after Holm)"
        )
    return "; ".join(texts)


def diverged_note(runs: pd.DataFrame, scenario: tuple[str, str, str], policy: str) -> str:
    members = runs[in_scenario(runs, scenario)]
    count = int(members["diverged"].sum())
    action = (
        "cells with any diverged seed excluded from" if policy == "exclude" else "included (non-finite values worst) in"
    )
    note = f"{len(members)} runs; {count} diverged, {action} the tests (analysis.diverged: {policy})."
    censored = censored_count(members)
    if censored:
        note += f" {censored} censored (their budget's target not reached): left out of the tests."
    return note


def _scenario_label(scenario: Sequence[str]) -> str:
    return f"{scenario[1]} on {scenario[2]}"


def _family_size(table: pd.DataFrame, experiment: str, outcome: str, method: str, family: str) -> int:
    """Tests in one multiplicity family (bslr.stats.FAMILIES), the m of its Holm correction."""
    members = table[
        (table["experiment"] == experiment)
        & (table["outcome"] == outcome)
        & (table["method"] == method)
        & (table["family"] == family)
    ]
    return int(np.isfinite(members["p_value"]).sum())


def primary_statement(analysis: Analysis, experiment: str, alpha: float, style: Style) -> str:
    primary, table = analysis.primary, analysis.correlations
    ratio = _family_size(table, experiment, primary.outcome, primary.method, "ratio")
    groups = _family_size(table, experiment, primary.outcome, primary.method, "groups")
    own = table[
        (table["experiment"] == experiment)
        & (table["outcome"] == primary.outcome)
        & (table["method"] == primary.method)
        & (table["group"] == "optimizer_ratio")
    ]
    along_own = int(np.isfinite(own["p_value"]).sum())  # in the ratio family too (bslr.stats.FAMILIES)
    members = "one per scenario"
    if along_own:
        members += f", and {along_own} along the optimizer's own ratio, where it orders the cells otherwise"
    return style.text(
        f"Primary analysis (analysis.primary): {METHOD_NAMES[primary.method]} of {primary.outcome} against "
        f"the ratio batch size / learning rate, per scenario, over grid cells (seed means; medians under "
        f"include); two-sided; judged "
        f"after Holm over its confirmatory family, the {ratio} ratio tests of {experiment} ({members}), "
        f"at alpha = {alpha:g}. The per-group tests (fixed learning rate, fixed batch size) are a separate "
        f"family of {groups}, with Holm within it. Every other method and outcome, and the other divergence "
        f"policy, is a sensitivity analysis. Diverged runs: analysis.diverged = {analysis.policy}."
    )


def headline_table(analysis: Analysis, experiment: str, style: Style) -> list[str]:
    primary = analysis.primary
    rows = []
    part = analysis.headline[analysis.headline["experiment"] == experiment]
    for _, row in part[part["analysis"].isin(["ratio", "beside"])].iterrows():
        if row["analysis"] == "ratio":
            label = "primary" if row["diverged_policy"] == analysis.policy else "sensitivity"
            what = f"{row['outcome']}, {row['diverged_policy']} ({label})"
        else:
            what = f"{row['outcome']}, {row['diverged_policy']} (beside the primary)"
        rows.append(
            [
                style.text(_scenario_label(tuple(row[SCENARIO]))),
                style.text(what),
                str(row["n"]),
                style.number(row["statistic"]),
                style.interval(row["ci_low"], row["ci_high"]),
                style.p(row["p_value"]),
                style.p(row["p_holm"]),
            ]
        )
    caption = style.text(
        f"Headline: {METHOD_NAMES[primary.method]} of {primary.outcome} against the ratio, under both "
        f"divergence policies, and beside it train accuracy and the gap (what else moved with the ratio); n "
        f"counts cells; 95% BCa bootstrap interval over cells, which resamples the cells as a random sample of "
        f"settings (conservative for repeats of this fixed grid; none below {MIN_INTERVAL_N} cells); Holm over "
        f"the ratio tests of the experiment's scenarios (the confirmatory family), for the configured policy "
        f"only."
    )
    header = [style.text(name) for name in ("scenario", "outcome, diverged runs", "n")] + [style.symbol(primary.method)]
    header += [style.text(name) for name in ("95% CI", "p", "p (Holm)")]
    return style.table(caption, header, rows, left=2)


def headline_reading(analysis: Analysis, scenario: tuple[str, str, str]) -> str:
    """The reading of the scenario's headline (bslr.stats.READINGS), or empty."""
    part = analysis.headline
    rows = part[
        in_scenario(part, scenario) & (part["analysis"] == "ratio") & (part["diverged_policy"] == analysis.policy)
    ]
    text = rows["reading"].iloc[0] if len(rows) else ""
    return f"Reading: {text}." if isinstance(text, str) and text else ""


def divergence_table(analysis: Analysis, experiment: str, style: Style) -> list[str]:
    primary = analysis.primary
    part = analysis.headline[
        (analysis.headline["experiment"] == experiment) & (analysis.headline["analysis"] == "divergence")
    ]
    cells = analysis.divergence[analysis.divergence["experiment"] == experiment]
    rows = []
    for _, row in part.iterrows():
        members = cells[in_scenario(cells, tuple(row[SCENARIO]))]
        rows.append(
            [
                style.text(_scenario_label(tuple(row[SCENARIO]))),
                str(row["runs"]),
                str(row["diverged_runs"]),
                str(int((members["diverged"] > 0).sum())),
                style.number(row["statistic"]),
                style.interval(row["ci_low"], row["ci_high"]),
                style.p(row["p_value"]),
            ]
        )
    caption = style.text(
        "Divergence as an outcome (secondary analysis): each cell's rate of diverged runs against the ratio "
        f"({METHOD_NAMES[primary.method]}, two-sided, every run; 95% BCa bootstrap interval over cells; per-cell "
        "rates in stats/divergence.csv). Undefined when no run diverged; many tied zero rates make it coarse."
    )
    header = [style.text(name) for name in ("scenario", "runs", "diverged", "cells with any")]
    header += [style.symbol(primary.method), style.text("95% CI"), "p"]
    return style.table(caption, header, rows)


def regression_table(analysis: Analysis, experiment: str, style: Style) -> list[str]:
    part = analysis.regression[analysis.regression["experiment"] == experiment]
    rows = []
    for _, row in part.sort_values("role", key=lambda role: role != "primary", kind="stable").iterrows():
        rows.append(
            [
                style.text(_scenario_label(tuple(row[SCENARIO]))),
                style.text(f"{row['outcome']} ({OUTCOME_ROLES[row['role']]})"),
                str(row["cells"]),
                style.number(row["slope_batch_size"], 4),
                style.interval(row["slope_batch_size_low"], row["slope_batch_size_high"]),
                style.number(row["slope_lr"], 4),
                style.interval(row["slope_lr_low"], row["slope_lr_high"]),
                style.number(row["slope_sum"], 4),
                style.number(row["beyond_ratio"], 4),
                style.interval(row["beyond_ratio_low"], row["beyond_ratio_high"]),
                style.p(row["p_beyond_ratio"]),
            ]
        )
    caption = style.text(
        "Only the ratio? (secondary analysis) The test: OLS of each cell mean on a smooth function of log2 ratio "
        "(a cubic B-spline) and log2 batch size; 'beyond the ratio' is the change per doubling of the batch size "
        "at a fixed ratio, 95% HC3 interval, and p tests it against 0 (only the ratio matters, whatever the shape "
        "of its effect). The description: OLS on log2 batch size and log2 learning rate, change per doubling of "
        "each with the other fixed, 95% HC3 intervals, and their sum, which a ratio-only truth makes 0 only if "
        "linear in log ratio."
    )
    header = ["scenario", "outcome", "cells", "per 2x batch size", "95% CI", "per 2x learning rate", "95% CI"]
    header += ["sum", "beyond the ratio, per 2x batch size", "95% CI", "p (only the ratio)"]
    return style.table(caption, [style.text(name) for name in header], rows, left=2)


def stratified_table(analysis: Analysis, experiment: str, style: Style) -> list[str]:
    part = analysis.stratified[analysis.stratified["experiment"] == experiment]
    rows = []
    for _, row in part.sort_values("role", key=lambda role: role != "primary", kind="stable").iterrows():
        rows.append(
            [
                style.text(_scenario_label(tuple(row[SCENARIO]))),
                style.text(f"{row['outcome']} ({OUTCOME_ROLES[row['role']]})"),
                style.text(f"{AXIS_NAMES[row['x']]} within {AXIS_NAMES[row['within']]}"),
                "+" if row["expected_sign"] > 0 else ("$-$" if isinstance(style, Latex) else "−"),
                str(row["groups"]),
                style.number(row["statistic"]),
                style.p(row["p_value"]),
            ]
        )
    permutations = int(part["permutations"].iloc[0]) if len(part) else 0
    caption = style.text(
        "Stratified tests (secondary analysis), one per axis: the mean within-group "
        f"{METHOD_NAMES[analysis.primary.method]}, tested by permuting the outcome within each group "
        f"({permutations} Monte Carlo permutations, two-sided; the smallest possible p is 1/{permutations + 1})."
    )
    header = [
        "scenario",
        "outcome",
        "axis",
        "predicted",
        "groups",
        "mean " + style.symbol(analysis.primary.method),
        "p",
    ]
    return style.table(caption, header, rows, left=3)


def slopes_table(analysis: Analysis, experiment: str, style: Style) -> list[str]:
    """The measures' power laws in learning rate / batch size (empty without measures)."""
    part = analysis.measure_slopes[analysis.measure_slopes["experiment"] == experiment]
    part = part[part["slope"].astype(float).notna()]
    if part.empty:
        return []
    rows = [
        [
            style.text(_scenario_label(tuple(row[SCENARIO]))),
            style.text(row["measure"]),
            str(row["cells"]),
            style.number(row["slope"]),
            style.interval(row["slope_low"], row["slope_high"]),
            style.number(row["predicted_slope"], 0),
            style.p(row["p_predicted"]),
            style.number(row["slope_lr"]),
            style.number(row["slope_batch_size"]),
            style.number(row["r_squared"]),
        ]
        for _, row in part.iterrows()
    ]
    caption = style.text(
        "Measures against learning rate / batch size (secondary analysis): OLS of log(measure) on log(learning "
        "rate / batch size) over cells, the exponent with its 95% HC3 interval, and p for the exponent the "
        "Ornstein-Uhlenbeck model predicts (1 for the fluctuation); then the slopes on log learning rate and log "
        "batch size fitted apart (opposite if only the ratio counts)."
    )
    header = ["scenario", "measure", "cells", "exponent", "95% CI", "predicted", "p (predicted)", "on lr"]
    header += ["on batch size", "R²" if isinstance(style, Markdown) else "R^2"]
    return style.table(caption, [style.text(name) for name in header], rows, left=2)


def sign_table(analysis: Analysis, experiment: str, alpha: float, style: Style) -> list[str]:
    table = analysis.correlations
    table = table[(table["experiment"] == experiment) & (table["family"] == "groups")]
    rows = []
    ordered = table.assign(primary_first=table["role"] != "primary")
    for (_, _, model, dataset, outcome, method), part in ordered.groupby(
        ["primary_first", "experiment", "model", "dataset", "outcome", "method"], sort=True
    ):
        counts = significance_counts(part, alpha)
        exact = part[np.isfinite(part["p_min"])]
        rows.append(
            [
                style.text(f"{model} on {dataset}"),
                style.text(f"{outcome}, {method} ({part['role'].iloc[0]})"),
                str(counts["tested"]),
                f"{counts['predicted']} / {counts['predicted_holm']}",
                f"{counts['opposite']} / {counts['opposite_holm']}",
                style.p(exact["p_min"].min()) if len(exact) else style.dash,
            ]
        )
    caption = style.text(
        f"Per-group tests significant at {alpha:g}, two-sided, raw / after Holm over the group family (the ratio "
        "tests are the headline's), with the predicted sign (negative for "
        "batch size and ratio, positive for learning rate; flipped for the gap and losses) and with the opposite "
        "sign; the last column is the smallest p these groups' tests can give (exact: with their ties; Monte "
        "Carlo: 2 / (R + 1))."
    )
    header = ["scenario", "outcome, method", "groups", "predicted sign", "opposite sign", "smallest attainable p"]
    return style.table(caption, [style.text(name) for name in header], rows, left=2)


def paper_table(
    analysis: Analysis, experiment: str, outcome: str, method: str, x: str, alpha: float, style: Style
) -> list[str]:
    """The paper's layout: a row per learning rate (x = batch size) or batch size (x = learning rate),
    a column group per scenario; the primary method's stratified test as the last row."""
    table = analysis.correlations
    part = table[
        (table["experiment"] == experiment)
        & (table["outcome"] == outcome)
        & (table["method"] == method)
        & (table["x"] == x)
    ]
    scenarios = list(part.groupby(SCENARIO, sort=True).groups)
    levels = sorted({float(group.split("=", 1)[1]) for group in part["group"]})
    label = (lambda value: f"lr={format_lr(value)}") if x == "batch_size" else (lambda value: f"bs={int(value)}")
    indexed = part.set_index(SCENARIO + ["group"])
    rows = []
    for level in levels:
        cells = [label(level)]
        for scenario in scenarios:
            key = (*scenario, label(level))
            if key in indexed.index:
                row = indexed.loc[key]
                cells += [
                    str(row["n"]),
                    style.number(row["statistic"]),
                    style.interval(row["ci_low"], row["ci_high"]),
                    style.p(row["p_value"]),
                    style.p(row["p_holm"]),
                ]
            else:
                cells += [style.dash] * 5
        rows.append([style.text(cells[0]), *cells[1:]])
    stratified = analysis.stratified
    if method == analysis.primary.method:
        pooled = ["stratified"]
        for scenario in scenarios:
            match = stratified[
                in_scenario(stratified, scenario) & (stratified["outcome"] == outcome) & (stratified["x"] == x)
            ]
            row = match.iloc[0] if len(match) else None
            pooled += [
                str(row["groups"]) if row is not None else style.dash,
                style.number(row["statistic"]) if row is not None else style.dash,
                style.dash,
                style.p(row["p_value"]) if row is not None else style.dash,
                style.dash,
            ]
        rows.append(pooled)
    size = _family_size(table, experiment, outcome, method, "groups")
    role = analysis.primary.role(method, outcome)
    within = "learning rate" if x == "batch_size" else "batch size"
    counts = "; ".join(
        f"{_scenario_label(scenario)}: "
        + "{predicted} predicted, {opposite} opposite".format(
            **significance_counts(part[in_scenario(part, scenario)], alpha)
        )
        for scenario in scenarios
    )
    caption = (
        f"{role.capitalize()} analysis, {experiment}: {METHOD_NAMES[method]} of {outcome} against "
        f"{AXIS_NAMES[x]} within each {within}; n cells per group, two-sided p, Holm over the {size} per-group tests "
        f"of (experiment, outcome, method) at {alpha:g}. Significant at {alpha:g} raw: {counts}. "
        f"No interval below {MIN_INTERVAL_N} cells (Fisher z above)."
    )
    exact = part[np.isfinite(part["p_min"])]
    if len(exact) and size:
        smallest, threshold = exact["p_min"].min(), alpha / size
        verdict = "so none of these groups can be significant after Holm" if smallest > threshold else "reachable"
        caption += (
            f" Smallest p these groups' tests can give: {smallest:.3g}; Holm's first step needs "
            f"p < {alpha:g}/{size} = {threshold:.2g}: {verdict}."
        )
    if method == analysis.primary.method:
        caption += " Last row: the stratified permutation test pooling the groups (mean coefficient; n: groups)."
    header = [style.text(f"{AXIS_NAMES['lr' if x == 'batch_size' else 'batch_size']}")]
    header += ["n", style.symbol(method), style.text("95% CI"), "p", style.text("p (Holm)")] * len(scenarios)
    groups = [style.text(_scenario_label(scenario)) for scenario in scenarios]
    return style.table(style.text(caption), header, rows, groups=groups)


def paper_tables(analysis: Analysis, alpha: float) -> tuple[str, str]:
    """The tables of every experiment, as Markdown and as LaTeX (needs \\usepackage{booktabs})."""
    return render(analysis, alpha, Markdown()), render(analysis, alpha, Latex())


def html_tables(analysis: Analysis, alpha: float) -> str:
    """The same tables as one HTML page, for the Snakemake report (which shows HTML, not Markdown)."""
    return HTML_PAGE.format(body=render(analysis, alpha, Html()).rstrip())


def render(analysis: Analysis, alpha: float, style: Style) -> str:
    table = analysis.correlations
    if isinstance(style, Latex):
        lines = ["% bslr statistics tables; needs \\usepackage{booktabs}", ""]
    else:
        lines = style.heading(1, "Statistics tables")
    primary = analysis.primary
    outcomes = sorted(dict.fromkeys(table["outcome"]), key=lambda outcome: outcome != primary.outcome)
    methods = sorted(dict.fromkeys(table["method"]), key=lambda method: method != primary.method)
    for experiment in sorted(dict.fromkeys(table["experiment"])):
        lines += style.heading(1 if isinstance(style, Latex) else 2, f"Experiment {experiment}")
        lines += style.paragraph(primary_statement(analysis, experiment, alpha, style))
        primary_rows = table[
            (table["experiment"] == experiment)
            & (table["method"] == primary.method)
            & (table["outcome"] == primary.outcome)
        ]
        for scenario, part in primary_rows.groupby(SCENARIO, sort=True):
            summary = significance_summary(part, alpha)
            note = diverged_note(analysis.runs, scenario, analysis.policy)
            reading = headline_reading(analysis, scenario)
            text = (
                f"{_scenario_label(scenario)}: {summary}. {reading} {note}"
                if reading
                else f"{_scenario_label(scenario)}: {summary}. {note}"
            )
            lines += style.paragraph(style.text(text))
        lines += headline_table(analysis, experiment, style)
        lines += divergence_table(analysis, experiment, style)
        lines += regression_table(analysis, experiment, style)
        lines += stratified_table(analysis, experiment, style)
        lines += slopes_table(analysis, experiment, style)
        lines += sign_table(analysis, experiment, alpha, style)
        lines += style.page_break()
        for outcome in outcomes:
            for method in methods:
                for x in ("batch_size", "lr"):
                    lines += paper_table(analysis, experiment, outcome, method, x, alpha, style)
                lines += style.page_break()
    return "\n".join(lines).rstrip() + "\n"


def markdown_table(analysis: Analysis, alpha: float) -> str:
    """Every correlation row as Markdown, one section per scenario and outcome, methods side by side,
    under the headline and each scenario's count of diverged runs."""
    style, table = Markdown(), analysis.correlations
    lines = ["# Correlations of outcome with batch size, learning rate and their ratio", ""]
    for experiment in sorted(dict.fromkeys(table["experiment"])):
        lines += style.paragraph(primary_statement(analysis, experiment, alpha, style))
        lines += headline_table(analysis, experiment, style)
    for (experiment, model, dataset, outcome), part in table.groupby(SCENARIO + ["outcome"], sort=True):
        methods = list(dict.fromkeys(part["method"]))
        role = analysis.primary.role(analysis.primary.method, outcome)
        lines += [f"## {experiment}: {model} on {dataset}, {outcome} ({role} outcome)", ""]
        lines += style.paragraph(diverged_note(analysis.runs, (experiment, model, dataset), analysis.policy))
        header = ["group", "x", "n"] + [f"{m} {v}" for m in methods for v in ("statistic", "95% CI", "p", "p (Holm)")]
        rows = []
        for (group, x), members in part.groupby(["group", "x"], sort=False):
            by_method = members.set_index("method")
            cells = [group, x, str(members["n"].iloc[0])]
            for method in methods:
                row = by_method.loc[method]
                cells += [
                    style.number(row["statistic"]),
                    style.interval(row["ci_low"], row["ci_high"]),
                    style.p(row["p_value"]),
                    style.p(row["p_holm"]),
                ]
            rows.append(cells)
        lines += style.table(f"{model} on {dataset}, {outcome}", header, rows, left=3)
    return "\n".join(lines).rstrip() + "\n"
