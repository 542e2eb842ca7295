"""Generate the student notebooks and the manifest from ``notebooks/solutions/``.

Usage::

    python -m course_utils.grading.generate            # write notebooks/*.ipynb + manifest
    python -m course_utils.grading.generate --check    # exit 1 if anything is out of date

The manifest (``notebooks/manifest.json``) records, for each notebook, the exercise ids with
their points and cell positions, and the hashes of the cells a student must not change. The
grader uses it to rebuild a submission from the template.

Generation refuses to write a student notebook that gives an answer away: it fails, naming
the notebook, cell and line, when a student notebook contains a line of any exercise's
solution code (compared without spaces and comments; trivial lines such as ``return x`` or a
call without arguments do not count, nor lines of code the notebook already gives above the
exercise, such as the correct lines of a buggy version to fix) or a line of a cell tagged
``solution-only``. An explanation of an answer belongs in a ``solution-only`` cell, or in the
``reveal`` text of the exercise's check, which ``check`` prints only once the answer passes.
The same fragments (plus each call with arguments and each arithmetic expression of an
answer) are what ``tests/test_hints.py`` forbids in hints.
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import sys
import textwrap
from pathlib import Path

import nbformat

from .notebooks import (
    BEGIN,
    END,
    SOLUTION_ONLY,
    NotebookFormatError,
    cell_hash,
    clean,
    dumps,
    make_student,
    write_if_changed,
)

MANIFEST = "manifest.json"


def default_root() -> Path:
    """The repository's ``notebooks/`` folder (next to the installed package in a checkout)."""
    return Path(__file__).resolve().parents[2] / "notebooks"


# A normalised line must be longer than this to count as part of an answer.
MIN_SECRET_CHARS = 12
_REGION_TEXT = re.compile(r"^[ \t]*### BEGIN SOLUTION[ \t]*\n(.*?)^[ \t]*### END SOLUTION",
                          re.MULTILINE | re.DOTALL)


class SolutionLeakError(NotebookFormatError):
    """A generated student notebook contains solution code or solution-only text."""


def _source(cell: dict) -> str:
    src = cell.get("source", "")
    return src if isinstance(src, str) else "".join(src)


def squash(text: str) -> str:
    """Text in lower case, without whitespace, ``2.0`` written ``2``: how leaks are compared."""
    text = re.sub(r"\s+", "", text).lower()
    return re.sub(r"(?<![\w.])(\d+)\.0\b", r"\1", text)


def normalise(line: str) -> str:
    """A line of code as compared for leaks: :func:`squash`-ed, without its comment."""
    return squash(re.sub(r"(^|\s)#.*$", "", line))


def _given_before(nb: nbformat.NotebookNode, index: int) -> set[str]:
    """Normalised lines of the code the learner is given above cell ``index``.

    A line of an answer that already appears there (a seeding call, or the correct lines of
    the buggy code that a "fix the bugs" exercise shows) gives nothing away.
    """
    given: set[str] = set()
    for cell in nb.cells[:index]:
        meta = cell.get("metadata", {})
        if (cell.get("cell_type") == "code" and "exercise_id" not in meta
                and SOLUTION_ONLY not in meta.get("tags", [])):
            given.update(normalise(line) for line in _source(cell).splitlines())
    return given


def solution_regions(nb: nbformat.NotebookNode) -> dict[str, list[str]]:
    """The code between the solution markers, per exercise id: ``{id: [region, ...]}``."""
    regions: dict[str, list[str]] = {}
    for cell in nb.cells:
        ex_id = cell.get("metadata", {}).get("exercise_id")
        if ex_id is not None and cell.get("cell_type") == "code":
            regions.setdefault(ex_id, []).extend(_REGION_TEXT.findall(_source(cell)))
    return regions


def _trivial(norm: str) -> bool:
    """Lines that give nothing away: short ones, and a call without arguments."""
    return len(norm) <= MIN_SECRET_CHARS or bool(re.fullmatch(r"[\w.]+\(\),?", norm))


def secret_lines(code: str) -> set[str]:
    """The normalised non-trivial lines of a piece of solution code (or solution-only text)."""
    out = set()
    for line in code.splitlines():
        norm = normalise(line)
        if norm and not _trivial(norm) and BEGIN not in line and END not in line:
            out.add(norm)
    return out


def secret_expressions(code: str) -> set[str]:
    """Distinctive expressions of solution code: calls with arguments and arithmetic.

    Normalised like :func:`normalise`; calls of under 10 characters (``len(x)``) and
    arithmetic of under 5 are left out. Code that does not parse gives an empty set.
    """
    try:
        tree = ast.parse(textwrap.dedent(code))
    except SyntaxError:
        return set()
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and (node.args or node.keywords):
            norm = normalise(ast.unparse(node))
            if len(norm) >= 10:
                out.add(norm)
        elif isinstance(node, ast.BinOp):
            norm = normalise(ast.unparse(node))
            if len(norm) >= 5:
                out.add(norm)
    return out


def solution_fragments(nb: nbformat.NotebookNode) -> dict[str, set[str]]:
    """Per exercise id, every normalised fragment that would give its answer away."""
    return {ex_id: set().union(*(secret_lines(r) | secret_expressions(r) for r in regions))
            for ex_id, regions in solution_regions(nb).items() if regions}


def find_leaks(solution: nbformat.NotebookNode, student: nbformat.NotebookNode,
               name: str) -> list[str]:
    """Where ``student`` shows a solution line or a line of a ``solution-only`` cell.

    Returns one readable line per leak (empty when the student notebook is clean).
    """
    secrets: dict[str, str] = {}
    for i, cell in enumerate(solution.cells):
        meta = cell.get("metadata", {})
        if SOLUTION_ONLY in meta.get("tags", []):
            lines = secret_lines(_source(cell))
            if cell.get("cell_type") == "code":          # shared set-up code is no secret
                lines -= _given_before(solution, len(solution.cells))
            secrets.update({s: f"solution-only cell {i}" for s in lines})
        elif meta.get("exercise_id") is not None and cell.get("cell_type") == "code":
            given = _given_before(solution, i)
            for region in _REGION_TEXT.findall(_source(cell)):
                secrets.update({s: f"the solution of {meta['exercise_id']!r}"
                                for s in secret_lines(region) - given})
    leaks = []
    for j, cell in enumerate(student.cells):
        for line in _source(cell).splitlines():
            text = squash(line)                 # comments kept: a commented-out answer leaks
            leaks.extend(f"{name}, student cell {j}: {line.strip()!r} shows a line of "
                         f"{where}" for secret, where in secrets.items() if secret in text)
    return leaks


def check_no_leaks(solution: nbformat.NotebookNode, student: nbformat.NotebookNode,
                   name: str) -> None:
    """Raise :class:`SolutionLeakError` if the student notebook gives an answer away."""
    leaks = find_leaks(solution, student, name)
    if leaks:
        raise SolutionLeakError(
            "the student notebook would show solution code:\n  " + "\n  ".join(leaks)
            + "\nMove explanations of an answer into a cell tagged 'solution-only', or into "
              "the exercise's reveal text (@exercise(..., reveal=...)), which the check prints "
              "once the answer passes.")


def build(root: Path) -> dict[str, str]:
    """Compute every output file's text: ``{relative path: text}``, solutions cleaned too."""
    solutions = sorted((root / "solutions").glob("*.ipynb"))
    if not solutions:
        raise FileNotFoundError(f"no solution notebooks in {root / 'solutions'}")
    outputs: dict[str, str] = {}
    manifest: dict[str, object] = {"format": 1, "notebooks": {}}
    for path in solutions:
        try:
            solution = nbformat.read(path, as_version=4)
        except Exception as exc:  # nbformat raises several types for bad JSON
            raise NotebookFormatError(f"{path}: cannot be read as a notebook ({exc}).") from exc
        outputs[f"solutions/{path.name}"] = dumps(clean(solution))
        student, exercises = make_student(solution, path.name)
        check_no_leaks(solution, student, path.name)
        text = dumps(student)
        outputs[path.name] = text
        manifest["notebooks"][path.name] = {  # type: ignore[index]
            "exercises": [{"id": e.exercise_id, "points": e.points, "cell": e.index}
                          for e in exercises],
            "total_points": sum(e.points for e in exercises),
            "protected_cells": [cell_hash(c) for c in student.cells
                                if "exercise_id" not in c.metadata],
        }
    outputs[MANIFEST] = json.dumps(manifest, indent=1, sort_keys=True) + "\n"
    return outputs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=default_root(),
                        help="the notebooks/ folder (default: %(default)s)")
    parser.add_argument("--check", action="store_true",
                        help="change nothing; exit 1 if any generated file is out of date")
    args = parser.parse_args(argv)
    try:
        outputs = build(args.root)
    except (NotebookFormatError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    stale = [rel for rel, text in outputs.items()
             if not (args.root / rel).exists()
             or (args.root / rel).read_text(encoding="utf-8") != text]
    if args.check:
        if stale:
            print("Out of date (run `python -m course_utils.grading.generate`): "
                  + ", ".join(stale), file=sys.stderr)
            return 1
        print(f"All {len(outputs)} generated files are up to date.")
        return 0
    for rel, text in outputs.items():
        if write_if_changed(args.root / rel, text):
            print(f"wrote notebooks/{rel}")
    print(f"{len(stale)} file(s) updated, {len(outputs) - len(stale)} already up to date.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
