"""Plots work headless and accept both pixel ranges."""

from __future__ import annotations

import matplotlib
import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from course_utils import plots


def _pixels(fig: Figure) -> np.ndarray:
    return fig.axes[0].images[0].get_array()


def test_backend_is_headless():
    assert matplotlib.get_backend().lower() == "agg"


def test_image_grid_maps_both_ranges_to_the_same_picture():
    x01 = torch.rand(6, 1, 28, 28)
    f1 = plots.image_grid(x01, nrow=3)
    f2 = plots.image_grid(x01 * 2 - 1, nrow=3)
    assert len([a for a in f1.axes if a.images]) == 6
    assert np.allclose(_pixels(f1), _pixels(f2), atol=1e-6)
    fig = plots.image_grid(np.random.rand(28, 28), labels=["one"])
    assert fig.axes[0].get_title() == "one"


@pytest.mark.parametrize("bad, match", [
    (torch.rand(2, 3, 28, 28), "single-channel"),
    (torch.rand(2, 2, 2, 2, 2), "expected images"),
    (torch.full((2, 1, 4, 4), 5.0), r"expected \[0, 1\] or \[-1, 1\]"),
    (torch.full((1, 4, 4), float("nan")), "NaN"),
])
def test_image_grid_rejects_bad_input(bad, match):
    with pytest.raises(ValueError, match=match):
        plots.image_grid(bad)


def test_loss_curves_accept_rows_or_columns():
    rows = [{"epoch": 1, "train_loss": 1.0, "test_loss": 1.2},
            {"epoch": 2, "train_loss": 0.5, "test_loss": 0.8}]
    fig = plots.loss_curves(rows)
    labels = sorted(l.get_label() for l in fig.axes[0].lines)
    assert labels == ["test_loss", "train_loss"]
    assert list(fig.axes[0].lines[0].get_ydata()) == [1.0, 0.5]
    fig2 = plots.loss_curves({"d_loss": [1, 2, 3]}, keys=["d_loss"])
    assert len(fig2.axes[0].lines) == 1
    with pytest.raises(KeyError, match="available"):
        plots.loss_curves(rows, keys=["nope"])


def test_class_bars_counts():
    fig = plots.class_bars(torch.tensor([0, 0, 2]), ["a", "b", "c"], reference=1)
    heights = [p.get_height() for p in fig.axes[0].patches]
    assert heights == [2, 0, 1]
    with pytest.raises(ValueError, match="class names"):
        plots.class_bars([0, 5], ["a", "b"])
