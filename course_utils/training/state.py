"""A run's state: the random streams, the device, and checkpoints (save, load, resume).

Both loops save and resume through :func:`checkpoint_payload` and :func:`resume_from`, so a
checkpoint always holds the same parts: a format tag, the run's configuration, the models'
and optimisers' ``state_dict``, PyTorch's global random state, the history, and the loop's
own counters.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch

from .. import config
from ..utils import atomic_write
from .progress import History

__all__ = ["rng_state", "set_rng_state", "preserve_rng", "save_checkpoint", "load_checkpoint",
           "get_device", "sync", "check_resume", "checkpoint_payload", "resume_from"]


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


# ----------------------------------------------------------------------------- device

def get_device(device: str | torch.device | None) -> torch.device:
    """``device`` as a ``torch.device``; None picks one with :func:`config.get_device`."""
    return config.get_device(None if device is None else str(device))


def sync(device: torch.device) -> None:
    """Wait for queued device work, so that the clock measures it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


# ----------------------------------------------------------------------------- checkpoints

def save_checkpoint(path: str | os.PathLike[str], state: Mapping[str, Any]) -> Path:
    """Write ``state`` with ``torch.save`` atomically: a temporary file, then ``os.replace``.

    A crash while saving leaves the previous checkpoint intact, never a half-written one.
    """
    return atomic_write(path, lambda f: torch.save(dict(state), f))


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
    except Exception as exc:
        raise RuntimeError(f"checkpoint {path} cannot be read ({type(exc).__name__}: {exc}). "
                           "Delete it to start again, or pass resume=False.") from exc


def check_resume(resume: bool, checkpoint_path: str | os.PathLike[str] | None) -> None:
    """Reject ``resume=True`` without a ``checkpoint_path`` (before any work is done)."""
    if resume and checkpoint_path is None:
        raise ValueError("resume=True needs checkpoint_path=... to resume from.")


def checkpoint_payload(fmt: str, run_config: Mapping[str, Any], parts: Mapping[str, Any],
                       history: History, **counters: Any) -> dict[str, Any]:
    """Everything a loop saves: ``format``, ``config``, each part's ``state_dict()`` (models,
    optimisers) under its name, the global random state, the history, and ``counters``."""
    return {"format": fmt, "config": dict(run_config),
            **{name: part.state_dict() for name, part in parts.items()},
            "rng": rng_state(), "history": history.records, **counters}


def resume_from(checkpoint_path: str | os.PathLike[str] | None, resume: bool, *, fmt: str,
                who: str, run_config: Mapping[str, Any], parts: Mapping[str, Any],
                device: torch.device) -> tuple[dict[str, Any], History] | None:
    """The one resume path of both loops: load ``checkpoint_path`` if ``resume`` and the file
    exists, check that it was written by the same loop (``fmt``) for the same data and batch
    size, load every part's state and the global random state.

    Returns:
        ``(state, history)``, or None when there is nothing to resume (the caller starts
        afresh).
    """
    if not resume or checkpoint_path is None or not Path(checkpoint_path).is_file():
        return None
    state = load_checkpoint(checkpoint_path, map_location=device)
    if state.get("format") != fmt:
        raise ValueError(f"{checkpoint_path} was not written by {who} "
                         f"(format {state.get('format')!r}); pass resume=False.")
    saved = state.get("config", state)        # early fit_gan checkpoints kept these at the top
    for key in ("batch_size", "n_train"):
        if saved[key] != run_config[key]:
            raise ValueError(f"cannot resume: the checkpoint used {key}={saved[key]}, this "
                             f"call has {run_config[key]}. Use the same data and batch size, "
                             "or resume=False to start again.")
    for name, part in parts.items():
        part.load_state_dict(state[name])
    set_rng_state(state["rng"])
    return state, History([dict(r) for r in state["history"]])
