"""The set-up check that notebook 00 runs: packages, data, device and mode, each with its fix.

``print("\\n".join(doctor.check_environment()))`` prints one line per item. Problems start with
``MISSING`` or ``WARNING`` so they stand out, and each says how to fix it.

This lives apart from :mod:`course_utils.config` because it needs :mod:`course_utils.data` to
look for the dataset, and ``data`` itself reads its switches from ``config``: keeping the check
here means ``config`` imports nothing else from the package.
"""

from __future__ import annotations

import importlib.util
from importlib.metadata import PackageNotFoundError, version

from . import config, data

__all__ = ["REQUIRED", "check_environment"]

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


def _package_lines() -> list[str]:
    """One line per package in :data:`REQUIRED`: its version, or how to install it."""
    lines = []
    for module, (dist, why) in REQUIRED.items():
        if importlib.util.find_spec(module) is None:
            lines.append(f"MISSING  {dist:<13} needed for {why}. Fix: pip install {dist}")
            continue
        try:
            lines.append(f"ok       {dist:<13} {version(dist)}")
        except PackageNotFoundError:
            lines.append(f"ok       {dist:<13} (version unknown)")
    return lines


def _data_line() -> str:
    """Where Fashion-MNIST was found, or how to get it."""
    found = data.find_local("fashion-mnist")
    if found:
        return f"ok       Fashion-MNIST  found in {found}"
    return ("WARNING  Fashion-MNIST  not found locally. Fix: `sudo apt-get install "
            "dataset-fashion-mnist` (Debian/Ubuntu), or set COURSE_DATA_DIR, or let "
            "load_dataset() download it (needs internet). Offline, the notebooks fall "
            "back to scikit-learn's digits.")


def _device_lines() -> list[str]:
    """The device that will be used, or what is wrong with the requested one."""
    try:
        device = config.get_device()
    except ValueError as exc:
        return [f"WARNING  device         {exc}"]
    lines = [f"ok       device         {device}"]
    if device.type == "cpu":
        lines.append("note     running on the CPU: fine for this course; full-mode training "
                     "takes minutes (a GPU or Apple MPS is faster).")
    return lines


def _mode_line() -> str:
    """Smoke or full mode, or what is wrong with ``COURSE_SMOKE``."""
    try:
        mode = "smoke" if config.is_smoke() else "full"
    except ValueError as exc:
        return f"WARNING  mode           {exc}"
    switch = ("set COURSE_SMOKE=0 for the full version" if mode == "smoke"
              else "set COURSE_SMOKE=1 for the seconds-long test version")
    return f"ok       mode           {mode} ({switch})"


def check_environment() -> list[str]:
    """Check packages, data, device and mode; return report lines, each problem with its fix.

    Problems start with ``MISSING`` or ``WARNING``; the function never raises for a problem
    it checks, so a notebook can always print what is wrong.
    """
    return _package_lines() + [_data_line()] + _device_lines() + [_mode_line()]
