"""Training loops: one generic loop (autoencoder, VAE, classifier) and the GAN loop.

Both slice batches from in-memory tensors (``course_utils.data.iterate_batches``), show a
``tqdm.auto`` progress bar, stop after a number of epochs, a number of steps (``max_steps``)
or a time budget (``time_budget`` seconds on a ``clock``), save a checkpoint every
``checkpoint_every`` steps and can resume from it exactly, and return a :class:`TrainResult`.

* :mod:`.progress`: :class:`History`, :class:`TrainResult`, the progress bar, lr schedules;
* :mod:`.state`: random state, device, checkpoints and the one resume path of both loops;
* :mod:`.loop`: :func:`fit` and :func:`evaluate`;
* :mod:`.gan` and :mod:`.gan_loop`: :func:`gan_train_step`, :func:`fit_gan` and its settings;
* :mod:`.ema`: :func:`model_ema`, the moving average of G's weights behind ``fit_gan(g_ema=...)``.
"""

from __future__ import annotations

from .ema import EMA_WARMUP, ema_decay, model_ema
from .gan import (
                  GAN_CHECKPOINT_FORMAT,
                  AdamConfig,
                  GANResult,
                  GANStepFn,
                  SnapshotConfig,
                  gan_train_step,
                  save_grid_png,
)
from .gan_loop import fit_gan
from .loop import CHECKPOINT_FORMAT, LossFn, evaluate, fit
from .progress import (
                  CLOCKS,
                  LR_SCHEDULES,
                  History,
                  MetricAccumulator,
                  TrainingProgress,
                  TrainResult,
                  budget_clock,
                  lr_factor,
)
from .state import load_checkpoint, preserve_rng, rng_state, save_checkpoint, set_rng_state

__all__ = ["History", "MetricAccumulator", "TrainingProgress", "TrainResult", "LR_SCHEDULES",
           "lr_factor", "CLOCKS", "budget_clock", "rng_state", "set_rng_state", "preserve_rng",
           "save_checkpoint", "load_checkpoint", "evaluate", "fit", "LossFn",
           "CHECKPOINT_FORMAT", "fit_gan", "gan_train_step", "GANResult", "GANStepFn",
           "AdamConfig", "SnapshotConfig", "save_grid_png", "GAN_CHECKPOINT_FORMAT",
           "model_ema", "ema_decay", "EMA_WARMUP"]
