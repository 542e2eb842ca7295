"""Two ways to estimate the gradient of an expectation over a Gaussian, and their variance.

Chapter 02 needs :math:`\\nabla_\\mu\\, \\mathbb E_{z\\sim\\mathcal N(\\mu, \\sigma^2 I)}[f(z)]`,
where ``f`` is the decoder's log-likelihood. Two unbiased Monte-Carlo estimators exist:

* **score function** (REINFORCE, likelihood ratio): draw ``z`` without a gradient path and use
  :math:`f(z)\\,\\nabla_\\mu \\log q(z)`; it only needs ``f``'s *values*. Subtracting a
  *baseline* ``b`` (here the mean of ``f`` over the other samples) keeps it unbiased and lowers
  its variance.
* **reparameterisation** (pathwise): :math:`z = \\mu + \\sigma\\varepsilon` and
  :math:`\\nabla_\\mu f(\\mu + \\sigma\\varepsilon)`; it uses ``f``'s *gradient*.

:func:`compare_estimators` draws many single-sample estimates of each and reports their mean
(all close to the exact gradient: every estimator is unbiased) and their standard deviation,
which is what decides how noisy a training step is.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

Objective = Callable[[Tensor], Tensor]      # (n, D) codes -> (n,) values

METHODS = ("score function", "score function + baseline", "reparameterisation")


@dataclass(frozen=True)
class EstimatorStats:
    """Single-sample estimates of d E[f] / d mu_1 from one estimator."""

    method: str
    mean: float           # average over the samples: close to the exact gradient
    std: float            # spread of one estimate: the noise of a 1-sample training step
    n: int                # how many estimates were averaged

    @property
    def stderr(self) -> float:
        """Standard error of :attr:`mean`."""
        return self.std / self.n ** 0.5


def per_sample_gradients(f: Objective, mu: Tensor, logvar: Tensor, n: int, method: str,
                         generator: torch.Generator | None = None) -> Tensor:
    """``n`` independent one-sample estimates of the gradient of E_q[f(z)] w.r.t. ``mu``.

    Args:
        f: maps codes (n, D) to values (n,); differentiable for the reparameterisation method.
        mu, logvar: (D,) mean and log-variance of q = N(mu, diag(exp(logvar))).
        method: one of :data:`METHODS`.

    Returns:
        (n, D): row i is the estimate from the i-th sample alone.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if mu.shape != logvar.shape or mu.ndim != 1:
        raise ValueError(f"mu and logvar must both have shape (D,), got {tuple(mu.shape)} and "
                         f"{tuple(logvar.shape)}")
    if n < 2:
        raise ValueError(f"need at least 2 samples, got n={n}")
    # One copy of the parameters per sample, so autograd returns per-sample gradients.
    mu_n = mu.detach().expand(n, -1).clone().requires_grad_(True)              # (n, D)
    sigma = torch.exp(0.5 * logvar.detach()).expand(n, -1)                     # (n, D)
    eps = torch.randn(mu_n.shape, generator=generator)                         # (n, D)
    if method == "reparameterisation":
        f(mu_n + sigma * eps).sum().backward()            # d f(mu + sigma eps) / d mu
    else:
        z = (mu_n + sigma * eps).detach()                 # a sample with no gradient path
        values = f(z).detach()                                                 # (n,)
        if method == "score function + baseline":         # leave-one-out mean of f
            values = values - (values.sum() - values) / (n - 1)
        log_q = torch.distributions.Normal(mu_n, sigma).log_prob(z).sum(dim=1)  # (n,)
        (values * log_q).sum().backward()                 # f(z) * d log q(z) / d mu
    assert mu_n.grad is not None
    return mu_n.grad


def compare_estimators(f: Objective, mu: Tensor, logvar: Tensor, n: int = 20_000,
                       seed: int = 0) -> list[EstimatorStats]:
    """Mean and standard deviation of ``n`` one-sample estimates of d E[f] / d mu_1 for each
    method in :data:`METHODS`, all from the same seed."""
    stats = []
    for method in METHODS:
        gen = torch.Generator().manual_seed(seed)
        g = per_sample_gradients(f, mu, logvar, n, method, generator=gen)[:, 0]    # (n,)
        stats.append(EstimatorStats(method, g.mean().item(), g.std().item(), n))
    return stats
