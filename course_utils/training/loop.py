"""The generic training loop :func:`fit` (autoencoder, VAE, classifier) and :func:`evaluate`.

``fit``'s body is the loop of pytorch/examples - zero the gradients, compute the loss,
backward, step - with the bookkeeping (history records, checkpoints, the clock) in the small
helpers below it, which keep where the run is in a :class:`_Run`.
"""

from __future__ import annotations

import itertools
import math
import os
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from .. import config
from ..data import iterate_batches
from ..utils import evaluating
from .progress import (
    History,
    MetricAccumulator,
    TrainingProgress,
    TrainResult,
    check_finite,
    lr_factor,
)
from .state import (
    check_resume,
    checkpoint_payload,
    get_device,
    preserve_rng,
    resume_from,
    save_checkpoint,
    sync,
)

__all__ = ["fit", "evaluate", "LossFn", "CHECKPOINT_FORMAT"]

LossFn = Callable[[nn.Module, tuple[Tensor, ...]], "Tensor | Mapping[str, Tensor]"]
"""``loss_fn(model, batch)``: a scalar tensor, or a dict with a scalar ``"loss"`` plus extra
entries (e.g. ``"recon"``, ``"kl"``, ``"accuracy"``) that are averaged and logged."""

CHECKPOINT_FORMAT = "course_utils.fit/1"


# ----------------------------------------------------------------------------- data checks

def _as_tensors(tensors: Tensor | Sequence[Tensor], what: str) -> tuple[Tensor, ...]:
    """Accept one tensor or a sequence of aligned tensors; check they can be batched."""
    if isinstance(tensors, Tensor):
        tensors = (tensors,)
    tensors = tuple(tensors)
    if not tensors or not all(isinstance(t, Tensor) for t in tensors):
        raise TypeError(f"{what} must be a tensor or a tuple of tensors, e.g. (ds.train_x,) or "
                        "(ds.train_x, ds.train_y).")
    n = tensors[0].shape[0] if tensors[0].ndim else 0
    if n == 0:
        raise ValueError(f"{what} is empty: there is nothing to train on.")
    for i, t in enumerate(tensors[1:], 1):
        if t.ndim == 0 or t.shape[0] != n:
            raise ValueError(f"{what}[{i}] has shape {tuple(t.shape)} but {what}[0] has {n} rows; "
                             "pass tensors that describe the same examples.")
    return tensors


def _check_input_shape(model: nn.Module, x: Tensor, what: str) -> None:
    """If the model declares ``input_shape``, check the data against it with a clear error."""
    expected = getattr(model, "input_shape", None)
    if expected is None:
        return
    expected = tuple(expected)
    if tuple(x.shape[1:]) != expected:
        shown = "(N, " + ", ".join(map(str, expected)) + ")"
        raise ValueError(f"{type(model).__name__} expects inputs of shape {shown}, but {what} "
                         f"has shape {tuple(x.shape)}. Reshape the data, e.g. "
                         f"x.view(-1, {', '.join(map(str, expected))}).")


def _as_metrics(out: Tensor | Mapping[str, Tensor], validate: bool) -> dict[str, Tensor]:
    """Normalise a loss function's output to a dict with a scalar ``"loss"``."""
    metrics = {"loss": out} if isinstance(out, Tensor) else out
    if validate:
        if not isinstance(metrics, Mapping) or "loss" not in metrics:
            raise TypeError("loss_fn(model, batch) must return a scalar tensor or a dict with a "
                            f"'loss' entry; got {type(out).__name__}"
                            + (f" with keys {list(out)}" if isinstance(out, Mapping) else ""))
        loss = metrics["loss"]
        if not isinstance(loss, Tensor) or loss.ndim != 0:
            shape = tuple(loss.shape) if isinstance(loss, Tensor) else type(loss).__name__
            raise ValueError(f"loss_fn must return a scalar loss (shape ()), got {shape}; "
                             "reduce it with .mean() or .sum().")
    return dict(metrics)


def evaluate(model: nn.Module, loss_fn: LossFn, tensors: Tensor | Sequence[Tensor], *,
             batch_size: int = 1024, device: str | torch.device | None = None,
             seed: int = 0) -> dict[str, float]:
    """Average ``loss_fn``'s metrics over ``tensors`` in eval mode, without gradients.

    Runs with its own seeded random stream (see :func:`preserve_rng`), so it is deterministic
    and leaves the global stream untouched. The model's train/eval mode is restored after.
    """
    tensors = _as_tensors(tensors, "tensors")
    device = next((p.device for p in model.parameters()), None) if device is None \
        else config.get_device(str(device))
    device = device or torch.device("cpu")
    _check_input_shape(model, tensors[0], "the evaluation data")
    acc = MetricAccumulator()
    with evaluating(model), preserve_rng(seed):
        for batch in iterate_batches(*tensors, batch_size=batch_size, shuffle=False):
            batch = tuple(t.to(device, non_blocking=True) for t in batch)
            acc.add(_as_metrics(loss_fn(model, batch), validate=not acc.count), len(batch[0]))
    return acc.means()


# ----------------------------------------------------------------------------- fit

def fit(model: nn.Module, loss_fn: LossFn, train_tensors: Tensor | Sequence[Tensor], *,
        test_tensors: Tensor | Sequence[Tensor] | None = None,
        optimizer: torch.optim.Optimizer | None = None, lr: float = 1e-3,
        lr_schedule: str = "constant", epochs: int | None = None,
        time_budget: float | None = None, max_steps: int | None = None, batch_size: int = 128,
        device: str | torch.device | None = None, seed: int = 0,
        checkpoint_path: str | os.PathLike[str] | None = None, resume: bool = False,
        checkpoint_every: int | None = None, progress: bool = True, desc: str | None = None,
        eval_batch_size: int = 1024, clock: Callable[[], float] = time.perf_counter) -> TrainResult:
    """Train ``model`` in place by minimising ``loss_fn`` over mini-batches of ``train_tensors``:
    the one loop of the course, shared by the autoencoder, the VAE and the classifier.

    Args:
        model: any ``nn.Module``; data are checked against its ``input_shape`` if it has one.
        loss_fn: ``loss_fn(model, batch) -> Tensor | dict`` (``batch``: one (B, ...) slice of
            each tensor). A dict holds the scalar ``"loss"`` to minimise; its other entries
            are averaged and logged too.
        train_tensors, test_tensors: a tensor or a tuple of aligned tensors, e.g.
            ``(ds.train_x,)``. The test ones are evaluated after every epoch (optional).
        optimizer, lr: default ``Adam(model.parameters(), lr)``.
        lr_schedule: ``"constant"``, ``"cosine"`` or ``"onecycle"`` (:func:`lr_factor`), set
            each step by the nearer limit: steps towards ``epochs``/``max_steps``, or ``clock``.
        epochs, max_steps, time_budget: stop after this many epochs or steps in total (a
            resumed run counts the earlier ones), or after the step that spends this call's
            ``time_budget`` seconds on ``clock`` (wall time; ``time.process_time``: CPU
            seconds). Give at least one.
        batch_size, eval_batch_size: examples per training step, per evaluation batch.
        device: ``"cpu"``, ``"cuda"``, ``"mps"`` or None for :func:`config.get_device`.
        seed: seeds the batch order and the global generator (noise drawn in ``loss_fn``).
        checkpoint_path, checkpoint_every: save there (atomically) every ``checkpoint_every``
            steps (None: after every epoch) and when the run stops.
        resume: continue from ``checkpoint_path`` if it exists, exactly as the interrupted run
            would have gone on (unless the schedule follows the clock).
        progress, desc: show a tqdm bar labelled ``desc`` (default: the model's class name).

    Returns:
        A :class:`TrainResult`; its ``history`` has one record per epoch (``train_*``,
        ``test_*``, ``seconds``, ``elapsed``, ``images_per_sec``, ``lr``).

    Raises:
        ValueError: for bad data or arguments, or a loss that became NaN.
    """
    train, test = _check_fit_args(model, train_tensors, test_tensors, batch_size, lr_schedule,
                                  resume, checkpoint_path)
    s, train = _setup(model, loss_fn, optimizer, lr, train, test, device, seed, eval_batch_size,
                      clock, checkpoint_path, {"batch_size": batch_size, "n_train": len(train[0]),
                                               "epochs": epochs, "lr_schedule": lr_schedule,
                                               "seed": seed})
    run = _start(s, resume)
    if _limit_reached(run, epochs, max_steps):        # a finished run: nothing left to do
        return run.result("done")
    tracker = TrainingProgress(epochs=epochs, time_budget=time_budget, max_steps=max_steps,
                               steps_per_epoch=s.steps_per_epoch, start_step=run.step,
                               desc=desc or type(model).__name__, enabled=progress, clock=clock)
    stopped_by = None
    model.train()
    try:
        while stopped_by is None:
            t0 = clock()
            for batch in _epoch_batches(run, train, batch_size):
                _schedule_lr(s.optimizer, lr_schedule, tracker, run.step)
                s.optimizer.zero_grad(set_to_none=True)
                metrics = _as_metrics(loss_fn(model, batch), validate=not run.acc.count)
                metrics["loss"].backward()
                s.optimizer.step()
                run.count(metrics, batch[0].shape[0])
                tracker.update()
                stopped_by = tracker.stop_reason(run.step, max_steps)
                if run.in_epoch < s.steps_per_epoch and stopped_by:
                    break
                if run.in_epoch < s.steps_per_epoch and _due(checkpoint_every, run.step):
                    t0 = _checkpoint_mid_epoch(s, run, t0)
            sync(s.device)
            run.add_time(clock() - t0)
            stopped_by = _end_segment(s, run, tracker, stopped_by, epochs, max_steps,
                                      checkpoint_every)
    finally:
        tracker.close()
    return run.result(stopped_by)


# ----------------------------------------------------------------------------- fit's helpers

@dataclass(frozen=True)
class _Setup:
    """What stays fixed during a :func:`fit` call."""

    model: nn.Module
    loss_fn: LossFn
    optimizer: torch.optim.Optimizer
    test: tuple[Tensor, ...] | None
    device: torch.device
    seed: int
    eval_batch_size: int
    steps_per_epoch: int
    clock: Callable[[], float]
    checkpoint_path: str | os.PathLike[str] | None
    run_config: dict[str, Any]


@dataclass
class _Run:
    """Where a :func:`fit` run is (the counters and timers its checkpoints hold)."""

    history: History = field(default_factory=History)
    generator: torch.Generator = field(default_factory=torch.Generator)  # the batch order
    acc: MetricAccumulator = field(default_factory=MetricAccumulator)  # this epoch's metrics
    epoch: int = 0                      # epochs completed
    in_epoch: int = 0                   # steps done in the current epoch
    step: int = 0                       # steps done in total
    elapsed_before: float = 0.0         # training seconds of earlier calls
    epoch_gen_state: Tensor | None = None   # `generator` before this epoch's order was drawn
    train_seconds: float = 0.0          # training seconds of this call
    epoch_seconds: float = 0.0          # ... of the current epoch (across a resume)
    segment_seconds: float = 0.0        # ... of its part run by this call
    segment_images: int = 0             # images trained on in that part (for the throughput)

    def count(self, metrics: Mapping[str, Tensor], n: int) -> None:
        """Book one step on ``n`` examples."""
        self.acc.add(metrics, n)
        self.segment_images += n
        self.step += 1
        self.in_epoch += 1

    def add_time(self, seconds: float) -> None:
        """Book ``seconds`` of training."""
        self.train_seconds += seconds
        self.epoch_seconds += seconds
        self.segment_seconds += seconds

    def result(self, stopped_by: str) -> TrainResult:
        return TrainResult(self.history, self.step, self.elapsed_before + self.train_seconds,
                           stopped_by)


def _check_fit_args(model: nn.Module, train_tensors: Tensor | Sequence[Tensor],
                    test_tensors: Tensor | Sequence[Tensor] | None, batch_size: int,
                    lr_schedule: str, resume: bool,
                    checkpoint_path: str | os.PathLike[str] | None
                    ) -> tuple[tuple[Tensor, ...], tuple[Tensor, ...] | None]:
    """Check fit's arguments before any work; return the train and test tensors."""
    train = _as_tensors(train_tensors, "train_tensors")
    test = _as_tensors(test_tensors, "test_tensors") if test_tensors is not None else None
    _check_input_shape(model, train[0], "train_tensors[0]")
    if test is not None:
        _check_input_shape(model, test[0], "test_tensors[0]")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}.")
    lr_factor(lr_schedule, 0.0)                      # reject an unknown schedule early
    check_resume(resume, checkpoint_path)
    return train, test


def _setup(model: nn.Module, loss_fn: LossFn, optimizer: torch.optim.Optimizer | None,
           lr: float, train: tuple[Tensor, ...], test: tuple[Tensor, ...] | None,
           device: str | torch.device | None, seed: int, eval_batch_size: int,
           clock: Callable[[], float], checkpoint_path: str | os.PathLike[str] | None,
           run_config: dict[str, Any]) -> tuple[_Setup, tuple[Tensor, ...]]:
    """Move the model and the training data to the device, make the default optimizer, and
    fix what stays fixed during the run; return it and the training tensors on the device."""
    dev = get_device(device)
    model.to(dev)
    train = tuple(t.to(dev) for t in train)
    if optimizer is None:
        optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    for group in optimizer.param_groups:
        group.setdefault("initial_lr", group["lr"])   # the base of the schedule; checkpointed
    steps_per_epoch = math.ceil(len(train[0]) / run_config["batch_size"])
    return _Setup(model, loss_fn, optimizer, test, dev, seed, eval_batch_size, steps_per_epoch,
                  clock, checkpoint_path, run_config), train


def _start(s: _Setup, resume: bool) -> _Run:
    """A fresh run (seeded), or the one saved at ``s.checkpoint_path`` when resuming."""
    run = _Run()
    loaded = resume_from(s.checkpoint_path, resume, fmt=CHECKPOINT_FORMAT, who="fit()",
                         run_config=s.run_config, device=s.device,
                         parts={"model": s.model, "optimizer": s.optimizer})
    if loaded is None:
        config.seed_everything(s.seed)
        run.generator.manual_seed(s.seed)
        return run
    state, run.history = loaded
    saved = state["config"]
    if s.run_config["lr_schedule"] != "constant" and (saved["epochs"], saved["lr_schedule"]) \
            != (s.run_config["epochs"], s.run_config["lr_schedule"]):
        warnings.warn("resuming with a different epochs/lr_schedule than the checkpoint: "
                      "the learning-rate schedule changes, so the run will differ from "
                      "an uninterrupted one.", stacklevel=3)
    run.generator.set_state(state["generator"])
    run.epoch_gen_state = state["epoch_generator"]
    run.epoch, run.in_epoch, run.step = state["epoch"], state["batch_in_epoch"], state["step"]
    run.elapsed_before = state["elapsed"]
    run.acc.load_state_dict(state["accumulator"], s.device)
    run.epoch_seconds = state["epoch_seconds"]
    return run


def _limit_reached(run: _Run, epochs: int | None, max_steps: int | None) -> bool:
    return (epochs is not None and run.epoch >= epochs) or \
        (max_steps is not None and run.step >= max_steps)


def _due(every: int | None, step: int) -> bool:
    """Is a checkpoint due after ``step`` (``every`` steps; None: not by steps)?"""
    return every is not None and step % every == 0


def _epoch_batches(run: _Run, train: tuple[Tensor, ...], batch_size: int
                   ) -> Iterator[tuple[Tensor, ...]]:
    """The current epoch's remaining batches; starts the epoch's bookkeeping."""
    # The batch order is drawn from `generator` when the first batch is taken; keep the state
    # from before that, so a run stopped mid-epoch can replay this epoch's order.
    if run.in_epoch == 0:
        run.epoch_gen_state = run.generator.get_state()
        run.acc = MetricAccumulator()
        run.epoch_seconds = 0.0
    else:
        run.generator.set_state(run.epoch_gen_state)   # resuming inside an epoch
    run.segment_images, run.segment_seconds = 0, 0.0
    batches = iterate_batches(*train, batch_size=batch_size, shuffle=True,
                              generator=run.generator)
    return itertools.islice(batches, run.in_epoch, None)


def _schedule_lr(optimizer: torch.optim.Optimizer, schedule: str, tracker: TrainingProgress,
                 step: int) -> None:
    """Set every group's learning rate from the schedule (nothing to do for "constant")."""
    if schedule == "constant":
        return
    factor = lr_factor(schedule, tracker.fraction(step))
    for group in optimizer.param_groups:
        group["lr"] = group["initial_lr"] * factor


def _record(s: _Setup, run: _Run, tracker: TrainingProgress, partial: bool) -> dict[str, float]:
    """The history record of the epoch so far: train means, test metrics, timing, lr."""
    means = run.acc.means()
    check_finite(means, f"the training loss became {means.get('loss')} in epoch "
                        f"{run.epoch + 1}: lower the learning rate or check the loss function.")
    epoch = run.epoch + (run.in_epoch / s.steps_per_epoch if partial else 1)
    rec: dict[str, float] = {"epoch": epoch, "step": run.step}
    rec.update({f"train_{k}": v for k, v in means.items()})
    if s.test is not None:
        rec.update({f"test_{k}": v for k, v in evaluate(
            s.model, s.loss_fn, s.test, batch_size=s.eval_batch_size, device=s.device,
            seed=s.seed + 1).items()})
    rec.update({"seconds": run.epoch_seconds, "elapsed": run.elapsed_before + run.train_seconds,
                "images_per_sec": run.segment_images / run.segment_seconds
                if run.segment_seconds > 0 else 0.0,
                "lr": s.optimizer.param_groups[0]["lr"]})
    tracker.set_postfix({k: rec[k] for k in ("train_loss", "test_loss") if k in rec})
    return rec


def _checkpoint(s: _Setup, run: _Run) -> None:
    """Save the run at ``s.checkpoint_path`` (if any)."""
    if s.checkpoint_path is None:
        return
    save_checkpoint(s.checkpoint_path, checkpoint_payload(
        CHECKPOINT_FORMAT, s.run_config, {"model": s.model, "optimizer": s.optimizer},
        run.history, generator=run.generator.get_state(), epoch_generator=run.epoch_gen_state,
        epoch=run.epoch, batch_in_epoch=run.in_epoch, step=run.step,
        elapsed=run.elapsed_before + run.train_seconds, accumulator=run.acc.state_dict(),
        epoch_seconds=run.epoch_seconds if run.in_epoch else 0.0))


def _checkpoint_mid_epoch(s: _Setup, run: _Run, t0: float) -> float:
    """Save inside an epoch with the clock paused; return the new segment start."""
    sync(s.device)
    run.add_time(s.clock() - t0)
    _checkpoint(s, run)
    return s.clock()


def _end_segment(s: _Setup, run: _Run, tracker: TrainingProgress, stopped_by: str | None,
                 epochs: int | None, max_steps: int | None,
                 checkpoint_every: int | None) -> str | None:
    """After the loop over an epoch's batches (all of them, or up to the step where
    ``stopped_by`` stopped it): record, and checkpoint when due. Return why the run stops, or
    None to go on with the next epoch."""
    if run.in_epoch < s.steps_per_epoch:      # stopped inside an epoch (time or max_steps)
        # checkpoint the run, then add a provisional record (with a fractional epoch) that
        # the checkpoint does not hold, since the epoch is not over
        partial = _record(s, run, tracker, partial=True)
        _checkpoint(s, run)
        run.history.append(partial)
        return stopped_by
    run.history.append(_record(s, run, tracker, partial=False))
    run.epoch += 1
    run.in_epoch = 0
    stopped_by = tracker.stop_reason(run.step, max_steps)
    if stopped_by is None and epochs is not None and run.epoch >= epochs:
        stopped_by = "epochs"
    if stopped_by or checkpoint_every is None or _due(checkpoint_every, run.step):
        _checkpoint(s, run)
    return stopped_by
