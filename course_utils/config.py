"""Run-time configuration: smoke/full mode, device choice and seeding.

Every switch that changes how much work the course does is read here, in one place:

* ``COURSE_SMOKE=1`` turns on *smoke mode*: tiny data subsets, one short epoch, small
  widths. The test suite and CI set it; learners normally leave it unset (full mode).
* ``COURSE_DEVICE=cpu|cuda|mps`` overrides the automatic device choice (cuda > mps > cpu).
* ``COURSE_TRAIN=1`` asks notebooks that offer a shipped checkpoint to train from scratch
  instead of loading it.

Notebooks read these through :func:`is_smoke`, :func:`get_device` and :func:`train_from_scratch`
so that a ``parameters`` cell (papermill) or the environment can change them.
"""

from __future__ import annotations

import os
import platform
import random
from typing import TypeVar

import numpy as np
import torch

T = TypeVar("T")

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"", "0", "false", "no", "off"}


def _env_flag(name: str) -> bool:
    """Read a boolean environment variable, rejecting values we cannot interpret."""
    raw = os.environ.get(name, "").strip().lower()
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise ValueError(f"{name}={os.environ[name]!r} is not understood: use 1 (on) or 0 (off).")


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


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def get_device(override: str | None = None) -> torch.device:
    """Choose the compute device: ``override``, else ``COURSE_DEVICE``, else cuda > mps > cpu.

    Raises:
        ValueError: if the requested device is unknown or not available on this machine.
    """
    wanted = (override or os.environ.get("COURSE_DEVICE", "")).strip().lower()
    if not wanted or wanted == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    kind = wanted.split(":")[0]
    if kind not in {"cpu", "cuda", "mps"}:
        raise ValueError(f"Unknown device {wanted!r}: use 'cpu', 'cuda', 'mps' or 'auto'.")
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


# Import name -> (distribution name, why the course needs it)
REQUIRED = {
    "torch": ("torch", "models and training"),
    "numpy": ("numpy", "arrays"),
    "matplotlib": ("matplotlib", "plots"),
    "ipywidgets": ("ipywidgets", "interactive latent explorers"),
    "sklearn": ("scikit-learn", "PCA, t-SNE and the offline digits dataset"),
    "scipy": ("scipy", "matrix square root in the Frechet distance"),
    "tqdm": ("tqdm", "progress bars"),
}


def check_environment() -> list[str]:
    """Check packages, data and device; return report lines, each problem with its fix.

    Problems start with ``MISSING`` or ``WARNING`` so they stand out; the function never
    raises, so a notebook can always print what is wrong.
    """
    import importlib.util
    from importlib.metadata import PackageNotFoundError, version

    lines = []
    for module, (dist, why) in REQUIRED.items():
        if importlib.util.find_spec(module) is None:
            lines.append(f"MISSING  {dist:<13} needed for {why}. Fix: pip install {dist}")
            continue
        try:
            lines.append(f"ok       {dist:<13} {version(dist)}")
        except PackageNotFoundError:
            lines.append(f"ok       {dist:<13} (version unknown)")
    from . import data  # late import: data imports config

    found = data.find_local("fashion-mnist")
    if found:
        lines.append(f"ok       Fashion-MNIST  found in {found}")
    else:
        lines.append("WARNING  Fashion-MNIST  not found locally. Fix: `sudo apt-get install "
                     "dataset-fashion-mnist` (Debian/Ubuntu), or set COURSE_DATA_DIR, or let "
                     "load_dataset() download it (needs internet). Offline, the notebooks fall "
                     "back to scikit-learn's digits.")
    try:
        device = get_device()
        lines.append(f"ok       device         {device}")
        if device.type == "cpu":
            lines.append("note     running on the CPU: fine for this course; full-mode training "
                         "takes minutes (a GPU or Apple MPS is faster).")
    except ValueError as exc:
        lines.append(f"WARNING  device         {exc}")
    lines.append(f"ok       mode           {'smoke' if is_smoke() else 'full'}"
                 " (set COURSE_SMOKE=1 for the seconds-long test version)")
    return lines
