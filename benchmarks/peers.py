"""The peers the benchmarks compare the course's recipes with (anchor settings, used nowhere
else)."""

from __future__ import annotations

from course_utils.recipes import DCGANRecipe
from course_utils.training import AdamConfig

#: The PyTorch DCGAN tutorial's settings (same architecture family as the course's DCGAN):
#: width 64, latent 100, Adam 2e-4 with beta1 0.5, batch 128, no label smoothing.
DCGAN_PEER = DCGANRecipe(latent_dim=100, width=64, batch_size=128,
                         g_optim=AdamConfig(lr=2e-4, betas=(0.5, 0.999)),
                         d_optim=AdamConfig(lr=2e-4, betas=(0.5, 0.999)),
                         real_label=1.0, g_loss="non_saturating", spectral_norm=False)
