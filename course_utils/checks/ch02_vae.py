"""Checks for notebook 02_vae: reparameterisation, the KL term, the ELBO per image, and the
"predict, then run" question on beta. These are the judges; the probes are in
:mod:`.ch02_probes`.

Each judge rebuilds the probe's inputs from the case, computes the reference in
:mod:`course_utils.losses` itself and compares the recorded data with it. Messages name the
property that failed, never the formula. The grader's hidden judges check the same
properties on the extra shapes the probe records (a single example and a wide batch).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..losses import elbo_loss, kl_standard_normal, reparameterize
from .ch02_probes import (
    ELBO_SHAPE,
    EXTRA_SHAPES,
    KL_SHAPE,
    N_DRAWS,
    REPARAM_SHAPE,
    beta_lists,
    constant_elbo_images,
    elbo_inputs,
    gaussian_inputs,
    probe_elbo,
    probe_kl,
    probe_predict_beta,
    probe_reparameterize,
    stats_inputs,
)
from .core import exercise, expect, hidden_judge
from .probe_data import (
    array,
    as_array,
    describe,
    extra_records,
    flag,
    record,
    records,
    same,
    values,
)
from .protocol import Case


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().numpy().astype(np.float64)


def _gradient_reaches(grad: np.ndarray | None, shape: tuple[int, ...]) -> bool:
    return grad is not None and grad.shape == shape and bool(np.isfinite(grad).all()) \
        and float(np.abs(grad).sum()) > 0


# ------------------------------------------------------------------------------ reparameterize

def _judge_reparam_record(rec: dict[str, Any], case: Case, offset: int, shape: tuple[int, int]
                          ) -> None:
    """In-place changes, the shape of z, and gradients reaching mu and logvar."""
    mu, logvar = (_np(t) for t in gaussian_inputs(case, offset, *shape))
    expect(same(array(rec, "mu_after"), mu) and same(array(rec, "logvar_after"), logvar),
           "reparameterize changed mu or logvar in place: build z as a new tensor")
    z_rec = record(rec, "z")
    z = values(z_rec)
    expect(z is not None and z.shape == mu.shape, f"z should have the shape of mu, {mu.shape}; "
                                                  f"got {describe(z_rec)}")
    expect(flag(z_rec, "requires_grad"), "z is cut off from mu and logvar: build it from them "
           "with torch operations (no .detach(), .item(), numpy or torch.no_grad())")
    expect(_gradient_reaches(array(rec, "grad_mu"), mu.shape),
           "no gradient reaches mu: z must depend on mu differentiably")
    expect(_gradient_reaches(array(rec, "grad_logvar"), mu.shape),
           "no gradient reaches logvar: the noise must be scaled by a function of logvar")


def _judge_draws(data: dict[str, Any], case: Case) -> None:
    """Mean, standard deviation and independence of z over many draws of one row."""
    mu1, logvar1 = (_np(t)[0] for t in stats_inputs(case))
    draws = values(record(data, "draws"))
    expect(draws is not None and draws.shape == (N_DRAWS, 4),
           "z should have one row per row of mu")
    expect(bool(np.isfinite(draws).all()), "z contains NaN or infinity")
    spread = draws.std(0, ddof=1)
    expect(float(spread.max()) > 1e-3,
           "z does not vary between draws: each entry needs its own random noise")
    mean_err = np.abs(draws.mean(0) - mu1) / (np.maximum(spread, 1e-6) / math.sqrt(N_DRAWS))
    expect(float(mean_err.max()) < 5.0, "over many draws, the mean of z should be mu (it is not)")
    std_ratio = spread / np.exp(0.5 * logvar1)
    expect(float(np.abs(std_ratio - 1).max()) < 0.05,
           f"over many draws, the standard deviation of z should be sigma for each dimension; "
           f"for logvar = {[round(float(v), 2) for v in logvar1]} it came out "
           f"{[round(float(v), 2) for v in spread]} (what is sigma in terms of logvar?)")
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = np.corrcoef(draws.T)                                           # (4, 4)
    off = corr - np.diag(np.diagonal(corr))
    expect(float(np.abs(off).max()) < 0.05,
           "the dimensions of z should get independent noise (draw one value per entry)")
    rows = draws[:2000]
    expect(float(np.abs(rows[1:] - rows[:-1]).sum()) > 0, "every row of z should get its own noise")
    first, second = (values(r) for r in records(data, "fresh", 2))
    expect(first is None or second is None or not same(first, second),
           "two calls returned the same z: draw new noise every time (do not reseed inside the "
           "function)")


@exercise("vae_reparameterize", points=2, reference=reparameterize,
          hint="Reread section 3: the randomness comes from noise that does not depend on the "
               "parameters, one independent standard-normal value per entry, and z is a "
               "differentiable function of mu, logvar and that noise. logvar is the log of "
               "the variance: what is the standard deviation in terms of it?",
          probe=probe_reparameterize)
def _judge_reparameterize(data: dict[str, Any], case: Case) -> None:
    _judge_reparam_record(record(data, "main"), case, 0, REPARAM_SHAPE)
    _judge_draws(data, case)


@hidden_judge("vae_reparameterize")
def _hidden_reparameterize(data: dict[str, Any], case: Case) -> None:
    for i, rec, shape in extra_records(data, EXTRA_SHAPES["vae_reparameterize"]):
        _judge_reparam_record(rec, case, i, shape)


# ------------------------------------------------------------------------------ KL

def _judge_kl_record(rec: dict[str, Any], case: Case, offset: int, shape: tuple[int, int]
                     ) -> None:
    batch, dim = shape
    mu_t, logvar_t = gaussian_inputs(case, offset, batch, dim)
    mu, logvar = _np(mu_t), _np(logvar_t)
    expected = _np(kl_standard_normal(mu_t, logvar_t))                          # (B,)
    expect(same(array(rec, "mu_after"), mu) and same(array(rec, "logvar_after"), logvar),
           "the KL function changed mu or logvar in place: compute new tensors instead")
    out_rec = record(rec, "out")
    got = values(out_rec)
    expect(got is None or got.shape != (), "return one KL value per example, shape (B,): sum "
                                           "over the latent dimensions only, do not reduce over "
                                           "the batch")
    expect(got is not None and got.shape == (batch,),
           f"expected one KL value per example, shape ({batch},); got {describe(out_rec)} "
           "(sum over the latent dimensions)")
    expect(bool(np.isfinite(got).all()), "the KL contains NaN or infinity")
    expect(flag(out_rec, "requires_grad"),
           "the KL is cut off from mu: compute it with torch operations")
    at_prior = values(record(rec, "at_prior"))
    expect(at_prior is not None and at_prior.shape == (3,)
           and float(np.abs(at_prior).max()) < 1e-5,
           "the KL of the standard normal from itself (mu = 0, logvar = 0) should be 0")
    expect(float(got.min()) >= -1e-5, "a KL divergence is never negative; yours is "
                                      "for some inputs")

    def close(a: np.ndarray, b: np.ndarray) -> bool:
        return bool(np.allclose(a, b, rtol=1e-4, atol=1e-4))

    expect(dim == 1 or not close(got * dim, expected),
           f"your values are {dim} times too small: the KL of independent dimensions adds up, "
           "it is not averaged")
    expect(not close(got, -expected), "your KL has the wrong sign")
    expect(not close(got, 2 * expected), "your KL is twice too large: check the constant factor")
    expect(close(got, expected), "the KL differs from the closed form on random (mu, logvar); "
           "check each term (which terms vanish at mu = 0, logvar = 0, and which grow with mu?)")


@exercise("vae_kl", points=2, reference=kl_standard_normal,
          reveal="Per dimension the KL is (mu^2 + sigma^2 - 1 - log sigma^2) / 2: at the prior "
                 "the last three terms cancel, and mu^2 charges a code for sitting away from 0.",
          hint="Reread 'The KL term in closed form': derive it for one latent dimension from "
               "the two log-densities, check that it vanishes when q is the prior, and mind "
               "that the function receives the log of the variance. Independent dimensions "
               "combine as the notebook says; the batch dimension stays.", probe=probe_kl)
def _judge_kl(data: dict[str, Any], case: Case) -> None:
    _judge_kl_record(record(data, "main"), case, 0, KL_SHAPE)


@hidden_judge("vae_kl")
def _hidden_kl(data: dict[str, Any], case: Case) -> None:
    for i, rec, shape in extra_records(data, EXTRA_SHAPES["vae_kl"]):
        _judge_kl_record(rec, case, i, shape)


# ------------------------------------------------------------------------------ ELBO

def _terms(rec: dict[str, Any], key: str) -> tuple[float, float, float]:
    """Recorded (loss, recon, kl), each checked to be a finite number."""
    terms = rec.get(key)
    expect(isinstance(terms, list) and len(terms) == 3
           and all(isinstance(t, (int, float)) and not isinstance(t, bool) for t in terms),
           "return ELBOTerms(loss, recon, kl) - three scalar tensors")
    for name, t in zip(("loss", "recon", "kl"), terms, strict=True):
        expect(math.isfinite(t), f"{name} is NaN or infinite")
    return float(terms[0]), float(terms[1]), float(terms[2])


def _judge_recon(r: float, inputs: tuple[torch.Tensor, ...], ref_recon: float) -> None:
    """recon against the reference, naming the common mistakes."""
    logits, x = inputs[0], inputs[1]
    batch, pixels = len(x), x[0].numel()
    if math.isclose(r, ref_recon / pixels, rel_tol=1e-3):
        expect(False, f"recon is {pixels} times too small: it averages over the pixels. "
                      "-log p(x|z) of one image adds up the log-probabilities of its pixels")
    if math.isclose(r, ref_recon * batch, rel_tol=1e-3) and batch > 1:
        expect(False, "recon is summed over the batch: average the per-image values over the "
                      "batch instead")
    probs = torch.sigmoid(logits)
    sig = float(F.binary_cross_entropy(probs, x, reduction="sum")) / batch
    twice = float(F.binary_cross_entropy_with_logits(probs, x, reduction="sum")) / batch
    if not math.isclose(r, ref_recon, rel_tol=1e-3) and math.isclose(r, twice, rel_tol=1e-3):
        expect(False, "recon applies a sigmoid twice: the decoder returns logits, and the "
                      "*_with_logits loss applies the sigmoid itself")
    expect(math.isclose(r, ref_recon, rel_tol=1e-3) or math.isclose(r, sig, rel_tol=1e-3),
           "recon is not the binary cross-entropy of the images under the decoder's "
           "pixel probabilities (sigmoid of the logits), summed over pixels, averaged over "
           "the batch")


def _judge_elbo_record(rec: dict[str, Any], case: Case, offset: int, shape: tuple[int, int]
                       ) -> None:
    inputs = elbo_inputs(case, offset, *shape)
    logits, x, mu, logvar = inputs
    ref = elbo_loss(logits, x, mu, logvar, beta=1.0)
    loss, recon, kl = _terms(rec, "terms")
    after = rec.get("after")
    expect(isinstance(after, list) and len(after) == 4
           and all(same(as_array(a), _np(t)) for a, t in zip(after, inputs,
                                                                       strict=True)),
           "negative_elbo changed one of its inputs in place: compute new tensors instead")
    _judge_recon(recon, inputs, float(ref.recon))
    expect(math.isclose(kl, float(ref.kl), rel_tol=1e-3, abs_tol=1e-4),
           "kl is not the batch average of the per-example KL of q(z|x) from N(0, I)")
    expect(not math.isclose(loss, recon, rel_tol=1e-4), "loss leaves out the KL term")
    expect(not math.isclose(loss, recon - kl, rel_tol=1e-4),
           "loss subtracts the KL: the negative ELBO penalises the KL, so it is added")
    expect(math.isclose(loss, recon + kl, rel_tol=1e-4),
           "loss should combine recon and kl (beta = 1)")
    expect(flag(rec, "requires_grad"),
           "loss is cut off from the model outputs: use torch operations")
    expect(_gradient_reaches(array(rec, "grad_logits"), tuple(logits.shape))
           and _gradient_reaches(array(rec, "grad_mu"), tuple(mu.shape)),
           "the gradient of loss must reach both the decoder's logits and the encoder's mu")
    loss4, recon4, kl4 = _terms(rec, "terms4")
    expect(math.isclose(loss4, recon4 + 4 * kl4, rel_tol=1e-4),
           "with beta = 4 the loss should weight the KL term by beta")
    expect(math.isclose(kl4, kl, rel_tol=1e-4),
           "kl should be reported without the beta weight (beta only enters loss)")


@exercise("vae_elbo", points=3, reference=elbo_loss,
          reveal="Summing the cross-entropy over an image's pixels keeps recon and kl in the "
                 "same unit (nats per image); a mean over pixels would weight the KL 784 times "
                 "more and blur the reconstructions.",
          hint="Reread 'The loss per image' and section 2: the decoder returns logits, not "
               "probabilities, and the exercise names the loss made for them. Each term is "
               "first added up within one image, then averaged over the batch, and training "
               "minimises the negative of the ELBO.", probe=probe_elbo)
def _judge_elbo(data: dict[str, Any], case: Case) -> None:
    _judge_elbo_record(record(data, "main"), case, 0, ELBO_SHAPE)


@hidden_judge("vae_elbo")
def _hidden_elbo(data: dict[str, Any], case: Case) -> None:
    for i, rec, shape in extra_records(data, EXTRA_SHAPES["vae_elbo"]):
        _judge_elbo_record(rec, case, i, shape)
    # A constructed case with a known value: logits 0 -> p = 1/2 for every pixel, so the
    # BCE is log 2 per pixel whatever x is; mu = 0, logvar = 0 gives KL = 0.
    _, recon, kl = _terms(data, "constant")
    pixels = constant_elbo_images(case)[0].numel()
    expect(math.isclose(recon, pixels * math.log(2), rel_tol=1e-4),
           "with logits 0 every pixel has probability 1/2: recon should be 784 log 2")
    expect(abs(kl) < 1e-5, "mu = 0, logvar = 0 should give kl = 0")


# ------------------------------------------------------------ predict, then run: beta (sec. 10)

def predict_sharpest_beta_reference(betas: list[float]) -> float:
    """The beta with the weakest pull of each code towards the prior: its codes can carry the
    most about their image, so its decoder has the least reason to draw an average."""
    return min(betas)


def _judge_beta_answer(rec: dict[str, Any], betas: list[float]) -> None:
    expect(rec.get("given_after") == betas, "predict_sharpest_beta changed the list of betas it "
                                            "was given; read it without sorting or editing it "
                                            "in place")
    kind, value = str(rec.get("type"))[:60], rec.get("value")
    if not isinstance(value, float):
        shown = f" {str(rec.get('repr'))[:60]}" if kind in {"str", "bytes", "bool",
                                                            "NoneType"} else ""
        expect(False, f"return one of the betas as a number, not {kind}{shown}")
    expect(any(math.isclose(value, b, rel_tol=1e-6) for b in betas),
           f"for betas {betas} you returned {value:g}, which is not one of them: answer with a "
           "rule that picks from the list it is given (not a fixed number, not a position)")
    expect(math.isclose(value, min(betas), rel_tol=1e-6),
           f"for betas {betas} you predicted beta = {value:g}; that is not the run whose "
           "samples come out sharpest")


@exercise("vae_predict_beta", points=1, reference=predict_sharpest_beta_reference,
          hint="beta multiplies the KL term only. Ask what a stronger pull of every code towards "
               "the prior does to how much a code can say about its own image, and what a "
               "decoder draws when the code says little. Answer with a rule over the list you "
               "are given, so it works for any list.", probe=probe_predict_beta)
def _judge_predict_beta(data: dict[str, Any], case: Case) -> None:
    lists = beta_lists(case)
    for rec, betas in zip(records(data, "answers", len(lists)), lists, strict=True):
        _judge_beta_answer(rec, betas)
