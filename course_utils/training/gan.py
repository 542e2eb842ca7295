"""The GAN pieces of the DCGAN chapter (03): the alternating step :func:`gan_train_step`,
the settings :func:`~course_utils.training.fit_gan` takes (:class:`AdamConfig`,
:class:`SnapshotConfig`), the result it returns (:class:`GANResult`), and PNG grids.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..utils import tile_images
from .progress import TrainResult

__all__ = ["gan_train_step", "GANResult", "AdamConfig", "SnapshotConfig",
           "save_grid_png", "GANStepFn", "GAN_CHECKPOINT_FORMAT"]

GAN_CHECKPOINT_FORMAT = "course_utils.fit_gan/1"

GANStepFn = Callable[..., Mapping[str, Tensor]]
"""``step_fn(G, D, opt_g, opt_d, real, z, real_label=..., g_loss_kind=...) -> {"d_loss",
"g_loss", "d_real", "d_fake"}``: one alternating update, e.g. :func:`gan_train_step`."""


def gan_train_step(G: nn.Module, D: nn.Module, opt_g: torch.optim.Optimizer,
                   opt_d: torch.optim.Optimizer, real: Tensor, z: Tensor, *,
                   real_label: float = 1.0,
                   g_loss_kind: str = "non_saturating") -> dict[str, Tensor]:
    """One alternating GAN update: a discriminator step, then a generator step.

    1. D step: D sees real images (target ``real_label``) and G(z) *detached* (target 0).
       ``detach`` cuts the graph, so this step's backward pass computes no gradients for G.
    2. G step: D's logits on the same G(z), this time not detached; the generator loss pulls
       D(G(z)) towards "real". Only ``opt_g`` steps, so D's weights stay as they are (D's
       ``.grad`` fields get filled and are cleared by the next ``opt_d.zero_grad``).

    Args:
        real: real images (B, 1, 28, 28) in [-1, 1].
        z: noise (B', latent_dim).
        real_label: 1.0, or e.g. 0.9 for one-sided label smoothing.
        g_loss_kind: ``"non_saturating"`` or ``"minimax"`` (see
            :func:`losses.generator_loss`).

    Returns:
        Detached scalars: ``d_loss``, ``g_loss``, ``d_real`` (mean D(x)) and ``d_fake``
        (mean D(G(z)) before the D update), both as probabilities of "real".
    """
    from ..losses import discriminator_loss, generator_loss

    fake = G(z)                                                    # (B', 1, 28, 28)
    # --- discriminator step: real -> real_label, fake -> 0; no gradient into G
    real_logits = D(real)                                          # (B,)
    fake_logits = D(fake.detach())                                 # (B',)
    d_loss = discriminator_loss(real_logits, fake_logits, real_label=real_label)
    opt_d.zero_grad(set_to_none=True)
    d_loss.backward()
    opt_d.step()
    # --- generator step: make D call the fakes real
    g_loss = generator_loss(D(fake), kind=g_loss_kind)
    opt_g.zero_grad(set_to_none=True)
    g_loss.backward()
    opt_g.step()
    return {"d_loss": d_loss.detach(), "g_loss": g_loss.detach(),
            "d_real": torch.sigmoid(real_logits.detach()).mean(),
            "d_fake": torch.sigmoid(fake_logits.detach()).mean()}


@dataclass(frozen=True)
class AdamConfig:
    """One player's optimiser: Adam with learning rate ``lr`` and ``betas``.

    Different learning rates for D and G are one of the chapter's mitigations: Heusel et al.
    2017 (TTUR) argued for separate time scales, and the 4:1 ratio (D 4e-4, G 1e-4) is the one
    SAGAN used (Zhang et al. 2019). beta1 = 0.5 is the DCGAN paper's choice (Radford et al.
    2016).
    """

    lr: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.999)

    def build(self, params: Any) -> torch.optim.Adam:
        return torch.optim.Adam(params, lr=self.lr, betas=self.betas)


@dataclass(frozen=True)
class SnapshotConfig:
    """When :func:`fit_gan` records G(fixed noise).

    Attributes:
        n_fixed: number of fixed noise vectors (images per snapshot).
        every: steps between snapshots. None: 8 evenly spaced snapshots per run (by steps
            when ``epochs`` or ``max_steps`` fix the length, else by the clock over
            ``time_budget``). Snapshots are also taken before the first step and after the last.
        dir: if given, each snapshot is also saved there as ``step_000123.png``.
    """

    n_fixed: int = 64
    every: int | None = None
    dir: str | os.PathLike[str] | None = None


@dataclass(repr=False)
class GANResult(TrainResult):
    """What :func:`fit_gan` returns: a :class:`TrainResult` plus the snapshots.

    Attributes:
        history: one record every ``log_every`` steps: ``step``, ``epoch`` (fractional),
            ``d_loss``, ``g_loss``, ``d_real`` (mean D(x)), ``d_fake`` (mean D(G(z))), all
            averaged over the interval, plus ``elapsed`` seconds and ``images_per_sec``.
        snapshots: ``[(step, images)]``: G(fixed_noise) at intervals, on the CPU, in [-1, 1].
        fixed_noise: the noise vectors behind every snapshot (n_fixed, latent_dim).
        g_ema: with ``fit_gan(..., g_ema=decay)``, the exponential moving average of G's
            weights (a copy of G's class, in eval mode); None without it.
    """

    snapshots: list[tuple[int, Tensor]] = field(default_factory=list)
    fixed_noise: Tensor = field(default_factory=lambda: torch.empty(0))
    g_ema: nn.Module | None = None

    def __repr__(self) -> str:
        last = self.history.last if len(self.history) else {}
        shown = {k: round(v, 3) for k, v in last.items() if k in
                 ("d_loss", "g_loss", "d_real", "d_fake")}
        return (f"GANResult(steps={self.steps}, seconds={self.seconds:.1f}, "
                f"stopped_by={self.stopped_by!r}, last={shown}, snapshots={len(self.snapshots)})")


def save_grid_png(images: Tensor, path: Path, nrow: int = 8) -> None:
    """Tile (B, 1, H, W) images in [-1, 1] into one PNG, without a matplotlib figure."""
    import matplotlib.pyplot as plt

    canvas = tile_images((images.clamp(-1, 1) + 1) / 2, nrow, padding=2)  # in [0, 1]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    plt.imsave(path, canvas, cmap="gray", vmin=0.0, vmax=1.0)

