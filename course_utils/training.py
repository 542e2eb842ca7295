"""Training loops: one generic loop (autoencoder, VAE, classifier) and the GAN loop.

Both slice batches from in-memory tensors (``course_utils.data.iterate_batches``), show a
``tqdm.auto`` progress bar, stop after a number of epochs or a time budget, return their
history as data, and can save and resume checkpoints.
"""

from __future__ import annotations

# ============================================================================ generic loop
# Shared pieces (History, MetricAccumulator, TrainingProgress, lr schedules, RNG state and
# atomic checkpoints) come first so that other loops (e.g. the GAN loop) can reuse them;
# ``fit`` - the one generic loop for the autoencoder, the VAE and the classifier - follows.

import contextlib
import itertools
import math
import os
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import torch
from torch import Tensor, nn

from . import config
from .data import iterate_batches

__all__ = ["History", "MetricAccumulator", "TrainingProgress", "LR_SCHEDULES", "lr_factor",
           "rng_state", "set_rng_state", "preserve_rng", "save_checkpoint", "load_checkpoint",
           "evaluate", "fit", "LossFn"]

LossFn = Callable[[nn.Module, tuple[Tensor, ...]], "Tensor | Mapping[str, Tensor]"]
"""``loss_fn(model, batch)``: a scalar tensor, or a dict with a scalar ``"loss"`` plus extra
entries (e.g. ``"recon"``, ``"kl"``, ``"accuracy"``) that are averaged and logged."""

CHECKPOINT_FORMAT = "course_utils.fit/1"


@dataclass
class History:
    """Per-epoch records of a training run, as data.

    Each record is a dict such as ``{"epoch": 3, "step": 1407, "train_loss": 21.4,
    "train_mse": 0.027, "test_loss": 21.9, "test_mse": 0.028, "seconds": 8.1,
    "elapsed": 24.6, "images_per_sec": 7407.0, "lr": 0.001}``. A run stopped by its time budget
    in the middle of an epoch ends with a record whose ``epoch`` is fractional (e.g. 3.4).

    ``history["train_loss"]`` gives one series, ``history[-1]`` the last record, and
    ``list(history)`` the records, which is what :func:`course_utils.plots.loss_curves` takes.
    """

    records: list[dict[str, float]] = field(default_factory=list)

    def append(self, record: Mapping[str, float]) -> None:
        """Add one epoch's record."""
        self.records.append(dict(record))

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[dict[str, float]]:
        return iter(self.records)

    def __getitem__(self, key: int | str) -> Any:
        if isinstance(key, str):
            if key not in self.keys():
                raise KeyError(f"history has no {key!r}; available: {self.keys()}")
            return [r.get(key, math.nan) for r in self.records]
        return self.records[key]

    def keys(self) -> list[str]:
        """Every metric name that appears in some record, in first-seen order."""
        return list(dict.fromkeys(k for r in self.records for k in r))

    @property
    def last(self) -> dict[str, float]:
        """The last record (raises ``IndexError`` for an empty history)."""
        if not self.records:
            raise IndexError("the history is empty: no epoch has run yet")
        return self.records[-1]

    def to_dict(self) -> dict[str, list[float]]:
        """``{metric: [value per epoch]}``."""
        return {k: self[k] for k in self.keys()}

    def __repr__(self) -> str:
        if not self.records:
            return "History(empty)"
        shown = {k: round(v, 5) if isinstance(v, float) else v for k, v in self.last.items()}
        return f"History({len(self)} records; last={shown})"


class MetricAccumulator:
    """Sums per-batch metrics *on the device*, weighted by batch size; one sync to read.

    ``add`` queues a single in-place addition per metric (no ``.item()``), so it costs almost
    nothing even on a GPU; ``means()`` copies all sums to the host at once.
    """

    def __init__(self) -> None:
        self.sums: dict[str, Tensor] = {}
        self.count = 0

    def add(self, metrics: Mapping[str, Tensor | float], n: int) -> None:
        """Add one batch's mean metrics, weighted by its ``n`` examples."""
        for key, value in metrics.items():
            value = value.detach() if isinstance(value, Tensor) else torch.tensor(float(value))
            total = self.sums.get(key)
            if total is None:
                self.sums[key] = value.float() * n            # a fresh tensor we own
            else:
                total.add_(value.to(total.device), alpha=n)
        self.count += n

    def means(self) -> dict[str, float]:
        """The example-weighted mean of each metric (one device-to-host copy)."""
        if not self.count:
            return {}
        keys = list(self.sums)
        values = torch.stack([self.sums[k].reshape(()).to("cpu") for k in keys]).tolist()
        return {k: v / self.count for k, v in zip(keys, values)}

    def state_dict(self) -> dict[str, Any]:
        """Plain-Python state, for checkpoints."""
        return {"count": self.count,
                "sums": {k: float(v) for k, v in self.sums.items()}}

    def load_state_dict(self, state: Mapping[str, Any], device: torch.device) -> None:
        """Restore what :meth:`state_dict` returned."""
        self.count = int(state["count"])
        self.sums = {k: torch.tensor(v, dtype=torch.float32, device=device)
                     for k, v in state["sums"].items()}


class TrainingProgress:
    """Counts steps, watches an epoch limit and a time budget, and drives a tqdm.auto bar.

    Args:
        epochs: stop after this many epochs in total (None: no epoch limit).
        time_budget: stop after this many seconds of this call (None: no time limit).
        steps_per_epoch: batches per epoch.
        start_step: steps already done (when resuming).
        desc: progress-bar label.
        clock: the seconds counter the budget is measured on (default ``time.perf_counter``,
            wall time; ``time.process_time`` counts this process's CPU seconds instead).
        enabled: show the bar.

    At least one of ``epochs`` and ``time_budget`` must be given.
    """

    def __init__(self, *, epochs: int | None, time_budget: float | None, steps_per_epoch: int,
                 start_step: int = 0, desc: str = "train", enabled: bool = True,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        if epochs is None and time_budget is None:
            raise ValueError("give epochs=... or time_budget=... (seconds), or both, "
                             "so that training knows when to stop.")
        if epochs is not None and epochs < 0:
            raise ValueError(f"epochs must be >= 0, got {epochs}.")
        if time_budget is not None and time_budget < 0:
            raise ValueError(f"time_budget must be >= 0 seconds, got {time_budget}.")
        self.epochs = epochs
        self.time_budget = time_budget
        self.steps_per_epoch = steps_per_epoch
        self.total_steps = None if epochs is None else epochs * steps_per_epoch
        self.clock = clock
        self.start = clock()
        self.deadline = math.inf if time_budget is None else self.start + time_budget
        from tqdm.auto import tqdm

        budget = f" (budget {time_budget:.0f} s)" if time_budget is not None else ""
        self.bar = tqdm(total=self.total_steps, initial=start_step, desc=desc + budget,
                        unit="step", disable=not enabled, leave=True, dynamic_ncols=True)

    @property
    def elapsed(self) -> float:
        """Seconds since this object was created."""
        return self.clock() - self.start

    def out_of_time(self) -> bool:
        """True once the time budget is spent (cheap enough to call every step)."""
        return self.clock() >= self.deadline

    def fraction(self, step: int) -> float:
        """How far training is, in [0, 1], by whichever limit is nearer: the step count (when
        ``epochs`` is set) or the clock (when ``time_budget`` is set)."""
        by_steps = min(1.0, step / self.total_steps) if self.total_steps else 0.0
        if self.time_budget is None:
            return by_steps
        by_clock = min(1.0, self.elapsed / self.time_budget) if self.time_budget > 0 else 1.0
        return max(by_steps, by_clock)

    def update(self, n: int = 1) -> None:
        self.bar.update(n)

    def set_postfix(self, metrics: Mapping[str, float]) -> None:
        self.bar.set_postfix({k: f"{v:.4g}" for k, v in metrics.items()}, refresh=False)

    def close(self) -> None:
        self.bar.close()


LR_SCHEDULES = ("constant", "cosine", "onecycle")


def lr_factor(schedule: str, fraction: float, warmup: float = 0.05) -> float:
    """Multiplier of the base learning rate at ``fraction`` (0 to 1) of training.

    * ``constant``: 1 throughout.
    * ``cosine``: half a cosine from 1 down to 0.
    * ``onecycle``: linear warm-up over the first ``warmup`` fraction, then cosine to 0.
    """
    if schedule == "constant":
        return 1.0
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * fraction))
    if schedule == "onecycle":
        if fraction < warmup:
            return max(fraction / warmup, 1e-3)
        rest = (fraction - warmup) / (1.0 - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * rest))
    raise ValueError(f"unknown lr_schedule {schedule!r}: choose one of {LR_SCHEDULES}.")


# ----------------------------------------------------------------------------- RNG state

def rng_state() -> dict[str, Any]:
    """PyTorch's global random state on every device in use (CPU, CUDA, MPS)."""
    state: dict[str, Any] = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    mps = getattr(torch, "mps", None)
    if mps is not None and getattr(torch.backends, "mps", None) is not None \
            and torch.backends.mps.is_available():
        state["mps"] = mps.get_rng_state()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore what :func:`rng_state` returned."""
    torch.set_rng_state(state["cpu"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
    if "mps" in state and torch.backends.mps.is_available():
        torch.mps.set_rng_state(state["mps"].cpu())


@contextlib.contextmanager
def preserve_rng(seed: int | None = None) -> Iterator[None]:
    """Run a block without disturbing the global random stream (optionally seeded inside).

    Evaluation runs inside this, so evaluating (which may draw noise, e.g. a VAE's sample)
    never changes what training draws next: a resumed run stays identical.
    """
    saved = rng_state()
    try:
        if seed is not None:
            torch.manual_seed(seed)
        yield
    finally:
        set_rng_state(saved)


# ----------------------------------------------------------------------------- checkpoints

def save_checkpoint(path: str | os.PathLike[str], state: Mapping[str, Any]) -> Path:
    """Write ``state`` with ``torch.save`` atomically: a temporary file, then ``os.replace``.

    A crash while saving leaves the previous checkpoint intact, never a half-written one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(dict(state), f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


def load_checkpoint(path: str | os.PathLike[str],
                    map_location: str | torch.device | None = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint` (tensors and plain data only).

    Raises:
        FileNotFoundError: if there is no file at ``path``.
        RuntimeError: if the file is damaged, naming it and what to do.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - re-raised with the file name and a fix
        raise RuntimeError(f"checkpoint {path} cannot be read ({type(exc).__name__}: {exc}). "
                           "Delete it to start again, or pass resume=False.") from exc


# ----------------------------------------------------------------------------- helpers

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


def _sync(device: torch.device) -> None:
    """Wait for queued device work, so that the clock measures it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


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
    was_training = model.training
    acc = MetricAccumulator()
    model.eval()
    try:
        with torch.no_grad(), preserve_rng(seed):
            for batch in iterate_batches(*tensors, batch_size=batch_size, shuffle=False):
                batch = tuple(t.to(device, non_blocking=True) for t in batch)
                acc.add(_as_metrics(loss_fn(model, batch), validate=not acc.count),
                        len(batch[0]))
    finally:
        model.train(was_training)
    return acc.means()


# ----------------------------------------------------------------------------- fit

def fit(model: nn.Module, loss_fn: LossFn, train_tensors: Tensor | Sequence[Tensor], *,
        test_tensors: Tensor | Sequence[Tensor] | None = None,
        optimizer: torch.optim.Optimizer | None = None, lr: float = 1e-3,
        lr_schedule: str = "constant", epochs: int | None = None,
        time_budget: float | None = None, batch_size: int = 128,
        device: str | torch.device | None = None, seed: int = 0,
        checkpoint_path: str | os.PathLike[str] | None = None, resume: bool = False,
        checkpoint_every: int = 1, progress: bool = True, desc: str | None = None,
        eval_batch_size: int = 1024,
        clock: Callable[[], float] = time.perf_counter) -> History:
    """Train ``model`` by minimising ``loss_fn`` over mini-batches of ``train_tensors``.

    The one training loop of the course, shared by the autoencoder, the VAE and the classifier.

    Args:
        model: any ``nn.Module``. If it has an ``input_shape`` attribute, the data are checked
            against it first. It is moved to ``device`` and trained in place.
        loss_fn: ``loss_fn(model, batch) -> Tensor | dict``; ``batch`` is a tuple with one
            (B, ...) slice of each training tensor. A dict must hold a scalar ``"loss"`` (the
            one that is minimised); its other entries are averaged and logged as well.
        train_tensors: one tensor or a tuple of aligned tensors, e.g. ``(ds.train_x,)``.
        test_tensors: evaluated with the same ``loss_fn`` after every epoch (optional).
        optimizer: default ``Adam(model.parameters(), lr)``.
        lr: base learning rate of the default optimizer.
        lr_schedule: ``"constant"``, ``"cosine"`` or ``"onecycle"`` (see :func:`lr_factor`),
            applied every step. It follows whichever limit is nearer: the step count towards
            ``epochs`` or the clock towards ``time_budget``, so a run cut short by its time
            budget still ends with a small learning rate.
        epochs: total number of epochs (a resumed run counts the epochs already done).
        time_budget: seconds this call may train; it stops after the step that crosses it
            (plus one evaluation), possibly in the middle of an epoch.
        batch_size: examples per step.
        device: ``"cpu"``, ``"cuda"``, ``"mps"`` or None for :func:`config.get_device`.
        seed: seeds the batch order and PyTorch's global generator (noise drawn in
            ``loss_fn``). Build the model after :func:`config.seed_everything` for a fully
            reproducible run.
        checkpoint_path: if given, save a checkpoint there (atomically) every
            ``checkpoint_every`` epochs and when the run stops.
        resume: continue from ``checkpoint_path`` if it exists. The continuation is exactly
            the run that was interrupted (same batches, noise, optimizer state and history)
            provided the arguments are the same; a schedule that follows the clock (see
            ``lr_schedule``) is not reproducible, a constant one or one over epochs is.
        progress: show a tqdm progress bar.
        desc: progress-bar label (default: the model's class name).
        clock: what ``time_budget`` and the recorded seconds count: wall time by default;
            pass ``time.process_time`` for CPU seconds, which a busy machine does not eat.
        eval_batch_size: batch size for evaluating ``test_tensors``.

    Returns:
        A :class:`History` with one record per epoch: ``train_*`` and ``test_*`` metrics,
        ``seconds`` (training time of the epoch), ``elapsed`` (training time so far),
        ``images_per_sec`` (training throughput) and ``lr``.

    Raises:
        ValueError: for data whose shape does not match ``model.input_shape``, bad arguments,
            or a loss that became NaN.
    """
    train_tensors = _as_tensors(train_tensors, "train_tensors")
    test = _as_tensors(test_tensors, "test_tensors") if test_tensors is not None else None
    _check_input_shape(model, train_tensors[0], "train_tensors[0]")
    if test is not None:
        _check_input_shape(model, test[0], "test_tensors[0]")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}.")
    lr_factor(lr_schedule, 0.0)                      # reject an unknown schedule early
    if resume and checkpoint_path is None:
        raise ValueError("resume=True needs checkpoint_path=... to resume from.")

    device = config.get_device(None if device is None else str(device))
    model.to(device)
    train_tensors = tuple(t.to(device) for t in train_tensors)
    if optimizer is None:
        optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    for group in optimizer.param_groups:
        group.setdefault("initial_lr", group["lr"])   # the base of the schedule; checkpointed

    n = train_tensors[0].shape[0]
    steps_per_epoch = math.ceil(n / batch_size)
    history = History()
    generator = torch.Generator()
    acc = MetricAccumulator()
    epoch, in_epoch, step, elapsed_before = 0, 0, 0, 0.0
    epoch_gen_state: Tensor | None = None
    resumed_epoch_seconds = 0.0      # time already spent in a partly done epoch
    run_config = {"batch_size": batch_size, "n_train": n, "epochs": epochs,
                  "lr_schedule": lr_schedule, "seed": seed}

    state = None
    if resume and Path(checkpoint_path).is_file():   # type: ignore[arg-type]
        state = load_checkpoint(checkpoint_path, map_location=device)  # type: ignore[arg-type]
        if state.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"{checkpoint_path} was not written by fit() "
                             f"(format {state.get('format')!r}); pass resume=False.")
        saved = state["config"]
        for key in ("batch_size", "n_train"):
            if saved[key] != run_config[key]:
                raise ValueError(f"cannot resume: the checkpoint used {key}={saved[key]}, this "
                                 f"call has {run_config[key]}. Use the same data and batch size, "
                                 "or resume=False to start again.")
        if lr_schedule != "constant" and (saved["epochs"], saved["lr_schedule"]) != \
                (epochs, lr_schedule):
            warnings.warn("resuming with a different epochs/lr_schedule than the checkpoint: "
                          "the learning-rate schedule changes, so the run will differ from "
                          "an uninterrupted one.", stacklevel=2)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        generator.set_state(state["generator"])
        epoch_gen_state = state["epoch_generator"]
        set_rng_state(state["rng"])
        history = History([dict(r) for r in state["history"]])
        epoch, in_epoch, step = state["epoch"], state["batch_in_epoch"], state["step"]
        elapsed_before = state["elapsed"]
        acc.load_state_dict(state["accumulator"], device)
        resumed_epoch_seconds = state["epoch_seconds"]
    else:
        config.seed_everything(seed)
        generator.manual_seed(seed)

    if epochs is not None and epoch >= epochs:       # nothing left to do
        return history

    tracker = TrainingProgress(epochs=epochs, time_budget=time_budget,
                               steps_per_epoch=steps_per_epoch, start_step=step,
                               desc=desc or type(model).__name__, enabled=progress,
                               clock=clock)

    def checkpoint() -> None:
        if checkpoint_path is None:
            return
        save_checkpoint(checkpoint_path, {
            "format": CHECKPOINT_FORMAT, "config": run_config,
            "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "generator": generator.get_state(), "epoch_generator": epoch_gen_state,
            "rng": rng_state(), "epoch": epoch, "batch_in_epoch": in_epoch, "step": step,
            "elapsed": elapsed_before + train_seconds, "accumulator": acc.state_dict(),
            "epoch_seconds": epoch_seconds if in_epoch else 0.0,
            "history": history.records})

    def record(partial: bool) -> dict[str, float]:
        means = acc.means()
        if not all(math.isfinite(v) for v in means.values()):
            raise ValueError(f"the training loss became {means.get('loss')} in epoch {epoch + 1}"
                             ": lower the learning rate or check the loss function.")
        rec: dict[str, float] = {"epoch": epoch + (in_epoch / steps_per_epoch if partial else 1),
                                 "step": step}
        rec.update({f"train_{k}": v for k, v in means.items()})
        if test is not None:
            rec.update({f"test_{k}": v for k, v in evaluate(
                model, loss_fn, test, batch_size=eval_batch_size, device=device,
                seed=seed + 1).items()})
        rec.update({"seconds": epoch_seconds, "elapsed": elapsed_before + train_seconds,
                    "images_per_sec": segment_images / segment_seconds
                    if segment_seconds > 0 else 0.0,
                    "lr": optimizer.param_groups[0]["lr"]})
        tracker.set_postfix({k: rec[k] for k in ("train_loss", "test_loss") if k in rec})
        return rec

    train_seconds = 0.0
    epoch_seconds = 0.0          # training time of the current epoch (across a resume)
    segment_seconds = 0.0        # ... of its part run by this call
    segment_images = 0           # images trained on in that part (for the throughput)
    stopped = False
    constant_lr = lr_schedule == "constant"
    model.train()
    try:
        while (epochs is None or epoch < epochs) and not stopped:
            # The batch order is drawn from `generator` when the first batch is taken; keep the
            # state from before that, so a run stopped mid-epoch can replay this epoch's order.
            if in_epoch == 0:
                epoch_gen_state = generator.get_state()
                acc = MetricAccumulator()
            else:
                generator.set_state(epoch_gen_state)   # resuming inside an epoch
            batches = iterate_batches(*train_tensors, batch_size=batch_size, shuffle=True,
                                      generator=generator)
            batches = itertools.islice(batches, in_epoch, None)
            segment_images = 0
            t0 = clock()
            for batch in batches:
                if not constant_lr:
                    factor = lr_factor(lr_schedule, tracker.fraction(step))
                    for group in optimizer.param_groups:
                        group["lr"] = group["initial_lr"] * factor
                optimizer.zero_grad(set_to_none=True)
                metrics = _as_metrics(loss_fn(model, batch), validate=step == 0 or not acc.count)
                metrics["loss"].backward()
                optimizer.step()
                acc.add(metrics, batch[0].shape[0])
                segment_images += batch[0].shape[0]
                step += 1
                in_epoch += 1
                tracker.update()
                if tracker.out_of_time() and in_epoch < steps_per_epoch:
                    stopped = True
                    break
            _sync(device)
            segment_seconds = clock() - t0
            train_seconds += segment_seconds
            epoch_seconds = segment_seconds + resumed_epoch_seconds
            resumed_epoch_seconds = 0.0
            if stopped:                               # time budget spent inside an epoch
                history.append(record(partial=True))
                partial = history.records.pop()       # provisional: not in the checkpoint
                checkpoint()
                history.append(partial)
                break
            history.append(record(partial=False))
            epoch += 1
            in_epoch = 0
            if tracker.out_of_time():
                stopped = True
            if stopped or (epochs is not None and epoch >= epochs) or epoch % checkpoint_every == 0:
                checkpoint()
    finally:
        tracker.close()
    return history


# ============================================================================ GAN loop
# Used by the DCGAN chapter (03). It reuses History, MetricAccumulator, TrainingProgress,
# rng_state/set_rng_state and the atomic checkpoints above.

__all__ += ["fit_gan", "gan_train_step", "GANResult", "save_grid_png"]

GAN_CHECKPOINT_FORMAT = "course_utils.fit_gan/1"

GANStepFn = Callable[..., Mapping[str, Tensor]]
"""``step_fn(G, D, opt_g, opt_d, real, z, real_label=..., g_loss=...) -> {"d_loss", "g_loss",
"d_real", "d_fake"}``: one alternating update, e.g. :func:`gan_train_step`."""


def gan_train_step(G: nn.Module, D: nn.Module, opt_g: torch.optim.Optimizer,
                   opt_d: torch.optim.Optimizer, real: Tensor, z: Tensor, *,
                   real_label: float = 1.0, g_loss: str = "non_saturating") -> dict[str, Tensor]:
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
        g_loss: ``"non_saturating"`` or ``"minimax"`` (see :func:`losses.generator_loss`).

    Returns:
        Detached scalars: ``d_loss``, ``g_loss``, ``d_real`` (mean D(x)) and ``d_fake``
        (mean D(G(z)) before the D update), both as probabilities of "real".
    """
    from .losses import discriminator_loss, generator_loss

    fake = G(z)                                                    # (B', 1, 28, 28)
    # --- discriminator step: real -> real_label, fake -> 0; no gradient into G
    real_logits = D(real)                                          # (B,)
    fake_logits = D(fake.detach())                                 # (B',)
    d_loss = discriminator_loss(real_logits, fake_logits, real_label=real_label)
    opt_d.zero_grad(set_to_none=True)
    d_loss.backward()
    opt_d.step()
    # --- generator step: make D call the fakes real
    g_loss_value = generator_loss(D(fake), kind=g_loss)
    opt_g.zero_grad(set_to_none=True)
    g_loss_value.backward()
    opt_g.step()
    return {"d_loss": d_loss.detach(), "g_loss": g_loss_value.detach(),
            "d_real": torch.sigmoid(real_logits.detach()).mean(),
            "d_fake": torch.sigmoid(fake_logits.detach()).mean()}


@dataclass
class GANResult:
    """What :func:`fit_gan` returns.

    Attributes:
        history: one record every ``log_every`` steps: ``step``, ``epoch`` (fractional),
            ``d_loss``, ``g_loss``, ``d_real`` (mean D(x)), ``d_fake`` (mean D(G(z))), all
            averaged over the interval, plus ``elapsed`` seconds and ``images_per_sec``.
        snapshots: ``[(step, images)]``: G(fixed_noise) at intervals, on the CPU, in [-1, 1].
        fixed_noise: the noise vectors behind every snapshot (n_fixed, latent_dim).
        steps: generator updates done in total (including a resumed run's earlier ones).
        seconds: training seconds in total.
        stopped_by: ``"epochs"``, ``"time"`` or ``"max_steps"`` (``"done"`` when a resumed
            run had nothing left to do).
    """

    history: History
    snapshots: list[tuple[int, Tensor]]
    fixed_noise: Tensor
    steps: int
    seconds: float
    stopped_by: str

    def __repr__(self) -> str:
        last = self.history.last if len(self.history) else {}
        shown = {k: round(v, 3) for k, v in last.items() if k in
                 ("d_loss", "g_loss", "d_real", "d_fake")}
        return (f"GANResult(steps={self.steps}, seconds={self.seconds:.1f}, "
                f"stopped_by={self.stopped_by!r}, last={shown}, snapshots={len(self.snapshots)})")


@torch.no_grad()
def _generate_eval(G: nn.Module, z: Tensor) -> Tensor:
    """G(z) in eval mode (BatchNorm running statistics), restoring G's mode after."""
    was_training = G.training
    G.eval()
    try:
        return G(z).detach().float().cpu()
    finally:
        G.train(was_training)


def save_grid_png(images: Tensor, path: Path, nrow: int = 8) -> None:
    """Tile (B, 1, H, W) images in [-1, 1] into one PNG, without a matplotlib figure."""
    import matplotlib.pyplot as plt

    x = ((images[:, 0].clamp(-1, 1) + 1) / 2).numpy()              # (B, H, W) in [0, 1]
    b, h, w = x.shape
    rows = math.ceil(b / nrow)
    canvas = torch.ones(rows * (h + 2) + 2, nrow * (w + 2) + 2).numpy()
    for i in range(b):
        r, c = divmod(i, nrow)
        canvas[2 + r * (h + 2): 2 + r * (h + 2) + h, 2 + c * (w + 2): 2 + c * (w + 2) + w] = x[i]
    path.parent.mkdir(parents=True, exist_ok=True)
    plt.imsave(path, canvas, cmap="gray", vmin=0.0, vmax=1.0)


def fit_gan(G: nn.Module, D: nn.Module, train_images: Tensor, *,
            epochs: int | None = None, time_budget: float | None = None,
            max_steps: int | None = None, batch_size: int = 128, lr_g: float = 2e-4, lr_d: float = 2e-4,
            betas_g: tuple[float, float] = (0.5, 0.999),
            betas_d: tuple[float, float] = (0.5, 0.999),
            optimizers: tuple[torch.optim.Optimizer, torch.optim.Optimizer] | None = None,
            real_label: float = 1.0, g_loss: str = "non_saturating",
            step_fn: GANStepFn | None = None, latent_dim: int | None = None,
            log_every: int = 20, n_fixed: int = 64, snapshot_every: int | None = None,
            snapshot_dir: str | os.PathLike[str] | None = None,
            checkpoint_path: str | os.PathLike[str] | None = None, resume: bool = False,
            checkpoint_every: int = 500, device: str | torch.device | None = None,
            seed: int = 0, progress: bool = True, desc: str = "GAN") -> GANResult:
    """Train a GAN with alternating discriminator and generator steps.

    Args:
        G: generator, ``G(z)`` -> (B, 1, 28, 28) in [-1, 1]; ``G.latent_dim`` gives the noise
            size unless ``latent_dim`` is passed.
        D: discriminator, ``D(x)`` -> logits (B,).
        train_images: (N, 1, 28, 28) real images with pixels in [0, 1], as
            :func:`course_utils.data.load_dataset` returns them. They are mapped to [-1, 1]
            (the generator's tanh range) here.
        epochs: passes over ``train_images`` (a resumed run counts the earlier ones).
        time_budget: seconds this call may train.
        max_steps: stop once this many steps are done in total (a resumed run counts the
            earlier ones). Give at least one of ``epochs``, ``time_budget`` and ``max_steps``.
        batch_size: real images per step (the same number of fakes). The last incomplete
            batch of an epoch is dropped, so BatchNorm never sees a tiny batch.
        lr_g, lr_d, betas_g, betas_d: the two Adam optimizers. Different learning rates for
            D and G ("learning-rate balance", e.g. the two time-scale rule of Heusel et al.
            2017) are one of the chapter's mitigations.
        optimizers: ``(opt_g, opt_d)`` to use instead of new Adams (e.g. to continue training
            over several calls); then the lr/betas arguments are ignored.
        real_label: target of real images in D's loss; 0.9 is one-sided label smoothing.
        g_loss: ``"non_saturating"`` (default) or ``"minimax"``.
        step_fn: the update to run each step (default :func:`gan_train_step`); the notebook
            passes a learner's own training step here.
        log_every: steps per history record.
        n_fixed: number of fixed noise vectors whose images are snapshotted.
        snapshot_every: steps between snapshots of G(fixed noise). Default: 8 evenly spaced
            snapshots per run (by steps when ``epochs`` or ``max_steps`` fix the length, else
            by the clock over ``time_budget``). Snapshots are also taken before the first step
            and after the last.
        snapshot_dir: if given, each snapshot is also saved there as ``step_000123.png``.
        checkpoint_path: save G, D, both optimizers, the noise and batch-order state, history
            and snapshots there (atomically) every ``checkpoint_every`` steps and at the end.
        resume: continue from ``checkpoint_path`` if it exists, on the same batches and noise.
        device: ``"cpu"``, ``"cuda"``, ``"mps"`` or None for :func:`config.get_device`.
        seed: seeds the batch order, the noise stream and the fixed noise.
        progress: show a tqdm progress bar with the latest D(x) and D(G(z)).

    Returns:
        A :class:`GANResult` (history, fixed-noise snapshots, step count, time).

    Raises:
        ValueError: for images of the wrong shape or range, bad arguments, or losses that
            became NaN/infinite (lower the learning rates).
    """
    from .losses import GENERATOR_LOSS_KINDS

    if not isinstance(train_images, Tensor) or train_images.ndim != 4 \
            or tuple(train_images.shape[1:]) != (1, 28, 28):
        shape = tuple(train_images.shape) if isinstance(train_images, Tensor) else type(train_images)
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
    if resume and checkpoint_path is None:
        raise ValueError("resume=True needs checkpoint_path=... to resume from.")
    if epochs is None and time_budget is None and max_steps is None:
        raise ValueError("give epochs=..., time_budget=... (seconds) or max_steps=..., so that "
                         "training knows when to stop.")
    latent_dim = latent_dim or getattr(G, "latent_dim", None)
    if not latent_dim:
        raise ValueError("pass latent_dim=...: the generator has no latent_dim attribute")
    step_fn = step_fn or gan_train_step

    device = config.get_device(None if device is None else str(device))
    G.to(device)
    D.to(device)
    data = (train_images.to(device) * 2.0 - 1.0)                   # (N, 1, 28, 28) in [-1, 1]
    if optimizers is None:
        opt_g = torch.optim.Adam(G.parameters(), lr=lr_g, betas=betas_g)
        opt_d = torch.optim.Adam(D.parameters(), lr=lr_d, betas=betas_d)
    else:
        opt_g, opt_d = optimizers
    steps_per_epoch = n // batch_size
    snapshot_seconds = math.inf                  # snapshots by the clock (time budget only)
    if snapshot_every is None:
        planned = min(epochs * steps_per_epoch if epochs else math.inf, max_steps or math.inf)
        if planned < math.inf:
            snapshot_every = max(1, math.ceil(planned / 8))
        else:
            snapshot_every = 10**12
            snapshot_seconds = time_budget / 8 if time_budget else math.inf

    noise_gen = torch.Generator().manual_seed(seed + 1)           # the z of every step
    fixed_noise = torch.randn(n_fixed, latent_dim,
                              generator=torch.Generator().manual_seed(seed + 2))
    history = History()
    snapshots: list[tuple[int, Tensor]] = []
    step, epoch, in_epoch, seconds_before = 0, 0, 0, 0.0

    if resume and Path(checkpoint_path).is_file():                # type: ignore[arg-type]
        state = load_checkpoint(checkpoint_path, map_location=device)  # type: ignore[arg-type]
        if state.get("format") != GAN_CHECKPOINT_FORMAT:
            raise ValueError(f"{checkpoint_path} was not written by fit_gan "
                             f"(format {state.get('format')!r}); pass resume=False.")
        if state["batch_size"] != batch_size or state["n_train"] != n:
            raise ValueError(f"cannot resume: the checkpoint used batch_size="
                             f"{state['batch_size']} and {state['n_train']} images; this call "
                             f"has {batch_size} and {n}. Use the same, or resume=False.")
        G.load_state_dict(state["G"])
        D.load_state_dict(state["D"])
        opt_g.load_state_dict(state["opt_g"])
        opt_d.load_state_dict(state["opt_d"])
        noise_gen.set_state(state["noise_gen"])
        set_rng_state(state["rng"])
        fixed_noise = state["fixed_noise"]
        history = History([dict(r) for r in state["history"]])
        snapshots = [(int(s), img) for s, img in zip(state["snapshot_steps"], state["snapshots"])]
        step, epoch, in_epoch = state["step"], state["epoch"], state["in_epoch"]
        seconds_before = state["seconds"]
    else:
        torch.manual_seed(seed)

    def checkpoint() -> None:
        if checkpoint_path is None:
            return
        save_checkpoint(checkpoint_path, {
            "format": GAN_CHECKPOINT_FORMAT, "batch_size": batch_size, "n_train": n,
            "G": G.state_dict(), "D": D.state_dict(), "opt_g": opt_g.state_dict(),
            "opt_d": opt_d.state_dict(), "noise_gen": noise_gen.get_state(),
            "rng": rng_state(), "fixed_noise": fixed_noise, "history": history.records,
            "snapshot_steps": [s for s, _ in snapshots], "snapshots": [i for _, i in snapshots],
            "step": step, "epoch": epoch, "in_epoch": in_epoch,
            "seconds": seconds_before + train_seconds})

    def snapshot() -> None:
        if snapshots and snapshots[-1][0] == step:
            return
        images = _generate_eval(G, fixed_noise.to(device))
        snapshots.append((step, images))
        if snapshot_dir is not None:
            save_grid_png(images, Path(snapshot_dir) / f"step_{step:06d}.png")

    if (epochs is not None and epoch >= epochs) or (max_steps is not None and step >= max_steps):
        return GANResult(history, snapshots, fixed_noise, step, seconds_before, "done")

    bar_epochs = epochs if epochs is not None or time_budget is not None \
        else math.ceil(max_steps / steps_per_epoch)               # type: ignore[operator]
    tracker = TrainingProgress(epochs=bar_epochs, time_budget=time_budget,
                               steps_per_epoch=steps_per_epoch, start_step=step, desc=desc,
                               enabled=progress)
    if max_steps is not None and (tracker.total_steps is None or max_steps < tracker.total_steps):
        tracker.total_steps = max_steps                          # the bar's end and fraction()
        tracker.bar.total = max_steps
        tracker.bar.refresh()
    acc = MetricAccumulator()
    train_seconds, interval_start, interval_images = 0.0, time.perf_counter(), 0
    t0 = time.perf_counter()

    def log() -> None:
        """Append the means since the last record to the history."""
        nonlocal acc, interval_start, interval_images
        means = acc.means()
        if not all(math.isfinite(v) for v in means.values()):
            raise ValueError(f"GAN losses became {means} at step {step}: lower the learning "
                             "rates or check the losses.")
        _sync(device)
        now = time.perf_counter()
        history.append({"step": step, "epoch": epoch + in_epoch / steps_per_epoch, **means,
                        "elapsed": seconds_before + train_seconds + now - t0,
                        "images_per_sec": interval_images / max(now - interval_start, 1e-9)})
        tracker.set_postfix({k: means[k] for k in ("d_real", "d_fake") if k in means})
        acc, interval_start, interval_images = MetricAccumulator(), now, 0

    stopped_by = "epochs"
    G.train()
    D.train()
    next_snapshot = snapshot_seconds
    try:
        snapshot()
        t0 = time.perf_counter()
        while epochs is None or epoch < epochs:
            # every epoch's order comes from its own seed, so a resumed run replays it exactly
            order = torch.Generator().manual_seed(seed * 100_003 + epoch)
            batches = iterate_batches(data, batch_size=batch_size, shuffle=True,
                                      generator=order, drop_last=True)
            for (real,) in itertools.islice(batches, in_epoch, None):
                z = torch.randn(batch_size, latent_dim, generator=noise_gen).to(device)
                metrics = step_fn(G, D, opt_g, opt_d, real, z, real_label=real_label,
                                  g_loss=g_loss)
                acc.add(metrics, 1)
                step += 1
                in_epoch += 1
                interval_images += batch_size
                tracker.update()
                if step % log_every == 0:
                    log()
                if step % snapshot_every == 0 or tracker.elapsed >= next_snapshot:
                    snapshot()
                    next_snapshot = tracker.elapsed + snapshot_seconds
                if checkpoint_path is not None and step % checkpoint_every == 0:
                    train_seconds += time.perf_counter() - t0
                    checkpoint()
                    t0 = time.perf_counter()
                if tracker.out_of_time():
                    stopped_by = "time"
                    break
                if max_steps is not None and step >= max_steps:
                    stopped_by = "max_steps"
                    break
            if stopped_by != "epochs":
                break
            epoch += 1
            in_epoch = 0
        if acc.count:                                              # a last partial interval
            log()
        _sync(device)
        train_seconds += time.perf_counter() - t0
        snapshot()
        checkpoint()
    finally:
        tracker.close()
    return GANResult(history, snapshots, fixed_noise, step, seconds_before + train_seconds,
                     stopped_by)
