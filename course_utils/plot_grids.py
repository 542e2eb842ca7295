"""Figures made of images (grids, reconstruction rows, interpolation strips, latent maps), laid
out so that every image is drawn at a readable size.

**The size rule.** Every image in these figures is drawn at least :data:`MIN_IMAGE_PX` screen
pixels on a side (twice the 28 pixels of a Fashion-MNIST image) at the figure's dpi. A
requested ``scale`` (inches per image) below that is raised to it, and a row that would be wider
than :data:`MAX_FIGURE_WIDTH_IN` is first narrowed (never below the minimum) and then wrapped
onto more rows. The figure's size is computed from the images' size, the title and the
captions, so a title never squeezes the images (``tight_layout`` is not used).

:mod:`course_utils.plots` re-exports everything here; import from there.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from .utils import tile_images

ArrayLike = torch.Tensor | np.ndarray

MIN_IMAGE_PX = 56            # screen pixels per image side: 2x a 28-pixel image
MAX_FIGURE_WIDTH_IN = 9.0    # about the width of a notebook's output area at 100 dpi
GAP_IN = 0.06                # space between neighbouring images
PAD_IN = 0.08                # margin around the grid
TITLE_IN = 0.42              # height reserved for a figure title
CAPTION_IN = 0.22            # height reserved above an image for its caption


def min_image_inches(dpi: float | None = None) -> float:
    """The smallest image side, in inches, that :data:`MIN_IMAGE_PX` allows at ``dpi``
    (default: ``matplotlib.rcParams["figure.dpi"]``, the dpi new figures get)."""
    return MIN_IMAGE_PX / float(dpi or plt.rcParams["figure.dpi"])


def _as_batch(images: ArrayLike) -> np.ndarray:
    """Convert images to a float array (B, H, W) in [0, 1], checking shape and range."""
    x = images.detach().float().cpu().numpy() if isinstance(images, torch.Tensor) \
        else np.asarray(images, dtype=np.float32)
    if x.ndim == 4:
        if x.shape[1] != 1:
            raise ValueError(f"expected single-channel images (B, 1, H, W), got shape {x.shape}; "
                             "select one channel or convert to grayscale first")
        x = x[:, 0]
    elif x.ndim == 2:
        x = x[None]
    elif x.ndim != 3:
        raise ValueError(f"expected images of shape (B, 1, H, W), (B, H, W) or (H, W), "
                         f"got {x.shape}")
    if x.size == 0:
        raise ValueError("no images to show")
    if not np.isfinite(x).all():
        raise ValueError("images contain NaN or infinity; check the model's output")
    lo, hi = float(x.min()), float(x.max())
    if lo < -1.0 - 1e-3 or hi > 1.0 + 1e-3:
        raise ValueError(f"pixel values span [{lo:.3g}, {hi:.3g}]; expected [0, 1] or [-1, 1]. "
                         "Apply a sigmoid/tanh or rescale before plotting.")
    if lo < -1e-3:                      # [-1, 1] images, e.g. from a tanh generator
        x = (x + 1.0) / 2.0
    return np.clip(x, 0.0, 1.0)


def _zero_one_batch(images: ArrayLike, what: str) -> np.ndarray:
    """Images in the [0, 1] pixel domain (clipped: PCA reconstructions overshoot a little)."""
    x = images.detach().float().cpu().numpy() if isinstance(images, torch.Tensor) \
        else np.asarray(images, dtype=np.float32)
    if x.ndim == 4 and x.shape[1] == 1:
        x = x[:, 0]
    if x.ndim != 3:
        raise ValueError(f"{what}: expected images of shape (B, 1, H, W) or (B, H, W), "
                         f"got {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"{what} contain NaN or infinity; check the model's output")
    return np.clip(x, 0.0, 1.0)


def _bare(ax: Axes) -> None:
    """No ticks, no frame: the axes shows an image only (a y label may still be set)."""
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


@dataclass(frozen=True)
class GridLayout:
    """Where the images of a grid go: ``rows`` x ``cols`` images of ``cell`` inches."""

    rows: int
    cols: int
    cell: float


def plan_grid(n: int, cols: int, scale: float, *, left: float = 0.0,
              max_width: float = MAX_FIGURE_WIDTH_IN) -> GridLayout:
    """Choose rows, columns and image size for ``n`` images asked to sit ``cols`` per row.

    The image side is ``scale`` inches, raised to :func:`min_image_inches`. If the row is wider
    than ``max_width`` (with ``left`` inches of row labels), the images shrink to fit, but not
    below the minimum; past that the images wrap onto more, evenly filled rows.
    """
    if n < 1 or cols < 1:
        raise ValueError(f"need at least one image and one column, got n={n}, cols={cols}")
    smallest = min_image_inches()
    cell = max(scale, smallest)
    cols = min(cols, n)
    room = max_width - left - 2 * PAD_IN

    def fits(c: int, size: float) -> bool:
        return c * size + (c - 1) * GAP_IN <= room + 1e-9

    if not fits(cols, cell):
        squeezed = (room - (cols - 1) * GAP_IN) / cols
        if squeezed >= smallest:
            cell = squeezed
        else:
            most = max(1, int((room + GAP_IN) // (smallest + GAP_IN)))
            cols = math.ceil(n / math.ceil(n / most))
            cell = max(smallest, min(cell, (room - (cols - 1) * GAP_IN) / cols))
    return GridLayout(math.ceil(n / cols), cols, cell)


def grid_figure(layout: GridLayout, *, title: str | None = None, captions: bool = False,
                left: float = 0.0) -> tuple[Figure, np.ndarray]:
    """A figure holding ``layout.rows`` x ``layout.cols`` image axes of exactly ``layout.cell``
    inches, with room for a title, a caption above each image and ``left`` inches of row labels.

    Returns the figure and a (rows, cols) array of axes, ticks and frames off.
    """
    cap = CAPTION_IN if captions else 0.0
    top = TITLE_IN if title else 0.0
    cell = layout.cell
    width = left + layout.cols * cell + (layout.cols - 1) * GAP_IN + 2 * PAD_IN
    height = top + layout.rows * (cell + cap) + (layout.rows - 1) * GAP_IN + 2 * PAD_IN
    fig = plt.figure(figsize=(width, height))
    axes = np.empty((layout.rows, layout.cols), dtype=object)
    for r in range(layout.rows):
        y = height - PAD_IN - top - r * (cell + cap + GAP_IN) - cap - cell   # bottom, inches
        for c in range(layout.cols):
            x = PAD_IN + left + c * (cell + GAP_IN)
            ax = fig.add_axes((x / width, y / height, cell / width, cell / height))
            _bare(ax)
            axes[r, c] = ax
    if title:
        fig.suptitle(title, y=1 - (PAD_IN + 0.05) / height, va="top")
    return fig, axes


def _label_width(labels: Sequence[str], fontsize: float = 9) -> float:
    """Inches needed left of a row for its label (a rough estimate from the text length)."""
    longest = max((len(s) for s in labels), default=0)
    return 0.0 if longest == 0 else 0.15 + 0.6 * fontsize / 72 * longest


def image_grid(images: ArrayLike, nrow: int | None = None, title: str | None = None,
               labels: Sequence[str] | None = None, scale: float = 1.0) -> Figure:
    """Show a batch of grayscale images in a grid.

    Args:
        images: (B, 1, H, W), (B, H, W) or (H, W), in [0, 1] or [-1, 1].
        nrow: images per row (default: about sqrt(B)); a row too wide for the page wraps.
        title: figure title.
        labels: optional caption above each image.
        scale: inches per image (raised to the readable minimum, see :data:`MIN_IMAGE_PX`).
    """
    batch = _as_batch(images)
    n = len(batch)
    if labels is not None and len(labels) < n:
        raise ValueError(f"got {len(labels)} labels for {n} images")
    layout = plan_grid(n, nrow or math.ceil(math.sqrt(n)), scale)
    fig, axes = grid_figure(layout, title=title, captions=labels is not None)
    for i, ax in enumerate(axes.flat):
        if i < n:
            ax.imshow(batch[i], cmap="gray", vmin=0.0, vmax=1.0)
            if labels is not None:
                ax.set_title(str(labels[i]), fontsize=7, pad=2)
        else:
            ax.set_visible(False)
    return fig


def image_rows(rows: Mapping[str, np.ndarray], n: int, title: str | None, scale: float,
               end_labels: tuple[str, str] | None = None) -> Figure:
    """Labelled rows of ``n`` images each (all rows the same length), one row per mapping
    entry, drawn at a readable size. Used by :func:`reconstructions` and
    :func:`interpolation_strip`; rows are not wrapped (columns line up across rows)."""
    left = _label_width([k for k in rows if k])
    smallest = min_image_inches()
    room = MAX_FIGURE_WIDTH_IN - left - 2 * PAD_IN
    cell = max(smallest, min(max(scale, smallest), (room - (n - 1) * GAP_IN) / n))
    layout = GridLayout(len(rows), n, cell)
    fig, axes = grid_figure(layout, title=title, captions=end_labels is not None, left=left)
    for r, (label, batch) in enumerate(rows.items()):
        for c in range(n):
            axes[r, c].imshow(batch[c], cmap="gray", vmin=0.0, vmax=1.0)
        if label:
            axes[r, 0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=9)
    if end_labels is not None:
        axes[0, 0].set_title(end_labels[0], fontsize=8, pad=2)
        axes[0, -1].set_title(end_labels[1], fontsize=8, pad=2)
    return fig


def reconstructions(originals: ArrayLike, reconstructed: ArrayLike | Mapping[str, ArrayLike],
                    n: int = 10, title: str | None = None, scale: float = 0.9) -> Figure:
    """Originals in the top row, one row of reconstructions per model below.

    Args:
        originals: images (B, 1, H, W) in [0, 1].
        reconstructed: images of the same shape, or ``{"row label": images}`` for several
            models (e.g. ``{"autoencoder": ..., "PCA": ...}``).
        n: how many columns (images) to show.
        title: figure title.
        scale: inches per image (raised to the readable minimum).
    """
    rows = {"original": originals}
    rows.update(reconstructed if isinstance(reconstructed, Mapping)
                else {"reconstruction": reconstructed})
    arrays = {label: _zero_one_batch(images, label) for label, images in rows.items()}
    n = min(n, *(len(a) for a in arrays.values()))
    shapes = {a.shape[1:] for a in arrays.values()}
    if len(shapes) != 1:
        raise ValueError(f"all rows must hold images of one size, got {sorted(shapes)}")
    return image_rows(arrays, n, title, scale)


def interpolation_strip(rows: ArrayLike | Mapping[str, ArrayLike], title: str | None = None,
                        scale: float = 0.9, end_labels: tuple[str, str] = ("start", "end")
                        ) -> Figure:
    """One row of images per interpolation, from the first image to the last.

    Args:
        rows: (S, 1, H, W) images for one interpolation, or ``{"row label": (S, 1, H, W)}``
            for several (e.g. ``{"latent space": ..., "pixel space": ...}``); [0, 1] or [-1, 1].
        title: figure title.
        scale: inches per image (raised to the readable minimum).
        end_labels: captions of the first and last column.
    """
    named = dict(rows) if isinstance(rows, Mapping) else {"": rows}
    if not named:
        raise ValueError("interpolation_strip: no rows to show")
    arrays = {label: _as_batch(images) for label, images in named.items()}
    steps = {len(a) for a in arrays.values()}
    if len(steps) != 1:
        raise ValueError(f"every row needs the same number of steps, got {sorted(steps)}")
    s = steps.pop()
    if s < 2:
        raise ValueError("an interpolation needs at least 2 images (its two ends)")
    return image_rows(arrays, s, title, scale, end_labels=end_labels)


def grids_over_time(snapshots: Sequence[tuple[int, ArrayLike]], n_show: int = 8,
                    title: str = "Fixed noise over training") -> Figure:
    """One row per snapshot: the same noise vectors decoded at successive training steps.

    Args:
        snapshots: ``[(step, images), ...]``, images (B, 1, H, W) in [-1, 1] or [0, 1]
            (``fit_gan`` records them in ``result.snapshots``).
        n_show: images per row (the first ``n_show`` of each snapshot).
    """
    if not snapshots:
        raise ValueError("no snapshots to show: run fit_gan with snapshot_every > 0")
    rows = {f"step {step}": _as_batch(images)[:n_show] for step, images in snapshots}
    n = min(n_show, *(len(b) for b in rows.values()))
    return image_rows(rows, n, title, scale=0.8)


def latent_manifold(decode: Callable[[torch.Tensor], torch.Tensor], grid: int = 15,
                    quantile: float = 0.95, title: str = "Decoded 2-D latent grid",
                    size: float = 6.0) -> Figure:
    """Decode a regular grid of 2-D codes and tile the images into one picture.

    The grid is evenly spaced in *probability* under the N(0, I) prior (Kingma and Welling's
    figure 4): coordinates are the normal quantiles of ``linspace(1 - quantile, quantile)``,
    so each tile covers the same prior mass.

    Args:
        decode: maps codes (N, 2) to images (N, 1, H, W) in [0, 1] (e.g.
            ``lambda z: torch.sigmoid(vae.decode(z))``).
        grid: tiles per side.
        quantile: the outermost tiles sit at this quantile of N(0, 1) (0.5 < quantile < 1).
        size: side of the tiled picture in inches (raised so each tile is readable).
    """
    from scipy.stats import norm

    if grid < 2:
        raise ValueError(f"grid must be at least 2, got {grid}")
    if not 0.5 < quantile < 1.0:
        raise ValueError(f"quantile must lie in (0.5, 1), got {quantile}")
    coords = norm.ppf(np.linspace(1.0 - quantile, quantile, grid)).astype(np.float32)  # (G,)
    z1, z2 = np.meshgrid(coords, coords[::-1])                   # rows: z2 from high to low
    codes = torch.from_numpy(np.stack([z1.ravel(), z2.ravel()], axis=1))             # (G*G, 2)
    with torch.no_grad():
        images = _as_batch(decode(codes))                        # (G*G, H, W)
    if len(images) != grid * grid:
        raise ValueError(f"decode returned {len(images)} images for {grid * grid} codes")
    w = images.shape[2]                                          # tile width, pixels
    canvas = tile_images(images, grid)                           # (G*H, G*W)
    side = max(size, grid * min_image_inches())                  # inches of the picture
    margin_l, margin_b, margin_t = 0.7, 0.55, 0.45
    width, height = side + margin_l + 0.15, side + margin_b + margin_t
    fig = plt.figure(figsize=(width, height))
    ax = fig.add_axes((margin_l / width, margin_b / height, side / width, side / height))
    ax.imshow(canvas, cmap="gray", vmin=0.0, vmax=1.0)
    ticks = np.arange(grid) * w + w / 2
    shown = slice(None, None, max(1, grid // 5))
    ax.set_xticks(ticks[shown], [f"{v:.1f}" for v in coords[shown]])
    ax.set_yticks(ticks[shown], [f"{v:.1f}" for v in coords[::-1][shown]])
    ax.set_xlabel("$z_1$")
    ax.set_ylabel("$z_2$")
    ax.set_title(title)
    return fig
