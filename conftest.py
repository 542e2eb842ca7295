"""Test-suite settings shared by unit tests and notebook runs (nbval).

* Smoke mode is on for the whole suite (``COURSE_SMOKE=1``), so notebooks run in seconds.
* Figures render off-screen (``MPLBACKEND=Agg``).
* Each notebook's kernel is told what its checks must report: solution notebooks must pass
  every check (``COURSE_EXPECT=solved``), student notebooks must report every exercise as not
  done (``COURSE_EXPECT=unsolved``). nbval starts a kernel per notebook file when that file's
  first cell is set up, and the kernel inherits this process's environment, so setting the
  variable just before that is enough.
* ``bash course.sh test`` runs the suite on every core with pytest-xdist
  (``-n auto --dist loadfile``): a file's tests run in order on one worker and share its
  module fixtures (nbval needs this: a notebook's cells are the tests of one file, run in one
  kernel); the files with slow tests (marker ``slow``, and the notebooks) are handed out
  first so that no long file starts last. Each worker, and every
  kernel it starts, uses one thread (``OMP_NUM_THREADS=1`` and the BLAS equivalents): two
  workers each running two threads on two cores would spin-wait for each other.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ["COURSE_SMOKE"] = "1"
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.pop("COURSE_TRAIN", None)
if os.environ.get("PYTEST_XDIST_WORKER"):       # set by pytest-xdist in each worker process
    for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[_var] = "1"


def _is_slow_file(items: list[pytest.Item]) -> bool:
    return any(Path(str(i.path)).suffix == ".ipynb" or i.get_closest_marker("slow")
               for i in items)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Move the files with slow tests (and the notebooks) to the front, keeping the order.

    Only whole files move, and items keep their order within a file, so module fixtures and
    notebook kernels behave as in any serial run; with ``--dist loadfile`` the long files are
    handed out first, so that none of them starts last and leaves a core idle at the end.
    """
    by_file: dict[Path, list[pytest.Item]] = {}
    for item in items:
        by_file.setdefault(Path(str(item.path)), []).append(item)
    files = sorted(by_file.values(), key=lambda its: not _is_slow_file(its))  # stable sort
    items[:] = [item for its in files for item in its]


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    path = Path(str(item.path))
    if path.suffix == ".ipynb":
        os.environ["COURSE_EXPECT"] = "solved" if path.parent.name == "solutions" else "unsolved"
    else:
        os.environ.pop("COURSE_EXPECT", None)
