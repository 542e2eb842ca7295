"""The assignment side of grading: limits, exercise specs, and loading a template.

An assignment is the *student* notebook that was handed out (the template) plus its entry in
``notebooks/manifest.json``. :func:`load_assignment` reads both, checks that they agree with
each other and with the registered exercise checks, and returns an :class:`Assignment` whose
``version`` hash changes whenever anything the grade depends on changes (template, manifest
entry, check modules, hidden tests, grader version), so that cached records are regraded.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat

from ..checks.core import Exercise, get_exercise
from .notebooks import cell_hash

GRADER_VERSION = "1.0"
PACKAGE_DIR = Path(__file__).resolve().parents[1]          # .../course_utils
REPO_DIR = PACKAGE_DIR.parent


@dataclass(frozen=True)
class Limits:
    """Resource limits for one submission.

    ``cell_timeout`` bounds every cell and every exercise's checks; ``total_timeout`` bounds
    the whole submission (all runs of its notebook); ``memory_mb`` is the kernel's address
    space limit; ``output_kb`` is how much printed output per cell is kept (the rest is
    discarded, never read as a grade); ``max_file_mb`` rejects absurdly large files.
    ``sandbox`` False (``--no-sandbox``) runs kernels without bubblewrap.
    """

    cell_timeout: float = 120.0
    total_timeout: float = 600.0
    memory_mb: int = 4096
    output_kb: int = 64
    max_file_mb: float = 50.0
    file_size_mb: int = 512
    sandbox: bool = True            # run each kernel in bubblewrap (see grading/sandbox.py)

    def __post_init__(self) -> None:
        if self.cell_timeout <= 0 or self.total_timeout <= 0:
            raise ValueError("time limits must be positive numbers of seconds")
        if self.memory_mb and self.memory_mb < 512:
            raise ValueError(f"memory_mb={self.memory_mb} is too small for a Python kernel with "
                             "PyTorch: use at least 1024 (or 0 for no limit)")

    @property
    def max_file_bytes(self) -> int:
        """``max_file_mb`` in bytes."""
        return int(self.max_file_mb * 2**20)


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


# --- cell helpers shared with the submission side ---------------------------------------------

def cell_source(cell: dict[str, Any]) -> str:
    """A notebook cell's source as one string (nbformat allows a list of lines)."""
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else str(src)


def source_hash(cell_type: str, source: str) -> str:
    """Same hash as :func:`course_utils.grading.notebooks.cell_hash` (type + source)."""
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
            tree = ast.parse(cell_source(cell))
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                    and node.func.id == "check" and len(node.args) >= 2
                    and isinstance(node.args[0], ast.Constant) and node.args[0].value == ex_id
                    and isinstance(node.args[1], ast.Name)):
                return node.args[1].id
    return None


def _checks_fingerprint(exercises: Iterable[Exercise]) -> str:
    """Hash of the sources the grade depends on: every module of the checks package (judges,
    probes and the helpers they share), and for each exercise the modules of its checkers and
    of its reference. Changing one of them regrades."""
    files = {p.resolve() for p in (PACKAGE_DIR / "checks").glob("*.py")}
    for ex in exercises:
        for obj in (ex.checker, *ex.hidden, ex.reference, ex.probe, ex.judge):
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


# --- loading ----------------------------------------------------------------------------------

_REGENERATE = "regenerate it with `python -m course_utils.grading.generate`"


def _read_template(path: Path) -> tuple[bytes, Any, list[dict[str, Any]]]:
    """The template's bytes, its notebook and its cells; refuses a solution notebook."""
    if not path.is_file():
        raise AssignmentError(f"assignment notebook {path} not found: pass the student notebook, "
                              "e.g. notebooks/00_introduction.ipynb")
    raw = path.read_bytes()
    try:
        nb = nbformat.reads(raw.decode("utf-8"), as_version=4)
    except Exception as exc:
        raise AssignmentError(f"{path} cannot be read as a notebook: {exc}") from exc
    cells = [dict(c) for c in nb.cells]
    if any("### BEGIN SOLUTION" in cell_source(c) for c in cells):
        raise AssignmentError(f"{path} contains solutions: pass the generated student notebook "
                              "(notebooks/NN_name.ipynb), not the one in notebooks/solutions/")
    return raw, nb, cells


def _manifest_entry(path: Path, manifest: str | os.PathLike[str] | None
                    ) -> dict[str, Any] | None:
    """The template's manifest entry; None without a manifest (or without an entry in the
    default one)."""
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
    return entry


def _manifest_points(path: Path, entry: dict[str, Any] | None,
                     from_meta: list[tuple[int, str, Any]], protected: tuple[str, ...]
                     ) -> dict[str, float]:
    """Check the manifest entry against the template; return its points per exercise."""
    if entry is None:
        return {}
    listed = [(e["cell"], e["id"], e["points"]) for e in entry["exercises"]]
    if [(i, x) for i, x, _ in listed] != [(i, x) for i, x, _ in from_meta]:
        raise AssignmentError(f"the manifest's exercises for {path.name} ({listed}) do not "
                              f"match the template's exercise cells ({from_meta}): {_REGENERATE}")
    if sorted(entry.get("protected_cells", [])) != sorted(protected):
        raise AssignmentError(f"the manifest's cell hashes for {path.name} do not match the "
                              f"template (was the notebook edited by hand?): {_REGENERATE}")
    return {x: float(p) for _, x, p in listed}


def _exercise_specs(path: Path, cells: list[dict[str, Any]],
                    from_meta: list[tuple[int, str, Any]], listed_points: dict[str, float]
                    ) -> tuple[list[ExerciseSpec], list[Exercise]]:
    """One spec per exercise cell, with its registered exercise (checks, reference, hint)."""
    specs: list[ExerciseSpec] = []
    registered: list[Exercise] = []
    for index, ex_id, meta_points in from_meta:
        points = listed_points.get(ex_id, meta_points)
        if not isinstance(points, (int, float)) or points <= 0:
            raise AssignmentError(f"exercise {ex_id!r} in {path.name} has no positive points")
        try:
            ex = get_exercise(ex_id)
        except KeyError as exc:
            raise AssignmentError(f"exercise {ex_id!r} has no registered check in "
                                  f"course_utils.checks ({exc.args[0]})") from exc
        stub = cell_source(cells[index])
        names = defined_names(stub)
        target = _check_target(cells, ex_id, index) or (names[0] if len(names) == 1 else None)
        if target is None:
            raise AssignmentError(f"cannot tell which object exercise {ex_id!r} checks: add a "
                                  f"cell `name = check({ex_id!r}, name)` after it")
        registered.append(ex)
        ref, ref_names = _describe_reference(ex.reference)
        specs.append(ExerciseSpec(ex_id, float(points), index, names, target, stub, ex.hint,
                                  ref, ref_names))
    return specs, registered


def _read_hidden_tests(hidden_tests: str | os.PathLike[str] | None) -> tuple[str | None, bytes]:
    """The hidden tests file's absolute path and bytes, after checking that it compiles."""
    if not hidden_tests:
        return None, b""
    hp = Path(hidden_tests).resolve()
    if not hp.is_file():
        raise AssignmentError(f"hidden tests file {hp} not found")
    hidden_bytes = hp.read_bytes()
    try:
        compile(hidden_bytes, str(hp), "exec")
    except SyntaxError as exc:
        raise AssignmentError(f"hidden tests file {hp} has a syntax error: {exc}") from exc
    return str(hp), hidden_bytes


def load_assignment(template: str | os.PathLike[str],
                    manifest: str | os.PathLike[str] | None = None,
                    hidden_tests: str | os.PathLike[str] | None = None) -> Assignment:
    """Read the template (a *student* notebook) and its manifest entry; validate both.

    Without a manifest (no ``manifest.json`` next to the template, or no entry for it) the
    exercises are read from the template's cell metadata. Raises :class:`AssignmentError`
    with the fix when the template, the manifest and the registered checks disagree.
    """
    path = Path(template)
    raw, nb, cells = _read_template(path)
    from_meta = [(i, c["metadata"]["exercise_id"], c["metadata"].get("points"))
                 for i, c in enumerate(cells) if "exercise_id" in c.get("metadata", {})]
    entry = _manifest_entry(path, manifest)
    exercise_cells = {m[0] for m in from_meta}
    protected = tuple(source_hash(c["cell_type"], cell_source(c)) for i, c in enumerate(cells)
                      if i not in exercise_cells)
    listed_points = _manifest_points(path, entry, from_meta, protected)
    if not from_meta:
        raise AssignmentError(f"{path} has no exercise cells (code cells with 'exercise_id' "
                              "metadata): nothing to grade")
    specs, registered = _exercise_specs(path, cells, from_meta, listed_points)
    hidden_path, hidden_bytes = _read_hidden_tests(hidden_tests)

    h = hashlib.sha256()
    for part in (GRADER_VERSION.encode(), raw, json.dumps(entry, sort_keys=True).encode(),
                 _checks_fingerprint(registered).encode(), hidden_bytes):
        h.update(hashlib.sha256(part).digest())
    kernel = nb.metadata.get("kernelspec", {}).get("name", "python3")
    modules = tuple(sorted({(ex.judge or ex.checker).__module__ for ex in registered}))
    return Assignment(path.name, str(path.resolve()), raw.decode("utf-8"), tuple(specs), protected,
                      h.hexdigest()[:16], hidden_path, kernel, modules)
