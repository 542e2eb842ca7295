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
    rows = len(snapshots)
    fig, axes = plt.subplots(rows, n_show, figsize=(n_show * 0.9, rows * 0.95), squeeze=False)
    for r, (step, images) in enumerate(snapshots):
        batch = _as_batch(images)[:n_show]
        for c in range(n_show):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if c < len(batch):
                ax.imshow(batch[c], cmap="gray", vmin=0, vmax=1)
        axes[r, 0].set_ylabel(f"step {step}", fontsize=7, rotation=0, ha="right", va="center")
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


def reconstructions(originals: ArrayLike, reconstructed: ArrayLike | Mapping[str, ArrayLike],
                    n: int = 10, title: str | None = None, scale: float = 1.0) -> Figure:
    """Originals in the top row, one row of reconstructions per model below.

    Args:
        originals: images (B, 1, H, W) in [0, 1].
        reconstructed: images of the same shape, or ``{"row label": images}`` for several
            models (e.g. ``{"autoencoder": ..., "PCA": ...}``).
        n: how many columns (images) to show.
        title: figure title.
    """
    rows = {"original": originals}
    rows.update(reconstructed if isinstance(reconstructed, Mapping)
                else {"reconstruction": reconstructed})
    arrays = {label: _zero_one_batch(images, label) for label, images in rows.items()}
    n = min(n, *(len(a) for a in arrays.values()))
    shapes = {a.shape[1:] for a in arrays.values()}
    if len(shapes) != 1:
        raise ValueError(f"all rows must hold images of one size, got {sorted(shapes)}")
    fig, axes = plt.subplots(len(arrays), n, figsize=(n * scale, len(arrays) * scale * 1.05),
                             squeeze=False)
    for r, (label, batch) in enumerate(arrays.items()):
        for c in range(n):
            ax = axes[r, c]
            ax.imshow(batch[c], cmap="gray", vmin=0.0, vmax=1.0)
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
        axes[r, 0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=9)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


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


def code_size_curve(code_sizes: Sequence[int], model_mse: Sequence[float] | Mapping[str, Sequence[float]],
                    pca_mse: Sequence[float], title: str = "Reconstruction error against code size",
                    annotate: bool = True) -> Figure:
    """Test MSE per pixel against code size k: autoencoder(s) versus PCA.

    Args:
        code_sizes: the k values, e.g. ``[2, 10, 32]``.
        model_mse: one MSE per k, or ``{"label": [mse per k]}`` for several models.
        pca_mse: PCA's MSE per k (the linear baseline).
        annotate: write each model's change against PCA (e.g. "-31%") next to its points.
    """
    ks = list(code_sizes)
    series = dict(model_mse) if isinstance(model_mse, Mapping) else {"autoencoder": model_mse}
    for label, values in {**series, "PCA": pca_mse}.items():
        if len(values) != len(ks):
            raise ValueError(f"{label!r} has {len(values)} values for {len(ks)} code sizes")
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(ks, pca_mse, "k--o", label="PCA (best linear code)")
    for label, values in series.items():
        ax.plot(ks, values, "-o", label=label)
        if annotate:
            for k, v, p in zip(ks, values, pca_mse):
                ax.annotate(f"{100 * (v - p) / p:+.0f}%", (k, v), textcoords="offset points",
                            xytext=(6, -12), fontsize=8)
    ax.set_xscale("log")
    ax.set_xticks(ks)
    ax.set_xticklabels([str(k) for k in ks])
    ax.set_xlabel("code size k")
    ax.set_ylabel("test MSE per pixel")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig


# ============================================================ VAE plots (chapter 02)

from typing import Callable  # noqa: E402  (kept beside the section that uses it)

def _image_row_axes(ax: plt.Axes) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


def interpolation_strip(rows: ArrayLike | Mapping[str, ArrayLike], title: str | None = None,
                        scale: float = 0.9, end_labels: tuple[str, str] = ("start", "end")
                        ) -> Figure:
    """One row of images per interpolation, from the first image to the last.

    Args:
        rows: (S, 1, H, W) images for one interpolation, or ``{"row label": (S, 1, H, W)}``
            for several (e.g. ``{"latent space": ..., "pixel space": ...}``); [0, 1] or [-1, 1].
        title: figure title.
        scale: inches per image.
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
    fig, axes = plt.subplots(len(arrays), s, figsize=(s * scale, len(arrays) * scale * 1.15),
                             squeeze=False)
    for r, (label, batch) in enumerate(arrays.items()):
        for c in range(s):
            axes[r, c].imshow(batch[c], cmap="gray", vmin=0.0, vmax=1.0)
            _image_row_axes(axes[r, c])
        if label:
            axes[r, 0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=9)
    axes[0, 0].set_title(end_labels[0], fontsize=8)
    axes[0, -1].set_title(end_labels[1], fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


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
    h, w = images.shape[1:]
    canvas = images.reshape(grid, grid, h, w).transpose(0, 2, 1, 3).reshape(grid * h, grid * w)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(canvas, cmap="gray", vmin=0.0, vmax=1.0)
    ticks = np.arange(grid) * w + w / 2
    shown = slice(None, None, max(1, grid // 5))
    ax.set_xticks(ticks[shown], [f"{v:.1f}" for v in coords[shown]])
    ax.set_yticks(ticks[shown], [f"{v:.1f}" for v in coords[::-1][shown]])
    ax.set_xlabel("$z_1$")
    ax.set_ylabel("$z_2$")
    ax.set_title(title)
    fig.tight_layout()
    return fig


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
    betas = [float(r["beta"]) for r in results]               # type: ignore[arg-type]
    names = [f"{b:g}" for b in betas]
    rows = len(results)
    fig = plt.figure(figsize=(12, 1.1 * max(rows, 3) + 0.8))
    grid = fig.add_gridspec(rows, 3, width_ratios=[1, 1, 2.6])
    colours = plt.get_cmap("viridis")(np.linspace(0.15, 0.85, rows))
    for col, (key, label) in enumerate((("recon", "reconstruction (BCE)"), ("kl", "KL"))):
        ax = fig.add_subplot(grid[:, col])
        values = [float(r[key]) for r in results]             # type: ignore[arg-type]
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
        _image_row_axes(ax)
        ax.set_ylabel(f"beta={names[row]}", rotation=0, ha="right", va="center", fontsize=9)
        if r.get("samples") is None:
            ax.text(0.5, 0.5, "(no samples given)", ha="center", va="center",
                    transform=ax.transAxes)
            continue
        batch = _as_batch(r["samples"])[:n_samples]           # type: ignore[arg-type]
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
