"""Plots used across the notebooks. Every function returns a matplotlib ``Figure`` and works
without a display (headless runs use the Agg backend automatically).

Images are accepted as tensors or arrays of shape (B, 1, H, W), (B, H, W) or (H, W), with pixels
in [0, 1] or in [-1, 1]: the range is detected and mapped to [0, 1] for display. Figures made
of images (:func:`image_grid`, :func:`reconstructions`, :func:`interpolation_strip`,
:func:`grids_over_time`, :func:`latent_manifold`, :func:`beta_tradeoff`) draw every image at
least :data:`MIN_IMAGE_PX` screen pixels wide, wrapping long rows (see
:mod:`course_utils.plot_grids`, whose functions are re-exported here).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import cast

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter, NullLocator

from .plot_grids import (
    MIN_IMAGE_PX,
    ArrayLike,
    _as_batch,
    _bare,
    grids_over_time,
    image_grid,
    interpolation_strip,
    latent_manifold,
    min_image_inches,
    reconstructions,
)

__all__ = ["MIN_IMAGE_PX", "beta_tradeoff", "class_bars", "class_histograms", "code_size_curve",
           "gan_diagnostics", "gan_loss_gradients", "grids_over_time", "image_grid",
           "interpolation_strip", "latent_manifold", "latent_scatter", "loss_curves",
           "min_image_inches", "monte_carlo_convergence", "reconstructions"]


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


# ============================================================================ GAN plots
# Used by the DCGAN chapter (03).

def gan_loss_gradients(title: str = "Generator loss and its gradient") -> Figure:
    """Compare the minimax and non-saturating generator losses as functions of D(G(z)).

    Left: the losses. Middle: their derivative with respect to D(G(z)). Right: their
    derivative with respect to D's logit, which is what actually flows back into the
    generator (D(G(z)) = sigmoid(logit)). Early in training D rejects fakes, D(G(z)) is near
    0, and there the minimax gradient vanishes while the non-saturating one is largest.
    """
    d = np.linspace(1e-3, 1 - 1e-3, 500)
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.2))
    axes[0].plot(d, np.log(1 - d), label=r"minimax: $\log(1 - D(G(z)))$")
    axes[0].plot(d, -np.log(d), label=r"non-saturating: $-\log D(G(z))$")
    axes[0].set_title("loss the generator minimises")
    axes[1].plot(d, -1 / (1 - d), label="minimax")
    axes[1].plot(d, -1 / d, label="non-saturating")
    axes[1].set_ylim(-20, 1)
    axes[1].set_title(r"$\partial\,\mathrm{loss} / \partial D(G(z))$")
    axes[2].plot(d, -d, label=r"minimax: $-D(G(z))$")
    axes[2].plot(d, -(1 - d), label=r"non-saturating: $-(1 - D(G(z)))$")
    axes[2].set_title(r"$\partial\,\mathrm{loss} / \partial\,\mathrm{logit}$ (reaches G)")
    for ax in axes:
        ax.set_xlabel(r"$D(G(z))$ (D's probability that the fake is real)")
        ax.axvspan(0, 0.1, color="tab:red", alpha=0.08)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    axes[0].annotate("early training:\nD rejects fakes", xy=(0.02, 0.02), xycoords="axes fraction",
                     fontsize=7, color="tab:red")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def gan_diagnostics(history: Mapping[str, Sequence[float]], title: str = "GAN diagnostics",
                    smooth: int = 1) -> Figure:
    """Two panels: the D and G losses, and D's mean probability of "real" on real and fake.

    Args:
        history: a mapping with ``d_loss``, ``g_loss``, ``d_real`` (mean D(x)) and ``d_fake``
            (mean D(G(z))) series, and optionally ``step`` for the x axis, or the ``History``
            that :func:`course_utils.training.fit_gan` returns.
        smooth: moving-average window, to see trends through the noise of single batches.
    """
    if hasattr(history, "to_dict"):              # a training.History
        history = history.to_dict()
    need = ["d_loss", "g_loss", "d_real", "d_fake"]
    missing = [k for k in need if k not in history]
    if missing:
        raise KeyError(f"history has no {missing}; expected the keys {need} from fit_gan")

    def ma(values: Sequence[float]) -> np.ndarray:
        v = np.asarray(values, dtype=float)
        if smooth <= 1 or len(v) < smooth:
            return v
        return np.convolve(v, np.ones(smooth) / smooth, mode="valid")

    n = len(history["d_loss"])
    steps = np.asarray(history.get("step", range(1, n + 1)), dtype=float)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 3.3))
    for key, label in (("d_loss", "discriminator loss"), ("g_loss", "generator loss")):
        y = ma(history[key])
        ax1.plot(steps[len(steps) - len(y):], y, label=label)
    ax1.set_xlabel("step")
    ax1.set_title("losses")
    for key, label in (("d_real", "D(x), real images"), ("d_fake", "D(G(z)), generated")):
        y = ma(history[key])
        ax2.plot(steps[len(steps) - len(y):], y, label=label)
    ax2.axhline(0.5, ls="--", color="gray", lw=1)
    ax2.set_ylim(0, 1)
    ax2.set_xlabel("step")
    ax2.set_title('D\'s probability of "real"')
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def class_histograms(histograms: Mapping[str, Sequence[float]], classes: Sequence[str],
                     title: str = "Class histogram of generated samples") -> Figure:
    """Grouped bars: the fraction of samples per class, one colour per run.

    Args:
        histograms: ``{"run name": fractions (K,)}``, e.g. ``ClassHistogram.fractions``.
        classes: class names, indexed by label.
    """
    if not histograms:
        raise ValueError("no histograms to plot")
    k = len(classes)
    for name, h in histograms.items():
        if len(h) != k:
            raise ValueError(f"histogram {name!r} has {len(h)} bins but there are {k} classes")
    width = 0.8 / len(histograms)
    fig, ax = plt.subplots(figsize=(max(7, 0.9 * k), 3.2))
    for i, (name, h) in enumerate(histograms.items()):
        ax.bar(np.arange(k) + (i - (len(histograms) - 1) / 2) * width, np.asarray(h, float),
               width=width, label=name)
    ax.axhline(1 / k, ls="--", color="gray", lw=1, label="uniform")
    ax.set_xticks(range(k), list(classes), rotation=45, ha="right", fontsize=8)
    ax.set_ylabel("fraction of samples")
    ax.set_title(title)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


# ============================================================ autoencoder plots (chapter 01)

def latent_scatter(codes: ArrayLike, labels: ArrayLike | Sequence[int],
                   class_names: Sequence[str], title: str = "2-D codes of test images",
                   max_points: int = 5000, seed: int = 0, point_size: float = 4.0) -> Figure:
    """Scatter 2-D codes, one colour per class, with a legend of class names.

    Args:
        codes: (N, 2) codes, e.g. ``model.encode(x)`` of a model with code size 2.
        labels: (N,) integer classes.
        class_names: name of each class, indexed by label.
        max_points: plot a random subset of at most this many points (seeded).
    """
    z = codes.detach().float().cpu().numpy() if isinstance(codes, torch.Tensor) \
        else np.asarray(codes, dtype=np.float32)
    y = labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    if z.ndim != 2 or z.shape[1] != 2:
        raise ValueError(f"codes must have shape (N, 2), got {z.shape}; for larger codes, project "
                         "them to 2-D first (e.g. sklearn.manifold.TSNE or PCA).")
    if y.shape != (len(z),):
        raise ValueError(f"labels must have shape ({len(z)},) to match the codes, got {y.shape}")
    if len(y) and (y.min() < 0 or y.max() >= len(class_names)):
        raise ValueError(f"labels run from {y.min()} to {y.max()} but there are "
                         f"{len(class_names)} class names")
    if len(z) > max_points:
        keep = np.random.default_rng(seed).choice(len(z), max_points, replace=False)
        z, y = z[keep], y[keep]
    fig, ax = plt.subplots(figsize=(6.5, 5))
    cmap = plt.get_cmap("tab10" if len(class_names) <= 10 else "tab20")
    for k, name in enumerate(class_names):
        mask = y == k
        if mask.any():
            ax.scatter(z[mask, 0], z[mask, 1], s=point_size, color=cmap(k % cmap.N),
                       label=name, alpha=0.7, linewidths=0)
    ax.set_xlabel("$z_1$")
    ax.set_ylabel("$z_2$")
    ax.set_title(title)
    ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), markerscale=3, fontsize=8,
              frameon=False)
    fig.tight_layout()
    return fig


def code_size_curve(code_sizes: Sequence[int],
                    model_mse: Sequence[float] | Mapping[str, Sequence[float]],
                    pca_mse: Sequence[float], title: str = "Reconstruction error against code size",
                    annotate: bool = True,
                    points: Mapping[str, tuple[int, float]] | None = None) -> Figure:
    """Test MSE per pixel against code size k: autoencoder(s) versus PCA.

    Args:
        code_sizes: the k values, e.g. ``[2, 10, 32]``.
        model_mse: one MSE per k, or ``{"label": [mse per k]}`` for several models; name the
            model in the label (the legend shows it).
        pca_mse: PCA's MSE per k (the linear baseline).
        annotate: write each model's change against PCA (e.g. "-31%") next to its points.
        points: single extra models ``{"label": (k, mse)}`` (e.g. your own k = 2 model), drawn
            as markers, annotated against PCA at the same k.
    """
    ks = list(code_sizes)
    series = dict(model_mse) if isinstance(model_mse, Mapping) else {"autoencoder": model_mse}
    for label, values in {**series, "PCA": pca_mse}.items():
        if len(values) != len(ks):
            raise ValueError(f"{label!r} has {len(values)} values for {len(ks)} code sizes")
    pca_at = dict(zip(ks, pca_mse, strict=True))
    for label, (k, _) in (points or {}).items():
        if k not in pca_at:
            raise ValueError(f"point {label!r} has k={k}, which is not one of the code sizes {ks}")
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    ax.plot(ks, pca_mse, "k--o", label="PCA (best linear code)")

    def note(k: int, v: float, colour: object, below: bool = True) -> None:
        # Left of the last point, right of the others, so no label leaves the axes.
        last = k == max(ks)
        ax.annotate(f"{100 * (v - pca_at[k]) / pca_at[k]:+.0f}%", (k, v),
                    textcoords="offset points", xytext=(-8 if last else 8, -13 if below else 7),
                    ha="right" if last else "left", fontsize=8, color=colour)

    for label, values in series.items():
        (line,) = ax.plot(ks, values, "-o", label=label)
        if annotate:
            for k, v in zip(ks, values, strict=True):
                note(k, v, line.get_color())
    for label, (k, v) in (points or {}).items():
        (mark,) = ax.plot([k], [v], "D", markersize=7, label=label, linestyle="none")
        if annotate:
            note(k, v, mark.get_color(), below=False)
    ax.set_xscale("log")
    ax.xaxis.set_minor_locator(NullLocator())       # no 3, 4, 5 ... ticks on the log axis
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xticks(ks, [str(k) for k in ks])
    ax.set_xlim(min(ks) / 1.35, max(ks) * 1.35)
    ax.margins(y=0.12)                              # room for the labels above and below
    ax.set_xlabel("code size k (log scale)")
    ax.set_ylabel("test MSE per pixel")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


# ============================================================ VAE plots (chapter 02)

def beta_tradeoff(results: Sequence[Mapping[str, object]],
                  title: str = "beta-VAE: reconstruction against KL", n_samples: int = 8
                  ) -> Figure:
    """Left: test reconstruction term and KL for each beta (one panel each). Right: a row of
    prior samples per beta.

    Args:
        results: one mapping per run with ``beta``, ``recon`` and ``kl`` (test nats per image)
            and optionally ``samples`` (images (N, 1, H, W) decoded from the prior).
        n_samples: samples shown per beta.
    """
    if not results:
        raise ValueError("beta_tradeoff: no results to plot")
    for r in results:
        missing = [k for k in ("beta", "recon", "kl") if k not in r]
        if missing:
            raise KeyError(f"each result needs beta, recon and kl; one lacks {missing}")
    betas = [float(cast(float, r["beta"])) for r in results]
    names = [f"{b:g}" for b in betas]
    rows = len(results)
    # The samples column takes 3.6 / 5.2 of the width: wide enough for n_samples readable tiles.
    width = max(11.0, n_samples * min_image_inches() / 0.5)
    fig = plt.figure(figsize=(width, max(1.1, 1.6 * min_image_inches()) * max(rows, 3) + 0.8))
    grid = fig.add_gridspec(rows, 3, width_ratios=[0.8, 0.8, 3.6])
    colours = plt.get_cmap("viridis")(np.linspace(0.15, 0.85, rows))
    for col, (key, label) in enumerate((("recon", "reconstruction (BCE)"), ("kl", "KL"))):
        ax = fig.add_subplot(grid[:, col])
        values = [float(cast(float, r[key])) for r in results]
        ax.bar(names, values, color=colours)
        lo, hi = min(values), max(values)
        pad = 0.15 * (hi - lo) + 1e-3 * max(abs(hi), 1.0)
        ax.set_ylim(lo - 3 * pad if key == "recon" else 0, hi + 2 * pad)
        for x, v in enumerate(values):
            ax.annotate(f"{v:.1f}", (x, v), ha="center", va="bottom", fontsize=8)
        ax.set_xlabel("beta")
        ax.set_title(f"test {label}\n(nats per image)", fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    for row, r in enumerate(results):
        ax = fig.add_subplot(grid[row, 2])
        _bare(ax)
        ax.set_ylabel(f"beta={names[row]}", rotation=0, ha="right", va="center", fontsize=9)
        if r.get("samples") is None:
            ax.text(0.5, 0.5, "(no samples given)", ha="center", va="center",
                    transform=ax.transAxes)
            continue
        batch = _as_batch(cast(ArrayLike, r["samples"]))[:n_samples]
        ax.imshow(np.concatenate(list(batch), axis=1), cmap="gray", vmin=0.0, vmax=1.0)
        if row == 0:
            ax.set_title("samples from the prior", fontsize=9)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def monte_carlo_convergence(sample_sizes: Sequence[int], estimates: Sequence[float],
                            stderrs: Sequence[float], exact: float,
                            title: str = "Monte-Carlo estimate against the closed form",
                            ylabel: str = "KL (nats)") -> Figure:
    """A Monte-Carlo estimate (with +-2 standard errors) against the number of samples, and the
    exact value as a horizontal line: the estimate should close in on it as 1/sqrt(n)."""
    ns = np.asarray(sample_sizes, dtype=float)
    est, se = np.asarray(estimates, dtype=float), np.asarray(stderrs, dtype=float)
    if not (len(ns) == len(est) == len(se)) or len(ns) == 0:
        raise ValueError("sample_sizes, estimates and stderrs need the same non-zero length")
    fig, ax = plt.subplots(figsize=(6, 3.3))
    ax.fill_between(ns, est - 2 * se, est + 2 * se, alpha=0.25, label="estimate +- 2 s.e.")
    ax.plot(ns, est, "o-", label="Monte-Carlo estimate")
    ax.axhline(exact, color="k", ls="--", label=f"closed form = {exact:.4f}")
    ax.set_xscale("log")
    ax.set_xlabel("number of samples z ~ q(z|x)")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
