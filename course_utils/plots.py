"""Plots used across the notebooks. Every function returns a matplotlib ``Figure`` and works
without a display (headless runs use the Agg backend automatically).

Images are accepted as tensors or arrays of shape (B, 1, H, W), (B, H, W) or (H, W), with pixels
in [0, 1] or in [-1, 1]: the range is detected and mapped to [0, 1] for display.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure

ArrayLike = torch.Tensor | np.ndarray


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


def image_grid(images: ArrayLike, nrow: int | None = None, title: str | None = None,
               labels: Sequence[str] | None = None, scale: float = 1.0) -> Figure:
    """Show a batch of grayscale images in a grid.

    Args:
        images: (B, 1, H, W), (B, H, W) or (H, W), in [0, 1] or [-1, 1].
        nrow: images per row (default: about sqrt(B)).
        title: figure title.
        labels: optional caption under each image.
        scale: inches per image.
    """
    batch = _as_batch(images)
    n = len(batch)
    ncol = nrow or math.ceil(math.sqrt(n))
    nrows = math.ceil(n / ncol)
    fig, axes = plt.subplots(nrows, ncol, figsize=(ncol * scale, nrows * scale * (1.25 if labels else 1)),
                             squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            ax.imshow(batch[i], cmap="gray", vmin=0.0, vmax=1.0)
            if labels is not None:
                ax.set_title(str(labels[i]), fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def loss_curves(history: Mapping[str, Sequence[float]] | Sequence[Mapping[str, float]],
                keys: Sequence[str] | None = None, title: str = "Training curves",
                xlabel: str = "epoch", logy: bool = False) -> Figure:
    """Plot one line per metric.

    Args:
        history: either ``{"train_loss": [...], "test_loss": [...]}`` or a list of per-epoch
            dicts such as ``[{"epoch": 1, "train_loss": 0.3}, ...]``.
        keys: which metrics to draw (default: every numeric series except epoch/time counters).
    """
    if isinstance(history, Mapping):
        series = {k: list(v) for k, v in history.items()}
    else:
        rows = list(history)
        names = list(dict.fromkeys(k for row in rows for k in row))
        series = {k: [row.get(k, math.nan) for row in rows] for k in names}
    skip = {"epoch", "step", "seconds", "elapsed", "images_per_sec", "lr"}
    keys = list(keys) if keys is not None else [
        k for k, v in series.items() if k not in skip and v
        and all(isinstance(x, (int, float)) for x in v)]
    missing = [k for k in keys if k not in series]
    if missing:
        raise KeyError(f"history has no {missing}; available: {sorted(series)}")
    if not keys:
        raise ValueError("nothing to plot: history has no numeric series")
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for k in keys:
        ys = series[k]
        xs = series.get("epoch", list(range(1, len(ys) + 1)))[:len(ys)]
        ax.plot(xs, ys, marker="o" if len(ys) < 30 else None, label=k)
    ax.set_xlabel(xlabel)
    if logy:
        ax.set_yscale("log")
    ax.set_title(title)
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def class_bars(labels: ArrayLike | Sequence[int], classes: Sequence[str],
               title: str = "Images per class", reference: float | None = None) -> Figure:
    """Bar chart of how many items fall in each class.

    Args:
        labels: integer class labels (N,), e.g. a dataset's labels or a classifier's
            predictions for generated samples.
        classes: class names, indexed by label.
        reference: draw a dashed line at this count (e.g. N / number of classes).
    """
    y = labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    counts = np.bincount(y.astype(np.int64).ravel(), minlength=len(classes))
    if len(counts) > len(classes):
        raise ValueError(f"labels go up to {len(counts) - 1} but only {len(classes)} class names "
                         "were given")
    fig, ax = plt.subplots(figsize=(7, 3))
    ax.bar(range(len(classes)), counts, color="tab:blue")
    ax.set_xticks(range(len(classes)), list(classes), rotation=45, ha="right", fontsize=8)
    if reference is not None:
        ax.axhline(reference, ls="--", color="gray", lw=1)
    ax.set_ylabel("count")
    ax.set_title(title)
    fig.tight_layout()
    return fig
