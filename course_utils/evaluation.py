"""Evaluating generative models (chapter 04): likelihood bounds, precision and recall of
samples, and one table that compares several generators on the same footing.

* **Importance-weighted bound** (Burda, Grosse and Salakhutdinov 2016, IWAE): with ``k``
  samples z_i ~ q(z|x), ``log (1/k) sum_i p(x, z_i) / q(z_i|x)`` is a lower bound on log p(x)
  that tightens as ``k`` grows (k = 1 is the ELBO). Computed in log-space with ``logsumexp``.
* **Precision and recall** of samples (Kynkaenniemi et al. 2019): each set of features is
  turned into a "manifold", the union of balls around its points whose radius is the distance
  to the k-th nearest neighbour in the same set. Precision is the fraction of generated points
  inside the real manifold (fidelity); recall is the fraction of real points inside the
  generated manifold (diversity).
* :func:`compare_generators` scores a dict of samplers with the same classifier, the same real
  images and the same number of samples: Frechet distance (and its real-vs-real floor), class
  coverage, KL to uniform, precision, recall, memorisation ratio and sampling speed.

The Frechet distance, class histogram, classifier features and memorisation check come from
:mod:`course_utils.metrics`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from . import metrics
from .losses import elbo_loss
from .utils import batched, evaluating

__all__ = ["binarize", "bernoulli_log_likelihood", "gaussian_log_density",
           "iwae_from_samples", "log_importance_weights", "iwae_bound", "vae_iwae_bound",
           "vae_importance_samples", "vae_test_scores",
           "knn_radii", "PrecisionRecall", "precision_recall", "class_coverage",
           "frechet_vs_sample_size",
           "Sampler", "ComparisonTable", "compare_generators", "gaussian_code_sampler",
           "copy_sampler", "measure_speed"]

LOG_2PI = math.log(2 * math.pi)
# (x (B, ...), z (B, D)) -> log p(x | z), shape (B,)
LogLikelihood = Callable[[Tensor, Tensor], Tensor]
# x (B, ...) -> (mu, logvar), each (B, D): the Gaussian proposal q(z | x)
Encoder = Callable[[Tensor], tuple[Tensor, Tensor]]


# ============================================================ importance-weighted bound

def binarize(x: Tensor, seed: int = 0) -> Tensor:
    """A binary copy of grayscale images: pixel j is 1 with probability x_j (seeded).

    On binary pixels a Bernoulli decoder's log-probability is a true log-likelihood, so an
    importance-weighted bound on the binarised images is a bound on log p(x) in nats.
    """
    if float(x.min()) < 0 or float(x.max()) > 1:
        raise ValueError("binarize expects pixels in [0, 1] (use data.to_zero_one first)")
    gen = torch.Generator().manual_seed(seed)
    return (torch.rand(x.shape, generator=gen) < x.cpu()).to(x.dtype)


def bernoulli_log_likelihood(decode: Callable[[Tensor], Tensor]) -> LogLikelihood:
    """log p(x|z) of a decoder that returns Bernoulli logits, summed over pixels: (B,)."""
    def log_lik(x: Tensor, z: Tensor) -> Tensor:
        logits = decode(z)                                                   # (B, 1, 28, 28)
        bce = F.binary_cross_entropy_with_logits(logits, x, reduction="none")
        return -bce.flatten(1).sum(dim=1)                                    # (B,)
    return log_lik


def gaussian_log_density(z: Tensor, mu: Tensor | float = 0.0, logvar: Tensor | float = 0.0
                         ) -> Tensor:
    """log N(z; mu, diag(exp(logvar))), summed over the last axis: (..., D) -> (...)."""
    mu_t = torch.as_tensor(mu, dtype=z.dtype, device=z.device)
    lv = torch.as_tensor(logvar, dtype=z.dtype, device=z.device)
    return -0.5 * (LOG_2PI + lv + (z - mu_t).pow(2) * torch.exp(-lv)).sum(dim=-1)


def iwae_from_samples(log_lik: Tensor, z: Tensor, mu: Tensor, logvar: Tensor) -> Tensor:
    """The importance-weighted bound of one batch from its samples.

    Args:
        log_lik: log p(x_b | z_ib), shape (k, B).
        z: the samples z_ib ~ q(z | x_b), shape (k, B, D).
        mu, logvar: the proposal q(z | x_b) = N(mu_b, diag(exp(logvar_b))), each (B, D).

    Returns:
        (B,) lower bounds on log p(x_b), in nats: the log of the average importance weight
        p(x, z) / q(z | x) over the k samples, computed with ``logsumexp``.
    """
    if log_lik.ndim != 2 or z.ndim != 3 or z.shape[:2] != log_lik.shape:
        raise ValueError(f"expected log_lik (k, B) and z (k, B, D); got {tuple(log_lik.shape)} "
                         f"and {tuple(z.shape)}")
    log_w = log_lik + gaussian_log_density(z) - gaussian_log_density(z, mu, logvar)  # (k, B)
    return torch.logsumexp(log_w, dim=0) - math.log(log_w.shape[0])                # (B,)


def log_importance_weights(x: Tensor, k: int, encode: Encoder, log_likelihood: LogLikelihood,
                           generator: torch.Generator | None = None) -> Tensor:
    """log p(x, z_i) - log q(z_i | x) for k samples per image: (B, ...) -> (k, B)."""
    mu, logvar = encode(x)                                                   # (B, D) each
    eps = torch.randn((k, *mu.shape), generator=generator).to(mu)            # (k, B, D)
    z = mu + torch.exp(0.5 * logvar) * eps                                   # (k, B, D)
    x_rep = x.unsqueeze(0).expand(k, *x.shape).reshape(k * len(x), *x.shape[1:])  # (k*B, ...)
    log_lik = log_likelihood(x_rep, z.reshape(-1, z.shape[-1])).reshape(k, len(x))  # (k, B)
    return log_lik + gaussian_log_density(z) - gaussian_log_density(z, mu, logvar)


@torch.no_grad()
def iwae_bound(x: Tensor, k: int, encode: Encoder, log_likelihood: LogLikelihood, *,
               batch_size: int = 100, max_draws: int = 20_000, seed: int = 0) -> Tensor:
    """Per-image importance-weighted bounds on log p(x) with ``k`` samples each: (N,) nats.

    Images go through in batches of ``batch_size``; the ``k`` samples are drawn in chunks of
    at most ``max_draws // batch_size`` (so memory stays bounded for k in the thousands) and
    combined exactly in log-space. ``k = 1`` gives a one-sample ELBO estimate.
    """
    if k < 1 or batch_size < 1:
        raise ValueError(f"k and batch_size must be at least 1, got k={k}, batch_size={batch_size}")
    gen = torch.Generator().manual_seed(seed)
    out = []
    for i in range(0, len(x), batch_size):
        xb = x[i:i + batch_size]
        chunk = max(1, max_draws // len(xb))
        parts = [torch.logsumexp(log_importance_weights(xb, min(chunk, k - j), encode,
                                                        log_likelihood, gen), dim=0)
                 for j in range(0, k, chunk)]                                # each (B,)
        out.append((torch.logsumexp(torch.stack(parts), dim=0) - math.log(k)).double().cpu())
    return torch.cat(out)


def vae_iwae_bound(model: torch.nn.Module, x: Tensor, k: int, *, batch_size: int = 100,
                   seed: int = 0) -> Tensor:
    """:func:`iwae_bound` for a course VAE (Bernoulli-logit decoder), in eval mode: (N,)."""
    with evaluating(model):
        return iwae_bound(x.to(next(model.parameters()).device), k, model.encode,
                          bernoulli_log_likelihood(model.decode), batch_size=batch_size,
                          seed=seed)


def vae_importance_samples(model: torch.nn.Module, x: Tensor, k: int, seed: int = 0
                           ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """What :func:`iwae_from_samples` needs for one batch of a course VAE (eval mode, CPU):

    ``log_lik`` (k, B) = log p(x | z_i) under the Bernoulli decoder, ``z`` (k, B, D) drawn from
    q(z | x), and the proposal's ``mu``, ``logvar`` (B, D).
    """
    with evaluating(model):
        xb = x.to(next(model.parameters()).device)
        mu, logvar = model.encode(xb)                                        # (B, D) each
        gen = torch.Generator().manual_seed(seed)
        z = mu + torch.exp(0.5 * logvar) * torch.randn((k, *mu.shape), generator=gen).to(mu)
        x_rep = xb.unsqueeze(0).expand(k, *xb.shape).reshape(-1, *xb.shape[1:])
        log_lik = bernoulli_log_likelihood(model.decode)(x_rep, z.reshape(-1, mu.shape[1]))
    return log_lik.reshape(k, len(xb)).cpu(), z.cpu(), mu.cpu(), logvar.cpu()


def vae_test_scores(model: torch.nn.Module, x: Tensor, y: Tensor | None = None,
                       batch_size: int = 1000, seed: int = 0) -> dict[str, float]:
    """Test BCE + KL of a course VAE (one z per image), nats per image, and the test MSE per
    pixel of its deterministic reconstruction (z = mu). Pass ``y`` for a conditional VAE."""
    device = next(model.parameters()).device
    gen = torch.Generator().manual_seed(seed)
    totals = {"bce_plus_kl": 0.0, "recon": 0.0, "kl": 0.0, "mse_per_pixel": 0.0}
    with evaluating(model):
        for i in range(0, len(x), batch_size):
            xb = x[i:i + batch_size].to(device)
            yb = None if y is None else y[i:i + batch_size].to(device)
            mu, logvar = model.encode(xb, yb) if yb is not None else model.encode(xb)
            z = mu + torch.exp(0.5 * logvar) * torch.randn(mu.shape, generator=gen).to(mu)
            logits = model.decode(z, yb) if yb is not None else model.decode(z)
            terms = elbo_loss(logits, xb, mu, logvar)
            mean_img = torch.sigmoid(model.decode(mu, yb) if yb is not None else model.decode(mu))
            for key, value in zip(totals, (terms.loss, terms.recon, terms.kl,
                                           (mean_img - xb).pow(2).mean()), strict=True):
                totals[key] += float(value) * len(xb)
    return {key: value / len(x) for key, value in totals.items()}


# ============================================================ precision and recall

def _as_tensor(features: np.ndarray | Tensor) -> Tensor:
    f = torch.as_tensor(np.asarray(features) if not isinstance(features, Tensor) else features)
    if f.ndim != 2 or len(f) == 0:
        raise ValueError(f"features must have shape (N, D) with N >= 1, got {tuple(f.shape)}")
    return f.float()


def knn_radii(features: np.ndarray | Tensor, k: int = 3, chunk: int = 1024) -> Tensor:
    """Distance from each row of ``features`` (N, D) to its k-th nearest OTHER row: (N,)."""
    f = _as_tensor(features)
    if not 1 <= k < len(f):
        raise ValueError(f"k must be between 1 and N - 1 = {len(f) - 1}, got {k}")
    # (c, N) distances per slice; the k+1-th smallest skips the self-match
    return batched(lambda q: torch.cdist(q, f).topk(k + 1, dim=1, largest=False).values[:, k],
                   f, chunk)


def _inside(queries: Tensor, points: Tensor, radii: Tensor, chunk: int) -> Tensor:
    """For each query, is it within radii[j] of some point j? (Nq,) bool."""
    return batched(lambda q: (torch.cdist(q, points) <= radii[None]).any(dim=1), queries, chunk)


@dataclass
class PrecisionRecall:
    """Kynkaenniemi et al. (2019): precision = fidelity, recall = diversity, each in [0, 1]."""

    precision: float
    recall: float
    k: int

    def __str__(self) -> str:
        return f"precision {self.precision:.3f}, recall {self.recall:.3f} (k = {self.k})"


def precision_recall(real_features: np.ndarray | Tensor, fake_features: np.ndarray | Tensor,
                     k: int = 3, chunk: int = 1024, real_radii: Tensor | None = None
                     ) -> PrecisionRecall:
    """Improved precision and recall of generated samples in a feature space.

    Args:
        real_features: (N, D) features of real images.
        fake_features: (M, D) features of generated images (use as many as real ones).
        k: the neighbourhood size that sets each ball's radius (the paper uses 3).
        real_radii: ``knn_radii(real_features, k)``, to reuse across several generators.

    Returns:
        precision: fraction of generated points inside the real manifold;
        recall: fraction of real points inside the generated manifold.
    """
    real, fake = _as_tensor(real_features), _as_tensor(fake_features)
    if real.shape[1] != fake.shape[1]:
        raise ValueError(f"real and fake features differ in size: {real.shape[1]} vs "
                         f"{fake.shape[1]}; use the same feature extractor for both")
    radii = knn_radii(real, k, chunk) if real_radii is None else real_radii.float()
    precision = _inside(fake, real, radii, chunk).double().mean()
    recall = _inside(real, fake, knn_radii(fake, k, chunk), chunk).double().mean()
    return PrecisionRecall(float(precision), float(recall), k)


# ============================================================ coverage, Frechet against n

def class_coverage(labels: np.ndarray | Tensor, num_classes: int = 10,
                   min_fraction: float = 0.01) -> tuple[int, float]:
    """(classes covered, KL(histogram || uniform) in nats) of predicted labels (N,).

    A class is covered when it holds at least ``min_fraction`` of the labels. The reference
    answer of the ``eval_class_coverage`` exercise (see :func:`metrics.class_histogram`).
    """
    hist = metrics.class_histogram(labels, num_classes=num_classes, min_fraction=min_fraction)
    return hist.covered, hist.kl_to_uniform


def frechet_vs_sample_size(fake_features: np.ndarray, real_features: np.ndarray,
                           other_real_features: np.ndarray, sizes: Sequence[int],
                           seed: int = 0) -> dict[str, list[float]]:
    """Frechet distance on the first n rows of each set, for each n in ``sizes``.

    Returns ``{"n": sizes, "model": FD(fake[:n], real[:n]), "floor": FD(other_real[:n],
    real[:n])}``; rows are shuffled once (seeded) so that the prefixes are random subsets.
    """
    rng = np.random.default_rng(seed)
    sets = [np.asarray(f)[rng.permutation(len(f))] for f in
            (fake_features, real_features, other_real_features)]
    top = min(len(s) for s in sets)
    if max(sizes) > top:
        raise ValueError(f"sizes go up to {max(sizes)} but the smallest feature set has {top} rows")
    fake, real, other = sets
    return {"n": [int(n) for n in sizes],
            "model": [metrics.frechet_distance(fake[:n], real[:n]) for n in sizes],
            "floor": [metrics.frechet_distance(other[:n], real[:n]) for n in sizes]}


# ============================================================ samplers and the table

SampleFn = Callable[[int, torch.Generator], Tensor]   # (n, generator) -> images (n, 1, 28, 28)


@dataclass
class Sampler:
    """A generator to compare: ``sample(n, generator)`` returns n images in [0, 1].

    ``extras`` holds columns that only some models have, e.g. ``{"train s": 30.2,
    "test MSE/pixel": 0.012}``; they are shown as they are, blank where absent.
    """

    sample: SampleFn
    extras: dict[str, float | str] = field(default_factory=dict)


def gaussian_code_sampler(decode: Callable[[Tensor], Tensor], codes: Tensor) -> SampleFn:
    """Decode codes drawn from a full-covariance Gaussian fitted to ``codes`` (N, D).

    What one can do with a plain autoencoder: it has no prior, so fit one after training.
    """
    mean = codes.double().mean(0)
    cov = torch.cov(codes.double().T) + 1e-4 * torch.eye(codes.shape[1], dtype=torch.float64)
    chol = torch.linalg.cholesky(cov)                                         # (D, D)

    def sample(n: int, generator: torch.Generator) -> Tensor:
        eps = torch.randn(n, codes.shape[1], generator=generator, dtype=torch.float64)
        return decode((mean + eps @ chol.T).float())                          # (n, 1, 28, 28)
    return sample


def copy_sampler(images: Tensor) -> SampleFn:
    """A "generator" that returns random rows of ``images`` (e.g. training images): a
    perfect memoriser, or, given one class only, a generator with no diversity."""
    def sample(n: int, generator: torch.Generator) -> Tensor:
        return images[torch.randint(0, len(images), (n,), generator=generator)]
    return sample


def measure_speed(sample: SampleFn, n: int, seed: int = 0, batch_size: int = 1000
                  ) -> tuple[Tensor, float]:
    """Draw ``n`` images in batches; return them and the rate in images per second."""
    gen = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    with torch.no_grad():
        images = torch.cat([sample(min(batch_size, n - i), gen).detach().float().cpu()
                            for i in range(0, n, batch_size)])
    return images, n / max(time.perf_counter() - start, 1e-9)


@dataclass
class ComparisonTable:
    """The rows of :func:`compare_generators`, the floor, and a few samples of each model."""

    rows: list[dict[str, Any]]
    floor: float
    n: int
    samples: dict[str, Tensor]
    seconds: dict[str, float]

    def column(self, name: str) -> dict[str, Any]:
        """``{model: value}`` for one column, e.g. ``table.column("recall")``."""
        return {r["model"]: r.get(name) for r in self.rows}

    def best(self, name: str, lowest: bool = False) -> str:
        """The model with the highest (or lowest) value in a numeric column."""
        values = {m: v for m, v in self.column(name).items() if isinstance(v, (int, float))}
        return (min if lowest else max)(values, key=values.__getitem__)

    def __str__(self) -> str:
        keys = list(dict.fromkeys(k for r in self.rows for k in r))
        fmt = {"Frechet": "{:.1f}", "KL to uniform": "{:.3f}", "precision": "{:.2f}",
               "recall": "{:.2f}", "memorisation": "{:.2f}", "images/s": "{:,.0f}",
               "train s": "{:,.0f}", "test MSE/px": "{:.4f}"}

        def cell(k: str, v: Any) -> str:
            if v is None:
                return ""
            if isinstance(v, float):
                return fmt.get(k, "{:.1f}" if abs(v) >= 10 else "{:.4g}").format(v)
            return str(v)
        table = [keys] + [[cell(k, r.get(k)) for k in keys] for r in self.rows]
        widths = [max(len(row[i]) for row in table) for i in range(len(keys))]
        lines = [" | ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in
                            enumerate(zip(row, widths, strict=True))) for row in table]
        lines.insert(1, "-+-".join("-" * w for w in widths))
        return "\n".join(lines + [f"Frechet floor (real train vs real test, n = {self.n:,}): "
                                  f"{self.floor:.2f}"])


def compare_generators(samplers: Mapping[str, Sampler | SampleFn], classifier: torch.nn.Module,
                       test_x: Tensor, train_x: Tensor, n: int, *, k: int = 3,
                       n_memorisation: int = 500, n_show: int = 16, seed: int = 0
                       ) -> ComparisonTable:
    """Score every sampler on the same real images, classifier and number of samples.

    Args:
        samplers: ``{name: Sampler}`` (or a bare sample function).
        classifier: gives the features (Frechet, precision/recall) and predicted labels.
        test_x: real images the samples are compared with; the first ``n`` are used.
        train_x: training images: the floor's second real set (``n`` random ones, seeded)
            and the memorisation reference.
        n: samples per model (and real images); the course measures with 10,000.
        k: neighbourhood size for precision and recall.
        n_memorisation: samples (and test images) whose nearest training image is searched.
        n_show: samples of each model kept in ``.samples`` for a figure.
    """
    if n > len(test_x) or n > len(train_x):
        raise ValueError(f"n = {n} exceeds the real images available ({len(test_x)} test, "
                         f"{len(train_x)} train)")
    start = time.perf_counter()
    real = test_x[:n]
    real_feats = metrics.classifier_features(classifier, real)
    real_radii = knn_radii(real_feats, k)
    chosen = torch.randperm(len(train_x), generator=torch.Generator().manual_seed(seed))[:n]
    floor = metrics.frechet_distance(metrics.classifier_features(classifier, train_x[chosen]),
                                     real_feats)
    m = min(n_memorisation, n)
    test_to_train = metrics.nearest_neighbour_distances(test_x[:m], train_x)   # once for all
    seconds = {"real features, floor, test-to-train distances": time.perf_counter() - start}
    rows, shown = [], {}
    for name, sampler in samplers.items():
        t0 = time.perf_counter()
        s = sampler if isinstance(sampler, Sampler) else Sampler(sampler)
        images, speed = measure_speed(s.sample, n, seed=seed)
        feats = metrics.classifier_features(classifier, images)
        hist = metrics.class_histogram(metrics.classifier_predictions(classifier, images))
        pr = precision_recall(real_feats, feats, k=k, real_radii=real_radii)
        memo = metrics.MemorisationReport(
            metrics.nearest_neighbour_distances(images[:m], train_x), test_to_train)
        rows.append({"model": name, "Frechet": metrics.frechet_distance(feats, real_feats),
                     "classes": hist.covered,
                     "KL to uniform": hist.kl_to_uniform, "precision": pr.precision,
                     "recall": pr.recall, "memorisation": memo.ratio, "images/s": speed,
                     **s.extras})
        shown[name] = images[:n_show]
        seconds[name] = time.perf_counter() - t0
    return ComparisonTable(rows, floor, n, shown, seconds)
