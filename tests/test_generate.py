"""Student-notebook generation: markers, validation, and the committed files being in sync."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest

from course_utils.grading import generate
from course_utils.grading.notebooks import NotebookFormatError, make_student, strip_solution

REPO = Path(__file__).resolve().parents[1]


def _nb(*cells):
    nb = nbformat.v4.new_notebook()
    nb.cells = list(cells)
    return nb


def _exercise(source, ex_id="ex1", points=2):
    cell = nbformat.v4.new_code_cell(source)
    cell.metadata.update({"exercise_id": ex_id, "points": points})
    return cell


def test_strip_keeps_indentation_and_surroundings():
    src = ("def f(x):\n    \"\"\"doc\"\"\"\n    ### BEGIN SOLUTION\n    y = x + 1\n    return y\n"
           "    ### END SOLUTION\n\n\nprint('after')")
    out = strip_solution(src, "ex1", "here")
    assert out == ("def f(x):\n    \"\"\"doc\"\"\"\n    raise NotImplementedError(\"ex1\")\n\n\n"
                   "print('after')")
    compile(out, "<student>", "exec")


def test_several_regions_in_one_cell():
    src = ("class M:\n    def a(self):\n        ### BEGIN SOLUTION\n        return 1\n"
           "        ### END SOLUTION\n    def b(self):\n        ### BEGIN SOLUTION\n"
           "        return 2\n        ### END SOLUTION\n")
    out = strip_solution(src, "m", "here")
    assert out.count('raise NotImplementedError("m")') == 2 and "return" not in out


def test_student_notebook_drops_solution_only_cells_and_outputs():
    shown = nbformat.v4.new_code_cell("print(1)", outputs=[nbformat.v4.new_output(
        "stream", text="1\n")], execution_count=3)
    hidden = nbformat.v4.new_code_cell("secret = 42")
    hidden.metadata["tags"] = ["solution-only"]
    ex = _exercise("def f():\n    ### BEGIN SOLUTION\n    return 42\n    ### END SOLUTION")
    student, exercises = make_student(_nb(shown, hidden, ex), "t.ipynb")
    assert len(student.cells) == 2
    assert student.cells[0].outputs == [] and student.cells[0].execution_count is None
    assert "42" not in json.dumps(student)
    assert [(e.exercise_id, e.points, e.index) for e in exercises] == [("ex1", 2.0, 1)]


@pytest.mark.parametrize("cell, match", [
    (_exercise("def f():\n    ### BEGIN SOLUTION\n    return 1\n"), "matching pair"),
    (_exercise("def f():\n    return 1\n"), "matching pair"),
    (_exercise("def f():\n    ### BEGIN SOLUTION\n    return 1\n    ### END SOLUTION", points=0),
     "positive 'points'"),
    (nbformat.v4.new_code_cell("def f():\n    ### BEGIN SOLUTION\n    pass\n    ### END SOLUTION"),
     "no 'exercise_id'"),
])
def test_malformed_solution_notebooks_are_rejected(cell, match):
    with pytest.raises(NotebookFormatError, match=match):
        make_student(_nb(cell), "t.ipynb")


def test_duplicate_exercise_ids_are_rejected():
    src = "def f():\n    ### BEGIN SOLUTION\n    return 1\n    ### END SOLUTION"
    with pytest.raises(NotebookFormatError, match="used twice"):
        make_student(_nb(_exercise(src), _exercise(src)), "t.ipynb")


def test_generator_round_trip_in_a_temp_tree(tmp_path):
    (tmp_path / "solutions").mkdir()
    src = "def f():\n    ### BEGIN SOLUTION\n    return 1\n    ### END SOLUTION"
    nbformat.write(_nb(nbformat.v4.new_markdown_cell("# T"), _exercise(src)),
                   tmp_path / "solutions" / "01_t.ipynb")
    assert generate.main(["--root", str(tmp_path), "--check"]) == 1
    assert generate.main(["--root", str(tmp_path)]) == 0
    assert generate.main(["--root", str(tmp_path), "--check"]) == 0
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    entry = manifest["notebooks"]["01_t.ipynb"]
    assert entry["exercises"] == [{"id": "ex1", "points": 2.0, "cell": 1}]
    assert len(entry["protected_cells"]) == 1
    mtime = (tmp_path / "01_t.ipynb").stat().st_mtime_ns
    assert generate.main(["--root", str(tmp_path)]) == 0          # idempotent: nothing rewritten
    assert (tmp_path / "01_t.ipynb").stat().st_mtime_ns == mtime


def test_committed_student_notebooks_are_in_sync():
    """Regenerating the student notebooks from notebooks/solutions changes nothing."""
    assert generate.main(["--root", str(REPO / "notebooks"), "--check"]) == 0, \
        "run `python -m course_utils.grading.generate` and commit the result"


def test_committed_notebooks_have_no_outputs():
    for path in sorted((REPO / "notebooks").rglob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert not cell.outputs and cell.execution_count is None, path


def test_every_notebook_exercise_has_a_registered_check():
    from course_utils.checks import registry
    manifest = json.loads((REPO / "notebooks" / "manifest.json").read_text())
    for name, entry in manifest["notebooks"].items():
        for ex in entry["exercises"]:
            assert ex["id"] in registry(), f"{name}: exercise {ex['id']} has no check"
            assert registry()[ex["id"]].points == ex["points"], f"{name}: points differ"
