import hashlib

import numpy as np
import pandas as pd
import pytest

from bslr.config import validate_config
from bslr.figures import EXPERIMENT_FIGURES, FIGURES, draw
from bslr.stats import add_intervals, correlations
from conftest import tiny_config
from test_stats import synthetic_runs


def synthetic_epochs() -> pd.DataFrame:
    runs = synthetic_runs()
    frames = [
        pd.DataFrame(
            {
                "epoch": np.arange(1, 6),
                "test_acc": row.final_test_acc * (1 - np.exp(-np.arange(1, 6))),
                "train_acc": 0.9,
                "test_loss": 1.0,
                "train_loss": 1.0,
            }
        ).assign(
            experiment=row.experiment,
            model=row.model,
            dataset=row.dataset,
            batch_size=row.batch_size,
            lr=row.lr,
            seed=0,
        )
        for row in runs.itertuples()
    ]
    return pd.concat(frames, ignore_index=True)


def figure_input(name: str) -> pd.DataFrame:
    if name == "training_curves":
        return synthetic_epochs()
    if name == "forest":
        runs = synthetic_runs()
        return add_intervals(correlations(runs, ["final_test_acc"], ["spearman"]), runs, 200, 0, "include")
    return synthetic_runs()


@pytest.mark.parametrize("name", sorted({*FIGURES, *EXPERIMENT_FIGURES}))
def test_each_figure_is_drawn_and_byte_identical_when_redrawn(name, tmp_path):
    settings = validate_config(tiny_config())["figures"][name]
    scenario = ("e", None, None) if name in EXPERIMENT_FIGURES else ("e", "d", "mlp")
    digests = []
    for attempt in range(2):
        pdf, png = tmp_path / f"{attempt}.pdf", tmp_path / f"{attempt}.png"
        draw(name, figure_input(name), scenario, settings, str(pdf), str(png))
        assert pdf.read_bytes().startswith(b"%PDF") and png.read_bytes().startswith(b"\x89PNG")
        digests.append((hashlib.sha256(pdf.read_bytes()).hexdigest(), hashlib.sha256(png.read_bytes()).hexdigest()))
    assert digests[0] == digests[1]


def test_unknown_scenario_is_refused(tmp_path):
    settings = validate_config(tiny_config())["figures"]["heatmap"]
    with pytest.raises(ValueError, match="no rows of experiment e, dataset d, model vgg19"):
        draw(
            "heatmap", synthetic_runs(), ("e", "d", "vgg19"), settings, str(tmp_path / "a.pdf"), str(tmp_path / "a.png")
        )
