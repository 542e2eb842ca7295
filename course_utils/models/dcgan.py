"""A DCGAN for 28x28 single-channel images (Radford, Metz and Chintala 2015, arXiv:1511.06434).

The paper's architecture rules, as applied here:

* no pooling and no fully connected hidden layers: the generator upsamples with strided
  *transposed* convolutions, the discriminator downsamples with strided convolutions;
* BatchNorm in both networks, except on the generator's output layer and the
  discriminator's input layer;
* ReLU in the generator, with ``tanh`` on the output (images live in [-1, 1]);
* LeakyReLU(0.2) in the discriminator;
* weights drawn from N(0, 0.02); BatchNorm scales from N(1, 0.02) and shifts at 0.

Two differences from a textbook classifier are deliberate:

* The generator maps *noise to images*. It has no encoder: nothing ever goes from an image to
  a code in a GAN's generator (the source article of this course claims otherwise).
* The discriminator returns a *logit* per image, shape (B,). ``sigmoid(logit)`` is its
  estimate of the probability that the input is **real**, for every input, real or generated.
  The losses in :mod:`course_utils.losses` take logits because that is numerically stable.

``width`` (the paper's feature-map count, ``ngf``/``ndf`` in the PyTorch tutorial) scales every
layer. Spectral normalisation (Miyato et al. 2018, arXiv:1802.05957) can replace BatchNorm in
the discriminator: it bounds each layer's Lipschitz constant instead of normalising activations.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm as _spectral_norm

from ..data import to_zero_one
from ..utils import batched, evaluating

__all__ = ["Generator", "Discriminator", "dcgan_init", "sample_noise", "sample_images",
           "count_parameters"]

IMAGE_SHAPE = (1, 28, 28)


def dcgan_init(module: nn.Module) -> None:
    """The DCGAN paper's initialisation; use as ``model.apply(dcgan_init)``.

    Convolution weights ~ N(0, 0.02), biases 0; BatchNorm scale ~ N(1, 0.02), shift 0. Layers
    under a spectral-norm parametrisation are initialised through their ``original`` weight.
    """
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
        weight = (module.parametrizations.weight.original
                  if hasattr(module, "parametrizations") else module.weight)
        with torch.no_grad():
            weight.normal_(0.0, 0.02)
            if module.bias is not None:
                module.bias.zero_()
    elif isinstance(module, nn.BatchNorm2d):
        with torch.no_grad():
            module.weight.normal_(1.0, 0.02)
            module.bias.zero_()


def _check_positive(name: str, value: int) -> None:
    if not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


class Generator(nn.Module):
    """Noise (B, latent_dim) -> images (B, 1, 28, 28) in [-1, 1].

    Args:
        latent_dim: size of the noise vector z ~ N(0, I).
        width: base number of feature maps; the layers have 4w, 2w and 1 channels.
    """

    def __init__(self, latent_dim: int = 64, width: int = 32) -> None:
        super().__init__()
        _check_positive("latent_dim", latent_dim)
        _check_positive("width", width)
        self.latent_dim, self.width = latent_dim, width
        w = width
        self.net = nn.Sequential(
            # (B, latent_dim, 1, 1) -> project and reshape with one transposed convolution
            nn.ConvTranspose2d(latent_dim, 4 * w, kernel_size=7, stride=1, padding=0, bias=False),
            nn.BatchNorm2d(4 * w), nn.ReLU(inplace=True),                  # (B, 4w, 7, 7)
            nn.ConvTranspose2d(4 * w, 2 * w, kernel_size=4, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(2 * w), nn.ReLU(inplace=True),                  # (B, 2w, 14, 14)
            nn.ConvTranspose2d(2 * w, w, kernel_size=4, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(w), nn.ReLU(inplace=True),                      # (B, w, 28, 28)
            nn.Conv2d(w, 1, kernel_size=3, stride=1, padding=1),           # (B, 1, 28, 28)
            nn.Tanh(),                                                     # pixels in [-1, 1]
        )
        self.apply(dcgan_init)

    def forward(self, z: Tensor) -> Tensor:
        if z.ndim != 2 or z.shape[1] != self.latent_dim:
            raise ValueError(f"Generator expects noise of shape (B, {self.latent_dim}), got "
                             f"{tuple(z.shape)}; draw it with sample_noise(B, {self.latent_dim})")
        return self.net(z[:, :, None, None])                               # (B, 1, 28, 28)


class Discriminator(nn.Module):
    """Images (B, 1, 28, 28) in [-1, 1] -> one logit per image, shape (B,).

    ``sigmoid(D(x))`` is the discriminator's probability that ``x`` is *real*.

    Args:
        width: base number of feature maps; the layers have w, 2w and 4w channels.
        spectral_norm: wrap every convolution in spectral normalisation and drop BatchNorm
            (the two are not combined: BN would undo the Lipschitz bound SN sets).
    """

    def __init__(self, width: int = 32, spectral_norm: bool = False) -> None:
        super().__init__()
        _check_positive("width", width)
        self.width, self.spectral_norm = width, spectral_norm
        w = width

        def conv(c_in: int, c_out: int, k: int, s: int, p: int, followed_by_bn: bool) -> nn.Module:
            # a bias right before BatchNorm is wasted (BN subtracts the mean), so drop it there
            layer = nn.Conv2d(c_in, c_out, k, s, p, bias=not (followed_by_bn and not spectral_norm))
            return _spectral_norm(layer) if spectral_norm else layer

        def norm(c: int) -> nn.Module:
            return nn.Identity() if spectral_norm else nn.BatchNorm2d(c)

        self.net = nn.Sequential(
            # no BatchNorm on the input layer (paper rule)
            conv(1, w, 4, 2, 1, False), nn.LeakyReLU(0.2, inplace=True),         # (B, w, 14, 14)
            conv(w, 2 * w, 4, 2, 1, True), norm(2 * w),
            nn.LeakyReLU(0.2, inplace=True),                                   # (B, 2w, 7, 7)
            conv(2 * w, 4 * w, 3, 2, 1, True), norm(4 * w),
            nn.LeakyReLU(0.2, inplace=True),                                   # (B, 4w, 4, 4)
            conv(4 * w, 1, 4, 1, 0, False),                                    # (B, 1, 1, 1) logits
        )
        self.apply(dcgan_init)

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 4 or tuple(x.shape[1:]) != IMAGE_SHAPE:
            raise ValueError(f"Discriminator expects images of shape (B, 1, 28, 28), got "
                             f"{tuple(x.shape)}; a generator for 1-channel data must output "
                             "1 channel")
        return self.net(x).flatten()                                        # (B,) logits


def sample_noise(n: int, latent_dim: int, generator: torch.Generator | None = None,
                 device: torch.device | str | None = None) -> Tensor:
    """Draw ``n`` noise vectors z ~ N(0, I), shape (n, latent_dim)."""
    z = torch.randn(n, latent_dim, generator=generator)
    return z if device is None else z.to(device)


def sample_images(G: nn.Module, n: int, seed: int = 123, batch_size: int = 1000) -> Tensor:
    """``n`` images G(z) in [0, 1], shape (n, 1, 28, 28), on the CPU: eval mode (batch norm's
    running statistics), seeded noise, ``batch_size`` images per forward pass."""
    gen = torch.Generator().manual_seed(seed)
    z = torch.cat([torch.randn(min(batch_size, n - i), G.latent_dim, generator=gen)
                   for i in range(0, n, batch_size)])                           # (n, latent_dim)
    with evaluating(G):
        return batched(lambda zb: to_zero_one(G(zb)), z, batch_size,
                       device=next(G.parameters()).device)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
