"""Draw every figure from a synthetic study shaped like the paper's grid, for docs/figures.md.

The study (tests/paper_grid.py) has the paper's shape: 4 scenarios x 20 batch sizes x 20 learning rates,
1,600 runs, a few of them diverged. Its statistics are computed as `bslr stats` computes them with the
default analysis settings, and each figure is drawn with the settings `config/paper.yaml` gives it, at its
printed size; the PNGs are written at 150 dpi to keep the repository small.

    python docs/draw_figures.py            # writes docs/figures/*.png
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

import yaml  # noqa: E402

from bslr import stats  # noqa: E402
from bslr.catalog import FIGURES, figure_names  # noqa: E402
from bslr.figures import render  # noqa: E402
from bslr.plan import Plan  # noqa: E402
from paper_grid import paper_epochs, paper_runs  # noqa: E402

SCENARIO_FIGURES, EXPERIMENT_FIGURES = figure_names("scenario", "always"), figure_names("experiment")


def main() -> None:
    plan = Plan(yaml.safe_load((REPO / "config/paper.yaml").read_text()))
    analysis = plan.config["analysis"]
    runs = paper_runs()
    result = stats.analyse(
        runs,
        analysis["outcomes"],
        analysis["methods"],
        stats.Primary(**analysis["primary"]),
        analysis["diverged"],
        analysis["bootstrap_resamples"],
        analysis["seed"],
        analysis["permutations"],
    )
    tables = {"runs": runs, "epochs": paper_epochs(runs), "correlations": result.correlations}
    tables["iso_ratio"] = result.iso_ratio
    output = REPO / "docs/figures"
    for name in [*SCENARIO_FIGURES, *EXPERIMENT_FIGURES]:
        scenario = ("paper", None, None) if name in EXPERIMENT_FIGURES else ("paper", "cifar10", "resnet110")
        figure, _ = render(
            name, {table: tables[table] for table in FIGURES[name].tables}, scenario, plan.figure_settings(name)
        )
        figure.savefig(output / f"{name}.png", dpi=150, metadata={"Software": None})
        print(f"wrote {output / name}.png")


if __name__ == "__main__":
    main()
