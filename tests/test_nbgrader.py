"""nbgrader compatibility, tested with nbgrader itself.

``course-nbgrader-export`` (:mod:`course_utils.grading.nbgrader_export`) turns a solution
notebook into an nbgrader source notebook. The converter's own tests need no nbgrader. The
end-to-end test runs a real nbgrader course in a temporary folder: export chapter 00's solution,
``nbgrader generate_assignment``, then ``nbgrader autograde`` a right and a wrong submission,
and read the scores from nbgrader's gradebook database. It needs the ``nbgrader`` extra
(``pip install -e .[nbgrader]`` or ``bash course.sh setup --nbgrader``); without it the test is
skipped, or fails under ``CI=true``. Everything runs offline, in smoke mode.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from course_utils.grading import nbgrader_export
from course_utils.grading.notebooks import SOLUTION_ONLY, NotebookFormatError

REPO = Path(__file__).resolve().parents[1]
SOLUTIONS = REPO / "notebooks" / "solutions"
INTRO = SOLUTIONS / "00_introduction.ipynb"
MANIFEST = json.loads((REPO / "notebooks" / "manifest.json").read_text(encoding="utf-8"))
ASSIGNMENT = "00_introduction"
RIGHT, WRONG = "return x * 2.0 - 1.0", "return x * 2.0"
NBGRADER_STUB = "# YOUR CODE HERE\n    raise NotImplementedError()"


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"true", "1", "yes"}


def _nbgrader_or_skip() -> None:
    """Skip (fail under CI=true) when nbgrader is not installed, saying how to install it."""
    try:
        importlib.import_module("nbgrader")
    except ImportError:
        reason = ("nbgrader is not installed: pip install -e .[nbgrader] "
                  "(or bash course.sh setup --test --nbgrader)")
        if _in_ci():
            pytest.fail(f"CI=true, so the nbgrader test must run, but {reason}")
        pytest.skip(reason)


def _graded_cells(nb: nbformat.NotebookNode) -> dict[str, dict]:
    return {c.metadata["nbgrader"]["grade_id"]: c for c in nb.cells if "nbgrader" in c.metadata}


# --- the converter, without nbgrader -------------------------------------------------------------

@pytest.mark.parametrize("path", sorted(SOLUTIONS.glob("*.ipynb")), ids=lambda p: p.stem)
def test_every_exercise_becomes_an_answer_and_a_test_cell(path):
    nb = nbgrader_export.to_nbgrader(nbformat.read(path, as_version=4), path.name)
    cells = _graded_cells(nb)
    exercises = MANIFEST["notebooks"][path.name]["exercises"]
    assert len(cells) == 2 * len(exercises)
    for ex in exercises:
        answer, test = cells[ex["id"]], cells[ex["id"] + "_check"]
        meta, test_meta = answer.metadata["nbgrader"], test.metadata["nbgrader"]
        assert (meta["solution"], meta["grade"], meta["schema_version"]) == (True, False, 3)
        assert "### BEGIN SOLUTION" in answer.source
        assert (test_meta["grade"], test_meta["locked"], test_meta["solution"]) == (True, True,
                                                                                   False)
        assert test_meta["points"] == ex["points"]
        assert f'check("{ex["id"]}"' in test.source
        assert nb.cells.index(test) > nb.cells.index(answer)
    assert not any(SOLUTION_ONLY in c.metadata.get("tags", []) for c in nb.cells)
    assert all(not c.get("outputs") for c in nb.cells)


def test_a_student_notebook_is_refused(tmp_path):
    with pytest.raises(NotebookFormatError, match="student notebook"):
        nbgrader_export.export(REPO / "notebooks" / "00_introduction.ipynb", tmp_path)
    assert nbgrader_export.main([str(REPO / "notebooks" / "00_introduction.ipynb"),
                                 str(tmp_path)]) == 2
    assert not list(tmp_path.iterdir())


def test_an_exercise_without_a_check_cell_is_refused():
    nb = nbformat.read(INTRO, as_version=4)
    nb.cells = [c for c in nb.cells if 'check("intro_scale"' not in c.source]
    with pytest.raises(NotebookFormatError, match="no cell calls check"):
        nbgrader_export.to_nbgrader(nb, INTRO.name)


def test_entry_point_is_declared():
    tomllib = pytest.importorskip("tomllib")              # Python >= 3.11
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    module, func = scripts["course-nbgrader-export"].split(":")
    assert getattr(importlib.import_module(module), func) is nbgrader_export.main


# --- a real nbgrader course -----------------------------------------------------------------------

def _nbgrader(course: Path, *args: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "COURSE_EXPECT"}   # the export's own
    env.update(COURSE_SMOKE="1", MPLBACKEND="Agg", PYTHONHASHSEED="0",
               # nbgrader runs `alembic` by name: use the one next to this Python
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
               JUPYTER_CONFIG_DIR=str(course / ".jupyter"),
               JUPYTER_RUNTIME_DIR=str(course / ".runtime"))
    proc = subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=course, env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"nbgrader {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"


def _submit(course: Path, student: str, body: str) -> None:
    """Copy the released notebook to ``submitted/<student>/`` with ``body`` as the answer."""
    nb = nbformat.read(course / "release" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb", as_version=4)
    cell = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id")
                == "intro_scale")
    assert NBGRADER_STUB in cell.source, "nbgrader's stub is not in the released answer cell"
    cell.source = cell.source.replace(NBGRADER_STUB, body)
    folder = course / "submitted" / student / ASSIGNMENT
    folder.mkdir(parents=True)
    nbformat.write(nb, folder / f"{ASSIGNMENT}.ipynb")


def test_nbgrader_autogrades_a_right_and_a_wrong_submission(tmp_path):
    _nbgrader_or_skip()
    from nbgrader.api import Gradebook

    course = tmp_path / "course"
    (course / "source").mkdir(parents=True)
    (course / "nbgrader_config.py").write_text(
        "c = get_config()\n"
        f"c.CourseDirectory.root = {str(course)!r}\n"
        "c.CourseDirectory.course_id = 'genmodels'\n"
        "c.Execute.timeout = 300\n", encoding="utf-8")
    assert nbgrader_export.main([str(INTRO), str(course / "source" / ASSIGNMENT)]) == 0

    _nbgrader(course, "generate_assignment", ASSIGNMENT)
    released = (course / "release" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb").read_text()
    assert "x * 2.0 - 1.0" not in released           # nbgrader removed the solution ...
    assert "HIDDEN TESTS" not in released and "COURSE_EXPECT" not in released   # ... and these
    _submit(course, "right", RIGHT)
    _submit(course, "wrong", WRONG)
    _nbgrader(course, "autograde", ASSIGNMENT)

    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        scores = {s: (gb.find_submission(ASSIGNMENT, s).score,
                      gb.find_grade("intro_scale_check", ASSIGNMENT, ASSIGNMENT, s).auto_score)
                  for s in ("right", "wrong")}
        max_score = gb.find_submission(ASSIGNMENT, "right").max_score
    print(f"nbgrader scores (of {max_score:g}): {scores}")
    assert max_score == 1.0                            # intro_scale's points in the manifest
    assert scores == {"right": (1.0, 1.0), "wrong": (0.0, 0.0)}
    graded = (course / "autograded" / "wrong" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb").read_text()
    assert "should map to -1, 0 and 1" in graded       # the course's check said why
