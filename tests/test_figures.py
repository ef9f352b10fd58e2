"""Figures: drawn at the paper's scale (1,600 runs, 4 scenarios, 164 groups) and checked at their printed size
(sizes, type sizes, overlapping text, fonts), consistent with the statistics tables under both divergence
policies, and byte-identical when redrawn."""

import hashlib
import itertools
import json
import shutil
import subprocess

import matplotlib
import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import QuadMesh
from matplotlib.colors import BoundaryNorm, to_rgb
from matplotlib.text import Text

from bslr import stats
from bslr.catalog import FIGURES, figure_names
from bslr.config import validate_config
from bslr.figures import (
    COLUMN,
    DIVERGED_COLOUR,
    PAGE,
    SMALL_SIZE,
    draw,
    render,
    shown_tick_labels,
)
from bslr.plan import Plan
from conftest import tiny_config
from paper_grid import BATCH_SIZES, LEARNING_RATES, SCENARIOS, adam_runs, diverges, paper_epochs, paper_runs

SCENARIO_FIGURES, EXPERIMENT_FIGURES = figure_names("scenario", "always"), figure_names("experiment")

ALL_FIGURES = sorted({*SCENARIO_FIGURES, *EXPERIMENT_FIGURES})
PAGE_HEIGHT = 9.0  # inches of text height in a NeurIPS, ICML or IEEE paper
OUTCOMES = ["final_test_acc", "gap", "final_train_acc"]


def statistics(runs: pd.DataFrame, policy: str) -> dict[str, pd.DataFrame]:
    """The statistics tables figures read, computed as `bslr stats` computes them."""
    correlations = stats.correlations(runs, OUTCOMES, ["spearman", "pearson"], policy)
    return {
        "correlations": stats.add_intervals(correlations, runs, 200, 0, policy),
        "iso_ratio": stats.iso_ratio(runs, OUTCOMES, policy),
    }


@pytest.fixture(scope="module")
def paper() -> dict[str, dict[str, pd.DataFrame]]:
    """The paper-shaped study's tables under each divergence policy."""
    runs = paper_runs()
    epochs = paper_epochs(runs)
    return {policy: {"runs": runs, "epochs": epochs, **statistics(runs, policy)} for policy in stats.POLICIES}


def settings_of(name: str, policy: str = "exclude", config: dict | None = None) -> dict:
    config = config or tiny_config()
    config.setdefault("analysis", {})["diverged"] = policy
    return Plan(config).figure_settings(name)


def scenario_of(name: str, dataset: str = "cifar10", model: str = "resnet110") -> tuple:
    return ("paper", None, None) if name in EXPERIMENT_FIGURES else ("paper", dataset, model)


def drawn(name: str, tables: dict, policy: str = "exclude", **scenario) -> tuple:
    inputs = {table: tables[table] for table in FIGURES[name].tables}
    return render(name, inputs, scenario_of(name, **scenario), settings_of(name, policy))


def texts(figure) -> list[Text]:
    """Every text the figure prints: tick labels inside their axis's view, and every other visible text."""
    ticks, shown = set(), []
    for axes in figure.get_axes():
        for axis in (axes.xaxis, axes.yaxis):
            for tick in [*axis.get_major_ticks(), *axis.get_minor_ticks()]:
                ticks |= {id(tick.label1), id(tick.label2)}
            shown += [label for _, label in shown_tick_labels(axis)]
    others = [text for text in figure.findobj(Text) if id(text) not in ticks]
    return shown + [text for text in others if text.get_visible() and text.get_text().strip()]


def overlapping(boxes) -> list[tuple[int, int]]:
    return [
        (i, j)
        for (i, a), (j, b) in itertools.combinations(enumerate(boxes), 2)
        if min(a.x1, b.x1) - max(a.x0, b.x0) > 0.5 and min(a.y1, b.y1) - max(a.y0, b.y0) > 0.5
    ]


# --- legible at the printed size -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ALL_FIGURES)
def test_every_figure_of_the_paper_grid_is_legible_at_its_printed_size(name, paper):
    figure, _ = drawn(name, paper["exclude"])
    width, height = figure.get_size_inches()
    assert width == pytest.approx(COLUMN if width < 4 else PAGE)
    assert height <= PAGE_HEIGHT
    renderer = figure.canvas.get_renderer()
    found = texts(figure)
    assert {text.get_fontname() for text in found} == {"DejaVu Sans"}
    small = [(text.get_text(), text.get_fontsize()) for text in found if text.get_fontsize() < SMALL_SIZE]
    assert not small
    boxes = [text.get_window_extent(renderer) for text in found]
    canvas = figure.bbox
    outside = [text.get_text() for text, box in zip(found, boxes, strict=True) if not canvas.contains(box.x0, box.y0)]
    outside += [text.get_text() for text, box in zip(found, boxes, strict=True) if not canvas.contains(box.x1, box.y1)]
    assert not outside, f"text cut off at the edge: {outside}"
    clashes = [(found[i].get_text(), found[j].get_text()) for i, j in overlapping(boxes)]
    assert not clashes, f"text printed over text: {clashes[:5]}"
    for axes in figure.get_axes():
        for axis in (axes.xaxis, axes.yaxis):
            labels = [label.get_text() for _, label in shown_tick_labels(axis)]
            assert len(labels) != 1, f"an axis of {name} has a single tick label, {labels}"
    matplotlib.pyplot.close(figure)


def test_the_overlap_check_catches_overprinted_labels(paper):
    """The check above can fail: 20 learning rates side by side on a column-wide axis overprint."""
    figure, _ = drawn("heatmap", paper["exclude"])
    axes = figure.get_axes()[0]
    axes.tick_params(axis="x", labelrotation=0)
    axes.set_xticks(axes.get_xticks(), [f"{lr:.2f}" for lr in LEARNING_RATES])
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    assert overlapping([label.get_window_extent(renderer) for label in axes.get_xticklabels()])


@pytest.fixture(scope="module")
def small() -> dict[str, pd.DataFrame]:
    """Two scenarios of 5 x 5 cells and two seeds: the default study's shape, with bands."""
    runs = paper_runs(
        seeds=(0, 1), batch_sizes=(16, 32, 64, 128, 256), learning_rates=(0.04, 0.08, 0.12, 0.16, 0.2), scenarios=2
    )
    return {"runs": runs, "epochs": paper_epochs(runs), **statistics(runs, "exclude")}


@pytest.mark.parametrize("name", ALL_FIGURES)
def test_pdfs_embed_one_truetype_font_and_no_type_3(name, small, tmp_path):
    """On the default study's shape: fonts and page sizes come from the settings, whatever the grid's size."""
    settings = settings_of(name)
    outputs = {extension: tmp_path / f"{name}.{extension}" for extension in ("pdf", "png", "csv")}
    tables = {table: small[table] for table in FIGURES[name].tables}
    draw(name, tables, scenario_of(name), settings, outputs)
    pdf = outputs["pdf"].read_bytes()
    assert b"/Type3" not in pdf and b"/CIDFontType2" in pdf and b"+DejaVuSans" in pdf  # TrueType outlines
    if shutil.which("pdffonts"):
        listing = subprocess.run(["pdffonts", outputs["pdf"]], capture_output=True, text=True, check=True).stdout
        fonts = listing.splitlines()[2:]
        assert fonts and all("TrueType" in font and "DejaVuSans" in font and "Type 3" not in font for font in fonts)
    # the PDF page and the PNG are the figure's printed size
    width, height = (float(value) for value in pdf.split(b"/MediaBox [ 0 0 ")[1].split(b" ]")[0].split())
    png = outputs["png"].read_bytes()
    pixels = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    # within a pixel: matplotlib before 3.11.2 truncates size x dpi, so 2.3 in x 200 (459.99999...) gives 459
    printed = (width / 72 * settings["dpi"], height / 72 * settings["dpi"])
    assert all(abs(pixel - size) < 1 for pixel, size in zip(pixels, printed, strict=True)), (pixels, printed)


# --- the tables' numbers, the tables' cells ---------------------------------------------------------------------


def ratio_row(table: pd.DataFrame, dataset: str, model: str, outcome: str = "final_test_acc") -> pd.Series:
    rows = table[
        (table["dataset"] == dataset)
        & (table["model"] == model)
        & (table["group"] == "ratio")
        & (table["outcome"] == outcome)
        & (table["method"] == "spearman")
    ]
    assert len(rows) == 1
    return rows.iloc[0]


def printed(figure) -> str:
    return "\n".join(text.get_text() for text in texts(figure))


@pytest.mark.parametrize("policy", stats.POLICIES)
def test_figures_print_the_tables_statistic_and_n_and_draw_its_cells(policy, paper):
    tables = paper[policy]
    diverged_cells = sum(diverges(size, lr) for size in BATCH_SIZES for lr in LEARNING_RATES)
    composite, _ = drawn("composite", tables, policy)
    composite_text = printed(composite)
    iso_text = printed(drawn("iso_ratio", tables, policy)[0])
    iso = tables["iso_ratio"][tables["iso_ratio"]["outcome"] == "final_test_acc"]
    assert len(iso) == 4 and all(
        f"η² = {row.eta_squared:.2f} (chance {row.eta_squared_chance:.2f}, p = " in iso_text for row in iso.itertuples()
    )
    for model, dataset, _, _ in SCENARIOS:
        row = ratio_row(tables["correlations"], dataset, model)
        # the table's n: every cell under include, the cells without a diverged run under exclude
        assert row["n"] == 400 - (diverged_cells if policy == "exclude" else 0)
        expected = f"{row['statistic']:.3f}".replace("-", "−")
        figure, source = drawn("acc_vs_ratio", tables, policy, dataset=dataset, model=model)
        text = printed(figure)
        assert f"Spearman ρ = {expected}," in text and f"n = {row['n']} cells" in text
        assert f"ρ = {expected}," in composite_text and f"n = {row['n']}" in composite_text
        points, crosses = (collection.get_offsets() for collection in figure.get_axes()[0].collections[:2])
        assert len(points) == 400 - diverged_cells and len(crosses) == diverged_cells
        assert source["counted_in_statistics"].sum() == row["n"]
        assert len(source) == 400 and source.loc[source["diverged"], "final_test_acc"].isna().all()
        panels = printed(drawn("train_test_vs_ratio", tables, policy, dataset=dataset, model=model)[0])
        for outcome in OUTCOMES:  # each panel from its own row
            other = ratio_row(tables["correlations"], dataset, model, outcome)
            assert other["p_value"] == pytest.approx(2 / 100_001)  # the Monte Carlo floor at 400 cells
            assert f"ρ = {other['statistic']:.3f}, ".replace("-", "−") + f"p = 2.0e−5, n = {other['n']}" in panels
        matplotlib.pyplot.close("all")


@pytest.mark.parametrize("policy", stats.POLICIES)
def test_group_correlations_draw_every_groups_statistic_from_the_table(policy, paper):
    table = paper[policy]["correlations"]
    figure, source = drawn("group_correlations", paper[policy], policy)
    rows = table[(table["method"] == "spearman") & (table["outcome"] == "final_test_acc")]
    assert len(source) == len(rows) == 4 * (20 + 20 + 1)  # the paper's 164 groups
    pairs = [axes for axes in figure.get_axes() if axes.get_lines()]
    assert len(pairs) == 8
    for index, (_, part) in enumerate(rows.groupby(["dataset", "model"], sort=True)):
        for axes, x in zip(pairs[2 * index : 2 * index + 2], ("batch_size", "lr"), strict=True):
            groups = part[part["x"] == x].assign(fixed=lambda frame: frame["group"].str[3:].astype(float))
            groups = groups.sort_values("fixed")
            line = axes.get_lines()[0]
            np.testing.assert_allclose(line.get_xdata(), groups["fixed"])
            np.testing.assert_allclose(line.get_ydata(), groups["statistic"])
        assert f"n = {int(part.loc[part['group'] == 'ratio', 'n'].iloc[0])}" in printed(figure)
    assert "Spearman ρ of\nfinal test accuracy" in printed(figure)


def test_diverged_cells_are_marked_never_drawn_as_results(paper):
    """A diverged run's chance accuracy neither stretches an axis nor colours a heatmap cell."""
    tables = paper["exclude"]
    figure, _ = drawn("acc_vs_batch_size", tables)
    axes = figure.get_axes()[0]
    assert axes.get_ylim()[0] > 0.5  # CIFAR-10 chance accuracy is 0.1
    crosses = [c for c in axes.collections if np.allclose(c.get_facecolor()[:, :3], to_rgb(DIVERGED_COLOUR))]
    assert len(crosses) == 1 and sorted(crosses[0].get_offsets()[:, 0]) == [16, 16, 32]
    figure, source = drawn("heatmap_gap", tables)
    mesh = figure.get_axes()[0].collections[0]
    values = np.ma.masked_invalid(mesh.get_array())
    diverged = int(source["diverged"].sum())
    assert diverged == 3 and int(values.mask.sum()) == diverged  # no value, never a gap of 0
    hatched = [patch for patch in figure.get_axes()[0].patches if patch.get_hatch()]
    assert len(hatched) == diverged
    matplotlib.pyplot.close("all")


def test_batch_sizes_are_log2_with_a_discrete_key_and_learning_rates_at_fixed_decimals(paper):
    tables = paper["exclude"]
    figure, _ = drawn("acc_vs_learning_rate", tables)
    axes, key = figure.get_axes()
    (blocks,) = [collection for collection in key.collections if isinstance(collection, QuadMesh)]
    assert isinstance(blocks.norm, BoundaryNorm) and len(blocks.norm.boundaries) == len(BATCH_SIZES) + 1
    colours = [line.get_color() for line in axes.get_lines()]
    assert len(set(map(str, colours))) == len(BATCH_SIZES)  # 16 and 32 apart, like every pair
    figure, _ = drawn("acc_vs_batch_size", tables)
    axis = figure.get_axes()[0].xaxis
    assert axis.get_scale() == "log" and axis._scale.base == 2
    assert [label.get_text() for label in axis.get_ticklabels() if label.get_text()] == ["16", "32", "64", "128", "256"]
    figure, _ = drawn("heatmap", tables)
    labels = [label.get_text() for label in figure.get_axes()[0].get_xticklabels() if label.get_text()]
    # at fixed decimals from the first learning rate, every one or evenly thinned where they would overprint
    # (a borderline call at this width: matplotlib 3.11 keeps every label, earlier versions every other)
    steps = np.round(np.diff([float(label) for label in labels]), 6)
    assert labels[0] == "0.01" and all(len(label) == 4 for label in labels) and len(set(steps)) == 1, labels
    matplotlib.pyplot.close("all")


def test_heatmap_iso_ratio_lines_join_cells_of_one_ratio(paper):
    figure, _ = drawn("heatmap", paper["exclude"])
    axes = figure.get_axes()[0]
    dashed = [line for line in axes.get_lines() if line.get_linestyle() != "-"]
    assert len(dashed) == 4
    for line in dashed:
        lr = np.interp(line.get_xdata(), np.arange(20), LEARNING_RATES)
        size = np.interp(line.get_ydata(), np.arange(20), BATCH_SIZES)
        ratio = size / lr
        np.testing.assert_allclose(ratio, ratio[0], rtol=1e-9)
    matplotlib.pyplot.close(figure)


def test_training_curves_show_train_and_test_at_whole_epochs_with_keys_beside_the_curves(paper):
    figure, source = drawn("training_curves", paper["exclude"])
    train, test = figure.get_axes()
    assert "Train accuracy" in train.get_title(loc="left") and "Test accuracy" in test.get_title(loc="left")
    ticks = [tick for tick in train.get_xticks() if train.get_xlim()[0] <= tick <= train.get_xlim()[1]]
    assert ticks and all(float(tick).is_integer() for tick in ticks)
    renderer = figure.canvas.get_renderer()
    for legend in figure.legends:
        box = legend.get_window_extent(renderer)
        assert not overlapping([box, train.get_window_extent(renderer)]) and not overlapping(
            [box, test.get_window_extent(renderer)]
        )
    assert set(source["batch_size"]) == {16, 176, 320} and source["diverged"].any()
    matplotlib.pyplot.close(figure)


# --- rebuilt byte for byte --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ALL_FIGURES)
def test_each_figure_is_drawn_and_byte_identical_when_redrawn(name, small, tmp_path):
    settings = settings_of(name)
    digests = []
    for attempt in range(2):
        outputs = {extension: tmp_path / f"{attempt}.{extension}" for extension in ("pdf", "png", "csv")}
        tables = {**small, "epochs": small["epochs"].assign(seconds=1.0 + attempt)}  # wall time differs per run
        draw(name, {table: tables[table] for table in FIGURES[name].tables}, scenario_of(name), settings, outputs)
        assert outputs["pdf"].read_bytes().startswith(b"%PDF") and outputs["png"].read_bytes().startswith(b"\x89PNG")
        assert len(pd.read_csv(outputs["csv"]))
        digests.append([hashlib.sha256(path.read_bytes()).hexdigest() for path in outputs.values()])
    assert digests[0] == digests[1]


def test_unknown_scenario_is_refused(small, tmp_path):
    settings = settings_of("heatmap")
    outputs = {extension: str(tmp_path / f"a.{extension}") for extension in ("pdf", "png", "csv")}
    with pytest.raises(ValueError, match="runs table has no rows of experiment paper, dataset cifar10, model vgg19"):
        draw("heatmap", {"runs": small["runs"]}, ("paper", "cifar10", "vgg19"), settings, outputs)


def test_figure_settings_carry_the_analysis_keys_they_apply():
    config = tiny_config()
    config["analysis"] = {"diverged": "include", "alpha": 0.01}
    plan = Plan(config)
    assert plan.figure_settings("heatmap")["diverged"] == "include" and "alpha" not in plan.figure_settings("heatmap")
    assert plan.figure_settings("group_correlations")["alpha"] == 0.01
    assert "diverged" not in plan.figure_settings("training_curves")
    assert validate_config(config)["figures"]["heatmap"]["width"] == COLUMN


def test_the_figure_command_takes_each_table_by_name(small, tmp_path, capsys):
    from bslr.cli import main

    runs = tmp_path / "runs.parquet"
    small["runs"].to_parquet(runs)
    settings = json.dumps(settings_of("heatmap"))
    where = ["--experiment", "paper", "--dataset", "cifar10", "--model", "resnet110", "--settings"]
    pdf, png = str(tmp_path / "heatmap.pdf"), str(tmp_path / "heatmap.png")
    assert main(["figure", "heatmap", "--input", f"runs={runs}", *where, settings, "--pdf", pdf, "--png", png]) == 0
    assert len(pd.read_csv(tmp_path / "heatmap.csv")) == 25  # the source data, beside the PDF by default
    settings = json.dumps(settings_of("acc_vs_ratio"))
    assert main(["figure", "acc_vs_ratio", "--input", str(runs), *where, settings, "--pdf", pdf, "--png", png]) == 1
    assert "--input: give runs=PATH correlations=PATH" in capsys.readouterr().err


def test_the_iso_ratio_figure_of_a_grid_without_shared_ratios_says_so_in_each_panel():
    """Batch sizes doubling and learning rates stepping by about 3 (both log spaced): no two cells share a
    ratio, so each of the three scenarios' panels says why it is empty rather than drawing an empty axis."""
    runs = paper_runs(batch_sizes=(16, 32, 64), learning_rates=(0.01, 0.03, 0.1), scenarios=3)
    assert runs.groupby(["model", "dataset"])["ratio"].nunique().eq(9).all()  # nine distinct ratios each
    tables = {"runs": runs, **statistics(runs, "exclude")}
    assert (tables["iso_ratio"]["ratio_sets"] == 0).all()
    figure, source = drawn("iso_ratio", tables)
    notes = [text for text in texts(figure) if text.get_text().startswith("no two cells of this grid share a ratio")]
    assert len(notes) == 3 and source.empty
    assert all(not axes.get_yticks().size for axes in {note.axes for note in notes})  # no axis for missing values
    renderer = figure.canvas.get_renderer()
    found = texts(figure)
    clashes = [
        (found[i].get_text(), found[j].get_text()) for i, j in overlapping(t.get_window_extent(renderer) for t in found)
    ]
    assert not clashes, f"text printed over text: {clashes[:5]}"


def test_learning_rates_of_a_log_spaced_grid_get_a_log_axis_labelled_at_the_grid():
    """0.001, 0.01, 0.1, 1 on a linear axis put three of four points at its left edge; a grid spaced in log
    terms gets a log axis with the grid's rates as labels, an evenly spaced one keeps its linear axis."""
    learning_rates = (0.001, 0.01, 0.1, 1.0)
    runs = paper_runs(seeds=(0,), batch_sizes=(32, 64, 128), learning_rates=learning_rates, scenarios=1)
    tables = {"runs": runs, **statistics(runs, "exclude")}
    axis = drawn("acc_vs_learning_rate", tables)[0].get_axes()[0].xaxis
    assert axis.get_scale() == "log"
    assert [label.get_text() for label in axis.get_ticklabels() if label.get_text()] == ["0.001", "0.01", "0.1", "1"]
    positions = axis.axes.transData.transform([(lr, 0.5) for lr in learning_rates])[:, 0]
    np.testing.assert_allclose(np.diff(positions), np.diff(positions)[0], rtol=1e-9)  # equally far apart
    linear = drawn("acc_vs_learning_rate", {"runs": paper_runs(seeds=(0,), scenarios=1)})[0].get_axes()[0].xaxis
    assert linear.get_scale() == "linear"
    matplotlib.pyplot.close("all")


def test_heatmap_iso_ratio_lines_pass_through_the_cells_that_share_the_ratio_they_name():
    """A researcher's 3 x 3 grid: batch sizes 32, 64, 128 and learning rates 0.05, 0.1, 0.2 share the
    ratios 320 (2 cells), 640 (3) and 1280 (2). Each dashed line joins exactly the centres of its cells,
    and the key names those ratios."""
    batch_sizes, learning_rates = (32, 64, 128), (0.05, 0.1, 0.2)
    runs = paper_runs(seeds=(0,), batch_sizes=batch_sizes, learning_rates=learning_rates, scenarios=1)
    figure, _ = drawn("heatmap", {"runs": runs}, dataset="cifar10", model="resnet110")
    axes = figure.get_axes()[0]
    dashed = [line for line in axes.get_lines() if line.get_linestyle() != "-"]
    drawn_cells = sorted(
        tuple(
            (learning_rates[int(column)], batch_sizes[int(row)]) for column, row in zip(*line.get_data(), strict=True)
        )
        for line in dashed
    )
    assert all(float(value).is_integer() for line in dashed for value in (*line.get_xdata(), *line.get_ydata()))
    assert drawn_cells == [((0.05, 32), (0.1, 64), (0.2, 128)), ((0.05, 64), (0.1, 128)), ((0.1, 32), (0.2, 64))]
    assert "equal ratio (B/η = 320, 640, 1280)" in printed(figure)
    matplotlib.pyplot.close(figure)


@pytest.mark.parametrize("name", ["acc_vs_ratio", "train_test_vs_ratio"])
def test_the_ratio_figures_draw_along_the_ratio_their_x_setting_names(name, small):
    """Adam runs: `x: optimizer_ratio` draws every cell at its B/lr^2, labels the axis so and prints the
    statistics' optimizer_ratio test; the default draws B/lr with the ratio test and its usual source columns. A
    runs table without the optimizer's columns (plain SGD) draws its own ratio, B/lr, with the ratio test."""
    runs = adam_runs()
    adam = {"runs": runs, **statistics(runs, "exclude")}
    for x, label in (("optimizer_ratio", "B/lr^2"), ("ratio", "batch size / learning rate")):
        config = tiny_config()
        config["figures"] = {name: {"x": x}}
        tables = {table: adam[table] for table in FIGURES[name].tables}
        figure, source = render(name, tables, ("adam", "cifar10", "resnet110"), settings_of(name, config=config))
        panels = [axes for axes in figure.get_axes() if axes.get_xlabel()]
        assert len(panels) == (1 if name == "acc_vs_ratio" else 3)
        assert {axes.get_xlabel() for axes in panels} == {label}
        points = np.concatenate([axes.collections[-1].get_offsets()[:, 0] for axes in panels])
        np.testing.assert_allclose(np.sort(points), np.sort(source[x]), rtol=1e-12)
        if x == "optimizer_ratio":
            np.testing.assert_allclose(source[x], source["batch_size"] / source["lr"] ** 2, rtol=1e-12)
        else:
            assert "optimizer_ratio" not in source  # the default source data keeps its columns
        row = adam["correlations"][
            (adam["correlations"]["group"] == x)
            & (adam["correlations"]["outcome"] == "final_test_acc")
            & (adam["correlations"]["method"] == "spearman")
        ].iloc[0]
        assert f"ρ = {row['statistic']:.3f}, ".replace("-", "−") in printed(figure)
        matplotlib.pyplot.close(figure)
    config = tiny_config()
    config["figures"] = {name: {"x": "optimizer_ratio"}}
    tables = {table: small[table] for table in FIGURES[name].tables}
    figure, source = render(name, tables, scenario_of(name), settings_of(name, config=config))
    assert {axes.get_xlabel() for axes in figure.get_axes() if axes.get_xlabel()} == {"B/lr"}
    np.testing.assert_allclose(source["optimizer_ratio"], source["ratio"], rtol=0)
    row = ratio_row(small["correlations"], "cifar10", "resnet110")
    assert f"ρ = {row['statistic']:.3f}, ".replace("-", "−") in printed(figure)
    matplotlib.pyplot.close(figure)


def test_panel_letters_go_on_past_z():
    """The budgets figure of six experiments sharing two scenarios and three outcomes has 36 panels."""
    from bslr.figures import panel_letter

    assert [panel_letter(index) for index in (0, 25, 26, 35, 52)] == ["a", "z", "aa", "aj", "ba"]
