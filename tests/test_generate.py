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


# ----------------------------------------------------------------------------- no answer leaks

_ANSWER = ("def f(x):\n    ### BEGIN SOLUTION\n    total = torch.cumsum(x, dim=0)\n"
           "    return total.flip(0)\n    ### END SOLUTION")


@pytest.mark.parametrize("leaky", [
    nbformat.v4.new_markdown_cell("Spoiler: `total = torch.cumsum(x, dim=0)` then flip."),
    nbformat.v4.new_code_cell("# the answer, for reference:\n# total = torch.cumsum(x,dim=0)"),
    nbformat.v4.new_code_cell("g = lambda x: x\nreturn   total.flip(0)   # same, spaced"),
])
def test_generation_fails_when_a_student_notebook_shows_solution_code(leaky, tmp_path):
    nb = _nb(nbformat.v4.new_markdown_cell("# T"), _exercise(_ANSWER), leaky)
    student, _ = make_student(nb, "t.ipynb")
    with pytest.raises(generate.SolutionLeakError, match="a line of the solution of 'ex1'"):
        generate.check_no_leaks(nb, student, "t.ipynb")
    (tmp_path / "solutions").mkdir()
    nbformat.write(nb, tmp_path / "solutions" / "01_t.ipynb")
    assert generate.main(["--root", str(tmp_path)]) == 2            # clear error, nothing written
    assert not (tmp_path / "01_t.ipynb").exists()


def test_generation_fails_when_solution_only_text_reaches_the_student():
    secret = nbformat.v4.new_markdown_cell("The planted bugs were the sigmoid and the detach.")
    secret.metadata["tags"] = ["solution-only"]
    copy = nbformat.v4.new_markdown_cell("Which bugs were planted? Find them yourself.")
    nb = _nb(secret, copy)
    student, _ = make_student(nb, "t.ipynb")
    assert generate.find_leaks(nb, student, "t.ipynb") == []        # other text is fine
    copy.source = "Note: the planted bugs were the sigmoid and the detach."
    student, _ = make_student(nb, "t.ipynb")
    with pytest.raises(generate.SolutionLeakError, match="solution-only cell 0"):
        generate.check_no_leaks(nb, student, "t.ipynb")


def test_trivial_lines_and_code_given_above_the_exercise_are_not_leaks():
    given = nbformat.v4.new_code_cell("config.seed_everything(0)\nbroken = torch.cumsum(x, 1)")
    answer = ("def f(x):\n    ### BEGIN SOLUTION\n    config.seed_everything(0)\n"
              "    opt.zero_grad()\n    return x\n    ### END SOLUTION")
    later = nbformat.v4.new_code_cell("config.seed_everything(0)\nopt.zero_grad()\nreturn x")
    nb = _nb(given, _exercise(answer), later)
    student, _ = make_student(nb, "t.ipynb")
    assert generate.find_leaks(nb, student, "t.ipynb") == []


def test_committed_student_notebooks_show_no_solution_code():
    """No student notebook in notebooks/ contains a line of an answer or solution-only text."""
    for path in sorted((REPO / "notebooks" / "solutions").glob("*.ipynb")):
        solution = nbformat.read(path, as_version=4)
        student = nbformat.read(REPO / "notebooks" / path.name, as_version=4)
        assert generate.find_leaks(solution, student, path.name) == []


def test_solution_fragments_cover_lines_and_expressions():
    nb = _nb(_exercise(_ANSWER))
    fragments = generate.solution_fragments(nb)["ex1"]
    assert "total=torch.cumsum(x,dim=0)" in fragments              # a whole line
    assert "torch.cumsum(x,dim=0)" in fragments                    # a call with arguments
    assert generate.normalise("y = 2.0 * x  # comment") == "y=2*x"
