"""What a training run reports: its history, its progress bar, its learning-rate schedule,
the result it returns, and the checks on its metrics."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

__all__ = ["History", "MetricAccumulator", "TrainingProgress", "TrainResult", "LR_SCHEDULES",
           "lr_factor", "CLOCKS", "budget_clock", "check_finite"]


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


@dataclass
class TrainResult:
    """What every training loop (:func:`~course_utils.training.fit`,
    :func:`~course_utils.training.fit_gan`) and every training script returns.

    Attributes:
        history: the run's records (see :class:`History`).
        steps: optimisation steps done in total (a resumed run counts the earlier ones).
        seconds: training seconds in total, on the run's clock.
        stopped_by: ``"epochs"``, ``"time"`` (the time budget), ``"max_steps"``, or ``"done"``
            when a resumed run had nothing left to do.
        metrics: figures a training script adds (test scores, the metadata it wrote); empty
            for a plain loop.
    """

    history: History
    steps: int
    seconds: float
    stopped_by: str
    metrics: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        last = self.history.last if len(self.history) else {}
        shown = {k: round(v, 4) for k, v in last.items() if k.endswith("loss")}
        return (f"{type(self).__name__}(steps={self.steps}, seconds={self.seconds:.1f}, "
                f"stopped_by={self.stopped_by!r}, last={shown})")


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
        return {k: v / self.count for k, v in zip(keys, values, strict=True)}

    def state_dict(self) -> dict[str, Any]:
        """Plain-Python state, for checkpoints."""
        return {"count": self.count,
                "sums": {k: float(v) for k, v in self.sums.items()}}

    def load_state_dict(self, state: Mapping[str, Any], device: torch.device) -> None:
        """Restore what :meth:`state_dict` returned."""
        self.count = int(state["count"])
        self.sums = {k: torch.tensor(v, dtype=torch.float32, device=device)
                     for k, v in state["sums"].items()}


def check_finite(means: Mapping[str, float], message: str) -> None:
    """Raise ``ValueError(message)`` if any metric is NaN or infinite."""
    if not all(math.isfinite(v) for v in means.values()):
        raise ValueError(message)


CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "cpu": time.process_time}
"""The clocks a time budget can be measured on: wall-clock seconds, or this process's CPU
seconds (all threads; with one thread, "N seconds on one core" whatever else the machine runs,
so a machine shared with other jobs does not shrink the training a run gets)."""


def budget_clock(name: str) -> Callable[[], float]:
    """The seconds counter called ``name`` in :data:`CLOCKS` (``"wall"`` or ``"cpu"``)."""
    if name not in CLOCKS:
        raise ValueError(f"clock must be one of {sorted(CLOCKS)}, got {name!r}")
    return CLOCKS[name]


class TrainingProgress:
    """Counts steps, watches a step limit and a time budget, and drives a tqdm.auto bar.

    Args:
        epochs: stop after this many epochs in total (None: no epoch limit).
        time_budget: stop after this many seconds of this call (None: no time limit).
        steps_per_epoch: batches per epoch.
        start_step: steps already done (when resuming).
        desc: progress-bar label.
        clock: the seconds counter the budget is measured on (default ``time.perf_counter``,
            wall time; ``time.process_time`` counts this process's CPU seconds instead).
        enabled: show the bar.
        max_steps: stop after this many steps in total (None: no step limit); the bar ends at
            the nearer of ``max_steps`` and ``epochs * steps_per_epoch``.

    At least one of ``epochs``, ``time_budget`` and ``max_steps`` must be given.
    """

    def __init__(self, *, epochs: int | None, time_budget: float | None, steps_per_epoch: int,
                 start_step: int = 0, desc: str = "train", enabled: bool = True,
                 clock: Callable[[], float] = time.perf_counter,
                 max_steps: int | None = None) -> None:
        if epochs is None and time_budget is None and max_steps is None:
            raise ValueError("give epochs=..., time_budget=... (seconds) or max_steps=..., "
                             "so that training knows when to stop.")
        if epochs is not None and epochs < 0:
            raise ValueError(f"epochs must be >= 0, got {epochs}.")
        if time_budget is not None and time_budget < 0:
            raise ValueError(f"time_budget must be >= 0 seconds, got {time_budget}.")
        if max_steps is not None and max_steps < 0:
            raise ValueError(f"max_steps must be >= 0, got {max_steps}.")
        self.epochs = epochs
        self.time_budget = time_budget
        self.steps_per_epoch = steps_per_epoch
        self.total_steps = None if epochs is None else epochs * steps_per_epoch
        if max_steps is not None and (self.total_steps is None or max_steps < self.total_steps):
            self.total_steps = max_steps
        self.clock = clock
        self.start = clock()
        self.deadline = math.inf if time_budget is None else self.start + time_budget
        from ..config import progress_bar
        tqdm = progress_bar()   # tqdm.auto, or plain text (COURSE_PROGRESS)

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
        ``epochs`` or ``max_steps`` is set) or the clock (when ``time_budget`` is set)."""
        by_steps = min(1.0, step / self.total_steps) if self.total_steps else 0.0
        if self.time_budget is None:
            return by_steps
        by_clock = min(1.0, self.elapsed / self.time_budget) if self.time_budget > 0 else 1.0
        return max(by_steps, by_clock)

    def stop_reason(self, step: int, max_steps: int | None) -> str | None:
        """``"time"`` once the budget is spent, ``"max_steps"`` once ``step`` reaches
        ``max_steps``, else None (reads the clock once)."""
        if self.out_of_time():
            return "time"
        if max_steps is not None and step >= max_steps:
            return "max_steps"
        return None

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
