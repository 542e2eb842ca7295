"""Test-suite settings shared by unit tests and notebook runs (nbval).

* Smoke mode is on for the whole suite (``COURSE_SMOKE=1``), so notebooks run in seconds.
* Figures render off-screen (``MPLBACKEND=Agg``).
* Each notebook's kernel is told what its checks must report: solution notebooks must pass
  every check (``COURSE_EXPECT=solved``), student notebooks must report every exercise as not
  done (``COURSE_EXPECT=unsolved``). nbval starts a kernel per notebook file when that file's
  first cell is set up, and the kernel inherits this process's environment, so setting the
  variable just before that is enough.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ["COURSE_SMOKE"] = "1"
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.pop("COURSE_TRAIN", None)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    path = Path(str(item.path))
    if path.suffix == ".ipynb":
        os.environ["COURSE_EXPECT"] = "solved" if path.parent.name == "solutions" else "unsolved"
    else:
        os.environ.pop("COURSE_EXPECT", None)
