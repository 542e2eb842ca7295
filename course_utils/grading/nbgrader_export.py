"""Turn a course solution notebook into an nbgrader *source* notebook.

Usage::

    course-nbgrader-export notebooks/solutions/00_introduction.ipynb course/source/00_introduction
    python -m course_utils.grading.nbgrader_export SOLUTION_NOTEBOOK... OUT_DIR

The course's solution notebooks already use nbgrader's solution markers (``### BEGIN SOLUTION``
/ ``### END SOLUTION``); what nbgrader also needs is its cell metadata. This command writes a
copy of each solution notebook into ``OUT_DIR`` (nbgrader's ``source/<assignment>/`` folder)
where:

* cells tagged ``solution-only`` are dropped (they explain answers);
* each exercise cell (``exercise_id`` metadata) is an *autograded answer*: nbgrader metadata
  ``{"solution": true, "grade": false, "grade_id": "<exercise id>"}``, so ``nbgrader
  generate_assignment`` replaces its marked region with nbgrader's stub;
* the cell that calls ``check("<exercise id>", ...)`` is a locked *autograder test* cell,
  ``{"grade": true, "locked": true, "grade_id": "<exercise id>_check", "points": <points>}``.
  Hidden-test lines (nbgrader's ``### BEGIN HIDDEN TESTS`` markers, removed from the students'
  copy and restored for autograding) set ``COURSE_EXPECT=solved`` around the check, so an answer
  that does not pass raises and nbgrader scores the cell 0. Students see only the usual
  ``check(...)`` line, which prints its verdict and carries on;
* outputs and editor metadata are cleared. Every other cell is left as it is.

Then, in the nbgrader course: ``nbgrader generate_assignment <assignment>``, release and collect
as usual, and ``COURSE_SMOKE=1 nbgrader autograde <assignment>``.
"""

from __future__ import annotations

import argparse
import copy
import re
import sys
from pathlib import Path
from typing import Any

import nbformat

from .notebooks import BEGIN, SOLUTION_ONLY, NotebookFormatError, clean, dumps, strip_solution

SCHEMA_VERSION = 3
BEGIN_HIDDEN, END_HIDDEN = "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"
_CHECK_CALL = re.compile(r"""\bcheck\(\s*["'](?P<id>[\w.-]+)["']""")
# Autograding only: make check() raise unless the answer passes, then undo it.
STRICT_BEFORE = (f"{BEGIN_HIDDEN}\n"
                 "import os as _course_os\n"
                 "_course_os.environ[\"COURSE_EXPECT\"] = \"solved\"  "
                 "# autograding: a check that does not pass raises\n"
                 f"{END_HIDDEN}\n")
STRICT_AFTER = (f"\n{BEGIN_HIDDEN}\n"
                "_course_os.environ.pop(\"COURSE_EXPECT\", None)\n"
                f"{END_HIDDEN}")


def nbgrader_metadata(**fields: Any) -> dict[str, Any]:
    """nbgrader's cell metadata (schema 3): every flag off unless given in ``fields``."""
    return {"grade": False, "locked": False, "schema_version": SCHEMA_VERSION,
            "solution": False, "task": False, **fields}


def _source(cell: Any) -> str:
    return "".join(cell.source) if isinstance(cell.source, list) else cell.source


def _checked_ids(cell: Any) -> list[str]:
    """The exercise ids a code cell passes to ``check(...)``."""
    return _CHECK_CALL.findall(_source(cell)) if cell.cell_type == "code" else []


def to_nbgrader(solution: nbformat.NotebookNode, name: str) -> nbformat.NotebookNode:
    """The nbgrader source version of ``solution`` (see the module docstring)."""
    nb = copy.deepcopy(solution)
    nb.cells = [c for c in nb.cells if SOLUTION_ONLY not in c.metadata.get("tags", [])]
    nb = clean(nb)                              # drops editor metadata; nbgrader's comes next
    points: dict[str, float] = {}
    for i, cell in enumerate(nb.cells):
        ex_id = cell.metadata.get("exercise_id")
        if ex_id is None:
            continue
        where = f"{name}, cell {i}"
        if ex_id in points:
            raise NotebookFormatError(f"{where}: exercise id {ex_id!r} is used twice.")
        if BEGIN not in _source(cell):
            raise NotebookFormatError(
                f"{where}: exercise {ex_id!r} has no '{BEGIN}' marker, so this is a student "
                "notebook; pass the solution notebook (notebooks/solutions/...).")
        strip_solution(_source(cell), ex_id, where)      # validates the markers, or raises
        points[ex_id] = float(cell.metadata.get("points", 0))
        cell.metadata["nbgrader"] = nbgrader_metadata(solution=True, grade_id=ex_id)
    if not points:
        raise NotebookFormatError(
            f"{name}: no cell has 'exercise_id' metadata with solution markers; pass a solution "
            "notebook (notebooks/solutions/...), not a student copy.")
    tests: dict[str, int] = {}
    for i, cell in enumerate(nb.cells):
        for ex_id in _checked_ids(cell):
            if ex_id not in points:
                continue
            if ex_id in tests or len(set(_checked_ids(cell)) & set(points)) > 1:
                raise NotebookFormatError(
                    f"{name}, cell {i}: exercise {ex_id!r} is checked in more than one cell, or "
                    "this cell checks several exercises; nbgrader needs one test cell each.")
            tests[ex_id] = i
            cell.source = STRICT_BEFORE + _source(cell) + STRICT_AFTER
            cell.metadata["nbgrader"] = nbgrader_metadata(
                grade=True, locked=True, grade_id=f"{ex_id}_check", points=points[ex_id])
    unchecked = sorted(set(points) - set(tests))
    if unchecked:
        raise NotebookFormatError(f"{name}: no cell calls check(...) for {', '.join(unchecked)};"
                                  " nbgrader would have no test to score it.")
    return nb


def export(solution_path: str | Path, out_dir: str | Path) -> Path:
    """Write the nbgrader source version of ``solution_path`` into ``out_dir``; return it."""
    src = Path(solution_path)
    try:
        solution = nbformat.read(src, as_version=4)
    except Exception as exc:  # nbformat raises several types for bad JSON
        raise NotebookFormatError(f"{src}: cannot be read as a notebook ({exc}).") from exc
    nb = to_nbgrader(solution, src.name)
    out = Path(out_dir) / src.name
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(dumps(nb), encoding="utf-8")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="course-nbgrader-export",
        description="Convert course solution notebooks into nbgrader source notebooks "
                    "(answer cells, locked autograder test cells with the exercise's points).",
        epilog="Example: course-nbgrader-export notebooks/solutions/00_introduction.ipynb "
               "course/source/00_introduction")
    p.add_argument("notebooks", nargs="+", metavar="SOLUTION_NOTEBOOK",
                   help="solution notebook(s), from notebooks/solutions/")
    p.add_argument("out_dir", metavar="OUT_DIR",
                   help="nbgrader's source/<assignment>/ folder (created if needed)")
    args = p.parse_args(argv)
    for path in args.notebooks:
        try:
            out = export(path, args.out_dir)
        except NotebookFormatError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
