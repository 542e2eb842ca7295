"""Named settings that the notebooks, the training scripts and the benchmarks share.

The training scripts in :mod:`course_utils.pretrained` import these (never the other way
round), so a notebook that trains "the course's VAE" or "the course's DCGAN" from scratch
uses exactly the settings the shipped checkpoints were trained with.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from . import config
from .models.dcgan import Discriminator, Generator
from .training import AdamConfig

__all__ = ["VAE_MODEL_KWARGS", "VAE_OPTIM", "DCGANRecipe", "DCGAN_RECIPE"]

# ----------------------------------------------------------------------------- VAE (chapter 02)

#: ``ConvVAE(**VAE_MODEL_KWARGS)``: the shipped VAE's architecture (16-D latent), chosen by
#: measurement (see ``course_utils/pretrained/vae_fashion.json``).
VAE_MODEL_KWARGS: dict[str, Any] = {"latent_dim": 16, "width": 16, "hidden": 128,
                                    "batchnorm": True}

#: How the shipped VAE was trained with :func:`course_utils.training.fit`.
VAE_OPTIM: dict[str, Any] = {"lr": 3e-3, "lr_schedule": "cosine", "batch_size": 128}


# ----------------------------------------------------------------------------- DCGAN (chapter 03)

@dataclass(frozen=True)
class DCGANRecipe:
    """A DCGAN's architecture and training settings.

    Attributes:
        latent_dim: size of the noise z.
        width: feature maps of the first (G: last) layer; scales every layer.
        batch_size: real images per step.
        g_optim, d_optim: the generator's and the discriminator's Adam settings.
        real_label: D's target on real images (0.9: one-sided label smoothing).
        g_loss: ``"non_saturating"`` or ``"minimax"``.
        spectral_norm: spectral normalisation in D instead of batch norm.
        g_ema: decay of an exponential moving average of G's weights (``fit_gan``'s
            ``g_ema``, e.g. 0.999); None: no average.
    """

    latent_dim: int = 64
    width: int = 32
    batch_size: int = 64
    g_optim: AdamConfig = field(default_factory=AdamConfig)
    d_optim: AdamConfig = field(default_factory=AdamConfig)
    real_label: float = 1.0
    g_loss: str = "non_saturating"
    spectral_norm: bool = False
    g_ema: float | None = None

    def build(self, seed: int = 0) -> tuple[Generator, Discriminator]:
        """A seeded generator and discriminator of this architecture."""
        config.seed_everything(seed)
        G = Generator(latent_dim=self.latent_dim, width=self.width)
        D = Discriminator(width=self.width, spectral_norm=self.spectral_norm)
        return G, D

    def fit_kwargs(self) -> dict[str, Any]:
        """The arguments of :func:`course_utils.training.fit_gan` that the recipe sets."""
        return {"batch_size": self.batch_size, "g_optim": self.g_optim,
                "d_optim": self.d_optim, "real_label": self.real_label, "g_loss": self.g_loss,
                "g_ema": self.g_ema}

    def to_json(self) -> dict[str, Any]:
        """The recipe as plain data, in the layout of the shipped ``dcgan_generator.json``
        (``g_ema`` only when set, so recipes without it keep that layout)."""
        data = {"latent_dim": self.latent_dim, "width": self.width,
                "batch_size": self.batch_size, "lr_g": self.g_optim.lr,
                "lr_d": self.d_optim.lr, "betas_g": self.g_optim.betas,
                "betas_d": self.d_optim.betas, "real_label": self.real_label,
                "g_loss": self.g_loss, "spectral_norm": self.spectral_norm}
        if self.g_ema is not None:
            data["g_ema"] = self.g_ema
        return data


#: The course's DCGAN recipe. Width 32 is two to three times as fast per image as the PyTorch
#: tutorial's width 64 on a CPU, so it sees more images in the same time, and a batch of 64
#: gives it more updates per image; one-sided label smoothing (Salimans et al. 2016) keeps the
#: discriminator from growing over-confident on real images.
DCGAN_RECIPE = DCGANRecipe(latent_dim=64, width=32, batch_size=64,
                           g_optim=AdamConfig(lr=2e-4, betas=(0.5, 0.999)),
                           d_optim=AdamConfig(lr=2e-4, betas=(0.5, 0.999)),
                           real_label=0.9, g_loss="non_saturating", spectral_norm=False)
