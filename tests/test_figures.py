import hashlib

import pytest

from bslr.config import validate_config
from bslr.figures import FIGURES, draw
from conftest import tiny_config
from test_stats import synthetic_runs


@pytest.mark.parametrize("name", sorted(FIGURES))
def test_each_figure_is_drawn_and_byte_identical_when_redrawn(name, tmp_path):
    settings = validate_config(tiny_config())["figures"][name]
    runs = synthetic_runs()
    digests = []
    for attempt in range(2):
        pdf, png = tmp_path / f"{attempt}.pdf", tmp_path / f"{attempt}.png"
        draw(name, runs, ("e", "d", "mlp"), settings, str(pdf), str(png))
        assert pdf.read_bytes().startswith(b"%PDF") and png.read_bytes().startswith(b"\x89PNG")
        digests.append((hashlib.sha256(pdf.read_bytes()).hexdigest(), hashlib.sha256(png.read_bytes()).hexdigest()))
    assert digests[0] == digests[1]


def test_unknown_scenario_is_refused(tmp_path):
    settings = validate_config(tiny_config())["figures"]["heatmap"]
    with pytest.raises(ValueError, match="no runs of experiment e, dataset d, model vgg19"):
        draw(
            "heatmap", synthetic_runs(), ("e", "d", "vgg19"), settings, str(tmp_path / "a.pdf"), str(tmp_path / "a.png")
        )
