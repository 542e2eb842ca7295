"""Batch grader: grade a folder of submitted notebooks into a gradebook and feedback files.

Usage (see ``docs/instructors.md``)::

    course-grade notebooks/00_introduction.ipynb submissions/ -o grades/00_introduction
    python -m course_utils.grading notebooks/00_introduction.ipynb submissions/ --jobs 4

How a submission is graded
--------------------------
1. The file is read leniently (bytes -> JSON -> cells). A file that is not a notebook at all
   (invalid JSON, truncated, no cell list) gets status ``invalid`` and 0 points.
2. Only the *exercise cells* are taken from it, matched by their ``exercise_id`` metadata, or,
   when the metadata was stripped, by the names the cell defines (``def scale_to_pm1``) or by
   its position. Everything else comes from the instructor's template (the student notebook
   in ``notebooks/`` plus ``notebooks/manifest.json``), so edited or deleted check cells,
   stored outputs, changed ``points`` metadata or another kernel name change nothing.
3. The rebuilt notebook runs in a fresh kernel process, in a temporary working directory, in
   smoke mode on the CPU, with a per-cell time limit, a total time limit and a memory limit
   (``RLIMIT_AS``, applied to the kernel process before it starts). Three cells are injected:
   a prelude before any submitted code (it records the state of the libraries the checks
   use), a capture cell after each exercise cell (it keeps the object the exercise defined,
   before the notebook's own ``check`` cell can replace it), and a final cell that restores
   any library function the submission replaced, then runs the exercise's public checker and
   the grader's hidden checkers on the captured objects. The final cell writes its verdicts
   to a file whose name contains a random nonce that no submitted code could know before it
   ran; nothing the submission printed or stored is ever read as a grade.
4. If an exercise hangs, exhausts memory or kills the kernel, that exercise gets 0 points
   and the notebook is run again with the assignment's stub in its place, so the other
   exercises are still graded.

Results are written atomically (temporary file + ``os.replace``) under the output folder:
``gradebook.csv``, ``results.json``, ``feedback/<student>.md`` and ``records/<student>.json``
(the cache that lets a re-run skip submissions graded before; ``--force`` regrades).
The submitted files are only ever opened for reading.

Security note: the grader defends against mistakes and casual cheating. It is not a sandbox
against a determined attacker: submitted code runs as the grading user, so run the grader in
a container or VM without credentials. Code that reaches into the grader or Python internals
is flagged for review in the gradebook.
"""

from __future__ import annotations

import argparse
import ast
import copy
import csv
import datetime as _dt
import hashlib
import io
import json
import os
import re
import secrets
import shutil
import signal
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

GRADER_VERSION = "1.0"
_PACKAGE_DIR = Path(__file__).resolve().parents[1]          # .../course_utils
_REPO_DIR = _PACKAGE_DIR.parent

# ---------------------------------------------------------------------------------------------
# Settings and the assignment
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Limits:
    """Resource limits for one submission.

    ``cell_timeout`` bounds every cell and every exercise's checks; ``total_timeout`` bounds
    the whole submission (all runs of its notebook); ``memory_mb`` is the kernel's address
    space limit; ``output_kb`` is how much printed output per cell is kept (the rest is
    discarded, never read as a grade); ``max_file_mb`` rejects absurdly large files.
    """

    cell_timeout: float = 120.0
    total_timeout: float = 600.0
    memory_mb: int = 4096
    output_kb: int = 64
    max_file_mb: float = 50.0
    file_size_mb: int = 512

    def __post_init__(self) -> None:
        if self.cell_timeout <= 0 or self.total_timeout <= 0:
            raise ValueError("time limits must be positive numbers of seconds")
        if self.memory_mb and self.memory_mb < 512:
            raise ValueError(f"memory_mb={self.memory_mb} is too small for a Python kernel with "
                             "PyTorch: use at least 1024 (or 0 for no limit)")


@dataclass(frozen=True)
class ExerciseSpec:
    """What the grader knows about one exercise of the assignment."""

    id: str
    points: float
    cell: int                       # index of the exercise cell in the template
    names: tuple[str, ...]          # names the template's exercise cell defines
    target: str                     # the name the notebook passes to check(...)
    stub: str                       # the template's source of the cell
    hint: str = ""
    reference: str = ""             # "module.qualname" of the reference implementation
    reference_names: tuple[str, ...] = ()


@dataclass(frozen=True)
class Assignment:
    """An assignment: the template notebook, its exercises and a version hash."""

    name: str
    template_path: str
    template_json: str
    exercises: tuple[ExerciseSpec, ...]
    protected: tuple[str, ...]
    version: str
    hidden_tests: str | None = None
    kernel_name: str = "python3"
    check_modules: tuple[str, ...] = ()     # the modules registering this assignment's checks

    @property
    def total_points(self) -> float:
        return float(sum(e.points for e in self.exercises))

    @property
    def stem(self) -> str:
        return Path(self.name).stem


class AssignmentError(ValueError):
    """The assignment (template, manifest or hidden tests) cannot be used; says how to fix it."""


class SubmissionUnreadable(ValueError):
    """A submitted file is not a notebook the grader can read."""


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _cell_source(cell: dict[str, Any]) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else str(src)


def _cell_hash(cell_type: str, source: str) -> str:
    """Same hash as :func:`course_utils.grading.notebooks.cell_hash` (type + source)."""
    from .notebooks import cell_hash
    return cell_hash({"cell_type": cell_type, "source": source})


_DEF_RE = re.compile(r"^(?:async\s+def|def|class)\s+([A-Za-z_]\w*)"
                     r"|^([A-Za-z_]\w*)\s*(?::[^=]*)?=(?!=)", re.MULTILINE)


def defined_names(source: str) -> tuple[str, ...]:
    """Top-level names a cell binds (def, class, assignment); a regex fallback for bad syntax."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        found = [m.group(1) or m.group(2) for m in _DEF_RE.finditer(source)]
        return tuple(dict.fromkeys(found))
    names: list[str] = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.append(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for t in targets:
                names += [n.id for n in ast.walk(t) if isinstance(n, ast.Name)]
    return tuple(dict.fromkeys(names))


def _check_target(cells: list[dict[str, Any]], ex_id: str, after: int) -> str | None:
    """The name passed to ``check("<ex_id>", name)`` in the cells after the exercise."""
    for cell in cells[after + 1:]:
        if cell.get("cell_type") != "code":
            continue
        try:
            tree = ast.parse(_cell_source(cell))
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                    and node.func.id == "check" and len(node.args) >= 2
                    and isinstance(node.args[0], ast.Constant) and node.args[0].value == ex_id
                    and isinstance(node.args[1], ast.Name)):
                return node.args[1].id
    return None


def _checks_fingerprint(exercises: Iterable[Any]) -> str:
    """Hash of the sources the grade depends on: the check machinery, and for each exercise
    the modules of its checkers and of its reference. Changing one of them regrades."""
    files = {Path(__file__).resolve().parents[1] / "checks" / "core.py"}
    for ex in exercises:
        for obj in (ex.checker, *ex.hidden, ex.reference):
            module = sys.modules.get(getattr(obj, "__module__", "") or "")
            path = getattr(module, "__file__", None)
            if path:
                files.add(Path(path).resolve())
    h = hashlib.sha256()
    for path in sorted(files):
        h.update(path.name.encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def _describe_reference(ref: Any) -> tuple[str, tuple[str, ...]]:
    if ref is None:
        return "", ()
    name = getattr(ref, "__name__", None) or type(ref).__name__
    module = getattr(ref, "__module__", None) or type(ref).__module__
    qual = getattr(ref, "__qualname__", name)
    return f"{module}.{qual}", (name,)


def load_assignment(template: str | os.PathLike[str],
                    manifest: str | os.PathLike[str] | None = None,
                    hidden_tests: str | os.PathLike[str] | None = None) -> Assignment:
    """Read the template (a *student* notebook) and its manifest entry; validate both.

    Without a manifest (no ``manifest.json`` next to the template, or no entry for it) the
    exercises are read from the template's cell metadata. Raises :class:`AssignmentError`
    with the fix when the template, the manifest and the registered checks disagree.
    """
    import nbformat

    from ..checks.core import get_exercise

    path = Path(template)
    if not path.is_file():
        raise AssignmentError(f"assignment notebook {path} not found: pass the student notebook, "
                              "e.g. notebooks/00_introduction.ipynb")
    raw = path.read_bytes()
    try:
        nb = nbformat.reads(raw.decode("utf-8"), as_version=4)
    except Exception as exc:
        raise AssignmentError(f"{path} cannot be read as a notebook: {exc}") from exc
    cells = [dict(c) for c in nb.cells]
    if any("### BEGIN SOLUTION" in _cell_source(c) for c in cells):
        raise AssignmentError(f"{path} contains solutions: pass the generated student notebook "
                              "(notebooks/NN_name.ipynb), not the one in notebooks/solutions/")

    from_meta = [(i, c["metadata"]["exercise_id"], c["metadata"].get("points"))
                 for i, c in enumerate(cells) if "exercise_id" in c.get("metadata", {})]
    manifest_path = Path(manifest) if manifest else path.parent / "manifest.json"
    entry: dict[str, Any] | None = None
    if manifest_path.is_file():
        try:
            data = json.loads(manifest_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise AssignmentError(f"manifest {manifest_path} is unreadable: {exc}") from exc
        entry = data.get("notebooks", {}).get(path.name)
        if entry is None and manifest:
            raise AssignmentError(f"manifest {manifest_path} has no entry for {path.name}")
    elif manifest:
        raise AssignmentError(f"manifest {manifest_path} not found")

    protected = tuple(_cell_hash(c["cell_type"], _cell_source(c)) for i, c in enumerate(cells)
                      if i not in {m[0] for m in from_meta})
    fix = "regenerate it with `python -m course_utils.grading.generate`"
    if entry is not None:
        listed = [(e["cell"], e["id"], e["points"]) for e in entry["exercises"]]
        if [(i, x) for i, x, _ in listed] != [(i, x) for i, x, _ in from_meta]:
            raise AssignmentError(f"the manifest's exercises for {path.name} ({listed}) do not "
                                  f"match the template's exercise cells ({from_meta}): {fix}")
        if sorted(entry.get("protected_cells", [])) != sorted(protected):
            raise AssignmentError(f"the manifest's cell hashes for {path.name} do not match the "
                                  f"template (was the notebook edited by hand?): {fix}")
        listed_points = {x: float(p) for _, x, p in listed}
    else:
        listed_points = {}
    if not from_meta:
        raise AssignmentError(f"{path} has no exercise cells (code cells with 'exercise_id' "
                              "metadata): nothing to grade")

    specs = []
    registered = []
    for index, ex_id, meta_points in from_meta:
        points = listed_points.get(ex_id, meta_points)
        if not isinstance(points, (int, float)) or points <= 0:
            raise AssignmentError(f"exercise {ex_id!r} in {path.name} has no positive points")
        try:
            ex = get_exercise(ex_id)
        except KeyError as exc:
            raise AssignmentError(f"exercise {ex_id!r} has no registered check in "
                                  f"course_utils.checks ({exc.args[0]})") from exc
        stub = _cell_source(cells[index])
        names = defined_names(stub)
        target = _check_target(cells, ex_id, index) or (names[0] if len(names) == 1 else None)
        if target is None:
            raise AssignmentError(f"cannot tell which object exercise {ex_id!r} checks: add a "
                                  f"cell `name = check({ex_id!r}, name)` after it")
        registered.append(ex)
        ref, ref_names = _describe_reference(ex.reference)
        specs.append(ExerciseSpec(ex_id, float(points), index, names, target, stub, ex.hint,
                                  ref, ref_names))

    hidden_path = None
    hidden_bytes = b""
    if hidden_tests:
        hp = Path(hidden_tests).resolve()
        if not hp.is_file():
            raise AssignmentError(f"hidden tests file {hp} not found")
        hidden_path, hidden_bytes = str(hp), hp.read_bytes()
        try:
            compile(hidden_bytes, str(hp), "exec")
        except SyntaxError as exc:
            raise AssignmentError(f"hidden tests file {hp} has a syntax error: {exc}") from exc

    h = hashlib.sha256()
    for part in (GRADER_VERSION.encode(), raw, json.dumps(entry, sort_keys=True).encode(),
                 _checks_fingerprint(registered).encode(), hidden_bytes):
        h.update(hashlib.sha256(part).digest())
    kernel = nb.metadata.get("kernelspec", {}).get("name", "python3")
    modules = tuple(sorted({ex.checker.__module__ for ex in registered}))
    return Assignment(path.name, str(path.resolve()), raw.decode("utf-8"), tuple(specs), protected,
                      h.hexdigest()[:16], hidden_path, kernel, modules)


# ---------------------------------------------------------------------------------------------
# Reading and matching a submission (no code runs here)
# ---------------------------------------------------------------------------------------------


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


def _json_error_message(exc: json.JSONDecodeError, text: str) -> str:
    at_end = exc.pos >= len(text.rstrip()) - 1
    if at_end or exc.msg.startswith("Unterminated string"):
        return ("the file ends in the middle of the notebook (it looks truncated: the upload or "
                "the save was interrupted). Submit the notebook again after saving it in Jupyter.")
    return (f"the file is not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno}), so "
            "it is not a notebook Jupyter can open. Was it edited in a text editor? Submit the "
            ".ipynb file saved by Jupyter.")


def read_submission(data: bytes, max_bytes: int | None = None) -> ParsedSubmission:
    """Parse a submitted file leniently; raise :class:`SubmissionUnreadable` if impossible."""
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
    problems: list[str] = []
    major = doc.get("nbformat")
    if major == 3 or "worksheets" in doc:
        try:
            import nbformat
            doc = json.loads(nbformat.writes(nbformat.reads(text, as_version=4)))
            problems.append("the notebook was saved in the old nbformat 3 and was converted.")
        except Exception as exc:
            raise SubmissionUnreadable(f"an old-format (nbformat 3) notebook that cannot be "
                                       f"converted: {exc}") from None
    elif major != 4:
        problems.append(f"'nbformat' is {major!r} instead of 4.")
    try:
        import warnings

        import nbformat
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")      # e.g. duplicate cell ids, "corrected" on a copy
            nbformat.validate(copy.deepcopy(doc), version=4)
    except Exception as exc:  # ValidationError, or anything the validator trips on
        first = str(getattr(exc, "message", exc)).splitlines()[0][:200]
        problems.append(f"the file does not follow the notebook format ({first}).")
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
    if skipped:
        problems.append(f"{skipped} malformed cell(s) could not be read and were ignored.")
    meta = doc.get("metadata")
    kernel = None
    if isinstance(meta, dict) and isinstance(meta.get("kernelspec"), dict):
        kernel = meta["kernelspec"].get("name")
    return ParsedSubmission(cells, problems, kernel if isinstance(kernel, str) else None)


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


def match_exercises(sub: ParsedSubmission, a: Assignment) -> Matching:
    """Find each exercise's cell in ``sub``: by id, else by defined names, else by position."""
    ids = {e.id for e in a.exercises}
    protected = set(a.protected)
    by_id: dict[str, list[int]] = {}
    unknown: list[str] = []
    for i, c in enumerate(sub.cells):
        eid = c.metadata.get("exercise_id")
        if isinstance(eid, str) and eid in ids:
            by_id.setdefault(eid, []).append(i)
        elif eid is not None:
            unknown.append(str(eid))
    notes: list[str] = []
    recovered: list[str] = []
    matches: dict[str, Match] = {}
    used: set[int] = set()
    for ex in a.exercises:
        idxs = by_id.get(ex.id, [])
        code = [i for i in idxs if sub.cells[i].type == "code"]
        if code:
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
    for ex in a.exercises:
        if ex.id in matches:
            continue
        idxs = by_id.get(ex.id, [])
        free = [i for i, c in enumerate(sub.cells)
                if c.type == "code" and i not in used
                and c.metadata.get("exercise_id") not in ids
                and _cell_hash("code", c.source) not in protected]
        wanted = set(ex.names) or {ex.target}
        by_name = [i for i in free if wanted <= set(defined_names(sub.cells[i].source))]
        if by_name:
            i = by_name[-1]
            used.add(i)
            matches[ex.id] = Match(sub.cells[i].source, "name", i)
            msg = (f"the cell of exercise {ex.id} had lost its exercise metadata; the grader "
                   f"found it by the definition of {', '.join(sorted(wanted))}.")
            notes.append(msg)
            recovered.append(msg)
            continue
        n_template = len(json.loads(a.template_json)["cells"])
        if (len(sub.cells) == n_template and ex.cell in free
                and "exercise_id" not in sub.cells[ex.cell].metadata
                and sub.cells[ex.cell].source.strip()):
            used.add(ex.cell)
            matches[ex.id] = Match(sub.cells[ex.cell].source, "position", ex.cell)
            msg = (f"the cell of exercise {ex.id} had lost its exercise metadata; the grader used "
                   f"the cell at its position (cell {ex.cell + 1}).")
            notes.append(msg)
            recovered.append(msg)
            continue
        if idxs:
            kind = sub.cells[idxs[-1]].type
            matches[ex.id] = Match(None, "not-code", idxs[-1],
                                   f"the cell of exercise {ex.id} is a {kind} cell, so its code "
                                   "never runs; change its type back to Code (Esc, then Y).")
        else:
            matches[ex.id] = Match(None, "missing", None,
                                   f"no cell for exercise {ex.id} was found in your notebook "
                                   "(was it deleted?).")
    sub_hashes = {_cell_hash(c.type, c.source) for i, c in enumerate(sub.cells) if i not in used}
    kept = len(protected & sub_hashes) / max(1, len(protected))
    changed = len(protected - sub_hashes)
    if changed:
        notes.append(f"{changed} of the notebook's {len(protected)} other cells were edited, "
                     "deleted or are from another version; the grader used the assignment's "
                     "versions of them.")
    missing = [e for e, m in matches.items() if m.how in ("missing", "not-code")]
    outdated = ""
    if unknown or (missing and kept < 0.5):
        parts = []
        if unknown:
            parts.append(f"it has exercise(s) {', '.join(sorted(set(unknown)))} that this "
                         "assignment does not have")
        if missing:
            parts.append(f"exercise(s) {', '.join(missing)} of this assignment are missing")
        parts.append(f"{kept:.0%} of the other cells match")
        outdated = (f"this notebook was made from a different (older?) version of {a.name}: "
                    + "; ".join(parts) + ". Copy your answers into the current notebook and "
                    "submit again.")
    if sub.kernel_name and sub.kernel_name != a.kernel_name:
        notes.append(f"the notebook asks for kernel {sub.kernel_name!r}; the grader always runs "
                     "the assignment's Python kernel.")
    return Matching(matches, notes, outdated, recovered)


# Static checks of the submitted exercise code: things a reviewer should look at.
_SUSPICIOUS_MODULES = {"sys", "builtins", "gc", "inspect", "ctypes", "importlib", "threading",
                       "multiprocessing", "subprocess", "signal", "socket", "course_utils.grading",
                       "course_utils.checks.core", "resource", "pickle", "marshal"}
_SUSPICIOUS_NAMES = {"globals", "locals", "vars", "setattr", "delattr", "__import__", "exec",
                     "eval", "compile", "get_ipython", "In", "Out", "_ih", "_oh", "__builtins__",
                     "breakpoint"}
_KNOWN_MODULE_NAMES = {"torch", "nn", "F", "np", "numpy", "math", "os", "sys", "builtins",
                       "course_utils", "config", "data", "checks"}
_PROTECTED_DEFS = {"check", "run_checkers", "get_exercise", "expect", "registry"}


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
        if isinstance(node, ast.Import):
            for al in node.names:
                aliases.add((al.asname or al.name).split(".")[0])
                if any(al.name == m or al.name.startswith(m + ".") for m in _SUSPICIOUS_MODULES):
                    review.append(f"imports {al.name}")
        elif isinstance(node, ast.ImportFrom) and node.module:
            for al in node.names:
                aliases.add(al.asname or al.name)
                if al.name in spec.reference_names:
                    ref_hits.append(f"imports {al.name} from {node.module}")
            if any(node.module == m or node.module.startswith(m + ".")
                   for m in _SUSPICIOUS_MODULES):
                review.append(f"imports from {node.module}")
        elif isinstance(node, ast.Name) and node.id in _SUSPICIOUS_NAMES:
            review.append(f"uses {node.id}")
        elif isinstance(node, ast.Attribute):
            if node.attr in spec.reference_names and isinstance(node.ctx, ast.Load):
                ref_hits.append(f"uses {ast.unparse(node)}")
            if node.attr in {"_exit", "kill", "system", "fork", "__dict__", "__globals__",
                             "__code__", "f_back", "f_globals"}:
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
    return list(dict.fromkeys(ref_hits)), list(dict.fromkeys(review))


# ---------------------------------------------------------------------------------------------
# Kernel side: these functions run inside the grading kernel (only stdlib imports at top level)
# ---------------------------------------------------------------------------------------------

_KSTATE: dict[str, Any] = {"snapshot": None, "captured": {}}
_VOLATILE_BUILTINS = {"input", "raw_input", "getpass", "display", "get_ipython", "exit", "quit",
                      "help", "copyright", "credits", "license", "__IPYTHON__", "_"}


_SYS_HOOKS = ("settrace", "setprofile", "gettrace", "getprofile", "exit", "setrecursionlimit")


class _GradingTimeout(BaseException):
    """Raised by the grader's alarm; a BaseException so `except Exception` cannot swallow it."""


def _snapshot_owners() -> list[tuple[str, Any, bool]]:
    import builtins
    import importlib
    import json as _json
    import math
    import os as _os
    import tempfile as _tempfile
    import time as _time
    owners: list[tuple[str, Any, bool]] = [
        ("builtins", builtins, False), ("json", _json, False), ("math", math, False),
        ("os", _os, False), ("os.path", _os.path, False), ("signal", signal, False),
        ("tempfile", _tempfile, False), ("time", _time, False), ("importlib", importlib, False)]
    for name in ("torch", "torch.nn", "torch.nn.functional", "torch.linalg", "torch.testing",
                 "numpy", "numpy.testing"):
        mod = sys.modules.get(name)
        if mod is not None:
            owners.append((name, mod, False))
    for name, mod in sorted(sys.modules.items()):
        if mod is not None and (name == "course_utils" or name.startswith("course_utils.")):
            owners.append((name, mod, False))
    torch = sys.modules.get("torch")
    if torch is not None:
        owners += [("torch.Tensor", torch.Tensor, True), ("torch.nn.Module", torch.nn.Module, True)]
    return owners


def _take_snapshot() -> dict[str, Any]:
    from ..checks import core
    entries = []
    for label, owner, is_class in _snapshot_owners():
        items = dict(vars(owner))
        if not is_class:
            items = {k: v for k, v in items.items() if callable(v)}
            if owner is sys.modules.get("builtins"):
                items = {k: v for k, v in items.items() if k not in _VOLATILE_BUILTINS}
        entries.append((label, owner, is_class, items))
    # sys: only the hooks the grader relies on (IPython swaps excepthook/displayhook per cell).
    entries.append(("sys", sys, False, {k: getattr(sys, k) for k in _SYS_HOOKS}))
    modules = {label: sys.modules.get(label) for label, _, is_class, _ in entries if not is_class}
    reg = core._REGISTRY
    exercises = {k: (ex, ex.checker, list(ex.hidden), ex.reference, ex.points, ex.hint)
                 for k, ex in reg.items()}
    return {"entries": entries, "modules": modules, "registry": (reg, dict(reg), exercises)}


def _restore_snapshot(snap: dict[str, Any]) -> list[str]:
    """Undo replaced library functions, modules and registry entries; list what was changed."""
    from ..checks import core
    changed: list[str] = []
    for label, mod in snap["modules"].items():
        if mod is not None and sys.modules.get(label) is not mod:
            sys.modules[label] = mod
            changed.append(f"sys.modules[{label!r}]")
    for label, owner, is_class, items in snap["entries"]:
        current = vars(owner)
        for key, value in items.items():
            if current.get(key, _MISSING) is not value:
                try:
                    setattr(owner, key, value)
                    changed.append(f"{label}.{key}")
                except (AttributeError, TypeError):
                    pass
        if is_class:
            for key in [k for k in current if k not in items]:
                try:
                    delattr(owner, key)
                    changed.append(f"{label}.{key}")
                except (AttributeError, TypeError):
                    pass
    reg, reg_items, exercises = snap["registry"]
    if core._REGISTRY is not reg:
        core._REGISTRY = reg
        changed.append("the exercise registry")
    if dict(reg) != reg_items:
        reg.clear()
        reg.update(reg_items)
        changed.append("the exercise registry")
    for key, (ex, checker, hidden, ref, points, hint) in exercises.items():
        if (ex.checker, ex.reference, ex.points, ex.hint) != (checker, ref, points, hint) or \
                ex.hidden != hidden:
            ex.checker, ex.hidden, ex.reference, ex.points, ex.hint = (checker, list(hidden), ref,
                                                                       points, hint)
            changed.append(f"exercise {key}")
    return list(dict.fromkeys(changed))


class _Missing:
    def __repr__(self) -> str:
        return "<missing>"


_MISSING = _Missing()


def kernel_prelude(modules: Iterable[str] = ()) -> None:
    """Injected before any template or submitted code: import the checks and snapshot libraries.

    Only the chapter modules that register this assignment's exercises are imported (the
    others would cost seconds per submission); the registry is then marked as loaded.
    """
    import importlib

    from ..checks import core
    if modules:
        for name in modules:
            importlib.import_module(name)
        core._loaded = True
    else:
        core.registry()
    import torch  # noqa: F401  (the checks use it; snapshot it as imported now)
    # PyTorch imports torch._dynamo lazily, at the first optimizer step, and that import wraps
    # torch.manual_seed. Import it now, so that PyTorch's own change is not taken for tampering.
    import torch._dynamo  # noqa: F401
    _KSTATE["captured"] = {}
    _KSTATE["snapshot"] = _take_snapshot()


def kernel_capture(ex_id: str, target: str, names: Iterable[str],
                   namespace: dict[str, Any]) -> None:
    """Injected after an exercise cell: keep the object it defined (before check() swaps it)."""
    defined = target in namespace
    _KSTATE["namespace"] = namespace
    _KSTATE["captured"][ex_id] = {
        "obj": namespace.get(target, _MISSING), "defined": defined, "target": target,
        "missing": [n for n in names if n not in namespace],
        # The notebook's variables as they were right after the exercise cell: the object is
        # checked in this state, not after later cells (e.g. check()) rebound its globals.
        "globals": dict(namespace)}
    if not defined:
        def not_defined(*args: Any, **kwargs: Any) -> Any:
            raise NotImplementedError(ex_id)
        namespace[target] = not_defined   # the notebook's check() then falls back to the reference


def _reference_codes(ref: Any) -> set[Any]:
    import inspect
    codes: set[Any] = set()
    if inspect.isfunction(ref) or inspect.ismethod(ref):
        codes.add(inspect.unwrap(ref).__code__)
    elif inspect.isclass(ref):
        for klass in ref.__mro__:
            if not klass.__module__.startswith("course_utils"):
                continue
            for value in vars(klass).values():
                value = getattr(value, "__func__", value)
                if inspect.isfunction(value):
                    codes.add(value.__code__)
    return codes


def _library_roots() -> tuple[str, ...]:
    import site
    import sysconfig
    roots = set(site.getsitepackages() + [site.getusersitepackages()])
    roots |= {sysconfig.get_paths()[k] for k in ("stdlib", "platstdlib", "purelib", "platlib")}
    return tuple(sorted(r for r in roots if r))


def _run_limited(ex: Any, obj: Any, checkers: list[Any], seconds: float,
                 ref_codes: set[Any], ref_calls: list[str]) -> dict[str, str]:
    """Run checkers on obj with an alarm, torch-function overrides off, and a call watcher."""
    from ..checks.core import run_checkers
    course_dir = str(_PACKAGE_DIR)
    libraries = _library_roots()

    def watch(frame: Any, event: str, arg: Any) -> None:
        if event != "call" or frame.f_code not in ref_codes:
            return
        caller = frame.f_back
        while caller is not None:
            filename = caller.f_code.co_filename
            if filename.startswith(course_dir):
                return                      # the course's own code calling its reference
            if not filename.startswith(libraries) and not filename.startswith("<frozen"):
                ref_calls.append(f"{frame.f_code.co_name} called from {caller.f_code.co_name}")
                return
            caller = caller.f_back

    def alarm(signum: int, frame: Any) -> None:
        raise _GradingTimeout()

    disable = None
    torch = sys.modules.get("torch")
    if torch is not None:
        disable = getattr(torch._C, "DisableTorchFunctionSubclass", None)
    import builtins

    def no_input(prompt: Any = "") -> str:
        raise EOFError("input() cannot be answered while grading")

    old_input = builtins.input
    builtins.input = no_input
    has_alarm = hasattr(signal, "SIGALRM")        # POSIX; elsewhere the cell timeout applies
    old = signal.signal(signal.SIGALRM, alarm) if has_alarm else None
    if has_alarm:
        signal.setitimer(signal.ITIMER_REAL, max(0.1, seconds))
    try:
        if ref_codes:
            sys.setprofile(watch)
        try:
            if disable is not None:
                with disable():
                    result = run_checkers(ex, obj, checkers)
            else:
                result = run_checkers(ex, obj, checkers)
            return {"status": result.status, "message": result.message}
        finally:
            sys.setprofile(None)
    except _GradingTimeout:
        return {"status": "timeout", "message": f"did not finish within {seconds:g} s"}
    except BaseException as exc:  # SystemExit, KeyboardInterrupt raised by submitted code
        return {"status": "error", "message": f"{ex.exercise_id}: your code raised "
                                              f"{type(exc).__name__}: {exc}"}
    finally:
        if has_alarm:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, old)
        builtins.input = old_input


def _write_json_atomic(path: str, data: dict[str, Any]) -> None:
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh)
    os.replace(tmp, path)


def kernel_finish(results_path: str, nonce: str, exercise_ids: list[str], seconds: float,
                  hidden_tests: str = "", disabled: Iterable[str] = ()) -> None:
    """Injected last: restore libraries, run public + hidden checks, write verdicts (nonce)."""
    import importlib.util
    import threading

    from ..checks import core
    sys.settrace(None)
    sys.setprofile(None)
    threading.settrace(None)        # type: ignore[arg-type]
    threading.setprofile(None)      # type: ignore[arg-type]
    snap = _KSTATE.get("snapshot")
    tampered = _restore_snapshot(snap) if snap else ["the grader's snapshot was removed"]
    out: dict[str, Any] = {"nonce": nonce, "complete": False, "current": None,
                           "exercises": {}, "tampered": tampered, "hidden_error": ""}
    if hidden_tests:
        try:
            spec = importlib.util.spec_from_file_location(f"_course_hidden_{nonce}", hidden_tests)
            module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
            spec.loader.exec_module(module)                 # type: ignore[union-attr]
        except BaseException as exc:  # a broken hidden-tests file is the grader's problem
            out["hidden_error"] = f"{type(exc).__name__}: {exc}"
    _write_json_atomic(results_path, out)
    disabled = set(disabled)
    captured = _KSTATE.get("captured", {})
    for ex_id in exercise_ids:
        out["current"] = ex_id
        _write_json_atomic(results_path, out)
        cap = captured.get(ex_id)
        if ex_id in disabled:
            verdict: dict[str, Any] = {"status": "disabled"}
        elif cap is None:
            verdict = {"status": "not-captured"}
        elif not cap["defined"]:
            verdict = {"status": "undefined", "target": cap["target"]}
        else:
            namespace = _KSTATE.get("namespace")
            saved = dict(namespace) if namespace is not None else None
            try:
                if namespace is not None:
                    namespace.clear()
                    namespace.update(cap["globals"])
                verdict = _check_captured(core.get_exercise(ex_id), cap["obj"], seconds)
            except BaseException as exc:  # the grader's own failure: report, do not guess
                verdict = {"status": "internal", "error": f"{type(exc).__name__}: {exc}"}
            finally:
                if namespace is not None and saved is not None:
                    namespace.clear()
                    namespace.update(saved)
        out["exercises"][ex_id] = verdict
        _write_json_atomic(results_path, out)
    out["current"] = None
    out["complete"] = True
    _write_json_atomic(results_path, out)


def _check_captured(ex: Any, obj: Any, seconds: float) -> dict[str, Any]:
    """Public checker, then (if it passed) the hidden ones; note any use of the reference."""
    ref_codes = _reference_codes(ex.reference)
    ref_calls: list[str] = []
    public = _run_limited(ex, obj, [ex.checker], seconds, ref_codes, ref_calls)
    hidden = None
    if public["status"] == "passed" and ex.hidden:
        hidden = _run_limited(ex, obj, list(ex.hidden), seconds, ref_codes, ref_calls)
    reference = ""
    ref = ex.reference
    if obj is ref and ref is not None:
        reference = "your answer is the reference object itself"
    elif isinstance(obj, type) and isinstance(ref, type) and issubclass(obj, ref):
        reference = f"your class is a subclass of the reference {ref.__name__}"
    elif ref_calls:
        reference = f"your code calls the reference implementation ({ref_calls[0]})"
    return {"status": "checked", "public": public, "hidden": hidden,
            "n_hidden": len(ex.hidden), "reference": reference}


# ---------------------------------------------------------------------------------------------
# Building and running the graded notebook (worker side)
# ---------------------------------------------------------------------------------------------

_LIMITS_CODE = r"""
import os, resource, sys
mem, cpu, fsize = (int(v) for v in sys.argv[1:4])
def limit(which, soft, hard):
    old_soft, old_hard = resource.getrlimit(which)
    if old_hard != resource.RLIM_INFINITY:
        soft, hard = min(soft, old_hard), min(hard, old_hard)
    resource.setrlimit(which, (soft, hard))
if mem > 0:
    limit(resource.RLIMIT_AS, mem, mem)
if cpu > 0:
    limit(resource.RLIMIT_CPU, cpu, cpu + 10)
if fsize > 0:
    limit(resource.RLIMIT_FSIZE, fsize, fsize)
limit(resource.RLIMIT_CORE, 0, 0)
os.execv(sys.argv[4], sys.argv[4:])
"""


def _kernel_manager_class(limits: Limits) -> type:
    """An AsyncKernelManager whose kernel is this Python, started under resource limits."""
    from jupyter_client.manager import AsyncKernelManager

    class LimitedKernelManager(AsyncKernelManager):
        def format_kernel_cmd(self, extra_arguments: list[str] | None = None) -> list[str]:
            kernel = [sys.executable, "-m", "ipykernel_launcher", "-f",
                      os.path.realpath(self.connection_file), *(extra_arguments or [])]
            try:
                import resource  # noqa: F401
            except ImportError:   # not POSIX: no limits available
                return kernel
            mem = int(limits.memory_mb) * 2**20
            cpu = int(limits.total_timeout * 2 + 60)
            fsize = int(limits.file_size_mb) * 2**20
            return [sys.executable, "-c", _LIMITS_CODE, str(mem), str(cpu), str(fsize), *kernel]

    return LimitedKernelManager


def _capped_client_class() -> type:
    from nbclient import NotebookClient

    class CappedClient(NotebookClient):
        """Keeps at most ``cap`` characters of stream output per cell and no rich output."""

        cap = 64 * 1024
        keep_rich = False

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.kept: dict[int, int] = {}
            self.dropped = 0

        def output(self, outs: Any, msg: dict[str, Any], display_id: Any, cell_index: int) -> Any:
            kind = msg["msg_type"]
            if kind == "stream":
                text = msg["content"].get("text", "")
                room = self.cap - self.kept.get(cell_index, 0)
                if room <= 0:
                    self.dropped += len(text)
                    return None
                if len(text) > room:
                    self.dropped += len(text) - room
                    msg = {**msg, "content": {**msg["content"], "text": text[:room]}}
                    text = text[:room]
                self.kept[cell_index] = self.kept.get(cell_index, 0) + len(text)
            elif kind in ("display_data", "execute_result", "update_display_data"):
                if not self.keep_rich:
                    return None
            elif kind == "error":
                content = msg["content"]
                tb = content.get("traceback", [])
                evalue = str(content.get("evalue", ""))[:2000]
                msg = {**msg, "content": {**content, "evalue": evalue,
                                          "traceback": tb[:3] + tb[-12:] if len(tb) > 15 else tb}}
            return super().output(outs, msg, display_id, cell_index)

    return CappedClient


def kernel_env() -> dict[str, str]:
    """The grading kernel's environment: smoke mode, CPU only, one thread, no CI expectations."""
    env = dict(os.environ)
    for key in ("COURSE_EXPECT", "COURSE_TRAIN", "COURSE_DATA_DIR_OVERRIDE", "PYTHONSTARTUP"):
        env.pop(key, None)
    env.update({"COURSE_SMOKE": "1", "COURSE_DEVICE": "cpu", "CUDA_VISIBLE_DEVICES": "",
                "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
                "OPENBLAS_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1", "TQDM_DISABLE": "1",
                "PYDEVD_DISABLE_FILE_VALIDATION": "1", "PYTHONHASHSEED": "0"})
    env["PYTHONPATH"] = os.pathsep.join([str(_REPO_DIR)] + [p for p in env.get("PYTHONPATH", "")
                                                            .split(os.pathsep) if p])
    return env


@dataclass
class Attempt:
    """The outcome of one run of the graded notebook."""

    verdicts: dict[str, Any] | None
    failure: str = ""              # '', 'timeout', 'total-timeout', 'crash', 'startup'
    failure_cell: int | None = None
    exit_code: int | None = None
    exercise_errors: dict[str, str] = field(default_factory=dict)
    dropped_output: int = 0
    kernel_log: str = ""
    notebook_json: str = ""


def build_graded_notebook(a: Assignment, sources: dict[str, str | None], results_path: str,
                          nonce: str, seconds: float, disabled: Iterable[str] = ()
                          ) -> tuple[Any, list[tuple[str, str | None]]]:
    """The template with the submitted exercise sources and the grader's injected cells.

    Returns the notebook and, per cell, its role ('prelude', 'template', 'exercise',
    'capture', 'final') and exercise id.
    """
    import nbformat
    nb = nbformat.reads(a.template_json, as_version=4)
    by_cell = {e.cell: e for e in a.exercises}
    disabled = set(disabled)
    cells: list[Any] = []
    roles: list[tuple[str, str | None]] = []
    mod = "__import__('course_utils.grading.grader', fromlist=['_'])"
    cells.append(nbformat.v4.new_code_cell(f"{mod}.kernel_prelude({list(a.check_modules)!r})"))
    roles.append(("prelude", None))
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
        ex = by_cell.get(i)
        if ex is None:
            cells.append(cell)
            roles.append(("template", None))
            continue
        src = sources.get(ex.id)
        if src is None or ex.id in disabled:
            src = ex.stub
        new = nbformat.v4.new_code_cell(src)
        new.metadata.update({"exercise_id": ex.id, "points": ex.points})
        cells.append(new)
        roles.append(("exercise", ex.id))
        cells.append(nbformat.v4.new_code_cell(
            f"{mod}.kernel_capture({ex.id!r}, {ex.target!r}, {list(ex.names)!r}, globals())"))
        roles.append(("capture", ex.id))
    ids = [e.id for e in a.exercises]
    cells.append(nbformat.v4.new_code_cell(
        f"{mod}.kernel_finish({results_path!r}, {nonce!r}, {ids!r}, {seconds!r}, "
        f"{a.hidden_tests or ''!r}, {sorted(disabled)!r})"))
    roles.append(("final", None))
    nb.cells = cells
    for i, cell in enumerate(nb.cells):
        cell.id = f"graded-{i:03d}"
    return nb, roles


def _kill_group(pgid: int | None) -> None:
    """Kill the kernel's whole process group (it and anything it started)."""
    if pgid and hasattr(os, "killpg") and pgid != os.getpgrp():
        try:
            os.killpg(pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError, OSError):
            pass


def run_attempt(a: Assignment, sources: dict[str, str | None], limits: Limits, deadline: float,
                disabled: Iterable[str] = (), keep_notebook: bool = False) -> Attempt:
    """Run the graded notebook once in a fresh, limited kernel; never raises for bad code."""
    import nbformat
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    nonce = secrets.token_hex(16)
    workdir = tempfile.mkdtemp(prefix="course-grade-run-")
    resdir = tempfile.mkdtemp(prefix="course-grade-verdicts-")
    results_path = os.path.join(resdir, f"verdicts-{nonce}.json")
    log_path = os.path.join(resdir, "kernel.log")
    disabled = set(disabled)
    n_active = sum(1 for e in a.exercises if e.id not in disabled)
    nb, roles = build_graded_notebook(a, sources, results_path, nonce, limits.cell_timeout,
                                      disabled)
    client_cls = _capped_client_class()
    client = client_cls(nb, kernel_manager_class=_kernel_manager_class(limits), timeout=None,
                        allow_errors=True, interrupt_on_timeout=False, record_timing=False,
                        startup_timeout=min(120, max(10, int(deadline - time.monotonic()))),
                        shutdown_kernel="immediate", kernel_name="python3")
    client.cap = int(limits.output_kb * 1024)
    client.keep_rich = keep_notebook
    attempt = Attempt(None)
    pgid = None
    log = open(log_path, "wb")
    try:
        with client.setup_kernel(cwd=workdir, env=kernel_env(), stdout=log, stderr=log):
            prov = getattr(client.km, "provisioner", None)
            pgid = getattr(prov, "pgid", None)
            for i, cell in enumerate(nb.cells):
                remaining = deadline - time.monotonic()
                if remaining <= 0.5:
                    attempt.failure, attempt.failure_cell = "total-timeout", i
                    break
                per_cell = limits.cell_timeout
                if roles[i][0] == "prelude":        # the grader's own imports: not the student's
                    per_cell = max(limits.cell_timeout, 120.0)
                elif roles[i][0] == "final":
                    per_cell = limits.cell_timeout * (2 * n_active + 1) + 10
                client.timeout = max(1, int(min(per_cell, remaining)))
                try:
                    client.execute_cell(cell, i)
                except CellTimeoutError:
                    total = per_cell > remaining
                    attempt.failure = "total-timeout" if total else "timeout"
                    attempt.failure_cell = i
                    break
                except DeadKernelError:
                    attempt.failure, attempt.failure_cell = "crash", i
                    proc = getattr(prov, "process", None)
                    if proc is not None:
                        try:
                            attempt.exit_code = proc.wait(timeout=5)
                        except Exception:
                            attempt.exit_code = proc.poll()
                    break
                role, ex_id = roles[i]
                if role == "exercise" and ex_id:
                    errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
                    if errors:
                        err = errors[-1]
                        attempt.exercise_errors[ex_id] = f"{err.get('ename')}: {err.get('evalue')}"
                if role in ("prelude", "capture", "final"):
                    errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
                    if errors and role != "capture":
                        attempt.failure, attempt.failure_cell = "grader", i
                        attempt.kernel_log = (f"{errors[-1].get('ename')}: "
                                              f"{errors[-1].get('evalue')}")
                        break
    except (DeadKernelError, RuntimeError, TimeoutError, OSError) as exc:
        if not attempt.failure:
            attempt.failure = "startup"
            attempt.kernel_log = f"{type(exc).__name__}: {exc}"
    finally:
        _kill_group(pgid)
        log.close()
        try:
            if os.path.exists(results_path):
                with open(results_path, encoding="utf-8") as fh:
                    data = json.load(fh)
                if isinstance(data, dict) and data.get("nonce") == nonce:
                    attempt.verdicts = data
        except (OSError, ValueError):
            attempt.verdicts = None
        try:
            with open(log_path, "rb") as fh:
                tail = "\n".join(line for line in fh.read()[-4000:].decode("utf-8", "replace")
                                 .splitlines() if "running over TCP" not in line)
            if attempt.failure in ("crash", "startup"):
                attempt.kernel_log = (attempt.kernel_log + "\n" + tail).strip()
        except OSError:
            pass
        attempt.dropped_output = getattr(client, "dropped", 0)
        if keep_notebook:
            attempt.notebook_json = nbformat.writes(nb)
        shutil.rmtree(workdir, ignore_errors=True)
        shutil.rmtree(resdir, ignore_errors=True)
    return attempt


# ---------------------------------------------------------------------------------------------
# Grading one submission (runs in a worker process)
# ---------------------------------------------------------------------------------------------

STATUS_ORDER = ("invalid", "grader-error", "outdated", "crashed", "timeout", "memory",
                "incomplete", "recovered", "graded")
_MEMORY_PATTERNS = ("MemoryError", "can't allocate memory", "Cannot allocate memory",
                    "out of memory", "std::bad_alloc")


def _signal_name(code: int | None) -> str:
    if code is None:
        return "the kernel process died"
    if code < 0:
        try:
            return f"the kernel process was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"the kernel process was killed by signal {-code}"
    return f"the kernel process exited with code {code}"


def _exercise_verdict(spec: ExerciseSpec, verdict: dict[str, Any] | None, match: Match,
                      cell_error: str, limits: Limits) -> dict[str, Any]:
    """Turn the kernel's verdict into points, a status and the student-facing message."""
    hint = spec.hint
    res: dict[str, Any] = {"points": 0.0, "max_points": spec.points, "status": "not-graded",
                           "message": "", "detail": "", "matched_by": match.how, "reference": ""}
    if match.how in ("missing", "not-code"):
        res.update(status="missing", message=match.message)
        return res
    if verdict is None:
        res.update(status="not-graded", message="not graded: the grading run stopped before "
                   "reaching this exercise (see the notes).")
        return res
    kind = verdict.get("status")
    if kind == "undefined":
        why = f" Your cell raised {cell_error}." if cell_error else ""
        res.update(status="error", message=f"{spec.id}: your cell did not define "
                   f"{verdict.get('target')}.{why} Hint: {hint}")
        return res
    if kind != "checked":
        res.update(status="not-graded", message="not graded (internal grader problem).",
                   detail=f"kernel verdict: {kind} {verdict.get('error', '')}".strip())
        return res
    public, hidden = verdict["public"], verdict.get("hidden")
    res["reference"] = verdict.get("reference", "")
    status, message = public["status"], public["message"][:1500]
    if status == "passed":
        if hidden is None or hidden["status"] == "passed":
            n_hidden = verdict.get("n_hidden", 0)
            res.update(points=spec.points, status="passed", message=(
                f"{spec.id}: passed the public checks"
                + (" and the grader's hidden tests." if n_hidden else ".")))
        else:
            h_status = hidden["status"]
            res.update(status="timeout" if h_status == "timeout" else "failed-hidden",
                       message=f"{spec.id}: passed the public checks but not the grader's hidden "
                       f"tests. Hint: {hint}", detail=hidden["message"][:1500])
            if any(p in hidden["message"] for p in _MEMORY_PATTERNS):
                res["status"] = "memory"
        return res
    if status == "not done":
        res.update(status="not-done", message=f"{spec.id}: not done (the function still raises "
                   "NotImplementedError).")
    elif status == "timeout":
        res.update(status="timeout", message=f"{spec.id}: your code did not finish within "
                   f"{limits.cell_timeout:g} s (an infinite loop?). Hint: {hint}")
    elif status == "failed":
        res.update(status="failed", message=message)
    else:
        extra = ""
        if "input() cannot be answered" in message or "StdinNotImplementedError" in message:
            extra = ("\n  input() cannot be answered during grading: pass values as arguments "
                     "instead of asking for them.")
        elif "NameError" in message:
            extra = ("\n  Only your exercise cells are taken from your notebook; code in cells "
                     "you added yourself does not run during grading.")
        if any(p in message for p in _MEMORY_PATTERNS):
            res.update(status="memory", message=f"{spec.id}: your code ran out of memory (the "
                       f"limit is {limits.memory_mb} MB). Hint: {hint}", detail=message)
            return res
        res.update(status="error", message=message + extra)
    if cell_error and res["status"] != "passed":
        res["detail"] = f"the exercise cell raised {cell_error}"
    return res


def grade_submission(task: dict[str, Any]) -> dict[str, Any]:
    """Grade one submission. ``task`` holds the assignment, limits, bytes and names.

    Never raises: an unexpected problem becomes a record with status ``grader-error``.
    """
    start = time.monotonic()
    a: Assignment = task["assignment"]
    limits: Limits = task["limits"]
    record: dict[str, Any] = {
        "student": task["student"], "file": task["file"], "sha256": task["sha256"],
        "template_version": a.version, "grader_version": GRADER_VERSION,
        "status": "graded", "incidents": [], "flags": [], "total": 0.0,
        "max_total": a.total_points, "exercises": {}, "notes": [], "review": [],
        "attempts": 0, "seconds": 0.0,
        "graded_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    for spec in a.exercises:
        record["exercises"][spec.id] = {"points": 0.0, "max_points": spec.points,
                                        "status": "not-graded", "message": "", "detail": "",
                                        "matched_by": "", "reference": ""}
    try:
        _grade_into(record, task, start)
    except Exception as exc:  # a bug or an environment problem: never stop the batch
        record["incidents"].append("grader-error")
        record["review"].append("grader error: " + "".join(
            traceback.format_exception_only(type(exc), exc)).strip())
        record["review"].append(traceback.format_exc()[-3000:])
        record["notes"].append("The grader could not grade this submission because of a "
                               "problem on the grader's side; your instructor has been told.")
    record["total"] = round(sum(e["points"] for e in record["exercises"].values()), 6)
    record["incidents"] = list(dict.fromkeys(record["incidents"]))
    record["flags"] = list(dict.fromkeys(record["flags"]))
    record["status"] = next((s for s in STATUS_ORDER if s in record["incidents"]), "graded")
    record["seconds"] = round(time.monotonic() - start, 2)
    return record


def _failure_verdict(culprit: str, attempt: Attempt, spec: ExerciseSpec,
                     limits: Limits) -> tuple[str, str]:
    """(status, student message) for an exercise that hung, exhausted memory or crashed."""
    if attempt.failure in ("timeout", "total-timeout"):
        limit = (f"the total time limit of {limits.total_timeout:g} s"
                 if attempt.failure == "total-timeout"
                 else f"the time limit of {limits.cell_timeout:g} s per cell")
        return "timeout", (f"{culprit}: your code ran longer than {limit} (an infinite loop, or "
                           "far too much work?). The grader stopped it, gave 0 points and graded "
                           f"the rest with the reference. Hint: {spec.hint}")
    code = attempt.exit_code
    if code == -signal.SIGKILL or "MemoryError" in attempt.kernel_log \
            or "bad_alloc" in attempt.kernel_log:
        return "memory", (f"{culprit}: the Python process running your code ran out of memory "
                          f"(limit {limits.memory_mb} MB) and was stopped; {_signal_name(code)}.")
    return "crashed", (f"{culprit}: your code crashed the Python process ({_signal_name(code)}; "
                       "e.g. os._exit(), exit() or a crash in a library). The grader gave 0 "
                       "points and graded the rest with the reference.")


def _run_with_retries(a: Assignment, sources: dict[str, str | None], limits: Limits,
                      deadline: float, record: dict[str, Any], keep_notebook: bool
                      ) -> tuple[Attempt | None, dict[str, tuple[str, str]]]:
    """Run the graded notebook; after a hang or crash, disable the culprit and run again.

    The culprit is known exactly when the failure happened during the final checks. Otherwise
    it is the last active exercise at or before the failing cell; if disabling it does not
    move the failure, it was innocent: it is put back and the exercise before it is tried.
    Returns the last attempt and ``{exercise id: (status, message)}`` for disabled exercises.
    """
    disabled: dict[str, tuple[str, str]] = {}
    tentative: tuple[str, int] | None = None       # (ex id, failing cell) not yet confirmed
    innocent: set[str] = set()
    final: Attempt | None = None
    specs = {e.id: e for e in a.exercises}
    for _ in range(2 * len(a.exercises) + 2):
        record["attempts"] += 1
        attempt = final = run_attempt(a, sources, limits, deadline, disabled, keep_notebook)
        record["_dropped"] = max(record.get("_dropped", 0), attempt.dropped_output)
        if not attempt.failure and attempt.verdicts and attempt.verdicts.get("complete"):
            break
        if attempt.failure in ("startup", "grader"):
            record["incidents"].append("grader-error")
            record["review"].append(f"the grading kernel failed ({attempt.failure}): "
                                    f"{attempt.kernel_log[-1500:]}")
            record["notes"].append("The grader could not run your notebook because of a problem "
                                   "on the grader's side; your instructor has been told.")
            break
        _, roles = build_graded_notebook(a, sources, "", "", 0, disabled)
        cell = attempt.failure_cell if attempt.failure_cell is not None else len(roles) - 1
        culprit = None
        if roles[cell][0] == "final" and attempt.verdicts:
            culprit = attempt.verdicts.get("current")
        if tentative and tentative[1] == cell and roles[cell][0] != "final":
            disabled.pop(tentative[0], None)       # disabling it did not help: innocent
            innocent.add(tentative[0])
        tentative = None
        if culprit is None:
            active = [ex_id for role, ex_id in roles[:cell + 1]
                      if role == "exercise" and ex_id not in disabled and ex_id not in innocent]
            if active:
                culprit = active[-1]
                tentative = (culprit, cell)
        if culprit is None:
            if attempt.failure == "total-timeout":
                record["incidents"].append("timeout")
                record["notes"].append(f"The grading run hit the total time limit of "
                                       f"{limits.total_timeout:g} s.")
            else:
                record["incidents"].append("grader-error")
                record["review"].append(f"the template's own cell {cell} failed "
                                        f"({attempt.failure}); raise the limits or fix the "
                                        f"template. {attempt.kernel_log[-800:]}")
            break
        disabled[culprit] = _failure_verdict(culprit, attempt, specs[culprit], limits)
        if attempt.exit_code is not None:
            record["review"].append(f"{culprit}: {_signal_name(attempt.exit_code)}; kernel "
                                    f"log: {attempt.kernel_log[-300:]}")
        if time.monotonic() >= deadline - 1:
            record["incidents"].append("timeout")
            record["notes"].append(f"The grading run hit the total time limit of "
                                   f"{limits.total_timeout:g} s.")
            break
    return final, disabled


def _grade_into(record: dict[str, Any], task: dict[str, Any], start: float) -> None:
    a: Assignment = task["assignment"]
    limits: Limits = task["limits"]
    specs = {s.id: s for s in a.exercises}
    if task.get("error"):
        record["incidents"].append("invalid")
        record["notes"].append(task["error"])
        for ex in record["exercises"].values():
            ex["message"] = "not graded: " + task["error"]
        return
    try:
        parsed = read_submission(task["data"], int(limits.max_file_mb * 2**20))
    except SubmissionUnreadable as exc:
        record["incidents"].append("invalid")
        record["notes"].append(f"Your file could not be read: {exc}")
        for ex in record["exercises"].values():
            ex["message"] = "not graded: the file could not be read."
        return
    if parsed.schema_problems:
        record["incidents"].append("recovered")
        record["notes"] += [f"Notebook format: {p} The grader read what it could." for p in
                            parsed.schema_problems]
    matching = match_exercises(parsed, a)
    record["notes"] += matching.notes
    if matching.recovered:
        record["incidents"].append("recovered")
    if matching.outdated:
        record["incidents"].append("outdated")
        record["notes"].insert(0, matching.outdated)
    if any(m.how in ("missing", "not-code") for m in matching.matches.values()):
        record["incidents"].append("incomplete")
    sources = {k: m.source for k, m in matching.matches.items()}

    # Static review of the submitted code (flags only; it does not change points).
    for ex_id, m in matching.matches.items():
        if m.source is None:
            continue
        ref_hits, review = scan_source(m.source, specs[ex_id])
        if ref_hits:
            record["flags"].append("reference-used")
            record["review"].append(f"{ex_id}: {'; '.join(ref_hits)}")
            record["exercises"][ex_id]["reference"] = (
                f"your code uses the course's reference implementation "
                f"({specs[ex_id].reference}) ({ref_hits[0]})")
        if review:
            record["flags"].append("review")
            record["review"].append(f"{ex_id}: code to review: {', '.join(review)}")

    if not any(m.source is not None for m in matching.matches.values()):
        for ex_id, m in matching.matches.items():
            record["exercises"][ex_id].update(_exercise_verdict(specs[ex_id], None, m, "", limits))
        return

    final, disabled = _run_with_retries(a, sources, limits, start + limits.total_timeout,
                                        record, task.get("keep_notebook", False))
    verdicts = (final.verdicts or {}) if final else {}
    exercise_verdicts = verdicts.get("exercises", {})
    cell_errors = final.exercise_errors if final else {}
    for spec in a.exercises:
        m = matching.matches[spec.id]
        if spec.id in disabled and m.source is not None:
            status, message = disabled[spec.id]
            record["exercises"][spec.id].update(points=0.0, status=status, message=message,
                                                matched_by=m.how)
            record["incidents"].append({"timeout": "timeout", "memory": "memory"}.get(
                status, "crashed"))
            continue
        res = _exercise_verdict(spec, exercise_verdicts.get(spec.id), m,
                                cell_errors.get(spec.id, ""), limits)
        if record["exercises"][spec.id].get("reference") and not res["reference"]:
            res["reference"] = record["exercises"][spec.id]["reference"]
        record["exercises"][spec.id].update(res)
        if res["reference"]:
            record["flags"].append("reference-used")
        if res["status"] in ("timeout", "memory"):
            record["incidents"].append(res["status"])
        if res["status"] == "not-graded" and m.source is not None:
            record["incidents"].append("timeout" if "timeout" in record["incidents"]
                                       else "grader-error")
    tampered = verdicts.get("tampered") or []
    if tampered:
        record["flags"].append("review")
        record["review"].append("changed at run time (restored before grading): "
                                + ", ".join(tampered[:20]))
    if verdicts.get("hidden_error"):
        record["incidents"].append("grader-error")
        record["review"].append(f"the hidden tests failed to load: {verdicts['hidden_error']}")
    dropped = record.pop("_dropped", 0)
    if dropped:
        record["notes"].append(f"Your code printed about {dropped / 1e6:.1f} MB more than the "
                               f"{limits.output_kb} KB per cell the grader keeps; the rest was "
                               "discarded (printed output never counts towards the grade).")
    if final and final.notebook_json:
        record["_notebook"] = final.notebook_json


def _worker_loop() -> None:
    """A worker process: read length-prefixed pickled tasks on stdin, answer with records.

    The protocol uses a private copy of stdout; file descriptor 1 is pointed at stderr so
    that nothing else printed in this process can corrupt it.
    """
    import pickle
    import struct
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    proto = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    inp = sys.stdin.buffer
    while True:
        header = inp.read(8)
        if len(header) < 8:
            return
        (size,) = struct.unpack("!Q", header)
        task = pickle.loads(inp.read(size))
        body = pickle.dumps(grade_submission(task))
        proto.write(struct.pack("!Q", len(body)) + body)
        proto.flush()


# ---------------------------------------------------------------------------------------------
# The batch: collecting submissions, the process pool, output files
# ---------------------------------------------------------------------------------------------


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file in the same folder and ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def student_id(name: str) -> str:
    """A file-system-safe student id from a file or folder name."""
    stem = name[:-len(".ipynb")] if name.lower().endswith(".ipynb") else name
    safe = re.sub(r"[^\w.-]+", "_", stem, flags=re.UNICODE)
    safe = re.sub(r"^[\W_]+|[\W_]+$", "", safe)
    return safe[:100] or "student"


@dataclass
class SubmissionFile:
    student: str
    path: Path | None
    file: str
    error: str = ""


def collect_submissions(folder: Path, assignment_name: str,
                        exclude: Iterable[Path] = ()) -> tuple[list[SubmissionFile], list[str]]:
    """One notebook per student: ``folder/<student>.ipynb`` or ``folder/<student>/*.ipynb``.

    Returns the submissions (sorted by student id) and the names of ignored files.
    """
    excluded = {p.resolve() for p in exclude}
    found: list[SubmissionFile] = []
    ignored: list[str] = []
    for entry in sorted(folder.iterdir(), key=lambda p: p.name):
        if entry.name.startswith(".") or entry.resolve() in excluded:
            continue
        if entry.is_file():
            if entry.name.lower().endswith(".ipynb"):
                found.append(SubmissionFile(student_id(entry.name), entry, entry.name))
            else:
                ignored.append(entry.name)
        elif entry.is_dir() and entry.name != "__pycache__":
            notebooks = sorted(p for p in entry.rglob("*") if p.is_file()
                               and p.name.lower().endswith(".ipynb")
                               and ".ipynb_checkpoints" not in p.parts
                               and not any(part.startswith(".") for part in
                                           p.relative_to(entry).parts))
            same = [p for p in notebooks if p.name == assignment_name]
            pick = same or notebooks
            if len(pick) == 1:
                found.append(SubmissionFile(student_id(entry.name), pick[0],
                                            str(pick[0].relative_to(folder))))
            elif not pick:
                ignored.append(entry.name + "/")
            else:
                found.append(SubmissionFile(
                    student_id(entry.name), None, entry.name + "/",
                    f"the folder holds {len(pick)} notebooks "
                    f"({', '.join(p.name for p in pick[:5])}) and none is named "
                    f"{assignment_name}; keep only the one to grade."))
    seen: dict[str, int] = {}
    for sub in sorted(found, key=lambda s: (s.student.lower(), s.file)):
        key = sub.student.lower()
        if key in seen:
            seen[key] += 1
            sub.student = f"{sub.student}-{seen[key]}"
        else:
            seen[key] = 1
    return sorted(found, key=lambda s: s.student), ignored


_WORKER_CMD = ("import sys; sys.path.insert(0, sys.argv[1]); "
               "from course_utils.grading.grader import _worker_loop; _worker_loop()")


class _Worker:
    """One long-lived worker process of the pool, restarted after a crash or an overrun."""

    def __init__(self) -> None:
        self.proc: Any = None
        self.err: Any = None

    def start(self) -> None:
        import subprocess
        self.err = tempfile.TemporaryFile()
        self.proc = subprocess.Popen([sys.executable, "-c", _WORKER_CMD, str(_REPO_DIR)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.err, start_new_session=True)

    def stop(self) -> None:
        if self.proc is not None:
            _kill_group(self.proc.pid)
            try:
                self.proc.kill()
                self.proc.wait(timeout=10)
            except Exception:
                pass
            for stream in (self.proc.stdin, self.proc.stdout, self.err):
                try:
                    stream.close()
                except Exception:
                    pass
        self.proc = None

    def _read(self, n: int, deadline: float) -> bytes:
        import select
        fd = self.proc.stdout.fileno()
        buf = b""
        while len(buf) < n:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            if os.name == "posix":
                ready, _, _ = select.select([fd], [], [], min(remaining, 5.0))
                if not ready:
                    continue
            chunk = os.read(fd, min(n - len(buf), 1 << 20))
            if not chunk:
                raise EOFError
            buf += chunk
        return buf

    def grade(self, task: dict[str, Any], hard_limit: float) -> dict[str, Any]:
        import pickle
        import struct
        if self.proc is None or self.proc.poll() is not None:
            self.stop()
            self.start()
        payload = pickle.dumps(task)
        deadline = time.monotonic() + hard_limit
        try:
            self.proc.stdin.write(struct.pack("!Q", len(payload)) + payload)
            self.proc.stdin.flush()
            (size,) = struct.unpack("!Q", self._read(8, deadline))
            record = pickle.loads(self._read(size, deadline))
            if isinstance(record, dict) and record.get("student") == task["student"]:
                return record
            raise EOFError
        except TimeoutError:
            self.stop()
            return _failed_record(task, f"the grading worker overran the hard limit of "
                                        f"{hard_limit:g} s and was killed")
        except (EOFError, OSError, pickle.UnpicklingError, struct.error):
            code = self.proc.poll() if self.proc is not None else None
            tail = b""
            if self.err is not None:
                self.err.seek(0)
                tail = self.err.read()[-1500:]
            self.stop()
            return _failed_record(task, f"the grading worker died (exit code {code}): "
                                        f"{tail.decode('utf-8', 'replace')}")


def run_pool(tasks: list[dict[str, Any]], jobs: int, hard_limit: float,
             on_done: Callable[[dict[str, Any]], None]) -> None:
    """Grade ``tasks`` over a pool of ``jobs`` worker processes.

    Each worker grades one submission at a time, and each submission runs in a kernel process
    of its own. A worker that dies or overruns ``hard_limit`` seconds is killed (its
    submission gets a ``grader-error`` record) and replaced; the other submissions carry on.
    ``on_done`` is called in this thread as each record arrives.
    """
    import queue
    import threading
    if not tasks:
        return
    todo: queue.Queue[dict[str, Any]] = queue.Queue()
    for t in tasks:
        todo.put(t)
    done: queue.Queue[dict[str, Any]] = queue.Queue()
    stop = threading.Event()

    def slot() -> None:
        worker = _Worker()
        try:
            while not stop.is_set():
                try:
                    task = todo.get_nowait()
                except queue.Empty:
                    return
                try:
                    record = worker.grade(task, hard_limit)
                except Exception as exc:   # e.g. the worker could not be started at all
                    record = _failed_record(task, f"{type(exc).__name__}: {exc}")
                done.put(record)
        finally:
            worker.stop()

    threads = [threading.Thread(target=slot, name=f"course-grade-{i}", daemon=True)
               for i in range(max(1, min(jobs, len(tasks))))]
    for t in threads:
        t.start()
    try:
        for _ in range(len(tasks)):
            on_done(done.get())
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=hard_limit + 30)


def _failed_record(task: dict[str, Any], why: str) -> dict[str, Any]:
    a: Assignment = task["assignment"]
    return {"student": task["student"], "file": task["file"], "sha256": task["sha256"],
            "template_version": a.version, "grader_version": GRADER_VERSION,
            "status": "grader-error", "incidents": ["grader-error"], "flags": [], "total": 0.0,
            "max_total": a.total_points,
            "exercises": {e.id: {"points": 0.0, "max_points": e.points, "status": "not-graded",
                                 "message": "not graded (grader problem).", "detail": "",
                                 "matched_by": "", "reference": ""} for e in a.exercises},
            "notes": ["The grader could not grade this submission because of a problem on the "
                      "grader's side; your instructor has been told."],
            "review": [why], "attempts": 0, "seconds": 0.0,
            "graded_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}


def _fmt(points: float) -> str:
    return f"{points:g}"


_STATUS_TEXT = {
    "graded": "graded", "recovered": "graded; the file needed repairs (see the notes)",
    "incomplete": "graded; an exercise is missing", "memory": "graded; ran out of memory",
    "timeout": "graded; hit a time limit", "crashed": "graded; your code crashed the kernel",
    "outdated": "made for another version of the assignment",
    "grader-error": "not graded: grader problem", "invalid": "not graded: unreadable file"}
_EX_TEXT = {"passed": "passed", "failed": "failed a check", "failed-hidden": "failed hidden tests",
            "error": "raised an error", "not-done": "not done", "missing": "missing",
            "timeout": "timed out", "memory": "out of memory", "crashed": "crashed",
            "not-graded": "not graded"}


def feedback_markdown(record: dict[str, Any], a: Assignment) -> str:
    """The student's feedback: points, what passed or failed and the hints; never the answers."""
    lines = [f"# Feedback: {a.stem} - {record['student']}", "",
             f"**Score: {_fmt(record['total'])} / {_fmt(record['max_total'])} points** · "
             f"status: {_STATUS_TEXT.get(record['status'], record['status'])}", "",
             f"File: `{record['file']}` · graded {record['graded_at']} "
             f"(assignment version {a.version})", "",
             "| exercise | points | result |", "|---|---|---|"]
    for ex_id, ex in record["exercises"].items():
        lines.append(f"| {ex_id} | {_fmt(ex['points'])} / {_fmt(ex['max_points'])} | "
                     f"{_EX_TEXT.get(ex['status'], ex['status'])} |")
    for ex_id, ex in record["exercises"].items():
        lines += ["", f"## {ex_id}: {_fmt(ex['points'])} / {_fmt(ex['max_points'])}", ""]
        msg = ex["message"] or _EX_TEXT.get(ex["status"], ex["status"])
        lines += ["```text", msg.replace("```", "'''"), "```"]
        if ex.get("reference"):
            lines += ["", f"**Note:** {ex['reference']}. Your instructor will review this."]
    if record["notes"]:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in record["notes"]]
    if "review" in record["flags"]:
        lines += ["", "Some of your code was marked for your instructor to look at (it reaches "
                  "into Python or grader internals)."]
    lines += ["", "The grade comes from the grader's own run of your exercise cells inside the "
              "assignment's notebook; outputs stored in your file are not used.", ""]
    return "\n".join(lines)


def gradebook_csv(records: list[dict[str, Any]], a: Assignment) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    ids = [e.id for e in a.exercises]
    writer.writerow(["student", *ids, "total", "status", "flags", "file"])

    def safe(text: str) -> str:     # keep spreadsheets from reading a cell as a formula
        return "'" + text if text[:1] in ("=", "+", "-", "@") else text
    for r in records:
        writer.writerow([safe(r["student"]),
                         *[_fmt(r["exercises"].get(i, {}).get("points", 0.0)) for i in ids],
                         _fmt(r["total"]), r["status"], ";".join(r.get("flags", [])),
                         safe(r["file"])])
    return buf.getvalue()


def _settings_key(a: Assignment, limits: Limits) -> dict[str, Any]:
    return {"template_version": a.version, "grader_version": GRADER_VERSION,
            "limits": asdict(limits)}


@dataclass
class BatchResult:
    records: list[dict[str, Any]]
    graded: int
    skipped: int
    ignored: list[str]
    output: Path
    seconds: float

    def by_student(self) -> dict[str, dict[str, Any]]:
        return {r["student"]: r for r in self.records}


def grade_batch(assignment: str | os.PathLike[str], submissions: str | os.PathLike[str],
                output: str | os.PathLike[str], *, jobs: int = 2, force: bool = False,
                limits: Limits | None = None, manifest: str | os.PathLike[str] | None = None,
                hidden_tests: str | os.PathLike[str] | None = None, keep_notebooks: bool = False,
                log: Callable[[str], None] | None = print) -> BatchResult:
    """Grade every submission in ``submissions`` against ``assignment`` into ``output``."""
    started = time.monotonic()
    limits = limits or Limits()
    say = log or (lambda _msg: None)
    a = load_assignment(assignment, manifest, hidden_tests)
    sub_dir = Path(submissions).resolve()
    out = Path(output).resolve()
    if not sub_dir.is_dir():
        raise AssignmentError(f"submissions folder {sub_dir} not found")
    if out == sub_dir:
        raise AssignmentError("the output folder must not be the submissions folder")
    subs, ignored = collect_submissions(sub_dir, a.name, exclude=[out])
    key = _settings_key(a, limits)
    records_dir = out / "records"
    records: dict[str, dict[str, Any]] = {}
    tasks: list[dict[str, Any]] = []
    local: list[dict[str, Any]] = []
    skipped = 0
    for sub in subs:
        data = b""
        error = sub.error
        if sub.path is not None and not error:
            try:
                size = sub.path.stat().st_size
                if size > limits.max_file_mb * 2**20:
                    error = (f"Your file could not be read: the file is {size / 2**20:.1f} MB, "
                             f"more than the {limits.max_file_mb:g} MB limit: clear all outputs "
                             "and submit again.")
                else:
                    data = sub.path.read_bytes()
            except OSError as exc:
                error = f"Your file could not be read: {exc.strerror}."
        sha = _sha256(data)
        cached = records_dir / f"{sub.student}.json"
        if not force and cached.is_file():
            try:
                old = json.loads(cached.read_text(encoding="utf-8"))
                if old.get("sha256") == sha and old.get("key") == key and not error:
                    records[sub.student] = old
                    skipped += 1
                    continue
            except (OSError, ValueError):
                pass
        task = {"assignment": a, "limits": limits, "student": sub.student, "file": sub.file,
                "sha256": sha, "data": data, "error": error, "keep_notebook": keep_notebooks}
        if not error:
            try:
                read_submission(data, int(limits.max_file_mb * 2**20))
            except SubmissionUnreadable:
                error = "unreadable"
        # Files that cannot be read run no code: grade them here, without a worker.
        (local if error else tasks).append(task)
    n_new = len(tasks) + len(local)
    say(f"Grading {n_new} submission(s) of {a.name} with {jobs} job(s); "
        f"{skipped} already graded (use --force to regrade)." if skipped or n_new else
        f"No submissions found in {sub_dir}.")
    done = 0

    def on_done(record: dict[str, Any]) -> None:
        nonlocal done
        done += 1
        record["key"] = key
        notebook = record.pop("_notebook", None)
        records[record["student"]] = record
        write_atomic(records_dir / f"{record['student']}.json",
                     json.dumps(record, indent=1, ensure_ascii=False) + "\n")
        write_atomic(out / "feedback" / f"{record['student']}.md", feedback_markdown(record, a))
        if notebook:
            write_atomic(out / "executed" / f"{record['student']}.ipynb", notebook)
        flags = f" [{', '.join(record['flags'])}]" if record.get("flags") else ""
        say(f"[{done:>3}/{n_new}] {record['student']}: {_fmt(record['total'])}/"
            f"{_fmt(record['max_total'])} {record['status']}{flags} ({record['seconds']:.1f} s)")

    try:
        for task in local:
            on_done(grade_submission(task))
        run_pool(tasks, jobs, hard_limit=limits.total_timeout * 1.5 + 120, on_done=on_done)
    finally:
        ordered = [records[s.student] for s in subs if s.student in records]
        for r in ordered:     # feedback for cached records too (e.g. a deleted feedback file)
            fb = out / "feedback" / f"{r['student']}.md"
            if not fb.exists():
                write_atomic(fb, feedback_markdown(r, a))
        write_atomic(out / "gradebook.csv", gradebook_csv(ordered, a))
        results = {
            "assignment": a.name, "template": a.template_path, "template_version": a.version,
            "grader_version": GRADER_VERSION,
            "generated_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "limits": asdict(limits), "hidden_tests": bool(a.hidden_tests),
            "exercises": [{"id": e.id, "points": e.points, "hint": e.hint} for e in a.exercises],
            "max_total": a.total_points, "ignored_files": ignored,
            "students": ordered}
        write_atomic(out / "results.json", json.dumps(results, indent=1, ensure_ascii=False) + "\n")
    elapsed = time.monotonic() - started
    result = BatchResult(ordered, n_new, skipped, ignored, out, elapsed)
    counts: dict[str, int] = {}
    for r in ordered:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    say(f"Done in {elapsed:.1f} s: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
        + f". Gradebook: {out / 'gradebook.csv'}")
    if ignored:
        say(f"Ignored (not notebooks): {', '.join(ignored)}")
    return result


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="course-grade",
        description="Grade a folder of submitted notebooks into a gradebook (CSV), per-student "
                    "feedback (Markdown) and results.json.",
        epilog="Example: course-grade notebooks/00_introduction.ipynb submissions/ "
               "-o grades/00_introduction --jobs 2")
    p.add_argument("assignment", help="the student notebook handed out, e.g. "
                   "notebooks/00_introduction.ipynb (its manifest.json is read from the same "
                   "folder)")
    p.add_argument("submissions", help="folder with one .ipynb per student (student id = file "
                   "name) or one sub-folder per student")
    p.add_argument("-o", "--output", help="output folder (default: grades/<assignment name>)")
    p.add_argument("-j", "--jobs", type=int, default=2, help="submissions graded in parallel "
                   "(default: %(default)s)")
    p.add_argument("--force", action="store_true", help="regrade submissions graded before")
    p.add_argument("--cell-timeout", type=float, default=Limits.cell_timeout,
                   help="seconds per cell and per exercise's checks (default: %(default)g)")
    p.add_argument("--total-timeout", type=float, default=Limits.total_timeout,
                   help="seconds per submission, all runs included (default: %(default)g)")
    p.add_argument("--memory-mb", type=int, default=Limits.memory_mb,
                   help="address-space limit of the grading kernel in MB, 0 for none "
                        "(default: %(default)s)")
    p.add_argument("--output-kb", type=int, default=Limits.output_kb,
                   help="printed output kept per cell, in KB (default: %(default)s)")
    p.add_argument("--manifest", help="manifest.json to use (default: next to the assignment)")
    p.add_argument("--hidden-tests", help="a Python file registering extra grader-only checks "
                   "with @hidden_check (keep it out of the students' copy)")
    p.add_argument("--keep-notebooks", action="store_true",
                   help="also save each executed notebook under <output>/executed/")
    p.add_argument("-q", "--quiet", action="store_true", help="print only the summary")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.jobs < 1:
        print("error: --jobs must be at least 1", file=sys.stderr)
        return 2
    output = args.output or str(Path("grades") / Path(args.assignment).stem)
    try:
        limits = Limits(cell_timeout=args.cell_timeout, total_timeout=args.total_timeout,
                        memory_mb=args.memory_mb, output_kb=args.output_kb)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    quiet_log = (lambda m: print(m) if m.startswith(("Done", "Ignored", "No submissions"))
                 else None)
    try:
        result = grade_batch(args.assignment, args.submissions, output, jobs=args.jobs,
                             force=args.force, limits=limits, manifest=args.manifest,
                             hidden_tests=args.hidden_tests, keep_notebooks=args.keep_notebooks,
                             log=quiet_log if args.quiet else print)
    except AssignmentError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: graded submissions are kept; run again to continue", file=sys.stderr)
        return 130
    return 1 if any(r["status"] == "grader-error" for r in result.records) else 0


if __name__ == "__main__":
    sys.exit(main())
