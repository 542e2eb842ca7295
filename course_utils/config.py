"""Run-time configuration: every environment switch of the course, read in this one module.

=====================  ==========================================================================
``COURSE_SMOKE``       ``1`` turns on *smoke mode*: tiny data subsets (:data:`SMOKE_TRAIN` and
                       :data:`SMOKE_TEST` images), one short epoch, small widths. The test suite
                       and CI set it; learners normally leave it unset (full mode).
``COURSE_DEVICE``      ``cpu``, ``cuda`` (or ``cuda:N``), ``mps`` or ``auto`` (default): the
                       compute device; ``auto`` picks cuda > mps > cpu.
``COURSE_TRAIN``       ``1`` asks notebooks that offer a shipped checkpoint to train from scratch
                       instead of loading it.
``COURSE_WIDGETS``     ``1`` forces the interactive widgets on inside a Jupyter kernel, ``0``
                       turns them off, ``auto`` (default) shows them outside smoke mode.
``COURSE_PROGRESS``    ``text`` makes progress bars plain text (headless runs set it);
                       ``auto`` (default) uses tqdm.auto, a widget inside Jupyter.
``COURSE_EXPECT``      ``solved`` or ``unsolved`` (set by the test suite): what every exercise
                       check must report; anything else raises. Unset: no expectation.
``COURSE_DATA_DIR``    a folder holding the dataset files, tried before the system path.
``COURSE_CACHE_DIR``   where downloads go (default ``$XDG_CACHE_HOME/course_utils``, else
                       ``~/.cache/course_utils``).
=====================  ==========================================================================

On/off switches accept ``1/true/yes/on`` and ``0/false/no/off`` (or unset). Every switch follows
one rule for a value it does not know: :class:`ConfigError` (a ``ValueError``) naming the
variable, the value and the accepted values. Nothing falls back silently.

Notebooks read the switches through :func:`is_smoke`, :func:`get_device` and
:func:`train_from_scratch`, so that a ``parameters`` cell (papermill, via
:func:`apply_overrides`) or the environment can change them. The switches are read on every
call, never cached, so a change to the environment takes effect at once.
"""

from __future__ import annotations

import os
import platform
import random
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch

T = TypeVar("T")

__all__ = [
    "ConfigError", "SMOKE_TRAIN", "SMOKE_TEST", "is_smoke", "train_from_scratch", "pick",
    "widgets_mode", "progress_bar", "expected_verdict", "data_dir", "cache_dir", "get_device",
    "seed_everything", "describe_setup", "apply_overrides",
]

# Smoke mode keeps only the first images of each split (load_dataset applies them).
SMOKE_TRAIN = 2048
SMOKE_TEST = 512

_ON = ("1", "true", "yes", "on")
_OFF = ("0", "false", "no", "off")


class ConfigError(ValueError):
    """An environment switch has a value the course does not understand."""


def _raw(name: str) -> str:
    """The switch's value, stripped and lower-cased; ``""`` when unset."""
    return os.environ.get(name, "").strip().lower()


def _reject(name: str, accepted: str) -> ConfigError:
    """The one error for an unknown value: the variable, its value, what is accepted."""
    return ConfigError(f"{name}={os.environ.get(name, '')!r} is not understood. Accepted "
                       f"values: {accepted}. Fix the value, or unset {name} for the default.")


def _choice(name: str, choices: dict[str, tuple[str, ...]], default: str) -> str:
    """Read switch ``name`` as one of ``choices`` (canonical value -> accepted spellings).

    Unset or empty gives ``default``; a value that is no accepted spelling raises
    :class:`ConfigError`.
    """
    raw = _raw(name)
    if not raw:
        return default
    for canonical, spellings in choices.items():
        if raw in spellings:
            return canonical
    accepted = "; ".join(c if s == (c,) else f"{'/'.join(s)} (= {c})" for c, s in choices.items())
    raise _reject(name, accepted)


def _env_flag(name: str) -> bool:
    """Read an on/off switch: ``1/true/yes/on`` or ``0/false/no/off``; unset means off."""
    return _choice(name, {"on": _ON, "off": _OFF}, default="off") == "on"


def is_smoke() -> bool:
    """True when ``COURSE_SMOKE`` asks for the seconds-long smoke version of every run."""
    return _env_flag("COURSE_SMOKE")


def train_from_scratch() -> bool:
    """True when ``COURSE_TRAIN=1`` asks to train instead of loading shipped checkpoints."""
    return _env_flag("COURSE_TRAIN")


def pick(smoke: T, full: T) -> T:
    """Return ``smoke`` in smoke mode and ``full`` otherwise.

    Use it for every size that smoke mode shrinks, e.g. ``epochs = pick(smoke=1, full=10)``.
    """
    return smoke if is_smoke() else full


def widgets_mode() -> str:
    """``COURSE_WIDGETS`` as ``"on"``, ``"off"`` or ``"auto"`` (unset or ``auto``)."""
    return _choice("COURSE_WIDGETS", {"on": _ON, "off": _OFF, "auto": ("auto",)}, default="auto")


def progress_bar() -> type:
    """The tqdm class for progress bars, chosen by ``COURSE_PROGRESS``: ``auto`` (default) gives
    ``tqdm.auto`` (a widget inside Jupyter); ``text`` gives plain-text tqdm, which headless runs
    (``course_utils.run_course``) use so that a saved notebook shows each bar's final count."""
    if _choice("COURSE_PROGRESS", {"auto": ("auto",), "text": ("text",)}, "auto") == "text":
        from tqdm.std import tqdm
    else:
        from tqdm.auto import tqdm
    return tqdm


def expected_verdict() -> str | None:
    """``COURSE_EXPECT``: ``"solved"``, ``"unsolved"``, or ``None`` when unset.

    The test suite sets it so that a notebook run fails unless every check reports passed
    (solution notebooks) or not done (student notebooks).
    """
    value = _choice("COURSE_EXPECT", {"solved": ("solved",), "unsolved": ("unsolved",)},
                    default="")
    return value or None


def data_dir() -> Path | None:
    """The folder named by ``COURSE_DATA_DIR`` (``~`` expanded), or ``None`` when unset."""
    raw = os.environ.get("COURSE_DATA_DIR", "").strip()
    return Path(raw).expanduser() if raw else None


def cache_dir() -> Path:
    """The user cache for downloaded data: ``COURSE_CACHE_DIR``, else
    ``$XDG_CACHE_HOME/course_utils``, else ``~/.cache/course_utils``."""
    raw = os.environ.get("COURSE_CACHE_DIR", "").strip()
    if raw:
        return Path(raw).expanduser()
    base = os.environ.get("XDG_CACHE_HOME", "").strip() or Path.home() / ".cache"
    return Path(base).expanduser() / "course_utils"


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


_DEVICES = "auto, cpu, cuda, cuda:N (N = a GPU index), mps"


def get_device(override: str | None = None) -> torch.device:
    """Choose the compute device: ``override``, else ``COURSE_DEVICE``, else cuda > mps > cpu.

    Raises:
        ConfigError: if the requested device is unknown (naming where the request came from).
        ValueError: if it is known but not available on this machine.
    """
    if override:
        wanted, source = override.strip().lower(), None
    else:
        wanted, source = _raw("COURSE_DEVICE"), "COURSE_DEVICE"
    if not wanted or wanted == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    kind, colon, index = wanted.partition(":")
    if kind not in {"cpu", "cuda", "mps"} or colon and not index.isdigit():
        if source:
            raise _reject(source, _DEVICES)
        raise ConfigError(f"Unknown device {override!r}. Accepted values: {_DEVICES}.")
    if kind == "cuda" and not torch.cuda.is_available():
        raise ValueError("CUDA was requested but torch.cuda.is_available() is False: "
                         "install a CUDA build of PyTorch or use COURSE_DEVICE=cpu.")
    if kind == "mps" and not _mps_available():
        raise ValueError("MPS was requested but is not available (it needs Apple silicon "
                         "and macOS 12.3+): use COURSE_DEVICE=cpu.")
    return torch.device(wanted)


def seed_everything(seed: int = 0) -> torch.Generator:
    """Seed Python, NumPy and PyTorch (all devices) and return a seeded CPU generator."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds CUDA and MPS
    return torch.Generator().manual_seed(seed)


def describe_setup(device: torch.device | None = None) -> str:
    """One line describing the mode, device and library versions, for notebooks to print."""
    device = device or get_device()
    mode = "SMOKE (tiny, for tests)" if is_smoke() else "full"
    threads = torch.get_num_threads()
    return (f"mode={mode} | device={device} | torch {torch.__version__} "
            f"({threads} CPU threads) | Python {platform.python_version()}")


def apply_overrides(smoke: bool | None = None, device: str | None = None,
                    train: bool | None = None) -> None:
    """Apply a notebook's ``parameters`` cell: ``None`` keeps what the environment says.

    Papermill (or a learner) can set ``smoke = True`` or ``device = "cpu"`` in that cell; this
    writes them to the environment variables that the rest of ``course_utils`` reads, so the
    switch still lives in one place.
    """
    if smoke is not None:
        os.environ["COURSE_SMOKE"] = "1" if smoke else "0"
    if device is not None:
        get_device(device)  # validate now, with a clear error, rather than mid-notebook
        os.environ["COURSE_DEVICE"] = device
    if train is not None:
        os.environ["COURSE_TRAIN"] = "1" if train else "0"
