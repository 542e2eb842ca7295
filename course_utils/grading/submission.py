"""The submission side of grading: reading, repairing and matching a file (no code runs here).

1. :func:`read_submission` reads a submitted file leniently (bytes -> JSON -> cells). A file
   that is not a notebook at all raises :class:`SubmissionUnreadable` with a message for the
   student; format problems that can be repaired are listed instead.
2. :func:`match_exercises` finds each exercise's cell: by its ``exercise_id`` metadata, else
   (metadata stripped) by the names the cell defines, else by its position. Everything else
   comes from the instructor's template.
3. :func:`scan_source` reviews the submitted exercise code statically: use of the course's
   reference implementation, and code that reaches into Python or grader internals.
"""

from __future__ import annotations

import ast
import copy
import json
import warnings
from dataclasses import dataclass, field
from typing import Any

import nbformat

from .assignment import Assignment, ExerciseSpec, defined_names, source_hash


class SubmissionUnreadable(ValueError):
    """A submitted file is not a notebook the grader can read."""


@dataclass
class Cell:
    type: str
    source: str
    metadata: dict[str, Any]


@dataclass
class ParsedSubmission:
    cells: list[Cell]
    schema_problems: list[str] = field(default_factory=list)
    kernel_name: str | None = None


# --- reading ----------------------------------------------------------------------------------

def _json_error_message(exc: json.JSONDecodeError, text: str) -> str:
    at_end = exc.pos >= len(text.rstrip()) - 1
    if at_end or exc.msg.startswith("Unterminated string"):
        return ("the file ends in the middle of the notebook (it looks truncated: the upload or "
                "the save was interrupted). Submit the notebook again after saving it in Jupyter.")
    return (f"the file is not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno}), so "
            "it is not a notebook Jupyter can open. Was it edited in a text editor? Submit the "
            ".ipynb file saved by Jupyter.")


def _parse_json(data: bytes, max_bytes: int | None) -> tuple[str, dict[str, Any]]:
    """The file's text and its JSON object; raises :class:`SubmissionUnreadable`."""
    if max_bytes is not None and len(data) > max_bytes:
        raise SubmissionUnreadable(f"the file is {len(data) / 2**20:.1f} MB, more than the "
                                   f"{max_bytes / 2**20:.0f} MB limit: clear all outputs "
                                   "(Edit > Clear Outputs of All Cells) and submit again.")
    if not data.strip():
        raise SubmissionUnreadable("the file is empty.")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise SubmissionUnreadable("the file is not UTF-8 text, so it is not a notebook "
                                   "(was a PDF or an archive renamed to .ipynb?).") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SubmissionUnreadable(_json_error_message(exc, text)) from None
    except RecursionError:
        raise SubmissionUnreadable("the file's JSON is nested too deeply to be a notebook."
                                   ) from None
    if not isinstance(doc, dict):
        raise SubmissionUnreadable(f"the file holds a JSON {type(doc).__name__}, not a notebook.")
    return text, doc


def _repair_format(text: str, doc: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Convert an nbformat 3 notebook; list what does not follow the notebook format."""
    problems: list[str] = []
    major = doc.get("nbformat")
    if major == 3 or "worksheets" in doc:
        try:
            doc = json.loads(nbformat.writes(nbformat.reads(text, as_version=4)))
            problems.append("the notebook was saved in the old nbformat 3 and was converted.")
        except Exception as exc:
            raise SubmissionUnreadable(f"an old-format (nbformat 3) notebook that cannot be "
                                       f"converted: {exc}") from None
    elif major != 4:
        problems.append(f"'nbformat' is {major!r} instead of 4.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")      # e.g. duplicate cell ids, "corrected" on a copy
            nbformat.validate(copy.deepcopy(doc), version=4)
    except Exception as exc:  # ValidationError, or anything the validator trips on
        first = str(getattr(exc, "message", exc)).splitlines()[0][:200]
        problems.append(f"the file does not follow the notebook format ({first}).")
    return doc, problems


def _read_cells(doc: dict[str, Any]) -> tuple[list[Cell], int]:
    """The readable cells and how many malformed ones were skipped."""
    raw_cells = doc.get("cells")
    if not isinstance(raw_cells, list):
        raise SubmissionUnreadable("the file has no list of cells, so it is not a notebook.")
    cells: list[Cell] = []
    skipped = 0
    for raw in raw_cells:
        if not isinstance(raw, dict) or raw.get("cell_type") not in ("code", "markdown", "raw"):
            skipped += 1
            continue
        src = raw.get("source", "")
        if isinstance(src, list) and all(isinstance(s, str) for s in src):
            src = "".join(src)
        if not isinstance(src, str):
            skipped += 1
            continue
        meta = raw.get("metadata")
        cells.append(Cell(raw["cell_type"], src, meta if isinstance(meta, dict) else {}))
    return cells, skipped


def read_submission(data: bytes, max_bytes: int | None = None) -> ParsedSubmission:
    """Parse a submitted file leniently; raise :class:`SubmissionUnreadable` if impossible."""
    text, doc = _parse_json(data, max_bytes)
    doc, problems = _repair_format(text, doc)
    cells, skipped = _read_cells(doc)
    if skipped:
        problems.append(f"{skipped} malformed cell(s) could not be read and were ignored.")
    meta = doc.get("metadata")
    kernel = None
    if isinstance(meta, dict) and isinstance(meta.get("kernelspec"), dict):
        kernel = meta["kernelspec"].get("name")
    return ParsedSubmission(cells, problems, kernel if isinstance(kernel, str) else None)


# --- matching ---------------------------------------------------------------------------------

@dataclass
class Match:
    """How one exercise was found in a submission."""

    source: str | None
    how: str                 # 'id', 'name', 'position', 'not-code', 'missing'
    cell: int | None = None
    message: str = ""


@dataclass
class Matching:
    matches: dict[str, Match]
    notes: list[str]
    outdated: str = ""       # why the submission looks made for another template version
    recovered: list[str] = field(default_factory=list)


def _cells_by_id(sub: ParsedSubmission, ids: set[str]) -> tuple[dict[str, list[int]], list[str]]:
    """Cell indices per known exercise id, and the unknown exercise ids found."""
    by_id: dict[str, list[int]] = {}
    unknown: list[str] = []
    for i, c in enumerate(sub.cells):
        eid = c.metadata.get("exercise_id")
        if isinstance(eid, str) and eid in ids:
            by_id.setdefault(eid, []).append(i)
        elif eid is not None:
            unknown.append(str(eid))
    return by_id, unknown


def _match_by_id(sub: ParsedSubmission, a: Assignment, by_id: dict[str, list[int]],
                 matches: dict[str, Match], used: set[int], notes: list[str]) -> None:
    """Match the exercises whose code cell still carries its id (the last such cell wins)."""
    for ex in a.exercises:
        code = [i for i in by_id.get(ex.id, []) if sub.cells[i].type == "code"]
        if not code:
            continue
        i = code[-1]
        used.add(i)
        matches[ex.id] = Match(sub.cells[i].source, "id", i)
        if len(code) > 1:
            notes.append(f"{len(code)} cells are marked as exercise {ex.id}; the grader used "
                         "the last one (the one that ran last in your notebook).")
        meta_points = sub.cells[i].metadata.get("points")
        if meta_points is not None and meta_points != ex.points:
            notes.append(f"the 'points' metadata of exercise {ex.id} was changed to "
                         f"{meta_points!r}; the assignment's {ex.points:g} point(s) apply.")


def _match_unmarked(sub: ParsedSubmission, a: Assignment, ex: ExerciseSpec, idxs: list[int],
                    used: set[int]) -> tuple[Match, str]:
    """Match an exercise without an id-marked code cell: by defined names, else by position.

    Returns the match and, when the cell was recovered, the note saying how.
    """
    ids = {e.id for e in a.exercises}
    protected = set(a.protected)
    free = [i for i, c in enumerate(sub.cells)
            if c.type == "code" and i not in used
            and c.metadata.get("exercise_id") not in ids
            and source_hash("code", c.source) not in protected]
    wanted = set(ex.names) or {ex.target}
    by_name = [i for i in free if wanted <= set(defined_names(sub.cells[i].source))]
    if by_name:
        i = by_name[-1]
        used.add(i)
        return Match(sub.cells[i].source, "name", i), (
            f"the cell of exercise {ex.id} had lost its exercise metadata; the grader "
            f"found it by the definition of {', '.join(sorted(wanted))}.")
    n_template = len(json.loads(a.template_json)["cells"])
    if (len(sub.cells) == n_template and ex.cell in free
            and "exercise_id" not in sub.cells[ex.cell].metadata
            and sub.cells[ex.cell].source.strip()):
        used.add(ex.cell)
        return Match(sub.cells[ex.cell].source, "position", ex.cell), (
            f"the cell of exercise {ex.id} had lost its exercise metadata; the grader used "
            f"the cell at its position (cell {ex.cell + 1}).")
    if idxs:
        kind = sub.cells[idxs[-1]].type
        return Match(None, "not-code", idxs[-1],
                     f"the cell of exercise {ex.id} is a {kind} cell, so its code "
                     "never runs; change its type back to Code (Esc, then Y)."), ""
    return Match(None, "missing", None, f"no cell for exercise {ex.id} was found in your "
                 "notebook (was it deleted?)."), ""


def _outdated_reason(a: Assignment, unknown: list[str], missing: list[str], kept: float) -> str:
    """Why the submission looks made for another version of the template ('' if it does not)."""
    if not (unknown or (missing and kept < 0.5)):
        return ""
    parts = []
    if unknown:
        parts.append(f"it has exercise(s) {', '.join(sorted(set(unknown)))} that this "
                     "assignment does not have")
    if missing:
        parts.append(f"exercise(s) {', '.join(missing)} of this assignment are missing")
    parts.append(f"{kept:.0%} of the other cells match")
    return (f"this notebook was made from a different (older?) version of {a.name}: "
            + "; ".join(parts) + ". Copy your answers into the current notebook and "
            "submit again.")


def match_exercises(sub: ParsedSubmission, a: Assignment) -> Matching:
    """Find each exercise's cell in ``sub``: by id, else by defined names, else by position."""
    protected = set(a.protected)
    by_id, unknown = _cells_by_id(sub, {e.id for e in a.exercises})
    notes: list[str] = []
    recovered: list[str] = []
    matches: dict[str, Match] = {}
    used: set[int] = set()
    _match_by_id(sub, a, by_id, matches, used, notes)
    for ex in a.exercises:
        if ex.id in matches:
            continue
        matches[ex.id], note = _match_unmarked(sub, a, ex, by_id.get(ex.id, []), used)
        if note:
            notes.append(note)
            recovered.append(note)
    sub_hashes = {source_hash(c.type, c.source) for i, c in enumerate(sub.cells) if i not in used}
    kept = len(protected & sub_hashes) / max(1, len(protected))
    changed = len(protected - sub_hashes)
    if changed:
        notes.append(f"{changed} of the notebook's {len(protected)} other cells were edited, "
                     "deleted or are from another version; the grader used the assignment's "
                     "versions of them.")
    missing = [e for e, m in matches.items() if m.how in ("missing", "not-code")]
    outdated = _outdated_reason(a, unknown, missing, kept)
    if sub.kernel_name and sub.kernel_name != a.kernel_name:
        notes.append(f"the notebook asks for kernel {sub.kernel_name!r}; the grader always runs "
                     "the assignment's Python kernel.")
    return Matching(matches, notes, outdated, recovered)


# --- static review ----------------------------------------------------------------------------

# Static checks of the submitted exercise code: things a reviewer should look at.
_SUSPICIOUS_MODULES = {"sys", "builtins", "gc", "inspect", "ctypes", "importlib", "threading",
                       "multiprocessing", "subprocess", "signal", "socket", "course_utils.grading",
                       "course_utils.checks.core", "resource", "pickle", "marshal"}
_SUSPICIOUS_NAMES = {"globals", "locals", "vars", "setattr", "delattr", "__import__", "exec",
                     "eval", "compile", "get_ipython", "In", "Out", "_ih", "_oh", "__builtins__",
                     "breakpoint"}
_SUSPICIOUS_ATTRS = {"_exit", "kill", "system", "fork", "__dict__", "__globals__", "__code__",
                     "f_back", "f_globals"}
_KNOWN_MODULE_NAMES = {"torch", "nn", "F", "np", "numpy", "math", "os", "sys", "builtins",
                       "course_utils", "config", "data", "checks"}
_PROTECTED_DEFS = {"check", "run_checkers", "get_exercise", "expect", "registry"}


def _is_suspicious_module(name: str) -> bool:
    return any(name == m or name.startswith(m + ".") for m in _SUSPICIOUS_MODULES)


def _scan_node(node: ast.AST, spec: ExerciseSpec, aliases: set[str], ref_hits: list[str],
               review: list[str]) -> None:
    """Add what one syntax-tree node shows to ``ref_hits`` and ``review``."""
    if isinstance(node, ast.Import):
        for al in node.names:
            aliases.add((al.asname or al.name).split(".")[0])
            if _is_suspicious_module(al.name):
                review.append(f"imports {al.name}")
    elif isinstance(node, ast.ImportFrom) and node.module:
        for al in node.names:
            aliases.add(al.asname or al.name)
            if al.name in spec.reference_names:
                ref_hits.append(f"imports {al.name} from {node.module}")
        if _is_suspicious_module(node.module):
            review.append(f"imports from {node.module}")
    elif isinstance(node, ast.Name) and node.id in _SUSPICIOUS_NAMES:
        review.append(f"uses {node.id}")
    elif isinstance(node, ast.Attribute):
        if node.attr in spec.reference_names and isinstance(node.ctx, ast.Load):
            ref_hits.append(f"uses {ast.unparse(node)}")
        if node.attr in _SUSPICIOUS_ATTRS:
            review.append(f"uses {ast.unparse(node)}")
        if (isinstance(node.ctx, (ast.Store, ast.Del)) and isinstance(node.value, ast.Name)
                and node.value.id in aliases):
            review.append(f"changes {ast.unparse(node)}")
    elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        if node.name in _PROTECTED_DEFS:
            review.append(f"redefines {node.name}()")
    if isinstance(node, ast.Name) and node.id in spec.reference_names and \
            isinstance(node.ctx, ast.Load):
        ref_hits.append(f"uses {node.id}")
    if isinstance(node, (ast.Assign, ast.AugAssign)):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        for t in targets:
            if isinstance(t, ast.Name) and t.id in _PROTECTED_DEFS:
                review.append(f"redefines {t.id}")


def scan_source(source: str, spec: ExerciseSpec) -> tuple[list[str], list[str]]:
    """Return (reference-use findings, review findings) for one exercise cell's code."""
    ref_hits: list[str] = []
    review: list[str] = []
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return ref_hits, review
    aliases: set[str] = set(_KNOWN_MODULE_NAMES)
    for node in ast.walk(tree):
        _scan_node(node, spec, aliases, ref_hits, review)
    return list(dict.fromkeys(ref_hits)), list(dict.fromkeys(review))
