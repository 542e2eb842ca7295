"""Reconstruction metrics (PCA baseline, reconstruction_mse) and the chapter-01 plots."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from sklearn.decomposition import PCA
from torch import nn

from course_utils import plots
from course_utils.metrics import fit_pca, pca_baseline, pca_reconstruct, reconstruction_mse


def low_rank_images(n: int, seed: int) -> torch.Tensor:
    """Images in [0, 1] that lie near a 5-dimensional subspace."""
    basis = torch.rand(5, 784, generator=torch.Generator().manual_seed(1234))  # shared
    gen = torch.Generator().manual_seed(seed)
    weights = torch.rand(n, 5, generator=gen) / 5
    noise = 0.01 * torch.rand(n, 784, generator=gen)
    return (weights @ basis + noise).clamp(0, 1).reshape(n, 1, 28, 28)


def test_pca_baseline_matches_a_direct_scikit_learn_computation() -> None:
    train, test = low_rank_images(300, 0), low_rank_images(100, 1)
    for k in (1, 3):
        pca = PCA(n_components=k, random_state=0).fit(train.reshape(300, -1).numpy())
        flat = test.reshape(100, -1).numpy()
        direct = np.mean((pca.inverse_transform(pca.transform(flat)) - flat) ** 2)
        assert pca_baseline(train, test, k) == pytest.approx(direct, rel=1e-5)


def test_pca_error_falls_with_k_and_is_fitted_on_the_training_split_only() -> None:
    train, test = low_rank_images(300, 0), low_rank_images(100, 1)
    errors = [pca_baseline(train, test, k) for k in (1, 2, 5, 20)]
    assert all(a >= b for a, b in zip(errors, errors[1:], strict=False))
    assert errors[2] < 1e-4                            # 5 components hold the 5-D structure
    other = torch.rand(300, 1, 28, 28)                 # a different training split
    assert pca_baseline(other, test, 2) > 2 * pca_baseline(train, test, 2)


def test_pca_reconstruct_has_the_input_shape() -> None:
    train = low_rank_images(50, 0)
    pca = fit_pca(train, 5)
    out = pca_reconstruct(pca, train[:7])
    assert out.shape == (7, 1, 28, 28)
    assert torch.allclose(out, train[:7], atol=0.02)


def test_pca_rejects_bad_input() -> None:
    train = low_rank_images(20, 0)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        pca_baseline(train * 2 - 1, train, 2)
    with pytest.raises(ValueError, match="k must be"):
        pca_baseline(train, train, 0)
    with pytest.raises(ValueError, match="pixels per image"):
        pca_baseline(train, torch.rand(5, 1, 14, 14), 2)


def test_reconstruction_mse() -> None:
    x = torch.rand(30, 1, 28, 28)
    assert reconstruction_mse(nn.Identity(), x) == 0.0

    class Half(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Parameter(torch.ones(()))

        def forward(self, images: torch.Tensor) -> torch.Tensor:
            return images * 0.5 * self.w

    model = Half().train()
    expected = float(((x * 0.5 - x) ** 2).mean())
    assert reconstruction_mse(model, x, batch_size=7) == pytest.approx(expected, rel=1e-6)
    per_image = reconstruction_mse(model, x, per_image=True)
    assert per_image.shape == (30,) and float(per_image.mean()) == pytest.approx(expected, rel=1e-6)
    assert model.training                              # mode restored
    with pytest.raises(ValueError, match="must match its input"):
        reconstruction_mse(nn.Flatten(), x)


# ----------------------------------------------------------------------------- plots

def test_reconstructions_plot_has_one_row_per_model() -> None:
    x = torch.rand(12, 1, 28, 28)
    fig = plots.reconstructions(x, {"autoencoder": x * 0.9, "PCA": x + 0.1 - 0.2}, n=6)
    assert isinstance(fig, Figure) and len(fig.axes) == 18
    labels = [ax.get_ylabel() for ax in fig.axes if ax.get_ylabel()]
    assert labels == ["original", "autoencoder", "PCA"]
    assert len(plots.reconstructions(x, x, n=4).axes) == 8


def test_latent_scatter_colours_classes_with_a_legend() -> None:
    gen = torch.Generator().manual_seed(0)
    codes, labels = torch.randn(200, 2, generator=gen), torch.arange(200) % 3
    fig = plots.latent_scatter(codes, labels, ["cat", "dog", "bird"], max_points=100)
    legend = fig.axes[0].get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["cat", "dog", "bird"]
    assert sum(len(c.get_offsets()) for c in fig.axes[0].collections) == 100
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        plots.latent_scatter(torch.randn(10, 3), torch.zeros(10, dtype=torch.long), ["a"])
    with pytest.raises(ValueError, match="class names"):
        plots.latent_scatter(codes, labels, ["cat"])


def test_code_size_curve_compares_with_pca() -> None:
    fig = plots.code_size_curve([2, 10, 32], [0.03, 0.016, 0.010], [0.046, 0.024, 0.015])
    ax = fig.axes[0]
    assert len(ax.get_lines()) == 2
    assert any(t.get_text() == "-35%" for t in ax.texts)
    with pytest.raises(ValueError, match="code sizes"):
        plots.code_size_curve([2, 10], [0.03], [0.04, 0.02])
