"""Kernel side of chapter 04's checks: the probes and the inputs both halves rebuild.

Each probe calls the learner's function on inputs built from a :class:`~.protocol.Case` and
returns plain data (what each call returned, as a number record or a tensor record); the
judges in :mod:`.ch04_evaluation` rebuild the same inputs, compute the reference and decide.
The extra sizes the grader's hidden judges look at are probed only at hidden cases, so the
public check calls the learner's function on the public inputs alone.

The public case (seed 0) reproduces the inputs the one-process checks used: the Frechet
feature sets and the IWAE inputs from seed 0, and the hand-picked class counts of
:data:`PUBLIC_COUNTS`. Hidden cases draw their class counts afresh, each list keeping the
edge it is there for (an empty class, a class exactly at the threshold, ...).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .probe_data import case_seed, tensor_record
from .protocol import Case

FRECHET_DIMS = 6                       # feature dimension of the public feature sets
EXTRA_FRECHET_DIMS = (3, 10)           # ... and of the hidden judges' ones
IWAE_SHAPE = (64, 5, 3)                # (k, batch, latent dims) of the public inputs
EXTRA_IWAE_SHAPES = ((7, 1, 1), (200, 9, 16))   # judged by the grader's hidden judges only

CoverageCase = tuple[list[int], float]  # (count per class, min_fraction)
# The public case's class counts: an empty class and two below 1%; a class exactly at 1%;
# five classes with a threshold of 5%; a uniform histogram.
PUBLIC_COUNTS: tuple[CoverageCase, ...] = (
    ([300, 250, 150, 100, 80, 60, 40, 12, 8, 0], 0.01),
    ([200, 150, 150, 100, 100, 100, 90, 60, 40, 10], 0.01),
    ([50, 30, 15, 4, 1], 0.05),
    ([100] * 10, 0.01))
PUBLIC_EXTRA_COUNTS: tuple[CoverageCase, ...] = (([1000] + [0] * 9, 0.01),
                                                 ([7, 3, 0, 990], 0.005))


# ------------------------------------------------------------------------------ numbers

def number_record(out: object) -> dict[str, Any]:
    """What the learner returned where one number is expected, as plain data.

    A tensor or array of one element is unwrapped (its container and shape are kept, for the
    message when it holds more); ``value`` is the number as a float, or None when it is not a
    real number (then ``type`` and ``complex`` say what it was).
    """
    rec: dict[str, Any] = {"container": None, "shape": None, "complex": False, "value": None}
    if isinstance(out, Tensor):
        rec.update(container="tensor", shape=[int(n) for n in out.shape])
        if out.numel() != 1:
            return rec
        out = out.detach().cpu().item()
    if isinstance(out, np.ndarray):
        rec.update(container="array", shape=[int(n) for n in out.shape])
        if out.size != 1:
            return rec
        out = out.reshape(()).item()
    rec.update(type=type(out).__name__[:60], complex=isinstance(out, (complex,
                                                                      np.complexfloating)))
    if isinstance(out, (int, float, np.integer, np.floating)) and not isinstance(out, bool):
        try:
            rec["value"] = float(out)
        except OverflowError:                               # a Python int beyond float range
            rec["value"] = math.copysign(math.inf, int(out))
    return rec


# ------------------------------------------------------------------------------ Frechet

def feature_sets(case: Case, offset: int, d: int, n_a: int = 400, n_b: int = 300
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Two correlated Gaussian-ish feature sets (n_a, d) and (n_b, d) of different sizes,
    means and covariances, for a case."""
    rng = np.random.default_rng(case_seed(case, offset))
    a = rng.normal(size=(n_a, d)) @ rng.normal(size=(d, d)) + rng.normal(size=d)
    b = rng.normal(size=(n_b, d)) @ (0.7 * rng.normal(size=(d, d))) + 0.5 * rng.normal(size=d)
    return a, b


def _frechet_record(fn: Callable[..., Any], case: Case, offset: int, d: int) -> dict[str, Any]:
    """The distance between the two sets, of a set from itself, the other way round, and
    between a set and its copy shifted by 2 (each call on fresh copies)."""
    a, b = feature_sets(case, offset, d)
    return {"ab": number_record(fn(a.copy(), b.copy())),
            "aa": number_record(fn(a.copy(), a.copy())),
            "ba": number_record(fn(b.copy(), a.copy())),
            "shifted": number_record(fn(a.copy(), a.copy() + 2.0))}


def probe_frechet(fn: Callable[..., Any], case: Case) -> dict[str, Any]:
    """Record the distances for the public dimension, and at hidden cases for the extra ones."""
    data: dict[str, Any] = {"main": _frechet_record(fn, case, 0, FRECHET_DIMS)}
    if case.hidden:
        data["extra"] = [_frechet_record(fn, case, i, d)
                         for i, d in enumerate(EXTRA_FRECHET_DIMS, start=1)]
    return data


# ------------------------------------------------------------------------------ coverage

def _split(rng: np.random.Generator, total: int, parts: int, low: int) -> list[int]:
    """``parts`` random whole numbers, each at least ``low``, adding up to ``total``."""
    cuts = np.sort(rng.integers(0, total - parts * low + 1, size=parts - 1))
    sizes = np.diff(np.concatenate([[0], cuts, [total - parts * low]]))
    return [int(s) + low for s in sizes]


def _shuffled(rng: np.random.Generator, counts: list[int]) -> list[int]:
    return [int(c) for c in rng.permutation(counts)]


def _drawn_counts(case: Case) -> tuple[tuple[CoverageCase, ...], tuple[CoverageCase, ...]]:
    """Class counts for a hidden case: the same edges as :data:`PUBLIC_COUNTS` and
    :data:`PUBLIC_EXTRA_COUNTS`, other numbers and class orders."""
    rng = np.random.default_rng(case_seed(case, 30))
    small = [int(c) for c in rng.integers(1, 10, size=2)]                  # below 1% of 1000
    skewed = _split(rng, 1000 - sum(small), 7, 20) + small + [0]
    on_edge = [10] + _split(rng, 990, 9, 11)                               # exactly 1% of 1000
    few = [int(c) for c in rng.integers(1, 5, size=2)]                     # 1% to 4% of 100
    five = _split(rng, 100 - sum(few), 3, 6) + few
    uniform = [int(rng.integers(50, 151))] * 10
    single = [0] * 10
    single[int(rng.integers(10))] = int(rng.integers(100, 2001))
    low = [int(rng.integers(5, 10)), int(rng.integers(1, 5)), 0]           # 0.5%+, below, empty
    four = low + [1000 - sum(low)]
    main = ((_shuffled(rng, skewed), 0.01), (_shuffled(rng, on_edge), 0.01),
            (_shuffled(rng, five), 0.05), (uniform, 0.01))
    return main, ((single, 0.01), (_shuffled(rng, four), 0.005))


def coverage_cases(case: Case) -> tuple[CoverageCase, ...]:
    """The (counts, min_fraction) lists every case judges."""
    return _drawn_counts(case)[0] if case.hidden else PUBLIC_COUNTS


def extra_coverage_cases(case: Case) -> tuple[CoverageCase, ...]:
    """The (counts, min_fraction) lists the grader's hidden judges look at."""
    return _drawn_counts(case)[1] if case.hidden else PUBLIC_EXTRA_COUNTS


def coverage_labels(counts: list[int], case: Case, offset: int) -> np.ndarray:
    """Labels (N,) with ``counts[c]`` samples of class c, in a case-dependent order."""
    labels = np.repeat(np.arange(len(counts)), counts)
    return np.random.default_rng(case_seed(case, offset)).permutation(labels).astype(np.int64)


def _coverage_record(fn: Callable[..., Any], counts: list[int], min_fraction: float,
                     case: Case, offset: int) -> dict[str, Any]:
    """What the learner returned for one histogram: its type, and its two numbers."""
    out = fn(coverage_labels(counts, case, offset), num_classes=len(counts),
             min_fraction=min_fraction)
    rec: dict[str, Any] = {"type": type(out).__name__[:60],
                           "pair": isinstance(out, (tuple, list)) and len(out) == 2}
    if rec["pair"]:
        rec.update(covered=number_record(out[0]), kl=number_record(out[1]))
    return rec


def probe_coverage(fn: Callable[..., Any], case: Case) -> dict[str, Any]:
    """Record the answer for each histogram of the case (the extra ones at hidden cases)."""
    main = coverage_cases(case)
    data: dict[str, Any] = {"main": [_coverage_record(fn, counts, mf, case, i)
                                     for i, (counts, mf) in enumerate(main)]}
    if case.hidden:
        data["extra"] = [_coverage_record(fn, counts, mf, case, i)
                         for i, (counts, mf) in enumerate(extra_coverage_cases(case),
                                                          start=len(main))]
    return data


# ------------------------------------------------------------------------------ IWAE

def iwae_inputs(case: Case, offset: int, k: int, batch: int, dim: int
                ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """log_lik (k, B), samples z (k, B, D) of q, and q's mu and logvar (B, D) for a case; the
    log-likelihoods sit near -300, where their exponentials underflow."""
    gen = torch.Generator().manual_seed(case_seed(case, offset))
    mu = torch.randn(batch, dim, generator=gen)                                # (B, D)
    logvar = torch.randn(batch, dim, generator=gen) * 0.5 - 0.5                # (B, D)
    z = mu + torch.exp(0.5 * logvar) * torch.randn(k, batch, dim, generator=gen)   # (k, B, D)
    log_lik = -300.0 + 3.0 * torch.randn(k, batch, generator=gen)              # (k, B)
    return log_lik, z, mu, logvar


def _iwae_record(fn: Callable[..., Any], case: Case, offset: int, shape: tuple[int, int, int]
                 ) -> dict[str, Any]:
    """The bound on the case's inputs, and on their first sample alone (k = 1)."""
    log_lik, z, mu, logvar = iwae_inputs(case, offset, *shape)
    out = fn(log_lik.clone(), z.clone(), mu.clone(), logvar.clone())
    one = fn(log_lik[:1].clone(), z[:1].clone(), mu.clone(), logvar.clone())
    return {"out": tensor_record(out), "one": tensor_record(one)}


def probe_iwae(fn: Callable[..., Any], case: Case) -> dict[str, Any]:
    """Record the bounds for the public shape, and at hidden cases for the extra ones."""
    data: dict[str, Any] = {"main": _iwae_record(fn, case, 0, IWAE_SHAPE)}
    if case.hidden:
        data["extra"] = [_iwae_record(fn, case, i, shape)
                         for i, shape in enumerate(EXTRA_IWAE_SHAPES, start=1)]
    return data
