"""Loss functions: reconstruction losses, the KL divergence and ELBO (VAE), and GAN losses.

All losses follow one convention: they take raw model outputs (logits where a probability is
involved, for numerical stability) and return scalar tensors averaged over the batch unless
the docstring says otherwise.
"""

from __future__ import annotations

from collections.abc import Callable

# ============================================================================ VAE (chapter 02)
# The VAE maximises the evidence lower bound (ELBO) of each image x:
#     ELBO(x) = E_{q(z|x)}[log p(x|z)] - KL(q(z|x) || p(z)),   p(z) = N(0, I).
# With a Bernoulli decoder, -log p(x|z) is the binary cross-entropy SUMMED over the 784 pixels;
# with a diagonal-Gaussian encoder the KL has a closed form. We minimise -ELBO, averaged over
# the batch; beta != 1 gives the beta-VAE objective (Higgins et al. 2017).
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor


class ELBOTerms(NamedTuple):
    """The negative ELBO and its two parts, each a scalar averaged over the batch (nats/image).

    ``loss = recon + beta * kl``; ``recon`` is -E_q[log p(x|z)] (one-sample estimate) and ``kl``
    is KL(q(z|x) || N(0, I)).
    """

    loss: Tensor
    recon: Tensor
    kl: Tensor


def _check_gaussian_params(mu: Tensor, logvar: Tensor, where: str) -> None:
    if not isinstance(mu, Tensor) or not isinstance(logvar, Tensor):
        raise TypeError(f"{where}: mu and logvar must be tensors")
    if mu.shape != logvar.shape:
        raise ValueError(f"{where}: mu {tuple(mu.shape)} and logvar {tuple(logvar.shape)} must "
                         "have the same shape (B, D)")
    if mu.dim() != 2:
        raise ValueError(f"{where}: expected mu and logvar of shape (B, D), got {tuple(mu.shape)}")


def reparameterize(mu: Tensor, logvar: Tensor,
                   generator: torch.Generator | None = None) -> Tensor:
    """Draw z ~ N(mu, diag(exp(logvar))) as z = mu + exp(logvar / 2) * eps, eps ~ N(0, I).

    The randomness sits in ``eps``, which does not depend on the parameters, so gradients flow
    to both ``mu`` and ``logvar`` (Kingma and Welling 2013, section 2.4).

    Args:
        mu, logvar: (B, D) mean and log-variance from the encoder.
        generator: optional ``torch.Generator`` for reproducible draws (its device is used to
            draw ``eps``, which is then moved to ``mu``'s device).

    Returns:
        z of shape (B, D).
    """
    _check_gaussian_params(mu, logvar, "reparameterize")
    if generator is None:
        eps = torch.randn_like(mu)                                            # (B, D)
    else:
        eps = torch.randn(mu.shape, generator=generator, dtype=mu.dtype,
                          device=generator.device).to(mu.device)              # (B, D)
    return mu + torch.exp(0.5 * logvar) * eps                                 # (B, D)


def kl_standard_normal(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mu, diag(exp(logvar))) || N(0, I)) per example, summed over latent dimensions.

    Closed form: 0.5 * sum_j (mu_j^2 + sigma_j^2 - 1 - log sigma_j^2).

    Args:
        mu, logvar: (B, D).

    Returns:
        (B,) KL in nats, >= 0, zero exactly when mu = 0 and logvar = 0.
    """
    _check_gaussian_params(mu, logvar, "kl_standard_normal")
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(dim=1)        # (B,)


def elbo_loss(logits: Tensor, x: Tensor, mu: Tensor, logvar: Tensor,
              beta: float = 1.0) -> ELBOTerms:
    """Negative ELBO per image for a Bernoulli-logit decoder, averaged over the batch.

    ``recon`` is the binary cross-entropy with logits SUMMED over all pixels of an image (a
    mean over pixels would shrink it 784-fold against the KL and is not the ELBO), then
    averaged over the batch; ``kl`` is :func:`kl_standard_normal` averaged over the batch.

    Args:
        logits: decoder output (B, 1, 28, 28) (any (B, ...) shape matching ``x``).
        x: target images in [0, 1], same shape as ``logits``.
        mu, logvar: (B, D) encoder outputs.
        beta: weight of the KL term (1 = the ELBO; others give the beta-VAE objective).

    Returns:
        :class:`ELBOTerms` ``(loss, recon, kl)`` of scalars in nats per image.
    """
    if logits.shape != x.shape:
        raise ValueError(f"elbo_loss: logits {tuple(logits.shape)} and images {tuple(x.shape)} "
                         "must have the same shape; the decoder should return (B, 1, 28, 28)")
    _check_gaussian_params(mu, logvar, "elbo_loss")
    if mu.shape[0] != x.shape[0]:
        raise ValueError(f"elbo_loss: {x.shape[0]} images but {mu.shape[0]} codes")
    bce = F.binary_cross_entropy_with_logits(logits, x, reduction="none")     # (B, 1, 28, 28)
    recon = bce.flatten(1).sum(dim=1)                                         # (B,) summed
    kl = kl_standard_normal(mu, logvar)                                       # (B,)
    recon, kl = recon.mean(), kl.mean()                                       # scalars
    return ELBOTerms(recon + beta * kl, recon, kl)


def vae_loss_fn(beta: float = 1.0, elbo: Callable[..., tuple[Tensor, Tensor, Tensor]] | None = None
                ) -> Callable[[torch.nn.Module, object], dict[str, Tensor]]:
    """Adapter for ``course_utils.training.fit``: ``loss_fn(model, batch) -> dict``.

    Args:
        beta: weight of the KL term (1 = the ELBO).
        elbo: the function computing ``(loss, recon, kl)`` from ``(logits, x, mu, logvar,
            beta)``; default :func:`elbo_loss`. A notebook passes the learner's version here.

    ``batch`` is a tensor of images or a tuple ``(images, labels, ...)``; the labels are passed
    to the model only when it is conditional (``model.num_classes > 0``). The dict holds
    ``loss`` (to minimise) and the logged parts ``recon`` and ``kl`` (detached).
    """
    if beta < 0:
        raise ValueError(f"beta must be >= 0, got {beta}")
    elbo = elbo_loss if elbo is None else elbo

    def loss_fn(model: torch.nn.Module, batch: object) -> dict[str, Tensor]:
        parts = tuple(batch) if isinstance(batch, (tuple, list)) else (batch,)
        x = parts[0]
        if getattr(model, "num_classes", 0):
            if len(parts) < 2:
                raise ValueError("a conditional VAE needs (images, labels) batches: pass "
                                 "(ds.train_x, ds.train_y) to fit")
            logits, mu, logvar = model(x, parts[1])
        else:
            logits, mu, logvar = model(x)
        loss, recon, kl = elbo(logits, x, mu, logvar, beta=beta)
        return {"loss": loss, "recon": recon.detach(), "kl": kl.detach()}

    return loss_fn


# ============================================================================ GAN losses
# The discriminator D outputs a logit l per image; sigmoid(l) is its probability that the
# image is REAL, for real and generated images alike. Every GAN loss below is a binary
# cross-entropy written on logits: log sigmoid(l) = -softplus(-l) and
# log(1 - sigmoid(l)) = -softplus(l), which never takes the log of 0.

GENERATOR_LOSS_KINDS = ("non_saturating", "minimax")


def _check_logits(name: str, logits: Tensor) -> None:
    if not isinstance(logits, Tensor):
        raise TypeError(f"{name} must be a tensor of discriminator logits, got "
                        f"{type(logits).__name__}")
    if logits.ndim != 1:
        raise ValueError(f"{name} must have shape (B,) (one logit per image), got "
                         f"{tuple(logits.shape)}; flatten the discriminator's output")


def discriminator_loss(real_logits: Tensor, fake_logits: Tensor,
                       real_label: float = 1.0) -> Tensor:
    """The discriminator's loss, -[log D(x) + log(1 - D(G(z)))], averaged over each batch.

    Args:
        real_logits: D's logits on real images, shape (B,).
        fake_logits: D's logits on generated images G(z), shape (B',). Compute them from
            ``G(z).detach()`` so that this loss does not send gradients into the generator.
        real_label: target for real images. 1.0 is the standard loss; 0.9 is *one-sided label
            smoothing* (Salimans et al. 2016): only the real side is smoothed, because
            smoothing the fake side would reward the generator for staying where it is.

    Returns:
        A scalar: BCE(real, real_label) + BCE(fake, 0), each averaged over its batch.
    """
    _check_logits("real_logits", real_logits)
    _check_logits("fake_logits", fake_logits)
    if not 0.0 < real_label <= 1.0:
        raise ValueError(f"real_label must be in (0, 1] (1.0, or e.g. 0.9 for one-sided "
                         f"smoothing), got {real_label}")
    real_target = torch.full_like(real_logits, real_label)
    loss_real = F.binary_cross_entropy_with_logits(real_logits, real_target)     # -log D(x)
    loss_fake = F.binary_cross_entropy_with_logits(fake_logits,
                                                   torch.zeros_like(fake_logits))  # -log(1-D(G(z)))
    return loss_real + loss_fake


def generator_loss(fake_logits: Tensor, kind: str = "non_saturating") -> Tensor:
    """The generator's loss from D's logits on G(z), averaged over the batch.

    * ``"non_saturating"`` (what practitioners use): minimise -log D(G(z)) = softplus(-l).
      Its gradient is largest when D confidently rejects the fakes, early in training.
    * ``"minimax"`` (the game's value function, Goodfellow et al. 2014): minimise
      log(1 - D(G(z))) = -softplus(l). Its gradient vanishes exactly when D wins easily, so
      the generator learns slowly or not at all at the start.

    Both have the same fixed point; only the strength of the learning signal differs.
    """
    _check_logits("fake_logits", fake_logits)
    if kind == "non_saturating":
        return F.softplus(-fake_logits).mean()          # -log sigmoid(l) = -log D(G(z))
    if kind == "minimax":
        return -F.softplus(fake_logits).mean()          # log(1 - sigmoid(l)) = log(1 - D(G(z)))
    raise ValueError(f"unknown generator loss kind {kind!r}; use one of {GENERATOR_LOSS_KINDS}")
