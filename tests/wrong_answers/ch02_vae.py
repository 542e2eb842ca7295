"""Wrong and right-but-unusual answers to chapter 02's exercises.

* ``vae_reparameterize``: ``reparameterize(mu, logvar) -> z``, z ~ N(mu, diag(exp(logvar))),
  differentiable in mu and logvar.
* ``vae_kl``: ``kl_divergence(mu, logvar) -> (B,)``, KL(N(mu, diag exp(logvar)) || N(0, I)).
* ``vae_elbo``: ``negative_elbo(logits, x, mu, logvar, beta) -> ELBOTerms(loss, recon, kl)``,
  BCE with logits summed over pixels, KL summed over latent dimensions, both batch-averaged.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.distributions import Bernoulli, Normal, kl_divergence

from course_utils.losses import ELBOTerms, kl_standard_normal

Factory = Callable[[], Any]


def _std(logvar: Tensor) -> Tensor:
    return torch.exp(0.5 * logvar)


# ----------------------------------------------------------------------------- reparameterize

def _reseeded(mu: Tensor, logvar: Tensor) -> Tensor:
    """Seeds the generator inside 'for reproducibility': the same z on every call."""
    torch.manual_seed(0)
    return mu + _std(logvar) * torch.randn_like(mu)


def _in_place(mu: Tensor, logvar: Tensor) -> Tensor:
    """Adds the noise into the encoder's mu tensor itself."""
    return mu.add_(_std(logvar) * torch.randn_like(mu))


def _no_grad(mu: Tensor, logvar: Tensor) -> Tensor:
    """Samples under torch.no_grad() 'because sampling is not differentiable'."""
    with torch.no_grad():
        return mu + _std(logvar) * torch.randn_like(mu)


WRONG_REPARAM: list[tuple[str, Factory]] = [
    ("logvar_as_std", lambda: lambda mu, lv: mu + lv * torch.randn_like(mu)),
    ("logvar_as_log_sigma", lambda: lambda mu, lv: mu + lv.exp() * torch.randn_like(mu)),
    ("sqrt_of_logvar", lambda: lambda mu, lv: mu + lv.sqrt() * torch.randn_like(mu)),
    ("std_sign_flipped", lambda: lambda mu, lv: mu + torch.exp(-0.5 * lv) * torch.randn_like(mu)),
    ("no_noise", lambda: lambda mu, lv: mu + 0 * lv),
    ("uniform_noise", lambda: lambda mu, lv: mu + _std(lv) * torch.rand_like(mu)),
    ("one_noise_for_the_batch",
     lambda: lambda mu, lv: mu + _std(lv) * torch.randn(mu.shape[1])),
    ("one_noise_per_row",
     lambda: lambda mu, lv: mu + _std(lv) * torch.randn(mu.shape[0], 1)),
    ("sample_not_rsample", lambda: lambda mu, lv: Normal(mu, _std(lv)).sample()),
    ("mu_detached", lambda: lambda mu, lv: mu.detach() + _std(lv) * torch.randn_like(mu)),
    ("std_detached", lambda: lambda mu, lv: mu + _std(lv).detach() * torch.randn_like(mu)),
    ("under_no_grad", lambda: _no_grad),
    ("reseeds_every_call", lambda: _reseeded),
    ("in_place_into_mu", lambda: _in_place),
    ("averaged_std", lambda: lambda mu, lv: mu + _std(lv).mean(1, keepdim=True)
     * torch.randn_like(mu)),
    ("returns_z_and_eps", lambda: lambda mu, lv: (mu + _std(lv) * torch.randn_like(mu), None)),
]
RIGHT_REPARAM: list[tuple[str, Factory]] = [
    ("normal_rsample", lambda: lambda mu, lv: Normal(mu, _std(lv)).rsample()),
    ("randn_with_device_and_dtype", lambda: lambda mu, lv: mu + torch.exp(lv / 2)
     * torch.randn(mu.shape, device=mu.device, dtype=mu.dtype)),
    ("sqrt_of_variance", lambda: lambda mu, lv: mu + lv.exp().sqrt() * torch.randn_like(mu)),
    ("torch_normal_noise", lambda: lambda mu, lv: torch.normal(torch.zeros_like(mu), 1.0)
     * _std(lv) + mu),
    ("empty_like_normal_", lambda: lambda mu, lv: mu + _std(lv) * torch.empty_like(mu).normal_()),
]


# ----------------------------------------------------------------------------- KL

def _kl_terms(mu: Tensor, lv: Tensor) -> Tensor:
    return mu.pow(2) + lv.exp() - 1 - lv                                      # (B, D)


def _kl_numpy(mu: Tensor, lv: Tensor) -> Any:
    m, v = mu.detach().numpy(), lv.detach().numpy()
    return 0.5 * np.sum(m ** 2 + np.exp(v) - 1 - v, axis=1)


WRONG_KL: list[tuple[str, Factory]] = [
    ("mean_over_latent", lambda: lambda mu, lv: 0.5 * _kl_terms(mu, lv).mean(1)),
    ("sum_over_batch_too", lambda: lambda mu, lv: 0.5 * _kl_terms(mu, lv).sum()),
    ("mean_over_batch", lambda: lambda mu, lv: 0.5 * _kl_terms(mu, lv).sum(1).mean()),
    ("wrong_sign", lambda: lambda mu, lv: -0.5 * _kl_terms(mu, lv).sum(1)),
    ("missing_half", lambda: lambda mu, lv: _kl_terms(mu, lv).sum(1)),
    ("logvar_as_log_sigma",
     lambda: lambda mu, lv: 0.5 * (mu.pow(2) + torch.exp(2 * lv) - 1 - 2 * lv).sum(1)),
    ("sigma_not_squared",
     lambda: lambda mu, lv: 0.5 * (mu.pow(2) + _std(lv) - 1 - lv).sum(1)),
    ("missing_mu_term", lambda: lambda mu, lv: 0.5 * (lv.exp() - 1 - lv).sum(1)),
    ("missing_minus_one", lambda: lambda mu, lv: 0.5 * (mu.pow(2) + lv.exp() - lv).sum(1)),
    ("log_term_sign", lambda: lambda mu, lv: 0.5 * (mu.pow(2) + lv.exp() - 1 + lv).sum(1)),
    ("reversed_kl_p_from_q",
     lambda: lambda mu, lv: 0.5 * ((1 + mu.pow(2)) / lv.exp() - 1 + lv).sum(1)),
    ("mu_detached", lambda: lambda mu, lv: 0.5 * _kl_terms(mu.detach(), lv).sum(1)),
    ("numpy_result", lambda: _kl_numpy),
    ("keepdim_column", lambda: lambda mu, lv: 0.5 * _kl_terms(mu, lv).sum(1, keepdim=True)),
    ("sum_over_wrong_axis", lambda: lambda mu, lv: 0.5 * _kl_terms(mu, lv).sum(0)),
    ("exp_in_place", lambda: lambda mu, lv: 0.5 * (mu.pow(2) + lv.exp_() - 1 - lv.log()).sum(1)),
]

RIGHT_KL: list[tuple[str, Factory]] = [
    ("distributions_kl", lambda: lambda mu, lv: kl_divergence(
        Normal(mu, _std(lv)), Normal(torch.zeros_like(mu), torch.ones_like(mu))).sum(1)),
    ("minus_half_form", lambda: lambda mu, lv: -0.5 * torch.sum(1 + lv - mu ** 2 - lv.exp(),
                                                                 dim=-1)),
    ("sigma_squared_explicit", lambda: lambda mu, lv: (0.5 * (mu * mu + _std(lv) ** 2)
                                                       - 0.5 - 0.5 * lv).sum(dim=1)),
    ("log_sigma_form", lambda: lambda mu, lv: (-(0.5 * lv) + (lv.exp() + mu ** 2) / 2 - 0.5)
     .sum(1)),
]


# ----------------------------------------------------------------------------- ELBO

def _bce_sum(logits: Tensor, x: Tensor) -> Tensor:
    """BCE with logits summed over each image's pixels: (B,)."""
    return F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)


def _elbo(recon: Tensor, kl: Tensor, beta: float) -> ELBOTerms:
    return ELBOTerms((recon + beta * kl).mean(), recon.mean(), kl.mean())


def _ok(logits: Tensor, x: Tensor, mu: Tensor, lv: Tensor, beta: float = 1.0) -> ELBOTerms:
    return _elbo(_bce_sum(logits, x), kl_standard_normal(mu, lv), beta)


def _elbo_with(recon_fn: Callable[[Tensor, Tensor], Tensor] | None = None,
                kl_fn: Callable[[Tensor, Tensor], Tensor] | None = None,
                combine: Callable[[Tensor, Tensor, float], ELBOTerms] | None = None) -> Factory:
    """A factory for an ELBO with one part replaced by a mistake."""
    recon_fn = recon_fn or _bce_sum
    kl_fn = kl_fn or kl_standard_normal
    combine = combine or _elbo

    def factory() -> Callable[..., ELBOTerms]:
        def negative_elbo(logits: Tensor, x: Tensor, mu: Tensor, lv: Tensor,
                          beta: float = 1.0) -> ELBOTerms:
            return combine(recon_fn(logits, x), kl_fn(mu, lv), beta)
        return negative_elbo
    return factory


def _per_pixel(recon_bce: Callable[[Tensor, Tensor], Tensor]) -> Callable[[Tensor, Tensor], Tensor]:
    """Broadcast a batch scalar to (B,) so that the mean over the batch keeps it."""
    return lambda logits, x: recon_bce(logits, x).expand(len(x))


WRONG_ELBO: list[tuple[str, Factory]] = [
    ("bce_on_logits", _elbo_with(recon_fn=lambda lg, x: F.binary_cross_entropy(
        lg, x, reduction="none").flatten(1).sum(1))),
    ("mean_over_pixels", _elbo_with(recon_fn=_per_pixel(
        lambda lg, x: F.binary_cross_entropy_with_logits(lg, x)))),
    ("summed_over_batch", _elbo_with(recon_fn=lambda lg, x: _bce_sum(lg, x) * len(x))),
    ("double_sigmoid", _elbo_with(recon_fn=lambda lg, x: _bce_sum(torch.sigmoid(lg), x))),
    ("kl_subtracted", _elbo_with(combine=lambda r, k, b: ELBOTerms(
        (r - b * k).mean(), r.mean(), k.mean()))),
    ("kl_left_out", _elbo_with(combine=lambda r, k, b: ELBOTerms(r.mean(), r.mean(), k.mean()))),
    ("beta_in_reported_kl", _elbo_with(combine=lambda r, k, b: ELBOTerms(
        (r + b * k).mean(), r.mean(), (b * k).mean()))),
    ("beta_ignored", _elbo_with(combine=lambda r, k, b: _elbo(r, k, 1.0))),
    ("kl_mean_over_latent", _elbo_with(
        kl_fn=lambda mu, lv: 0.5 * (mu.pow(2) + lv.exp() - 1 - lv).mean(1))),
    ("squared_error_of_probabilities", _elbo_with(
        recon_fn=lambda lg, x: (torch.sigmoid(lg) - x).pow(2).flatten(1).sum(1))),
    ("log_likelihood_sign", _elbo_with(recon_fn=lambda lg, x: -_bce_sum(lg, x))),
    ("targets_and_logits_swapped", _elbo_with(recon_fn=lambda lg, x: _bce_sum(x, lg.sigmoid()))),
    ("loss_summed_not_averaged", _elbo_with(combine=lambda r, k, b: ELBOTerms(
        (r + b * k).sum(), r.mean(), k.mean()))),
    ("logits_detached", _elbo_with(recon_fn=lambda lg, x: _bce_sum(lg.detach(), x))),
    ("terms_in_wrong_order", _elbo_with(combine=lambda r, k, b: (
        r.mean(), k.mean(), (r + b * k).mean()))),
    ("elbo_not_negated", _elbo_with(combine=lambda r, k, b: ELBOTerms(
        -(r + b * k).mean(), r.mean(), k.mean()))),
]

RIGHT_ELBO: list[tuple[str, Factory]] = [
    ("bce_on_probabilities_sum_over_b", lambda: lambda lg, x, mu, lv, beta=1.0: _elbo(
        F.binary_cross_entropy(torch.sigmoid(lg), x, reduction="none").flatten(1).sum(1),
        kl_standard_normal(mu, lv), beta)),
    ("log_sigmoid_by_hand", _elbo_with(recon_fn=lambda lg, x: -(
        x * F.logsigmoid(lg) + (1 - x) * F.logsigmoid(-lg)).sum(dim=(1, 2, 3)))),
    ("bernoulli_log_prob", _elbo_with(recon_fn=lambda lg, x: -Bernoulli(
        logits=lg, validate_args=False).log_prob(x).flatten(1).sum(1))),
    ("reduction_sum_divided", lambda: lambda lg, x, mu, lv, beta=1.0: (
        (F.binary_cross_entropy_with_logits(lg, x, reduction="sum")
         + beta * kl_standard_normal(mu, lv).sum()) / len(x),
        F.binary_cross_entropy_with_logits(lg, x, reduction="sum") / len(x),
        kl_standard_normal(mu, lv).mean())),
    ("plain_tuple", lambda: lambda lg, x, mu, lv, beta=1.0: tuple(_ok(lg, x, mu, lv, beta))),
]

WRONG: dict[str, list[tuple[str, Factory]]] = {
    "vae_reparameterize": WRONG_REPARAM,
    "vae_kl": WRONG_KL,
    "vae_elbo": WRONG_ELBO,
}

RIGHT: dict[str, list[tuple[str, Factory]]] = {
    "vae_reparameterize": RIGHT_REPARAM,
    "vae_kl": RIGHT_KL,
    "vae_elbo": RIGHT_ELBO,
}
