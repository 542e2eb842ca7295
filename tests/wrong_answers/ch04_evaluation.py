"""Wrong and right-but-unusual answers to chapter 04's exercises.

* ``eval_frechet``: ``frechet_distance(features_a, features_b)`` from two arrays (N, D), (M, D).
* ``eval_class_coverage``: ``class_coverage(labels, num_classes=10, min_fraction=0.01)`` ->
  ``(classes covered, KL(histogram || uniform) in nats)``.
* ``eval_iwae``: ``iwae_bound(log_lik, z, mu, logvar)`` with log_lik (k, B), z (k, B, D),
  mu and logvar (B, D) -> (B,) bounds in nats.
"""

from __future__ import annotations

import collections
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.linalg
import scipy.stats
import torch
from torch import Tensor

Factory = Callable[[], Any]


# ------------------------------------------------------------------------------ Frechet

def _stats(a: np.ndarray, b: np.ndarray, bias: bool = False
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    return (a.mean(0), np.cov(a, rowvar=False, bias=bias), b.mean(0),
            np.cov(b, rowvar=False, bias=bias))


def _fd(means: float, s1: np.ndarray, s2: np.ndarray, cross_trace: float) -> float:
    return float(means + np.trace(s1) + np.trace(s2) - 2 * cross_trace)


def _root_trace(m: np.ndarray) -> float:
    """Trace of the matrix square root of m."""
    return float(np.trace(scipy.linalg.sqrtm(m)).real)


def fd_right(a: np.ndarray, b: np.ndarray) -> float:
    m1, s1, m2, s2 = _stats(a, b)
    return _fd(float(np.sum((m1 - m2) ** 2)), s1, s2, _root_trace(s1 @ s2))


def fd_mean_only(a, b):
    """Forgets the covariance term altogether."""
    m1, _, m2, _ = _stats(a, b)
    return float(np.sum((m1 - m2) ** 2))


def fd_no_mean_term(a, b):
    """Forgets the term comparing the means."""
    _, s1, _, s2 = _stats(a, b)
    return _fd(0.0, s1, s2, _root_trace(s1 @ s2))


def fd_cross_term_once(a, b):
    """Subtracts the cross term once instead of twice."""
    m1, s1, m2, s2 = _stats(a, b)
    cross = _root_trace(s1 @ s2)
    return float(np.sum((m1 - m2) ** 2) + np.trace(s1) + np.trace(s2) - cross)


def fd_entrywise_sqrt(a, b):
    """np.sqrt of the product: the square root of each entry, not the matrix square root."""
    m1, s1, m2, s2 = _stats(a, b)
    return _fd(float(np.sum((m1 - m2) ** 2)), s1, s2, float(np.trace(np.sqrt(s1 @ s2))))


def fd_product_of_roots(a, b):
    """sqrtm(s1) @ sqrtm(s2) in place of sqrtm(s1 @ s2): only equal when they commute."""
    m1, s1, m2, s2 = _stats(a, b)
    cross = float(np.trace(scipy.linalg.sqrtm(s1) @ scipy.linalg.sqrtm(s2)).real)
    return _fd(float(np.sum((m1 - m2) ** 2)), s1, s2, cross)


def fd_sqrt_of_trace(a, b):
    """Square root of the trace of the product instead of the trace of its square root."""
    m1, s1, m2, s2 = _stats(a, b)
    return _fd(float(np.sum((m1 - m2) ** 2)), s1, s2, float(np.sqrt(np.trace(s1 @ s2))))


def fd_square_root_returned(a, b):
    """Returns the (unsquared) 2-Wasserstein distance instead of its square."""
    return math.sqrt(max(fd_right(a, b), 0.0))


def fd_mean_norm_not_squared(a, b):
    """The distance between the means, not squared."""
    m1, s1, m2, s2 = _stats(a, b)
    return _fd(float(np.linalg.norm(m1 - m2)), s1, s2, _root_trace(s1 @ s2))


def fd_diagonal_only(a, b):
    """Treats the features as independent: variances instead of covariance matrices."""
    m1, m2 = a.mean(0), b.mean(0)
    return float(np.sum((m1 - m2) ** 2) + np.sum((a.std(0, ddof=1) - b.std(0, ddof=1)) ** 2))


def fd_rows_as_variables(a, b):
    """np.cov without rowvar=False: an (N, N) 'covariance' of the samples. Crashes here."""
    m1, m2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a), np.cov(b)
    return _fd(float(np.sum((m1 - m2) ** 2)), s1, s2, _root_trace(s1 @ s2))


def fd_biased_covariance(a, b):
    """Right but unusual: the maximum-likelihood covariance (divide by N, not N - 1)."""
    m1, s1, m2, s2 = _stats(a, b, bias=True)
    return _fd(float(np.sum((m1 - m2) ** 2)), s1, s2, _root_trace(s1 @ s2))


def fd_eigenvalues(a, b):
    """Right but unusual: the trace of the root is the sum of the roots of the eigenvalues."""
    m1, s1, m2, s2 = _stats(a, b)
    eig = np.linalg.eigvals(s1 @ s2).real.clip(min=0)
    return _fd(float(np.linalg.norm(m1 - m2) ** 2), s1, s2, float(np.sqrt(eig).sum()))


def fd_symmetric_form(a, b):
    """Right but unusual: sqrtm(sqrt(s1) s2 sqrt(s1)) has the same trace, and is symmetric."""
    m1, s1, m2, s2 = _stats(a, b)
    r1 = scipy.linalg.sqrtm(s1).real
    return _fd(float(np.sum((m1 - m2) ** 2)), s1, s2, _root_trace(r1 @ s2 @ r1))


def fd_torch(a, b) -> Tensor:
    """Right but unusual: in torch, float64, returning a 0-d tensor."""
    fa, fb = torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)
    s1, s2 = torch.cov(fa.T), torch.cov(fb.T)
    eig = torch.linalg.eigvals(s1 @ s2).real.clamp(min=0)
    return (fa.mean(0) - fb.mean(0)).pow(2).sum() + s1.trace() + s2.trace() - 2 * eig.sqrt().sum()


# ------------------------------------------------------------------------------ coverage

def _fractions(labels, num_classes: int) -> np.ndarray:
    counts = np.bincount(np.asarray(labels), minlength=num_classes)
    return counts / counts.sum()


def _kl(p: np.ndarray) -> float:
    nz = p > 0
    return float(np.sum(p[nz] * np.log(p[nz] * len(p))))


def cov_right(labels, num_classes=10, min_fraction=0.01):
    p = _fractions(labels, num_classes)
    return int((p >= min_fraction).sum()), _kl(p)


def cov_present_classes(labels, num_classes=10, min_fraction=0.01):
    """Counts every class that appears, without the threshold."""
    p = _fractions(labels, num_classes)
    return int((p > 0).sum()), _kl(p)


def cov_strict_threshold(labels, num_classes=10, min_fraction=0.01):
    """'>' where the definition says 'at least'."""
    p = _fractions(labels, num_classes)
    return int((p > min_fraction).sum()), _kl(p)


def cov_hard_coded_threshold(labels, num_classes=10, min_fraction=0.01):
    """Ignores the min_fraction argument."""
    p = _fractions(labels, num_classes)
    return int((p >= 0.01).sum()), _kl(p)


def cov_hard_coded_classes(labels, num_classes=10, min_fraction=0.01):
    """Ignores the num_classes argument (always 10)."""
    p = _fractions(labels, 10)
    return int((p >= min_fraction).sum()), _kl(p)


def cov_kl_reversed(labels, num_classes=10, min_fraction=0.01):
    """KL(uniform || histogram): the wrong direction (infinite with an empty class)."""
    p = _fractions(labels, num_classes)
    u = np.full(num_classes, 1 / num_classes)
    with np.errstate(divide="ignore"):
        return int((p >= min_fraction).sum()), float(np.sum(u * np.log(u / p)))


def cov_kl_bits(labels, num_classes=10, min_fraction=0.01):
    """log2 instead of the natural log."""
    p = _fractions(labels, num_classes)
    return int((p >= min_fraction).sum()), _kl(p) / math.log(2)


def cov_entropy(labels, num_classes=10, min_fraction=0.01):
    """The entropy of the histogram in place of its KL to uniform."""
    p = _fractions(labels, num_classes)
    nz = p > 0
    return int((p >= min_fraction).sum()), float(-np.sum(p[nz] * np.log(p[nz])))


def cov_no_minlength(labels, num_classes=10, min_fraction=0.01):
    """np.bincount without minlength: empty classes drop out of the uniform distribution."""
    counts = np.bincount(np.asarray(labels))
    counts = counts[counts > 0]
    p = counts / counts.sum()
    return int((p >= min_fraction).sum()), _kl(p)


def cov_nan_from_empty(labels, num_classes=10, min_fraction=0.01):
    """0 * log 0 evaluated as NaN instead of 0."""
    p = _fractions(labels, num_classes)
    with np.errstate(divide="ignore", invalid="ignore"):
        return int((p >= min_fraction).sum()), float(np.sum(p * np.log(p * num_classes)))


def cov_counts_not_normalised(labels, num_classes=10, min_fraction=0.01):
    """KL from the raw counts instead of fractions."""
    counts = np.bincount(np.asarray(labels), minlength=num_classes).astype(float)
    nz = counts > 0
    p = counts / counts.sum()
    kl_of_counts = float(np.sum(counts[nz] * np.log(counts[nz] * num_classes)))
    return int((p >= min_fraction).sum()), kl_of_counts


def cov_swapped(labels, num_classes=10, min_fraction=0.01):
    """Returns (KL, covered) in the wrong order."""
    covered, kl = cov_right(labels, num_classes, min_fraction)
    return kl, covered


def cov_torch(labels, num_classes=10, min_fraction=0.01):
    """Right but unusual: torch, returning tensors."""
    p = torch.bincount(torch.as_tensor(labels), minlength=num_classes).double()
    p = p / p.sum()
    nz = p > 0
    return (p >= min_fraction).sum(), (p[nz] * torch.log(p[nz] * num_classes)).sum()


def cov_counter(labels, num_classes=10, min_fraction=0.01):
    """Right but unusual: collections.Counter, a loop, and a list as the result."""
    counts = collections.Counter(int(v) for v in labels)
    n = len(labels)
    covered, kl = 0, 0.0
    for c in range(num_classes):
        p = counts.get(c, 0) / n
        covered += p >= min_fraction
        if p > 0:
            kl += p * math.log(p / (1 / num_classes))
    return [covered, kl]


def cov_scipy_entropy(labels, num_classes=10, min_fraction=0.01):
    """Right but unusual: scipy.stats.entropy(p, q) is KL(p || q) in nats."""
    p = _fractions(labels, num_classes)
    return int(np.count_nonzero(p >= min_fraction)), float(
        scipy.stats.entropy(p, np.full(num_classes, 1 / num_classes)))


def cov_log_k_minus_entropy(labels, num_classes=10, min_fraction=0.01):
    """Right but unusual: KL to uniform = log K - entropy, coverage from counts."""
    counts = np.bincount(np.asarray(labels), minlength=num_classes)
    p = counts / counts.sum()
    nz = p > 0
    covered = int(np.sum(counts >= min_fraction * len(labels)))
    return covered, float(math.log(num_classes) + np.sum(p[nz] * np.log(p[nz])))


# ------------------------------------------------------------------------------ IWAE

def _log_normal(z: Tensor, mu: Tensor | float, logvar: Tensor | float) -> Tensor:
    lv = torch.as_tensor(logvar, dtype=z.dtype)
    return (-0.5 * (math.log(2 * math.pi) + lv + (z - mu) ** 2 / lv.exp())).sum(-1)


def _log_w(log_lik: Tensor, z: Tensor, mu: Tensor, logvar: Tensor) -> Tensor:
    return log_lik + _log_normal(z, 0.0, 0.0) - _log_normal(z, mu, logvar)     # (k, B)


def iwae_right(log_lik, z, mu, logvar):
    log_w = _log_w(log_lik, z, mu, logvar)
    return torch.logsumexp(log_w, dim=0) - math.log(log_w.shape[0])


def iwae_mean_log_weights(log_lik, z, mu, logvar):
    """The average of the log-weights: the ELBO estimate, not the IWAE bound."""
    return _log_w(log_lik, z, mu, logvar).mean(0)


def iwae_missing_log_k(log_lik, z, mu, logvar):
    """logsumexp without the -log k."""
    return torch.logsumexp(_log_w(log_lik, z, mu, logvar), dim=0)


def iwae_naive_log_mean_exp(log_lik, z, mu, logvar):
    """log(mean(exp(.))): underflows to log 0 = -inf for log-weights near -300."""
    return torch.log(torch.exp(_log_w(log_lik, z, mu, logvar)).mean(0))


def iwae_bits(log_lik, z, mu, logvar):
    """Converted to bits (base-2 log)."""
    return iwae_right(log_lik, z, mu, logvar) / math.log(2)


def iwae_max_weight(log_lik, z, mu, logvar):
    """Keeps only the best sample."""
    return _log_w(log_lik, z, mu, logvar).max(0).values


def iwae_q_sign(log_lik, z, mu, logvar):
    """Adds log q instead of subtracting it."""
    w = log_lik + _log_normal(z, 0.0, 0.0) + _log_normal(z, mu, logvar)
    return torch.logsumexp(w, 0) - math.log(len(w))


def iwae_no_prior(log_lik, z, mu, logvar):
    """Forgets log p(z)."""
    w = log_lik - _log_normal(z, mu, logvar)
    return torch.logsumexp(w, 0) - math.log(len(w))


def iwae_logvar_as_log_std(log_lik, z, mu, logvar):
    """Takes logvar for log sigma in q's density."""
    w = log_lik + _log_normal(z, 0.0, 0.0) - _log_normal(z, mu, 2 * logvar)
    return torch.logsumexp(w, 0) - math.log(len(w))


def iwae_prior_without_constant(log_lik, z, mu, logvar):
    """Drops the 2 pi constant from the prior only."""
    w = log_lik + (-0.5 * z ** 2).sum(-1) - _log_normal(z, mu, logvar)
    return torch.logsumexp(w, 0) - math.log(len(w))


def iwae_wrong_axis(log_lik, z, mu, logvar):
    """logsumexp over the batch axis instead of the samples."""
    log_w = _log_w(log_lik, z, mu, logvar)
    return torch.logsumexp(log_w, dim=1) - math.log(log_w.shape[1])


def iwae_batch_mean(log_lik, z, mu, logvar):
    """Averages over the batch: one number instead of one per image."""
    return iwae_right(log_lik, z, mu, logvar).mean()


def iwae_log10_k(log_lik, z, mu, logvar):
    """Subtracts log10(k) instead of the natural log."""
    log_w = _log_w(log_lik, z, mu, logvar)
    return torch.logsumexp(log_w, 0) - math.log10(log_w.shape[0])


def iwae_max_shift(log_lik, z, mu, logvar):
    """Right but unusual: the log-sum-exp written out with the max shift."""
    log_w = _log_w(log_lik, z, mu, logvar)
    m = log_w.max(0, keepdim=True).values
    return (m + torch.log(torch.exp(log_w - m).mean(0, keepdim=True))).squeeze(0)


def iwae_distributions(log_lik, z, mu, logvar):
    """Right but unusual: torch.distributions, float64, logsumexp of (log w - log k)."""
    d = torch.distributions
    q = d.Normal(mu.double(), torch.exp(0.5 * logvar.double()))
    p = d.Normal(torch.zeros_like(mu, dtype=torch.float64), 1.0)
    zz = z.double()
    log_w = log_lik.double() + p.log_prob(zz).sum(-1) - q.log_prob(zz).sum(-1)
    return torch.logsumexp(log_w - math.log(len(log_w)), dim=0)


def iwae_no_constants(log_lik, z, mu, logvar):
    """Right but unusual: both 2 pi constants dropped (they cancel)."""
    log_p = (-0.5 * z ** 2).sum(-1)
    log_q = (-0.5 * (logvar + (z - mu) ** 2 / logvar.exp())).sum(-1)
    log_w = log_lik + log_p - log_q
    return torch.logsumexp(log_w, 0) - torch.log(torch.tensor(float(len(log_w))))


def iwae_loop(log_lik, z, mu, logvar):
    """Right but unusual: one image at a time, special.logsumexp, stacked."""
    log_w = _log_w(log_lik, z, mu, logvar)
    k = log_w.shape[0]
    return torch.stack([torch.special.logsumexp(log_w[:, b], 0) - math.log(k)
                        for b in range(log_w.shape[1])])


def _f(fn: Callable[..., Any]) -> Factory:
    return lambda: fn


WRONG: dict[str, list[tuple[str, Factory]]] = {
    "eval_frechet": [
        ("mean_term_only", _f(fd_mean_only)),
        ("no_mean_term", _f(fd_no_mean_term)),
        ("cross_term_once", _f(fd_cross_term_once)),
        ("entrywise_sqrt", _f(fd_entrywise_sqrt)),
        ("product_of_roots", _f(fd_product_of_roots)),
        ("sqrt_of_trace", _f(fd_sqrt_of_trace)),
        ("square_root_returned", _f(fd_square_root_returned)),
        ("mean_norm_not_squared", _f(fd_mean_norm_not_squared)),
        ("diagonal_only", _f(fd_diagonal_only)),
        ("rows_as_variables", _f(fd_rows_as_variables)),
    ],
    "eval_class_coverage": [
        ("present_classes", _f(cov_present_classes)),
        ("strict_threshold", _f(cov_strict_threshold)),
        ("hard_coded_threshold", _f(cov_hard_coded_threshold)),
        ("hard_coded_classes", _f(cov_hard_coded_classes)),
        ("kl_reversed", _f(cov_kl_reversed)),
        ("kl_bits", _f(cov_kl_bits)),
        ("entropy", _f(cov_entropy)),
        ("no_minlength", _f(cov_no_minlength)),
        ("nan_from_empty", _f(cov_nan_from_empty)),
        ("counts_not_normalised", _f(cov_counts_not_normalised)),
        ("swapped", _f(cov_swapped)),
    ],
    "eval_iwae": [
        ("mean_log_weights", _f(iwae_mean_log_weights)),
        ("missing_log_k", _f(iwae_missing_log_k)),
        ("naive_log_mean_exp", _f(iwae_naive_log_mean_exp)),
        ("bits", _f(iwae_bits)),
        ("max_weight", _f(iwae_max_weight)),
        ("q_sign", _f(iwae_q_sign)),
        ("no_prior", _f(iwae_no_prior)),
        ("logvar_as_log_std", _f(iwae_logvar_as_log_std)),
        ("prior_without_constant", _f(iwae_prior_without_constant)),
        ("wrong_axis", _f(iwae_wrong_axis)),
        ("batch_mean", _f(iwae_batch_mean)),
        ("log10_k", _f(iwae_log10_k)),
    ],
}

RIGHT: dict[str, list[tuple[str, Factory]]] = {
    "eval_frechet": [
        ("plain_numpy", _f(fd_right)),
        ("biased_covariance", _f(fd_biased_covariance)),
        ("eigenvalues", _f(fd_eigenvalues)),
        ("symmetric_form", _f(fd_symmetric_form)),
        ("torch_float64", _f(fd_torch)),
    ],
    "eval_class_coverage": [
        ("plain_numpy", _f(cov_right)),
        ("torch_tensors", _f(cov_torch)),
        ("counter_loop", _f(cov_counter)),
        ("scipy_entropy", _f(cov_scipy_entropy)),
        ("log_k_minus_entropy", _f(cov_log_k_minus_entropy)),
    ],
    "eval_iwae": [
        ("plain", _f(iwae_right)),
        ("max_shift", _f(iwae_max_shift)),
        ("distributions_float64", _f(iwae_distributions)),
        ("no_constants", _f(iwae_no_constants)),
        ("loop_over_images", _f(iwae_loop)),
    ],
}

# The learner's own code raises here (matrix shapes do not match); "error" is the verdict.
CRASHES: set[tuple[str, str]] = {("eval_frechet", "rows_as_variables")}
