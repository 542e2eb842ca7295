"""Reading solution notebooks and turning them into student notebooks.

A solution notebook marks each answer with nbgrader-style markers inside a code cell whose
metadata names the exercise::

    # cell metadata: {"exercise_id": "intro_scale", "points": 1}
    def scale(x):
        ### BEGIN SOLUTION
        return x * 2 - 1
        ### END SOLUTION

The student version replaces each marked region with ``raise NotImplementedError("<id>")`` at
the marker's indentation, drops cells tagged ``solution-only``, and clears outputs. Only the
metadata keys in :data:`KEEP_CELL_METADATA` survive, so the files stay small and stable.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat

BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
SOLUTION_ONLY = "solution-only"
KEEP_CELL_METADATA = ("tags", "exercise_id", "points")
KERNELSPEC = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}


class NotebookFormatError(ValueError):
    """A solution notebook breaks the marker conventions; the message names cell and fix."""


@dataclass(frozen=True)
class ExerciseCell:
    """One graded cell: where it is in the student notebook and what it is worth."""

    exercise_id: str
    points: float
    index: int


def cell_hash(cell: dict[str, Any]) -> str:
    """SHA-256 of a cell's type and source: identifies cells a student must not change."""
    source = cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])
    text = cell["cell_type"] + "\0" + source
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def clean(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Strip outputs, execution counts and editor metadata; set the standard kernel."""
    nb.metadata = nbformat.from_dict({
        "kernelspec": KERNELSPEC,
        "language_info": {"name": "python"},
    })
    for cell in nb.cells:
        cell.metadata = nbformat.from_dict(
            {k: cell.metadata[k] for k in KEEP_CELL_METADATA if k in cell.metadata})
        cell.pop("id", None)
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
        else:
            cell.pop("outputs", None)
            cell.pop("execution_count", None)
            if not cell.get("attachments"):
                cell.pop("attachments", None)
    nb.nbformat, nb.nbformat_minor = 4, 5
    # Deterministic cell ids, so regenerating changes nothing.
    for i, cell in enumerate(nb.cells):
        cell.id = f"cell-{i:03d}"
    return nb


_REGION = re.compile(r"^(?P<indent>[ \t]*)### BEGIN SOLUTION[ \t]*\n"
                     r".*?^[ \t]*### END SOLUTION[ \t]*$",
                     re.MULTILINE | re.DOTALL)


def strip_solution(source: str, exercise_id: str, where: str) -> str:
    """Replace every marked region with ``raise NotImplementedError(exercise_id)``."""
    begins, ends = source.count(BEGIN), source.count(END)
    if begins != ends or begins == 0:
        raise NotebookFormatError(
            f"{where}: exercise {exercise_id!r} has {begins} '{BEGIN}' and {ends} '{END}' "
            "markers; each answer needs one matching pair.")
    stub = _REGION.sub(lambda m: f'{m["indent"]}raise NotImplementedError("{exercise_id}")', source)
    if BEGIN in stub or END in stub:
        raise NotebookFormatError(f"{where}: a marker in exercise {exercise_id!r} is not on a "
                                  "line of its own, or the markers are nested.")
    return stub


def make_student(solution: nbformat.NotebookNode, name: str) -> tuple[nbformat.NotebookNode,
                                                                        list[ExerciseCell]]:
    """Return the student notebook and its exercise cells, validating the solution's markup."""
    student = nbformat.v4.new_notebook()
    exercises: list[ExerciseCell] = []
    seen: set[str] = set()
    for i, cell in enumerate(solution.cells):
        where = f"{name}, cell {i}"
        tags = cell.metadata.get("tags", [])
        if SOLUTION_ONLY in tags:
            continue
        new = nbformat.from_dict(json.loads(json.dumps(cell)))
        source = "".join(cell.source) if isinstance(cell.source, list) else cell.source
        ex_id = cell.metadata.get("exercise_id")
        if ex_id is not None:
            if cell.cell_type != "code":
                raise NotebookFormatError(f"{where}: exercise {ex_id!r} must be a code cell.")
            if ex_id in seen:
                raise NotebookFormatError(f"{where}: exercise id {ex_id!r} is used twice.")
            points = cell.metadata.get("points")
            if not isinstance(points, (int, float)) or points <= 0:
                raise NotebookFormatError(f"{where}: exercise {ex_id!r} needs positive 'points' "
                                          f"metadata, got {points!r}.")
            seen.add(ex_id)
            new.source = strip_solution(source, ex_id, where)
            exercises.append(ExerciseCell(ex_id, float(points), len(student.cells)))
        elif BEGIN in source or END in source:
            raise NotebookFormatError(f"{where}: has solution markers but no 'exercise_id' "
                                      "metadata; add it or tag the cell solution-only.")
        student.cells.append(new)
    return clean(student), exercises


def write_if_changed(path: Path, text: str) -> bool:
    """Write ``text`` atomically unless the file already holds it. Return True if written."""
    if path.exists() and path.read_text(encoding="utf-8") == text:
        return False
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return True


def dumps(nb: nbformat.NotebookNode) -> str:
    """Serialise a notebook the way the repository stores it (1-space indent, newline)."""
    return nbformat.writes(nb, version=4) + "\n"
