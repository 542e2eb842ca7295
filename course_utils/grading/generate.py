"""Generate the student notebooks and the manifest from ``notebooks/solutions/``.

Usage::

    python -m course_utils.grading.generate            # write notebooks/*.ipynb + manifest
    python -m course_utils.grading.generate --check    # exit 1 if anything is out of date

The manifest (``notebooks/manifest.json``) records, for each notebook, the exercise ids with
their points and cell positions, and the hashes of the cells a student must not change. The
grader uses it to rebuild a submission from the template.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import nbformat

from .notebooks import NotebookFormatError, cell_hash, clean, dumps, make_student, write_if_changed

MANIFEST = "manifest.json"


def default_root() -> Path:
    """The repository's ``notebooks/`` folder (next to the installed package in a checkout)."""
    return Path(__file__).resolve().parents[2] / "notebooks"


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
