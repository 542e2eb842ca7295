"""The GAN training loop :func:`fit_gan`, with its bookkeeping in small helpers below it."""

from __future__ import annotations

import itertools
import math
import os
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel

from ..data import iterate_batches
from ..utils import evaluating
from .ema import check_ema_decay, model_ema
from .gan import (
    GAN_CHECKPOINT_FORMAT,
    AdamConfig,
    GANResult,
    GANStepFn,
    SnapshotConfig,
    gan_train_step,
    save_grid_png,
)
from .progress import History, MetricAccumulator, TrainingProgress, check_finite
from .state import check_resume, checkpoint_payload, get_device, resume_from, save_checkpoint, sync

__all__ = ["fit_gan"]


def fit_gan(G: nn.Module, D: nn.Module, train_images: Tensor, *,
            epochs: int | None = None, time_budget: float | None = None,
            max_steps: int | None = None, batch_size: int = 128,
            g_optim: AdamConfig | torch.optim.Optimizer | None = None,
            d_optim: AdamConfig | torch.optim.Optimizer | None = None,
            real_label: float = 1.0, g_loss: str = "non_saturating",
            step_fn: GANStepFn | None = None, log_every: int = 20,
            snapshot: SnapshotConfig | None = None,
            checkpoint_path: str | os.PathLike[str] | None = None, resume: bool = False,
            checkpoint_every: int | None = 500, device: str | torch.device | None = None,
            seed: int = 0, progress: bool = True, desc: str = "GAN",
            clock: Callable[[], float] = time.perf_counter, g_ema: float | None = None
            ) -> GANResult:
    """Train a GAN with alternating discriminator and generator steps.

    Args:
        G, D: generator ``G(z)`` -> (B, 1, 28, 28) in [-1, 1], with a ``latent_dim`` attribute
            (the size of z); discriminator ``D(x)`` -> logits (B,).
        train_images: (N, 1, 28, 28) real images in [0, 1] (``ds.train_x``); mapped to [-1, 1].
        epochs, max_steps, time_budget: as in :func:`~course_utils.training.fit` (give one).
        batch_size: real images per step; an epoch's last incomplete batch is dropped.
        g_optim, d_optim: each player's :class:`AdamConfig` (default lr 2e-4, betas
            (0.5, 0.999)), or a ready optimiser (e.g. to continue over several calls).
        real_label: target of real images in D's loss; 0.9 is one-sided label smoothing.
        g_loss: ``"non_saturating"`` (default) or ``"minimax"``, passed to ``step_fn`` as
            ``g_loss_kind``.
        step_fn: the update of each step (default :func:`gan_train_step`), e.g. a learner's.
        log_every: steps per history record.
        snapshot: when to record G(fixed noise); see :class:`SnapshotConfig`.
        checkpoint_path, checkpoint_every, resume: save G, D, both optimisers, the noise and
            batch order, history and snapshots every ``checkpoint_every`` steps (None: every
            epoch) and at the end; resume there on the same batches and noise.
        device, seed, progress, desc, clock: as in :func:`~course_utils.training.fit`; the
            seed fixes the batch order, the noise stream and the fixed noise.
        g_ema: decay per step of a moving average of G's weights and buffers (e.g. 0.999; see
            :func:`~course_utils.training.model_ema`), updated after every step and kept in
            the checkpoint; it starts from G, also on resuming a checkpoint without it.

    Returns:
        A :class:`GANResult`: history, snapshots (of G itself), steps, time, and ``g_ema``.

    Raises:
        ValueError: for images of the wrong shape or range, bad arguments, or losses that
            became NaN/infinite (lower the learning rates).
    """
    _check_gan_args(G, train_images, batch_size, g_loss, resume, checkpoint_path,
                    (epochs, time_budget, max_steps), g_ema)
    s, data = _setup(G, D, train_images, g_optim, d_optim, device, batch_size, log_every,
                     snapshot or SnapshotConfig(), (epochs, max_steps, time_budget),
                     checkpoint_path, clock)
    step_fn = step_fn or gan_train_step
    run = _start(s, seed, resume, g_ema)
    if (epochs is not None and run.epoch >= epochs) or \
            (max_steps is not None and run.step >= max_steps):
        return run.result("done")
    tracker = TrainingProgress(epochs=epochs, time_budget=time_budget, max_steps=max_steps,
                               steps_per_epoch=s.steps_per_epoch, start_step=run.step,
                               desc=desc, enabled=progress, clock=clock)
    stopped_by = "epochs"
    G.train()
    D.train()
    try:
        _begin(s, run)
        while stopped_by == "epochs" and (epochs is None or run.epoch < epochs):
            for (real,) in _epoch_batches(run, data, batch_size, seed):
                z = torch.randn(batch_size, G.latent_dim, generator=run.noise_gen).to(s.device)
                metrics = step_fn(G, D, s.opt_g, s.opt_d, real, z, real_label=real_label,
                                  g_loss_kind=g_loss)
                run.count(metrics, batch_size)
                tracker.update()
                _bookkeeping(s, run, tracker, checkpoint_every)
                stopped_by = tracker.stop_reason(run.step, max_steps) or "epochs"
                if stopped_by != "epochs":
                    break
            else:
                _end_epoch(s, run, checkpoint_every)
        _finish(s, run, tracker)
    finally:
        tracker.close()
    return run.result(stopped_by)


# ----------------------------------------------------------------------------- helpers

@dataclass(frozen=True)
class _GANSetup:
    """What stays fixed during a :func:`fit_gan` call."""

    G: nn.Module
    D: nn.Module
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    device: torch.device
    batch_size: int
    steps_per_epoch: int
    log_every: int
    snapshot: SnapshotConfig
    snapshot_every: int                 # steps between snapshots
    snapshot_seconds: float             # ... or seconds (when only a time budget is given)
    checkpoint_path: str | os.PathLike[str] | None
    clock: Callable[[], float]
    run_config: dict[str, Any]


@dataclass
class _GANRun:
    """Where a :func:`fit_gan` run is (what its checkpoints hold, and its timers)."""

    noise_gen: torch.Generator          # the z of every step
    fixed_noise: Tensor                 # (n_fixed, latent_dim), behind every snapshot
    history: History = field(default_factory=History)
    snapshots: list[tuple[int, Tensor]] = field(default_factory=list)
    acc: MetricAccumulator = field(default_factory=MetricAccumulator)   # since the last record
    step: int = 0
    epoch: int = 0
    in_epoch: int = 0
    seconds_before: float = 0.0         # training seconds of earlier calls
    train_seconds: float = 0.0          # ... of this call, up to segment_start
    segment_start: float = 0.0          # clock reading when the current timed segment began
    interval_start: float = 0.0         # ... when the current history interval began
    interval_images: int = 0
    next_snapshot: float = math.inf     # tracker.elapsed of the next timed snapshot
    ema: AveragedModel | None = None    # the average of G's weights (fit_gan's g_ema)

    def count(self, metrics: Mapping[str, Tensor], batch_size: int) -> None:
        """Book one step."""
        self.acc.add(metrics, 1)
        self.step += 1
        self.in_epoch += 1
        self.interval_images += batch_size

    def result(self, stopped_by: str) -> GANResult:
        return GANResult(self.history, self.step, self.seconds_before + self.train_seconds,
                         stopped_by, snapshots=self.snapshots, fixed_noise=self.fixed_noise,
                         g_ema=None if self.ema is None else self.ema.module)


def _check_gan_args(G: nn.Module, train_images: Tensor, batch_size: int, g_loss: str,
                    resume: bool, checkpoint_path: str | os.PathLike[str] | None,
                    limits: tuple[int | None, float | None, int | None],
                    g_ema: float | None) -> None:
    """Check fit_gan's arguments before any work, with errors that say what to pass
    (``limits``: epochs, time_budget, max_steps)."""
    from ..losses import GENERATOR_LOSS_KINDS

    if not isinstance(train_images, Tensor) or train_images.ndim != 4 \
            or tuple(train_images.shape[1:]) != (1, 28, 28):
        shape = tuple(train_images.shape) if isinstance(train_images, Tensor) \
            else type(train_images)
        raise ValueError(f"fit_gan expects train_images of shape (N, 1, 28, 28), got {shape}; "
                         "pass ds.train_x")
    if float(train_images.min()) < -1e-3 or float(train_images.max()) > 1 + 1e-3:
        raise ValueError("fit_gan expects train_images with pixels in [0, 1] (as load_dataset "
                         "returns them) and maps them to [-1, 1] itself; pass ds.train_x.")
    n = len(train_images)
    if batch_size < 1 or batch_size > n:
        raise ValueError(f"batch_size must be between 1 and the number of images ({n}), "
                         f"got {batch_size}")
    if g_loss not in GENERATOR_LOSS_KINDS:
        raise ValueError(f"g_loss must be one of {GENERATOR_LOSS_KINDS}, got {g_loss!r}")
    check_resume(resume, checkpoint_path)
    check_ema_decay(g_ema)
    if all(limit is None for limit in limits):
        raise ValueError("give epochs=..., time_budget=... (seconds) or max_steps=..., so that "
                         "training knows when to stop.")
    if not getattr(G, "latent_dim", None):
        raise ValueError("the generator needs a latent_dim attribute (the size of its noise "
                         "z), e.g. self.latent_dim = latent_dim in its __init__.")


def _setup(G: nn.Module, D: nn.Module, train_images: Tensor,
           g_optim: AdamConfig | torch.optim.Optimizer | None,
           d_optim: AdamConfig | torch.optim.Optimizer | None, device: str | torch.device | None,
           batch_size: int, log_every: int, snapshot: SnapshotConfig,
           limits: tuple[int | None, int | None, float | None],
           checkpoint_path: str | os.PathLike[str] | None, clock: Callable[[], float]
           ) -> tuple[_GANSetup, Tensor]:
    """Move G, D and the images (mapped to [-1, 1]) to the device, build the optimisers, plan
    the snapshots (``limits``: epochs, max_steps, time_budget); return the setup and data."""
    dev = get_device(device)
    G.to(dev)
    D.to(dev)
    data = train_images.to(dev) * 2.0 - 1.0                        # (N, 1, 28, 28) in [-1, 1]
    steps_per_epoch = len(data) // batch_size
    return _GANSetup(G, D, _optimizer(g_optim, G), _optimizer(d_optim, D), dev, batch_size,
                     steps_per_epoch, log_every, snapshot,
                     *_snapshot_schedule(snapshot.every, *limits, steps_per_epoch),
                     checkpoint_path, clock, {"batch_size": batch_size, "n_train": len(data)}
                     ), data


def _optimizer(spec: AdamConfig | torch.optim.Optimizer | None, model: nn.Module
               ) -> torch.optim.Optimizer:
    if isinstance(spec, torch.optim.Optimizer):
        return spec
    return (spec or AdamConfig()).build(model.parameters())


def _snapshot_schedule(every: int | None, epochs: int | None, max_steps: int | None,
                       time_budget: float | None, steps_per_epoch: int) -> tuple[int, float]:
    """``(steps, seconds)`` between snapshots: ``every`` if given, else 8 per run, by steps
    when the run's length in steps is known, else by the clock over ``time_budget``."""
    if every is not None:
        return every, math.inf
    planned = min(epochs * steps_per_epoch if epochs else math.inf, max_steps or math.inf)
    if planned < math.inf:
        return max(1, math.ceil(planned / 8)), math.inf
    return 10**12, time_budget / 8 if time_budget else math.inf


def _start(s: _GANSetup, seed: int, resume: bool, g_ema: float | None) -> _GANRun:
    """A fresh run (seeded), or the one saved at ``s.checkpoint_path`` when resuming; with
    ``g_ema``, its average of G (restored, or a copy of G if the checkpoint has none)."""
    run = _GANRun(noise_gen=torch.Generator().manual_seed(seed + 1),
                  fixed_noise=torch.randn(s.snapshot.n_fixed, s.G.latent_dim,
                                          generator=torch.Generator().manual_seed(seed + 2)))
    loaded = resume_from(s.checkpoint_path, resume, fmt=GAN_CHECKPOINT_FORMAT, who="fit_gan",
                         run_config=s.run_config, device=s.device,
                         parts={"G": s.G, "D": s.D, "opt_g": s.opt_g, "opt_d": s.opt_d})
    if g_ema is not None:
        run.ema = model_ema(s.G, g_ema)             # after loading G: it starts from G
    if loaded is None:
        torch.manual_seed(seed)
        return run
    state, run.history = loaded
    if run.ema is not None and "G_ema" in state:
        run.ema.load_state_dict(state["G_ema"])
    run.noise_gen.set_state(state["noise_gen"])
    run.fixed_noise = state["fixed_noise"]
    pairs = zip(state["snapshot_steps"], state["snapshots"], strict=True)
    run.snapshots = [(int(i), img) for i, img in pairs]
    run.step, run.epoch, run.in_epoch = state["step"], state["epoch"], state["in_epoch"]
    run.seconds_before = state["seconds"]
    return run


def _epoch_batches(run: _GANRun, data: Tensor, batch_size: int, seed: int
                   ) -> Iterator[tuple[Tensor, ...]]:
    """The current epoch's remaining batches. Every epoch's order comes from its own seed,
    so a resumed run replays it exactly."""
    order = torch.Generator().manual_seed(seed * 100_003 + run.epoch)
    batches = iterate_batches(data, batch_size=batch_size, shuffle=True, generator=order,
                              drop_last=True)
    return itertools.islice(batches, run.in_epoch, None)


def _begin(s: _GANSetup, run: _GANRun) -> None:
    """Start the clocks and take the snapshot before the first step."""
    run.interval_start = s.clock()
    run.next_snapshot = s.snapshot_seconds
    _snapshot(s, run)
    run.segment_start = s.clock()


def _end_epoch(s: _GANSetup, run: _GANRun, checkpoint_every: int | None) -> None:
    """Count a finished epoch; checkpoint if checkpoints go by epochs."""
    run.epoch, run.in_epoch = run.epoch + 1, 0
    if checkpoint_every is None:
        _checkpoint_paused(s, run)


def _bookkeeping(s: _GANSetup, run: _GANRun, tracker: TrainingProgress,
                 checkpoint_every: int | None) -> None:
    """After a step: the update of G's average, then a history record, a snapshot and a
    checkpoint, each when due."""
    if run.ema is not None:
        run.ema.update_parameters(s.G)
    if run.step % s.log_every == 0:
        _log(s, run, tracker)
    if run.step % s.snapshot_every == 0 or tracker.elapsed >= run.next_snapshot:
        _snapshot(s, run)
        run.next_snapshot = tracker.elapsed + s.snapshot_seconds
    if checkpoint_every is not None and run.step % checkpoint_every == 0:
        _checkpoint_paused(s, run)


def _log(s: _GANSetup, run: _GANRun, tracker: TrainingProgress) -> None:
    """Append the means since the last record to the history."""
    means = run.acc.means()
    check_finite(means, f"GAN losses became {means} at step {run.step}: lower the learning "
                        "rates or check the losses.")
    sync(s.device)
    now = s.clock()
    run.history.append({"step": run.step, "epoch": run.epoch + run.in_epoch / s.steps_per_epoch,
                        **means,
                        "elapsed": run.seconds_before + run.train_seconds + now
                        - run.segment_start,
                        "images_per_sec": run.interval_images / max(now - run.interval_start,
                                                                    1e-9)})
    tracker.set_postfix({k: means[k] for k in ("d_real", "d_fake") if k in means})
    run.acc, run.interval_start, run.interval_images = MetricAccumulator(), now, 0


def _snapshot(s: _GANSetup, run: _GANRun) -> None:
    """Record G(fixed noise) in eval mode (once per step), and save it as a PNG if asked."""
    if run.snapshots and run.snapshots[-1][0] == run.step:
        return
    with evaluating(s.G):
        images = s.G(run.fixed_noise.to(s.device)).detach().float().cpu()
    run.snapshots.append((run.step, images))
    if s.snapshot.dir is not None:
        save_grid_png(images, Path(s.snapshot.dir) / f"step_{run.step:06d}.png")


def _checkpoint(s: _GANSetup, run: _GANRun) -> None:
    """Save the run at ``s.checkpoint_path`` (if any)."""
    if s.checkpoint_path is None:
        return
    save_checkpoint(s.checkpoint_path, checkpoint_payload(
        GAN_CHECKPOINT_FORMAT, s.run_config,
        {"G": s.G, "D": s.D, "opt_g": s.opt_g, "opt_d": s.opt_d,
         **({} if run.ema is None else {"G_ema": run.ema})}, run.history,
        noise_gen=run.noise_gen.get_state(), fixed_noise=run.fixed_noise,
        snapshot_steps=[i for i, _ in run.snapshots], snapshots=[x for _, x in run.snapshots],
        step=run.step, epoch=run.epoch, in_epoch=run.in_epoch,
        seconds=run.seconds_before + run.train_seconds))


def _checkpoint_paused(s: _GANSetup, run: _GANRun) -> None:
    """Checkpoint with the clock paused, so that saving does not count as training time."""
    if s.checkpoint_path is None:
        return
    run.train_seconds += s.clock() - run.segment_start
    _checkpoint(s, run)
    run.segment_start = s.clock()


def _finish(s: _GANSetup, run: _GANRun, tracker: TrainingProgress) -> None:
    """The last partial interval's record, the final time, snapshot and checkpoint."""
    if run.acc.count:
        _log(s, run, tracker)
    sync(s.device)
    run.train_seconds += s.clock() - run.segment_start
    _snapshot(s, run)
    _checkpoint(s, run)
