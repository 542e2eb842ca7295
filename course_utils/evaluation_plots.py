"""Figures for chapter 04 (evaluation). Each function returns a matplotlib ``Figure``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure

from .plot_grids import min_image_inches

__all__ = ["iwae_curve", "frechet_vs_n", "precision_recall_map", "sample_grids"]


def iwae_curve(ks: Sequence[int], means: Sequence[float], errors: Sequence[float],
               title: str = "Importance-weighted bound against k") -> Figure:
    """Mean bound (nats per image) against the number of samples k, log-scaled k axis.

    Args:
        ks: the sample counts, e.g. [1, 10, 100, 1000].
        means: the mean bound at each k.
        errors: a standard error at each k (drawn as +- 2 s.e. bars).
    """
    if not len(ks) == len(means) == len(errors):
        raise ValueError("ks, means and errors must have the same length")
    fig, ax = plt.subplots(figsize=(6, 3.6))
    ax.errorbar(ks, means, yerr=2 * np.asarray(errors), fmt="o-", capsize=3)
    ax.set_xscale("log")
    ax.set_xlabel("k (samples per image)")
    ax.set_ylabel("bound on log p(x), nats per image")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def frechet_vs_n(result: Mapping[str, Sequence[float]], label: str = "model",
                 title: str = "Frechet distance against the number of samples") -> Figure:
    """The output of :func:`course_utils.evaluation.frechet_vs_sample_size` on log-log axes."""
    fig, ax = plt.subplots(figsize=(6, 3.8))
    ax.plot(result["n"], result["model"], "o-", label=f"{label} vs real test")
    ax.plot(result["n"], result["floor"], "s--", color="k", label="real train vs real test (floor)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("n (images per side)")
    ax.set_ylabel("Frechet distance (classifier features)")
    ax.set_title(title)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    return fig


def precision_recall_map(points: Mapping[str, tuple[float, float]],
                         title: str = "Fidelity (precision) and diversity (recall)") -> Figure:
    """One labelled point per generator: precision on x, recall on y, both in [0, 1]."""
    if not points:
        raise ValueError("no points to plot")
    fig, ax = plt.subplots(figsize=(5, 4.4))
    for name, (p, r) in points.items():
        ax.scatter([p], [r], s=40)
        ax.annotate(name, (p, r), textcoords="offset points", xytext=(5, 4), fontsize=8)
    ax.set_xlim(-0.02, 1.08)
    ax.set_ylim(-0.02, 1.08)
    ax.set_xlabel("precision: samples that look real")
    ax.set_ylabel("recall: real images the samples cover")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def sample_grids(samples: Mapping[str, torch.Tensor], ncol: int = 4,
                 title: str = "Samples, side by side") -> Figure:
    """One panel per model: its first ``ncol * ncol`` images (B, 1, 28, 28) in [0, 1]."""
    if not samples:
        raise ValueError("no samples to show")
    side = max(2.6, ncol * min_image_inches() * 1.15)     # inches per panel: readable tiles
    fig, axes = plt.subplots(1, len(samples), figsize=(side * len(samples), side + 0.5),
                             squeeze=False)
    for ax, (name, images) in zip(axes[0], samples.items(), strict=True):
        x = images[:ncol * ncol].detach().float().cpu().clamp(0, 1).reshape(-1, 28, 28).numpy()
        if len(x) < ncol * ncol:
            x = np.concatenate([x, np.zeros((ncol * ncol - len(x), 28, 28), np.float32)])
        tiles = x.reshape(ncol, ncol, 28, 28).transpose(0, 2, 1, 3).reshape(ncol * 28, ncol * 28)
        ax.imshow(tiles, cmap="gray", vmin=0, vmax=1)
        ax.set_title(name, fontsize=9)
        ax.axis("off")
    fig.suptitle(title)
    fig.tight_layout()
    return fig
