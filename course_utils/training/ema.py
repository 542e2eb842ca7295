"""An exponential moving average (EMA) of a model's weights: :func:`fit_gan`'s ``g_ema``.

A GAN's generator keeps moving as the two players chase each other, so its last weights are
one point of an oscillation. Averaging the weights over the recent steps (Yazici et al. 2019,
"The unusual effectiveness of averaging in GAN training"; Karras et al. 2018 sample from such
an average) smooths that out, and the averaged generator often draws better images than the
last one. The average is only read, never trained: G's own training is unchanged.

The average is PyTorch's :class:`torch.optim.swa_utils.AveragedModel` with
:func:`~torch.optim.swa_utils.get_ema_multi_avg_fn` and ``use_buffers=True`` (batch-norm running
statistics are averaged too), plus a short warm-up, :func:`ema_decay`: the first update copies
the model, and update ``n`` (counting from 0) uses the decay ``min(decay, (1 + n) / (10 + n))``,
so that the first, random weights do not dominate the average for thousands of steps.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

__all__ = ["EMA_WARMUP", "ema_decay", "model_ema", "check_ema_decay"]

#: The warm-up constant of :func:`ema_decay`: update ``n`` uses at most
#: ``(1 + n) / (EMA_WARMUP + n)``.
EMA_WARMUP = 10


def check_ema_decay(decay: float | None) -> None:
    """Reject an EMA decay outside [0, 1] (None means no EMA and passes)."""
    if decay is not None and not 0.0 <= decay <= 1.0:
        raise ValueError(f"an EMA decay must lie in [0, 1] (e.g. 0.999), got {decay}")


def ema_decay(decay: float, n_averaged: int) -> float:
    """The decay of the EMA's update after ``n_averaged`` earlier ones, with the warm-up.

    ``min(decay, (1 + n) / (EMA_WARMUP + n))``: 0.18 at the second update, 0.9 after 80
    updates, and ``decay`` itself once ``n`` is large (0.999 from n = 8,990 on).
    """
    return min(decay, (1 + n_averaged) / (EMA_WARMUP + n_averaged))


def _warm_ema_fn(decay: float) -> Callable[[Sequence[Tensor], Sequence[Tensor], Tensor], None]:
    """``AveragedModel``'s ``multi_avg_fn``: torch's EMA update with the warmed-up decay."""

    def update(ema_params: Sequence[Tensor], params: Sequence[Tensor],
               n_averaged: Tensor) -> None:
        get_ema_multi_avg_fn(ema_decay(decay, int(n_averaged)))(ema_params, params, n_averaged)

    return update


def model_ema(model: nn.Module, decay: float) -> AveragedModel:
    """An EMA of ``model``'s parameters and buffers, starting as a copy of ``model``.

    Call ``ema.update_parameters(model)`` after every optimiser step; ``ema.module`` is the
    averaged model (same class as ``model``, in eval mode, without gradients). Its
    ``state_dict`` (``module.*`` and the update count ``n_averaged``) saves and restores it.

    Args:
        model: the model to average (e.g. a generator), on its device.
        decay: weight of the old average per update, in [0, 1]: 0 copies the model at every
            update, 0.999 averages over roughly the last 1,000 updates (after the warm-up).
    """
    check_ema_decay(decay)
    ema = AveragedModel(model, multi_avg_fn=_warm_ema_fn(decay), use_buffers=True)
    ema.requires_grad_(False)
    ema.module.eval()
    return ema
