"""The code style gate: ``ruff check`` with the settings in pyproject.toml must pass.

Runs on the package, the tests, the benchmarks and conftest.py (notebooks are excluded in
pyproject.toml: their code cells are checked by executing them). To fix findings locally:
``.venv/bin/ruff check --fix .`` then review the diff.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _ruff() -> list[str] | None:
    try:
        import ruff  # noqa: F401  (only to learn whether it is installed)
    except ImportError:
        exe = shutil.which("ruff")
        return [exe] if exe else None
    return [sys.executable, "-m", "ruff"]


def test_ruff_check_passes() -> None:
    cmd = _ruff()
    if cmd is None:
        if os.environ.get("CI"):
            pytest.fail("ruff is not installed: `pip install -e .[test]` installs it")
        pytest.skip("ruff is not installed (pip install -e .[test])")
    out = subprocess.run([*cmd, "check", "--output-format", "concise", "."], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, f"ruff check found problems:\n{out.stdout}{out.stderr}"
