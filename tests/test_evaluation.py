"""course_utils.evaluation: the IWAE bound on a model with a known likelihood, precision and
recall on constructed sets, and the comparison table on tiny samplers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from course_utils import evaluation as ev
from course_utils.models.classifier import FashionClassifier

# ------------------------------------------------------------------ a linear-Gaussian VAE
# p(z) = N(0, I_D), p(x | z) = N(W z + b, s^2 I_P), so p(x) = N(b, W W^T + s^2 I) exactly.
# W has orthogonal columns, so the true posterior is a DIAGONAL Gaussian, which the course's
# encoder family can represent exactly.
P, D, S = 6, 3, 0.5


def _linear_gaussian(seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(P, D, generator=gen, dtype=torch.float64))
    w = q * torch.tensor([2.0, 1.0, 0.5], dtype=torch.float64)          # (P, D), orthogonal cols
    b = torch.randn(P, generator=gen, dtype=torch.float64)
    marginal = torch.distributions.MultivariateNormal(
        b, w @ w.T + S ** 2 * torch.eye(P, dtype=torch.float64))       # p(x), exactly
    x = marginal.sample((200,))                                          # (N, P)
    exact = marginal.log_prob(x)                                         # (N,)
    post_var = 1.0 / (1.0 + (w ** 2).sum(0) / S ** 2)                   # (D,) diagonal

    def log_lik(xb, z):
        return ev.gaussian_log_density(xb, z @ w.T + b, math.log(S ** 2))

    def exact_posterior(xb):
        mu = (xb - b) @ w / S ** 2 * post_var                           # (B, D)
        return mu, torch.log(post_var).expand_as(mu)

    def poor_posterior(xb):
        mu, logvar = exact_posterior(xb)
        return 0.5 * mu, logvar + math.log(3.0)

    return x, exact, log_lik, exact_posterior, poor_posterior


def test_iwae_equals_log_px_with_the_exact_posterior():
    x, exact, log_lik, exact_posterior, _ = _linear_gaussian()
    for k in (1, 10):
        bound = ev.iwae_bound(x, k, exact_posterior, log_lik, batch_size=64)
        assert torch.allclose(bound, exact, atol=1e-8)


def test_iwae_is_below_log_px_and_tightens_with_k():
    x, exact, log_lik, _, poor_posterior = _linear_gaussian(1)
    means = {k: float(ev.iwae_bound(x, k, poor_posterior, log_lik, batch_size=50, seed=k).mean())
             for k in (1, 10, 100, 2000)}
    target = float(exact.mean())
    assert means[1] < means[10] < means[100] < means[2000] <= target + 0.02
    assert target - means[1] > 0.5                     # the poor encoder leaves a real gap
    assert target - means[2000] < 0.1 * (target - means[1])


def test_iwae_chunks_combine_exactly():
    x, _, log_lik, _, poor_posterior = _linear_gaussian(2)
    whole = ev.iwae_bound(x[:10], 50, poor_posterior, log_lik, batch_size=10, seed=3)
    chunked = ev.iwae_bound(x[:10], 50, poor_posterior, log_lik, batch_size=10, seed=3,
                            max_draws=70)              # 7 samples per chunk
    gen = torch.Generator().manual_seed(3)
    log_w = ev.log_importance_weights(x[:10], 50, poor_posterior, log_lik, gen)
    assert torch.allclose(whole, torch.logsumexp(log_w, 0) - math.log(50))
    assert whole.shape == chunked.shape == (10,)
    assert abs(float(whole.mean() - chunked.mean())) < 0.5    # same estimator, other draws


def test_iwae_from_samples_matches_log_weights():
    gen = torch.Generator().manual_seed(0)
    mu, logvar = torch.randn(4, 3, generator=gen), torch.randn(4, 3, generator=gen) * 0.3
    z = mu + torch.exp(0.5 * logvar) * torch.randn(20, 4, 3, generator=gen)
    log_lik = torch.randn(20, 4, generator=gen) - 50
    out = ev.iwae_from_samples(log_lik, z, mu, logvar)
    q = torch.distributions.Normal(mu, torch.exp(0.5 * logvar))
    prior = torch.distributions.Normal(0.0, 1.0)
    log_w = log_lik + prior.log_prob(z).sum(-1) - q.log_prob(z).sum(-1)
    assert torch.allclose(out, log_w.exp().mean(0).log(), atol=1e-4)
    with pytest.raises(ValueError, match="k, B"):
        ev.iwae_from_samples(log_lik[0], z, mu, logvar)


def test_vae_iwae_bound_on_a_small_vae_is_finite_and_nonpositive_on_binary_data():
    from course_utils.models.vae import ConvVAE

    torch.manual_seed(0)
    vae = ConvVAE(latent_dim=4, width=4, hidden=0)
    x = ev.binarize(torch.rand(6, 1, 28, 28), seed=1)
    assert set(x.unique().tolist()) <= {0.0, 1.0}
    bounds = {k: ev.vae_iwae_bound(vae, x, k, batch_size=3) for k in (1, 20)}
    for b in bounds.values():
        assert b.shape == (6,) and torch.isfinite(b).all() and (b <= 0).all()
    assert vae.training                                   # the mode is restored


def test_binarize_is_seeded_and_checks_its_input():
    x = torch.full((2, 1, 28, 28), 0.3)
    a, b = ev.binarize(x, seed=5), ev.binarize(x, seed=5)
    assert torch.equal(a, b) and abs(float(a.mean()) - 0.3) < 0.05
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        ev.binarize(x * 2 - 1)


# ------------------------------------------------------------------ precision and recall

def test_knn_radii_on_a_line():
    f = torch.tensor([[0.0], [1.0], [3.0], [6.0]])
    assert torch.allclose(ev.knn_radii(f, k=1), torch.tensor([1.0, 1.0, 2.0, 3.0]))
    assert torch.allclose(ev.knn_radii(f, k=2, chunk=3), torch.tensor([3.0, 2.0, 3.0, 5.0]))
    with pytest.raises(ValueError, match="k must be"):
        ev.knn_radii(f, k=4)


def test_precision_and_recall_of_identical_sets_are_one():
    f = np.random.default_rng(0).normal(size=(300, 5))
    pr = ev.precision_recall(f, f.copy())
    assert pr.precision == 1.0 and pr.recall == 1.0


def test_one_mode_of_two_gives_high_precision_and_half_recall():
    rng = np.random.default_rng(1)
    real = np.concatenate([rng.normal(size=(300, 4)), rng.normal(size=(300, 4)) + 20])
    fake = rng.normal(size=(600, 4))                       # only the first mode
    pr = ev.precision_recall(real, fake, k=3)
    assert pr.precision > 0.9
    assert 0.4 < pr.recall < 0.55
    far = ev.precision_recall(real, fake + 100)
    assert far.precision == 0.0 and far.recall == 0.0
    with pytest.raises(ValueError, match="differ in size"):
        ev.precision_recall(real, fake[:, :3])


def test_class_coverage_and_frechet_vs_sample_size():
    labels = np.repeat(np.arange(10), [500, 300, 100, 50, 40, 5, 3, 2, 0, 0])
    covered, kl = ev.class_coverage(labels)
    assert covered == 5 and kl > 0
    rng = np.random.default_rng(2)
    a, b, c = (rng.normal(size=(800, 4)) for _ in range(3))
    out = ev.frechet_vs_sample_size(a + 1, b, c, sizes=[100, 800])
    assert out["n"] == [100, 800] and len(out["model"]) == len(out["floor"]) == 2
    # a shifted set is farther than a second real one
    assert all(m > f for m, f in zip(out["model"], out["floor"], strict=True))
    with pytest.raises(ValueError, match="sizes go up to"):
        ev.frechet_vs_sample_size(a, b, c, sizes=[900])


# ------------------------------------------------------------------ the comparison table

def test_compare_generators_on_tiny_samplers():
    torch.manual_seed(0)
    classifier = FashionClassifier(width=4, feature_dim=8).eval()
    gen = torch.Generator().manual_seed(0)
    train_x = torch.rand(120, 1, 28, 28, generator=gen)
    test_x = torch.rand(60, 1, 28, 28, generator=gen)
    codes = torch.randn(50, 3, generator=gen)
    decoder = torch.nn.Sequential(torch.nn.Linear(3, 784), torch.nn.Sigmoid(),
                                  torch.nn.Unflatten(1, (1, 28, 28)))
    samplers = {
        "copies of train": ev.Sampler(ev.copy_sampler(train_x), {"train s": 0.0}),
        "decoded codes": ev.gaussian_code_sampler(decoder, codes),
    }
    table = ev.compare_generators(samplers, classifier, test_x, train_x, n=40,
                                  n_memorisation=20, n_show=4)
    assert [r["model"] for r in table.rows] == list(samplers)
    copies = table.rows[0]
    assert copies["memorisation"] < 0.01 and copies["train s"] == 0.0
    assert "train s" not in table.rows[1]
    for row in table.rows:
        assert row["Frechet"] >= 0 and 0 <= row["precision"] <= 1 and 0 <= row["recall"] <= 1
        assert 0 <= row["classes"] <= 10 and row["images/s"] > 0
    assert table.samples["decoded codes"].shape == (4, 1, 28, 28)
    assert table.best("memorisation", lowest=True) == "copies of train"
    text = str(table)
    assert "copies of train" in text and "Frechet floor" in text and "train s" in text
    with pytest.raises(ValueError, match="exceeds"):
        ev.compare_generators(samplers, classifier, test_x, train_x, n=100)


def test_vae_importance_samples_and_test_scores_on_small_vaes():
    from course_utils.models.vae import ConditionalVAE, ConvVAE

    torch.manual_seed(0)
    vae = ConvVAE(latent_dim=4, width=4, hidden=0).eval()
    x = ev.binarize(torch.rand(5, 1, 28, 28), seed=2)
    log_lik, z, mu, logvar = ev.vae_importance_samples(vae, x, k=7, seed=0)
    assert log_lik.shape == (7, 5) and z.shape == (7, 5, 4) and mu.shape == logvar.shape == (5, 4)
    bound = ev.iwae_from_samples(log_lik, z, mu, logvar)
    assert bound.shape == (5,) and (bound <= 0).all()
    scores = ev.vae_test_scores(vae, x, batch_size=2)
    assert set(scores) == {"bce_plus_kl", "recon", "kl", "mse_per_pixel"}
    assert math.isclose(scores["bce_plus_kl"], scores["recon"] + scores["kl"], rel_tol=1e-5)
    cvae = ConditionalVAE(latent_dim=4, num_classes=3, width=4, hidden=0).eval()
    c_scores = ev.vae_test_scores(cvae, x, torch.tensor([0, 1, 2, 0, 1]))
    assert all(math.isfinite(v) and v >= 0 for v in c_scores.values())


def test_evaluation_plots_return_figures():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from course_utils import evaluation_plots as eplots

    figs = [eplots.iwae_curve([1, 10], [-230.0, -228.0], [1.0, 1.0]),
            eplots.frechet_vs_n({"n": [100, 200], "model": [50.0, 40.0], "floor": [5.0, 2.0]}),
            eplots.precision_recall_map({"a": (0.9, 0.1), "b": (0.5, 0.9)}),
            eplots.sample_grids({"a": torch.rand(16, 1, 28, 28), "b": torch.rand(5, 1, 28, 28)})]
    assert all(isinstance(f, matplotlib.figure.Figure) for f in figs)
    for f in figs:
        plt.close(f)
    with pytest.raises(ValueError):
        eplots.iwae_curve([1], [0.0, 1.0], [0.0])
