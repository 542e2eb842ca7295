"""Plots work headless and accept both pixel ranges."""

from __future__ import annotations

import matplotlib
import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from course_utils import evaluation_plots, plots
from course_utils.models.vae import ConvVAE
from course_utils.widgets import latent_traversal


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
    labels = sorted(line.get_label() for line in fig.axes[0].lines)
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


# ------------------------------------------------------------------ readable image sizes

def _image_sides_px(fig: Figure, tiles: int = 1) -> list[float]:
    """Drawn side (screen pixels, at the figure's dpi) of every image in ``fig``; an image
    that tiles ``tiles`` x ``tiles`` pictures counts the side of one tile."""
    fig.canvas.draw()
    sides = []
    for ax in fig.axes:
        for im in ax.get_images():
            box = im.get_window_extent()
            sides.append(min(box.width, box.height) / tiles)
    return sides


def _extent(im) -> tuple[float, float]:
    im.figure.canvas.draw()
    box = im.get_window_extent()
    return box.width, box.height


def _grids() -> dict[str, tuple[Figure, int]]:
    """Every image figure of course_utils.plots, built with the arguments that used to give
    tiny images (a long single row, a small scale, many rows of labels)."""
    x = torch.rand(16, 1, 28, 28)
    return {
        "one row of 16": (plots.image_grid(x, nrow=16, title="a long title"), 1),
        "12 in a row, scale 0.8": (plots.image_grid(x[:12], nrow=12, title="t", scale=0.8), 1),
        "scale 0.3": (plots.image_grid(x, nrow=8, scale=0.3), 1),
        "labels": (plots.image_grid(x[:10], nrow=10, labels=["Ankle boot"] * 10, title="t"), 1),
        "64 in an 8x8 grid": (plots.image_grid(torch.rand(64, 1, 28, 28), nrow=8, title="t"), 1),
        "reconstructions": (plots.reconstructions(x, {"a long row label": x, "PCA": x}, n=10,
                                                  title="t"), 1),
        "interpolation": (plots.interpolation_strip({"latent space": x[:10],
                                                     "pixel space": x[:10]}, title="t"), 1),
        "grids over time": (plots.grids_over_time([(0, x), (100, x), (2000, x)]), 1),
        "latent manifold": (plots.latent_manifold(lambda z: torch.rand(len(z), 1, 28, 28),
                                                  grid=15, size=4.0), 15),
        "beta tradeoff": (plots.beta_tradeoff([{"beta": b, "recon": 230.0, "kl": 10.0,
                                                "samples": x[:8]} for b in (0.5, 1.0, 4.0)]), 8),
        "four models side by side": (evaluation_plots.sample_grids(
            {name: torch.rand(16, 1, 28, 28) for name in ("AE", "VAE", "CVAE", "DCGAN")}), 4),
        "latent traversal": (latent_traversal(ConvVAE(latent_dim=8), steps=7), 7),
    }


@pytest.fixture(autouse=True)
def _close_figures():
    """Every test here draws figures; close them so that none piles up."""
    yield
    matplotlib.pyplot.close("all")


@pytest.mark.parametrize("dpi", [72, 100])
def test_no_image_is_drawn_below_the_minimum_size(dpi):
    with matplotlib.rc_context({"figure.dpi": dpi}):
        for name, (fig, tiles) in _grids().items():
            assert fig.dpi == dpi
            if name == "beta tradeoff":          # one canvas per row: 8 tiles side by side
                fig.canvas.draw()
                widths = [im.get_window_extent().width / tiles
                          for ax in fig.axes for im in ax.get_images()]
                sides = widths
            elif name == "latent traversal":     # one canvas: 8 rows of 7 tiles
                sides = [min(w / tiles, h / 8) for w, h in
                         (_extent(im) for ax in fig.axes for im in ax.get_images())]
            else:
                sides = _image_sides_px(fig, tiles)
            assert sides, name
            assert min(sides) >= plots.MIN_IMAGE_PX - 0.5, (name, min(sides))
            matplotlib.pyplot.close(fig)


def test_long_rows_wrap_and_keep_every_image():
    fig = plots.image_grid(torch.rand(16, 1, 28, 28), nrow=16)
    shown = [ax for ax in fig.axes if ax.images]
    assert len(shown) == 16
    assert fig.get_figwidth() <= 9.0 + 1e-6
    rows = {round(ax.get_position().y0, 4) for ax in shown}
    assert len(rows) == 2                         # wrapped into two rows of 8


def test_title_does_not_squeeze_the_images():
    x = torch.rand(12, 1, 28, 28)
    plain, titled = plots.image_grid(x, nrow=12), plots.image_grid(x, nrow=12, title="A title")
    assert _image_sides_px(titled) == pytest.approx(_image_sides_px(plain))
    assert titled.get_figheight() > plain.get_figheight()


def test_code_size_curve_labels_fit_and_extra_points():
    fig = plots.code_size_curve([2, 10, 32], {"conv AE": [0.03, 0.016, 0.010]},
                                [0.046, 0.024, 0.015], points={"your k=2 MLP": (2, 0.04)})
    ax = fig.axes[0]
    fig.canvas.draw()
    assert [t.get_text() for t in ax.get_xticklabels()] == ["2", "10", "32"]
    assert not any(t.get_text() for t in ax.xaxis.get_minorticklabels())
    inside = ax.get_window_extent()
    for text in ax.texts:                         # every "-35%" label lies inside the axes
        box = text.get_window_extent()
        assert inside.x0 - 1 <= box.x0 and box.x1 <= inside.x1 + 1, text.get_text()
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["PCA (best linear code)", "conv AE", "your k=2 MLP"]
    with pytest.raises(ValueError, match="not one of the code sizes"):
        plots.code_size_curve([2, 10], [0.03, 0.02], [0.04, 0.03], points={"x": (5, 0.1)})
