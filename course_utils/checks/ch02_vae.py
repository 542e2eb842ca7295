"""Checks for notebook 02_vae: reparameterisation, the KL term and the ELBO per image.

Each checker calls the learner's function on seeded random inputs inside a forked random
state (so the notebook's own random stream is untouched) and compares properties with the
reference in :mod:`course_utils.losses`. Messages name the property that failed, never the
formula.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from ..losses import elbo_loss, kl_standard_normal, reparameterize
from .core import exercise, expect, hidden_check


def _gaussian_inputs(batch: int, dim: int, seed: int, dtype: torch.dtype = torch.float32
                     ) -> tuple[Tensor, Tensor]:
    gen = torch.Generator().manual_seed(seed)
    mu = torch.randn(batch, dim, generator=gen, dtype=dtype) * 1.5             # (B, D)
    logvar = torch.randn(batch, dim, generator=gen, dtype=dtype) * 1.2 - 0.3   # (B, D)
    return mu, logvar


def _is_tensor(out: Any, what: str) -> Tensor:
    expect(isinstance(out, Tensor), f"{what} should return a torch.Tensor, "
                                    f"not {type(out).__name__}")
    return out


# ------------------------------------------------------------------------------ reparameterize

def _reparam_properties(fn: Callable[[Tensor, Tensor], Tensor], batch: int, dim: int,
                        seed: int, statistics: bool = True) -> None:
    mu, logvar = _gaussian_inputs(batch, dim, seed)
    mu.requires_grad_(True)
    logvar.requires_grad_(True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        z = _is_tensor(fn(mu, logvar), "reparameterize")
    expect(z.shape == mu.shape, f"z should have the shape of mu, {tuple(mu.shape)}; "
                                f"got {tuple(z.shape)}")
    expect(z.requires_grad, "z is cut off from mu and logvar: build it from them with torch "
                            "operations (no .detach(), .item(), numpy or torch.no_grad())")
    z.sum().backward()
    expect(mu.grad is not None and torch.isfinite(mu.grad).all() and mu.grad.abs().sum() > 0,
           "no gradient reaches mu: z must depend on mu differentiably")
    expect(logvar.grad is not None and torch.isfinite(logvar.grad).all()
           and logvar.grad.abs().sum() > 0,
           "no gradient reaches logvar: the noise must be scaled by a function of logvar")

    if not statistics:
        return
    # Statistics over many draws: one (mu, logvar) pair repeated n times.
    n = 20000
    mu1 = torch.tensor([[0.5, -2.0, 0.0, 3.0]])                               # (1, 4)
    logvar1 = torch.tensor([[0.0, 1.0, -2.0, 0.7]])                           # (1, 4)
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(seed + 1)
        draws = fn(mu1.expand(n, 4).clone(), logvar1.expand(n, 4).clone())    # (n, 4)
    expect(isinstance(draws, Tensor) and draws.shape == (n, 4),
           "z should have one row per row of mu")
    expect(bool(torch.isfinite(draws).all()), "z contains NaN or infinity")
    std_expected = torch.exp(0.5 * logvar1[0])                                # sigma per dim
    expect(float(draws.std(0).min()) > 1e-3,
           "z does not vary between draws: it must include random noise")
    mean_err = (draws.mean(0) - mu1[0]).abs() / (std_expected / math.sqrt(n))
    expect(float(mean_err.max()) < 5.0,
           "over many draws, the mean of z should be mu (it is not)")
    std_ratio = draws.std(0) / std_expected
    expect(float((std_ratio - 1).abs().max()) < 0.05,
           f"over many draws, the standard deviation of z should be sigma for each dimension; "
           f"for logvar = {[round(v, 2) for v in logvar1[0].tolist()]} it came out "
           f"{[round(v, 2) for v in draws.std(0).tolist()]} (what is sigma in terms of logvar?)")
    corr = torch.corrcoef(draws.T)                                            # (4, 4)
    off = corr - torch.diag(torch.diagonal(corr))
    expect(float(off.abs().max()) < 0.05,
           "the dimensions of z should get independent noise (draw one value per entry)")
    rows = draws[:2000]
    expect(float((rows[1:] - rows[:-1]).abs().sum()) > 0,
           "every row of z should get its own noise")


@exercise("vae_reparameterize", points=2, reference=reparameterize,
          hint="Draw standard normal noise with the same shape as mu, then scale and shift it. "
               "Remember that logvar is the log of the variance, not the standard deviation.")
def _check_reparameterize(fn: Callable[[Tensor, Tensor], Tensor]) -> None:
    _reparam_properties(fn, batch=6, dim=5, seed=0)


@hidden_check("vae_reparameterize")
def _hidden_reparameterize(fn: Callable[[Tensor, Tensor], Tensor]) -> None:
    _reparam_properties(fn, batch=1, dim=1, seed=11, statistics=False)
    _reparam_properties(fn, batch=33, dim=16, seed=12, statistics=False)
    # values must be drawn afresh on every call
    mu, logvar = torch.zeros(2, 3), torch.zeros(2, 3)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(13)
        first, second = fn(mu, logvar), fn(mu, logvar)
    expect(not torch.equal(first, second), "two calls returned the same z: draw new noise "
                                           "every time")


# ------------------------------------------------------------------------------ KL

def _kl_properties(fn: Callable[[Tensor, Tensor], Tensor], batch: int, dim: int,
                   seed: int) -> None:
    mu, logvar = _gaussian_inputs(batch, dim, seed)
    mu.requires_grad_(True)
    out = _is_tensor(fn(mu, logvar), "the KL function")
    expected = kl_standard_normal(mu.detach(), logvar)                         # (B,)
    if out.shape == ():
        expect(False, "return one KL value per example, shape (B,): sum over the latent "
                      "dimensions only, do not reduce over the batch")
    expect(out.shape == (batch,), f"expected one KL value per example, shape ({batch},); got "
                                  f"{tuple(out.shape)} (sum over the latent dimensions)")
    expect(bool(torch.isfinite(out).all()), "the KL contains NaN or infinity")
    expect(out.requires_grad, "the KL is cut off from mu: compute it with torch operations")
    zeros = torch.zeros(3, dim)
    at_prior = fn(zeros, zeros.clone())
    expect(isinstance(at_prior, Tensor) and at_prior.shape == (3,)
           and float(at_prior.abs().max()) < 1e-5,
           "the KL of the standard normal from itself (mu = 0, logvar = 0) should be 0")
    expect(float(out.detach().min()) >= -1e-5, "a KL divergence is never negative; yours is "
                                               "for some inputs")
    got = out.detach()
    if dim > 1 and torch.allclose(got * dim, expected, rtol=1e-4, atol=1e-4):
        expect(False, f"your values are {dim} times too small: the KL of independent "
                      "dimensions adds up, it is not averaged")
    if torch.allclose(got, -expected, rtol=1e-4, atol=1e-4):
        expect(False, "your KL has the wrong sign")
    if torch.allclose(got, 2 * expected, rtol=1e-4, atol=1e-4):
        expect(False, "your KL is twice too large: check the constant factor")
    expect(torch.allclose(got, expected, rtol=1e-4, atol=1e-4),
           "the KL differs from the closed form on random (mu, logvar); check each term "
           "(which terms vanish at mu = 0, logvar = 0, and which grow with mu?)")


@exercise("vae_kl", points=2, reference=kl_standard_normal,
          hint="Look up the KL divergence between two univariate Gaussians, set the second to "
               "N(0, 1), and add the results of the independent latent dimensions. Write "
               "sigma^2 in terms of logvar.")
def _check_kl(fn: Callable[[Tensor, Tensor], Tensor]) -> None:
    _kl_properties(fn, batch=8, dim=6, seed=1)


@hidden_check("vae_kl")
def _hidden_kl(fn: Callable[[Tensor, Tensor], Tensor]) -> None:
    _kl_properties(fn, batch=1, dim=1, seed=21)
    _kl_properties(fn, batch=50, dim=32, seed=22)


# ------------------------------------------------------------------------------ ELBO

def _elbo_inputs(batch: int, dim: int, seed: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(batch, 1, 28, 28, generator=gen) * 3                 # (B, 1, 28, 28)
    x = torch.rand(batch, 1, 28, 28, generator=gen)                           # (B, 1, 28, 28)
    mu = torch.randn(batch, dim, generator=gen)                               # (B, D)
    logvar = torch.randn(batch, dim, generator=gen) * 0.5                     # (B, D)
    return logits, x, mu, logvar


def _f(t: Tensor) -> float:
    return float(t.detach())


def _unpack(out: Any) -> tuple[Tensor, Tensor, Tensor]:
    expect(isinstance(out, tuple) and len(out) == 3,
           "return ELBOTerms(loss, recon, kl) - three scalar tensors - not "
           f"{type(out).__name__}")
    loss, recon, kl = out
    for name, t in (("loss", loss), ("recon", recon), ("kl", kl)):
        expect(isinstance(t, Tensor) and t.shape == (),
               f"{name} should be a scalar tensor (averaged over the batch); got "
               f"{tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__}")
        expect(bool(torch.isfinite(t)), f"{name} is NaN or infinite")
    return loss, recon, kl


def _elbo_properties(fn: Callable[..., Any], batch: int, dim: int, seed: int) -> None:
    logits, x, mu, logvar = _elbo_inputs(batch, dim, seed)
    logits.requires_grad_(True)
    mu.requires_grad_(True)
    ref = elbo_loss(logits.detach(), x, mu.detach(), logvar, beta=1.0)
    loss, recon, kl = _unpack(fn(logits, x, mu, logvar, beta=1.0))
    pixels = x[0].numel()
    r, rr = _f(recon), _f(ref.recon)
    if math.isclose(r, rr / pixels, rel_tol=1e-3):
        expect(False, f"recon is {pixels} times too small: it averages over the pixels. "
                      "-log p(x|z) of one image adds up the log-probabilities of its pixels")
    if math.isclose(r, rr * batch, rel_tol=1e-3) and batch > 1:
        expect(False, "recon is summed over the batch: average the per-image values over the "
                      "batch instead")
    sig = float(F.binary_cross_entropy(torch.sigmoid(logits.detach()), x, reduction="sum")) / batch
    expect(math.isfinite(r), "recon is not finite")
    if not math.isclose(r, rr, rel_tol=1e-3) and math.isclose(
            r, float(F.binary_cross_entropy_with_logits(torch.sigmoid(logits.detach()), x,
                                                        reduction="sum")) / batch, rel_tol=1e-3):
        expect(False, "recon applies a sigmoid twice: the decoder returns logits, and the "
                      "*_with_logits loss applies the sigmoid itself")
    expect(math.isclose(r, rr, rel_tol=1e-3) or math.isclose(r, sig, rel_tol=1e-3),
           "recon is not the binary cross-entropy of the images under the decoder's "
           "pixel probabilities (sigmoid of the logits), summed over pixels, averaged over "
           "the batch")
    k = _f(kl)
    expect(math.isclose(k, _f(ref.kl), rel_tol=1e-3, abs_tol=1e-4),
           "kl is not the batch average of the per-example KL of q(z|x) from N(0, I)")
    l_ = _f(loss)
    expect(not math.isclose(l_, r, rel_tol=1e-4), "loss leaves out the KL term")
    expect(not math.isclose(l_, r - k, rel_tol=1e-4),
           "loss subtracts the KL: the negative ELBO penalises the KL, so it is added")
    expect(math.isclose(l_, r + k, rel_tol=1e-4), "loss should combine recon and kl (beta = 1)")
    expect(loss.requires_grad, "loss is cut off from the model outputs: use torch operations")
    loss.backward()
    expect(logits.grad is not None and mu.grad is not None,
           "the gradient of loss must reach both the decoder's logits and the encoder's mu")
    loss4, recon4, kl4 = _unpack(fn(logits.detach(), x, mu.detach(), logvar, beta=4.0))
    expect(math.isclose(_f(loss4), _f(recon4) + 4 * _f(kl4), rel_tol=1e-4),
           "with beta = 4 the loss should weight the KL term by beta")
    expect(math.isclose(_f(kl4), k, rel_tol=1e-4),
           "kl should be reported without the beta weight (beta only enters loss)")


@exercise("vae_elbo", points=3, reference=elbo_loss,
          hint="Per image: add up the pixel-wise binary cross-entropy (the decoder gives logits), "
               "and the KL of its code; only then average over the batch. The objective to "
               "minimise is the NEGATIVE ELBO.")
def _check_elbo(fn: Callable[..., Any]) -> None:
    _elbo_properties(fn, batch=4, dim=3, seed=2)


@hidden_check("vae_elbo")
def _hidden_elbo(fn: Callable[..., Any]) -> None:
    _elbo_properties(fn, batch=7, dim=16, seed=31)
    # A constructed case with a known value: logits 0 -> p = 1/2 for every pixel, so the
    # BCE is log 2 per pixel whatever x is; mu = 0, logvar = 0 gives KL = 0.
    x = torch.rand(2, 1, 28, 28, generator=torch.Generator().manual_seed(32))
    out = fn(torch.zeros(2, 1, 28, 28), x, torch.zeros(2, 5), torch.zeros(2, 5), beta=1.0)
    loss, recon, kl = _unpack(out)
    expect(math.isclose(_f(recon), 784 * math.log(2), rel_tol=1e-4),
           "with logits 0 every pixel has probability 1/2: recon should be 784 log 2")
    expect(abs(_f(kl)) < 1e-5, "mu = 0, logvar = 0 should give kl = 0")

