"""Kernel side of chapter 02's checks: the probes and the inputs both halves rebuild.

Each probe calls the learner's function on inputs built from a :class:`~.protocol.Case`
inside a forked random state (so the notebook's own random stream is untouched) and returns
plain data; the judges in :mod:`.ch02_vae` decide. Statistical properties of
``reparameterize`` are judged from the draws themselves, which the probe returns.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from .core import CheckFailure, expect
from .probe_data import case_seed, grad_array, tensor_record
from .protocol import Case, sanitise

REPARAM_SHAPE = (6, 5)                   # (batch, latent dims) of the public properties
KL_SHAPE = (8, 6)
ELBO_SHAPE = (4, 3)
EXTRA_SHAPES = {"vae_reparameterize": ((1, 1), (33, 16)), "vae_kl": ((1, 1), (50, 32)),
                "vae_elbo": ((7, 16),)}  # judged by the grader's hidden judges only
N_DRAWS = 20000                          # draws of one (mu, logvar) row for the statistics


def gaussian_inputs(case: Case, offset: int, batch: int, dim: int) -> tuple[Tensor, Tensor]:
    """mu and logvar, both (batch, dim), for a case."""
    gen = case.generator(offset)
    mu = torch.randn(batch, dim, generator=gen) * 1.5                         # (B, D)
    logvar = torch.randn(batch, dim, generator=gen) * 1.2 - 0.3               # (B, D)
    return mu, logvar


def _tensor(out: Any, what: str) -> Tensor:
    expect(isinstance(out, Tensor), f"{what} should return a torch.Tensor, "
                                    f"not {type(out).__name__}")
    return out


# ------------------------------------------------------------------------------ reparameterize

def stats_inputs(case: Case) -> tuple[Tensor, Tensor]:
    """One (mu, logvar) row (1, 4) for the statistics over many draws: one log-variance near
    0, one near 1, one near -2 and one near 0.7 (so that sigma, sigma^2, logvar and 1/sigma
    all differ), in a case-dependent order."""
    gen = case.generator(40)
    mu = torch.randn(1, 4, generator=gen) * 1.5
    centre, spread = torch.tensor([0.0, 1.0, -2.0, 0.7]), torch.tensor([0.2, 0.2, 0.4, 0.2])
    logvar = centre + spread * (2 * torch.rand(4, generator=gen) - 1)
    return mu, logvar[torch.randperm(4, generator=gen)].unsqueeze(0)


def _reparam_record(fn: Callable[[Tensor, Tensor], Any], mu_leaf: Tensor, logvar_leaf: Tensor,
                    seed: int) -> dict[str, Any]:
    """z for (mu, logvar), the inputs after the call, and the gradients of z.sum()."""
    mu_leaf.requires_grad_(True)
    logvar_leaf.requires_grad_(True)
    mu, logvar = mu_leaf * 1.0, logvar_leaf * 1.0      # non-leaf, like an encoder's outputs
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        z = _tensor(fn(mu, logvar), "reparameterize")
    rec = {"z": tensor_record(z), "mu_after": mu.detach().clone(),
           "logvar_after": logvar.detach().clone()}
    if z.requires_grad:
        z.sum().backward()
    rec.update(grad_mu=grad_array(mu_leaf), grad_logvar=grad_array(logvar_leaf))
    return rec


def probe_reparameterize(fn: Callable[[Tensor, Tensor], Any], case: Case) -> dict[str, Any]:
    """Record z and its gradients for the public and the extra shapes, N_DRAWS draws of one
    row, and two calls on the same inputs."""
    data: dict[str, Any] = {
        "main": _reparam_record(fn, *gaussian_inputs(case, 0, *REPARAM_SHAPE),
                                case_seed(case, 0)),
        "extra": [_reparam_record(fn, *gaussian_inputs(case, i, *shape), case_seed(case, i))
                  for i, shape in enumerate(EXTRA_SHAPES["vae_reparameterize"], start=1)]}
    mu1, logvar1 = stats_inputs(case)
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(case_seed(case, 10))
        data["draws"] = tensor_record(fn(mu1.expand(N_DRAWS, 4).clone(),
                                         logvar1.expand(N_DRAWS, 4).clone()))   # (n, 4)
        torch.manual_seed(case_seed(case, 11))
        mu0, logvar0 = torch.zeros(2, 3), torch.zeros(2, 3)
        data["fresh"] = [tensor_record(fn(mu0, logvar0)), tensor_record(fn(mu0, logvar0))]
    return data


# ------------------------------------------------------------------------------ KL

def _kl_record(fn: Callable[[Tensor, Tensor], Any], mu_leaf: Tensor,
               logvar: Tensor) -> dict[str, Any]:
    """The KL of (mu, logvar), the inputs after the call, and the KL at the prior."""
    mu_leaf.requires_grad_(True)
    mu = mu_leaf * 1.0                                  # non-leaf, like an encoder's output
    out = _tensor(fn(mu, logvar), "the KL function")
    rec = {"out": tensor_record(out), "mu_after": mu.detach().clone(),
           "logvar_after": logvar.detach().clone()}
    zeros = torch.zeros(3, mu.shape[1])
    rec["at_prior"] = tensor_record(fn(zeros, zeros.clone()))
    return rec


def probe_kl(fn: Callable[[Tensor, Tensor], Any], case: Case) -> dict[str, Any]:
    """Record the KL for the public and the extra shapes."""
    return {"main": _kl_record(fn, *gaussian_inputs(case, 0, *KL_SHAPE)),
            "extra": [_kl_record(fn, *gaussian_inputs(case, i, *shape))
                      for i, shape in enumerate(EXTRA_SHAPES["vae_kl"], start=1)]}


# ------------------------------------------------------------------------------ ELBO

def elbo_inputs(case: Case, offset: int, batch: int, dim: int
                ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """logits (B, 1, 28, 28), images x in [0, 1], mu and logvar (B, D) for a case."""
    gen = case.generator(offset)
    logits = torch.randn(batch, 1, 28, 28, generator=gen) * 3                 # (B, 1, 28, 28)
    x = torch.rand(batch, 1, 28, 28, generator=gen)                           # (B, 1, 28, 28)
    mu = torch.randn(batch, dim, generator=gen)                               # (B, D)
    logvar = torch.randn(batch, dim, generator=gen) * 0.5                     # (B, D)
    return logits, x, mu, logvar


def constant_elbo_images(case: Case) -> Tensor:
    """Images (2, 1, 28, 28) for the constructed case logits = 0, mu = 0, logvar = 0."""
    return torch.rand(2, 1, 28, 28, generator=case.generator(50))


def _call_elbo(fn: Callable[..., Any], *args: Tensor, beta: float) -> tuple[Tensor, ...]:
    """Call the learner's function and return its (loss, recon, kl).

    Structural mistakes fail here: not three terms, a term that is not a scalar tensor, or
    PyTorch refusing logits in a loss made for probabilities.
    """
    try:
        out = fn(*args, beta=beta)
    except (RuntimeError, ValueError) as exc:
        if "between 0 and 1" not in str(exc):
            raise
        raise CheckFailure(
            "binary_cross_entropy expects probabilities in [0, 1], but the decoder returns "
            "logits (any real number), so PyTorch refused them. Reread the exercise "
            "statement and section 2 on logits: use the loss that takes logits") from exc
    expect(isinstance(out, tuple) and len(out) == 3,
           "return ELBOTerms(loss, recon, kl) - three scalar tensors - not "
           f"{type(out).__name__}")
    for name, t in zip(("loss", "recon", "kl"), out, strict=True):
        expect(isinstance(t, Tensor) and t.shape == (),
               f"{name} should be a scalar tensor (averaged over the batch); got "
               f"{tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__}")
    return out


def _elbo_record(fn: Callable[..., Any], inputs: tuple[Tensor, ...]) -> dict[str, Any]:
    """The three terms at beta = 1 and 4, the inputs after the call, the loss's gradients."""
    logits_leaf, x, mu_leaf, logvar = inputs
    logits_leaf.requires_grad_(True)
    mu_leaf.requires_grad_(True)
    logits, mu = logits_leaf * 1.0, mu_leaf * 1.0       # non-leaf, like a model's outputs
    terms = _call_elbo(fn, logits, x, mu, logvar, beta=1.0)
    rec: dict[str, Any] = {
        "terms": [float(t.detach()) for t in terms],
        "after": [t.detach().clone() for t in (logits, x, mu, logvar)],
        "requires_grad": bool(terms[0].requires_grad)}
    if terms[0].requires_grad:
        terms[0].backward()
    rec.update(grad_logits=grad_array(logits_leaf), grad_mu=grad_array(mu_leaf))
    terms4 = _call_elbo(fn, logits.detach(), x, mu.detach(), logvar, beta=4.0)
    rec["terms4"] = [float(t.detach()) for t in terms4]
    return rec


def probe_elbo(fn: Callable[..., Any], case: Case) -> dict[str, Any]:
    """Record the terms for the public and the extra shapes and for a constructed case."""
    data = {"main": _elbo_record(fn, elbo_inputs(case, 0, *ELBO_SHAPE)),
            "extra": [_elbo_record(fn, elbo_inputs(case, i, *shape))
                      for i, shape in enumerate(EXTRA_SHAPES["vae_elbo"], start=1)]}
    zeros = torch.zeros(2, 5)
    terms = _call_elbo(fn, torch.zeros(2, 1, 28, 28), constant_elbo_images(case), zeros,
                       zeros.clone(), beta=1.0)
    data["constant"] = [float(t.detach()) for t in terms]
    return data


# ------------------------------------------------------------ predict, then run: beta (sec. 10)

def beta_lists(case: Case) -> list[list[float]]:
    """Three lists of betas for a case (lengths 3, 4 and 2 to 5), each with its smallest
    beta away from the front, and values that are neither 0.5, 1 nor a whole number."""
    gen = case.generator(60)
    lists = []
    for length in (3, 4, int(torch.randint(2, 6, (1,), generator=gen))):
        logs = torch.empty(length).uniform_(math.log(0.05), math.log(20.0), generator=gen)
        betas = [round(math.exp(v), 2) for v in logs.tolist()]
        betas = [b + 0.1 if abs(b - round(b)) < 0.05 or abs(b - 0.5) < 0.05 else b
                 for b in betas]
        low = min(range(length), key=betas.__getitem__)
        to = 1 + int(torch.randint(0, length - 1, (1,), generator=gen))
        betas[low], betas[to] = betas[to], betas[low]
        lists.append([round(b, 2) for b in betas])
    return lists


def _beta_answer(fn: Callable[[list[float]], Any], betas: list[float]) -> dict[str, Any]:
    given = list(betas)
    out = fn(given)
    rec: dict[str, Any] = {"given_after": [float(b) if isinstance(b, (int, float)) else None
                                           for b in given][:50],
                           "type": type(out).__name__[:60], "repr": sanitise(repr(out), 60),
                           "value": None}
    if not isinstance(out, (str, bytes, bool)) and out is not None:
        try:
            rec["value"] = float(out)
        except (TypeError, ValueError):
            pass
    return rec


def probe_predict_beta(fn: Callable[[list[float]], Any], case: Case) -> dict[str, Any]:
    """Ask the learner's rule for each list of betas; record the answer and the list after."""
    expect(callable(fn), "predict_sharpest_beta should be a function of the list of betas")
    return {"answers": [_beta_answer(fn, betas) for betas in beta_lists(case)]}
