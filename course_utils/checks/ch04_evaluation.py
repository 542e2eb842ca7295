"""Checks for notebook 04_evaluation: the Frechet distance from features, class coverage with
KL to uniform, and the importance-weighted bound of one batch. These are the judges; the
probes, and the inputs both halves build from a case, are in :mod:`.ch04_probes`.

Each judge rebuilds the probe's inputs from the case, computes the reference in
:mod:`course_utils.metrics` / :mod:`course_utils.evaluation` itself and compares the recorded
answers with it. Before the general agreement test it compares the answer with a few typical
mistakes, so that the message can say which property is off. Messages and hints name
properties, never the formula. The grader's hidden judges check the same properties on the
extra sizes the probe records at hidden cases.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import scipy.linalg
import torch
from torch import Tensor

from ..evaluation import class_coverage, gaussian_log_density, iwae_from_samples
from ..metrics import frechet_distance
from .ch04_probes import (
    EXTRA_FRECHET_DIMS,
    EXTRA_IWAE_SHAPES,
    FRECHET_DIMS,
    IWAE_SHAPE,
    coverage_cases,
    coverage_labels,
    extra_coverage_cases,
    feature_sets,
    iwae_inputs,
    probe_coverage,
    probe_frechet,
    probe_iwae,
)
from .core import exercise, expect, hidden_judge
from .probe_data import describe, extra_records, record, records, values
from .protocol import Case


def _number(rec: object, what: str) -> float:
    """A number record (see :func:`.ch04_probes.number_record`) as a float, with clear
    messages for tensors, arrays, complex numbers and anything else."""
    expect(isinstance(rec, dict), f"the check's data has no record of {what}; run the check "
                                  "again from the notebook")
    shape = rec.get("shape")
    if rec.get("container") in ("tensor", "array"):
        expect(isinstance(shape, list) and all(type(n) is int and n >= 0 for n in shape),
               f"the check's data has no valid shape of {what}; run the check again")
        noun = "a tensor" if rec.get("container") == "tensor" else "an array"
        expect(math.prod(shape) == 1, f"{what} should be one number, got {noun} of shape "
                                      f"{tuple(shape)}")
    expect(rec.get("complex") is not True,
           f"{what} is a complex number: round-off can leave tiny imaginary parts in a matrix "
           "square root; keep only its real part")
    value = rec.get("value")
    expect(isinstance(value, (int, float)) and not isinstance(value, bool),
           f"{what} should be a number, not {str(rec.get('type'))[:60]}")
    return float(value)


def _close(a: float, b: float, rel: float = 1e-3, abs_: float = 1e-6) -> bool:
    return math.isfinite(a) and math.isfinite(b) and math.isclose(a, b, rel_tol=rel, abs_tol=abs_)


# ------------------------------------------------------------------------------ Frechet

def _frechet_mistakes(a: np.ndarray, b: np.ndarray) -> list[tuple[float, str]]:
    """Values that typical mistakes give on (a, b), each with the message to print."""
    mu_a, mu_b = a.mean(0), b.mean(0)
    s_a, s_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    means = float(np.sum((mu_a - mu_b) ** 2))
    traces = float(np.trace(s_a) + np.trace(s_b))
    ref = frechet_distance(a, b)
    cross = (means + traces - ref) / 2                       # the trace of the matrix root
    roots = float(np.trace(scipy.linalg.sqrtm(s_a) @ scipy.linalg.sqrtm(s_b)).real)
    with np.errstate(invalid="ignore"):
        entrywise = float(np.trace(np.sqrt(s_a @ s_b)))
    return [
        (means, "your value is only the distance between the means: the covariance term "
                "is missing"),
        (ref - means, "the term comparing the means is missing"),
        (math.sqrt(ref), "your value is the square root of the expected one: the course (like "
                         "FID) reports the squared form"),
        (means + traces - cross, "the cross term between the two covariances has the wrong "
                                 "weight"),
        (means + traces - 2 * entrywise, "a matrix square root is not the square root of each "
                                         "entry of the matrix"),
        (means + traces - 2 * roots, "the square root of a product of two matrices is not the "
                                     "product of their square roots (the covariances do not "
                                     "commute)"),
        (math.sqrt(means) + traces - 2 * cross, "the distance between the means enters squared"),
    ]


def _judge_frechet_record(rec: dict[str, Any], case: Case, offset: int, d: int) -> None:
    """The distance on two random sets (naming typical mistakes), identical sets, symmetry,
    sign and a pure shift."""
    a, b = feature_sets(case, offset, d)
    what = "the Frechet distance"
    value = _number(rec.get("ab"), what)
    expect(math.isfinite(value), "the Frechet distance is NaN or infinite (a matrix square root "
                                 "of a non-square or non-symmetric input?)")
    ref = frechet_distance(a, b)
    if not _close(value, ref, rel=1e-2):
        for wrong, message in _frechet_mistakes(a, b):
            if _close(value, wrong, rel=1e-3):
                expect(False, message)
    same = _number(rec.get("aa"), what)
    expect(abs(same) < 1e-6 * max(1.0, ref), f"two identical feature sets should be at distance "
                                             f"0; yours gives {same:.4g}")
    other_way = _number(rec.get("ba"), what)
    expect(_close(value, other_way, rel=1e-6, abs_=1e-9),
           "the distance should be symmetric: swapping the two sets changed it")
    expect(value >= 0, "a distance is never negative; yours is")
    shifted = _number(rec.get("shifted"), what)
    expect(_close(shifted, 4.0 * d, rel=1e-3),
           f"shifting every feature by 2 (same covariance) should give {4.0 * d:g} exactly "
           f"(in {d} dimensions); yours gives {shifted:.4g}")
    expect(_close(value, ref, rel=1e-2),
           f"on two random feature sets your distance is {value:.4g}; the reference differs. "
           "Check that samples are rows (the covariance is D x D) and each term of the formula")


@exercise("eval_frechet", points=3, reference=frechet_distance,
          hint="Summarise each set by a Gaussian (mean vector and covariance matrix, samples as "
               "rows), then use the closed-form Frechet distance between two Gaussians: one "
               "term for the means, one for the covariances with a MATRIX square root of "
               "their product. Reread the section on the Frechet distance.",
          probe=probe_frechet)
def _judge_frechet(data: dict[str, Any], case: Case) -> None:
    _judge_frechet_record(record(data, "main"), case, 0, FRECHET_DIMS)


@hidden_judge("eval_frechet")
def _hidden_frechet(data: dict[str, Any], case: Case) -> None:
    for i, rec, d in extra_records(data, EXTRA_FRECHET_DIMS):
        _judge_frechet_record(rec, case, i, d)


# ------------------------------------------------------------------------------ coverage

def _unpack_coverage(rec: dict[str, Any]) -> tuple[float, float]:
    expect(rec.get("pair") is True, "return a pair (classes covered, KL to uniform), not "
                                    f"{str(rec.get('type'))[:60]}")
    covered = _number(rec.get("covered"), "the number of classes covered")
    expect(math.isfinite(covered) and covered == int(covered),
           f"the number of classes covered should be a whole number, got {covered}")
    return covered, _number(rec.get("kl"), "the KL to uniform")


def _kl_mistakes(counts: np.ndarray) -> list[tuple[float, str]]:
    p = counts / counts.sum()
    k, nz = len(p), p > 0
    kl = float(np.sum(p[nz] * np.log(p[nz] * k)))
    entropy = float(-np.sum(p[nz] * np.log(p[nz])))
    present = float(np.sum(p[nz] * np.log(p[nz] * nz.sum())))
    reverse = float(np.sum(np.log((1 / k) / p[nz])) / k) if nz.all() else math.inf
    return [(kl / math.log(2), "your KL is in bits (base-2 log); the course measures in nats"),
            (entropy, "that is the entropy of the histogram, not its divergence from uniform"),
            (present, "the uniform distribution is over ALL num_classes classes, including "
                      "those that received no samples"),
            (reverse, "your KL is in the wrong direction: the histogram comes first")]


def _judge_covered(got_cov: float, ref_cov: int, counts: list[int], min_fraction: float
                   ) -> None:
    """The number of covered classes, naming the two typical threshold mistakes."""
    if got_cov == ref_cov:
        return
    c = np.asarray(counts, dtype=np.float64)
    fractions = c / c.sum()
    expect(got_cov != int((c > 0).sum()),
           "you counted every class that appears at all; a class is covered only when it "
           "holds at least min_fraction of the samples")
    on_edge = bool(np.any(np.isclose(fractions, min_fraction)))
    expect(not (on_edge and got_cov == int((fractions > min_fraction + 1e-12).sum())),
           "a class holding exactly min_fraction of the samples counts as covered")
    expect(False, f"for class counts {counts} (min_fraction={min_fraction}) you report "
                  f"{int(got_cov)} classes covered; expected {ref_cov}")


def _judge_coverage_record(rec: dict[str, Any], counts: list[int], min_fraction: float,
                           case: Case, offset: int) -> None:
    got_cov, got_kl = _unpack_coverage(rec)
    labels = coverage_labels(counts, case, offset)
    ref_cov, ref_kl = class_coverage(labels, num_classes=len(counts), min_fraction=min_fraction)
    expect(not math.isnan(got_kl), "the KL is NaN: an empty class gives 0 * log 0, which "
                                   "counts as 0 (leave empty classes out of the sum)")
    expect(math.isfinite(got_kl), "the KL is infinite: with an empty class that happens when "
                                  "the divergence is taken in the wrong direction")
    _judge_covered(got_cov, ref_cov, counts, min_fraction)
    if not _close(got_kl, ref_kl, rel=1e-4, abs_=1e-6):
        for wrong, message in _kl_mistakes(np.asarray(counts, dtype=np.float64)):
            if _close(got_kl, wrong, rel=1e-4, abs_=1e-6):
                expect(False, message)
        expect(False, f"for class counts {counts} your KL to uniform is {got_kl:.4f}; it "
                      "differs from the reference. Are you using fractions (summing to 1)?")


def _judge_coverage_list(data: dict[str, Any], key: str, case: Case,
                         cases: tuple[tuple[list[int], float], ...], start: int) -> None:
    for i, (rec, (counts, min_fraction)) in enumerate(
            zip(records(data, key, len(cases)), cases, strict=True), start=start):
        _judge_coverage_record(rec, counts, min_fraction, case, i)


@exercise("eval_class_coverage", points=2, reference=class_coverage,
          hint="Build the histogram over all num_classes classes (empty ones included) and turn "
               "it into fractions. A class is covered when its fraction reaches the threshold. "
               "For KL(histogram || uniform), mind which distribution comes first, use natural "
               "logs, and let empty classes contribute nothing.",
          probe=probe_coverage)
def _judge_coverage(data: dict[str, Any], case: Case) -> None:
    _judge_coverage_list(data, "main", case, coverage_cases(case), 0)


@hidden_judge("eval_class_coverage")
def _hidden_coverage(data: dict[str, Any], case: Case) -> None:
    _judge_coverage_list(data, "extra", case, extra_coverage_cases(case),
                         len(coverage_cases(case)))


# ------------------------------------------------------------------------------ IWAE

def _iwae_mistakes(log_lik: Tensor, z: Tensor, mu: Tensor, logvar: Tensor
                   ) -> list[tuple[Tensor, str]]:
    k, d = z.shape[0], z.shape[-1]
    prior, post = gaussian_log_density(z), gaussian_log_density(z, mu, logvar)
    log_w = log_lik + prior - post                                             # (k, B)
    ref = torch.logsumexp(log_w, 0) - math.log(k)

    def lse(w: Tensor) -> Tensor:
        return torch.logsumexp(w, 0) - math.log(k)
    as_std = gaussian_log_density(z, mu, 2 * logvar)
    return [
        (log_w.mean(0), "you averaged the log-weights: that is the ordinary ELBO estimate, "
                        "which does not tighten with k. The bound averages the weights"),
        (ref + math.log(k), "your bound is too high by log k: the k weights must be averaged, "
                            "not added"),
        (ref / math.log(2), "your bound is in bits (base-2 log); the course measures in nats"),
        (log_w.max(0).values, "you kept only the largest weight of the k samples"),
        (lse(log_lik + prior + post), "the proposal's density enters with the wrong sign"),
        (lse(log_lik - post), "the prior's density is missing from the log-weights"),
        (lse(log_lik + prior), "the proposal's density is missing from the log-weights"),
        (lse(log_lik + prior - as_std), "logvar is the log of the VARIANCE, not of the "
                                        "standard deviation"),
        (ref + 0.5 * d * math.log(2 * math.pi), "the normalising constant of one Gaussian "
                                                "density is missing (both have it)"),
        (ref - 0.5 * d * math.log(2 * math.pi), "the normalising constant of one Gaussian "
                                                "density is missing (both have it)"),
    ]


def _allclose(got: np.ndarray | None, ref: Tensor) -> bool:
    expected = ref.detach().double().numpy()
    return got is not None and got.shape == expected.shape \
        and bool(np.allclose(got, expected, rtol=1e-5, atol=1e-3))


def _judge_iwae_record(rec: dict[str, Any], case: Case, offset: int,
                       shape: tuple[int, int, int]) -> None:
    """Type, shape and finiteness of the bounds, their values (naming typical mistakes), and
    the bound of one sample."""
    k, batch, dim = shape
    log_lik, z, mu, logvar = iwae_inputs(case, offset, k, batch, dim)
    out = record(rec, "out")
    expect(out.get("type") == "Tensor", f"return a torch.Tensor, not {describe(out)}")
    got = values(out)
    expect(got is None or got.shape != (), f"return one bound per image, shape ({batch},): do "
                                           "not average over the batch")
    expect(got is not None and got.shape == (batch,),
           f"expected one bound per image, shape ({batch},); got {describe(out)} (which axis "
           "holds the k samples?)")
    expect(bool(np.isfinite(got).all()),
           "the bound is not finite: these log-weights are near -300, and their exponentials "
           "underflow to 0 in float32. Stay in log-space")
    if not _allclose(got, iwae_from_samples(log_lik, z, mu, logvar)):
        for wrong, message in _iwae_mistakes(log_lik, z, mu, logvar):
            if _allclose(got, wrong):
                expect(False, message)
        expect(False, "your bound differs from the reference on random inputs; check each "
                      "log-density and how the k samples are combined")
    one = record(rec, "one")
    expect(one.get("type") == "Tensor"
           and _allclose(values(one), iwae_from_samples(log_lik[:1], z[:1], mu, logvar)),
           "with k = 1 the bound should equal the single sample's log-weight")


@exercise("eval_iwae", points=3, reference=iwae_from_samples,
          hint="Each sample's log-weight combines three log-densities: the decoder's likelihood, "
               "the prior and the proposal q(z|x) (a diagonal Gaussian given by mu and logvar). "
               "Then average the WEIGHTS over the k samples without leaving log-space. Reread "
               "the section on the importance-weighted bound.",
          probe=probe_iwae)
def _judge_iwae(data: dict[str, Any], case: Case) -> None:
    _judge_iwae_record(record(data, "main"), case, 0, IWAE_SHAPE)


@hidden_judge("eval_iwae")
def _hidden_iwae(data: dict[str, Any], case: Case) -> None:
    for i, rec, shape in extra_records(data, EXTRA_IWAE_SHAPES):
        _judge_iwae_record(rec, case, i, shape)
