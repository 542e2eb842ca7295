"""The batch: collect a folder of submissions, grade the new ones, write the reports.

:func:`grade_batch` is the engine behind ``course-grade``. It loads the assignment
(:mod:`.assignment`), collects one notebook per student (:func:`collect_submissions`), skips
submissions whose cached record (``records/<student>.json``) matches the file and the settings,
grades the others over a pool of worker processes (:mod:`.pool`) and writes each record and
its feedback as soon as it arrives, then the gradebook and ``results.json`` (:mod:`.reports`).
Files that cannot be read run no code, so they are graded in this process, without a worker.
The submitted files are only ever opened for reading.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .assignment import GRADER_VERSION, Assignment, AssignmentError, Limits, load_assignment
from .pool import run_pool
from .records import Record, Task
from .reports import (
    feedback_markdown,
    fmt_points,
    gradebook_csv,
    record_json,
    results_json,
    write_atomic,
)
from .submission import SubmissionUnreadable, read_submission
from .verdicts import grade_submission


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


def _from_folder(entry: Path, folder: Path, assignment_name: str) -> SubmissionFile | None:
    """A student's folder: the notebook named like the assignment, else its only notebook."""
    notebooks = sorted(p for p in entry.rglob("*") if p.is_file()
                       and p.name.lower().endswith(".ipynb")
                       and ".ipynb_checkpoints" not in p.parts
                       and not any(part.startswith(".") for part in p.relative_to(entry).parts))
    same = [p for p in notebooks if p.name == assignment_name]
    pick = same or notebooks
    if len(pick) == 1:
        return SubmissionFile(student_id(entry.name), pick[0], str(pick[0].relative_to(folder)))
    if not pick:
        return None
    return SubmissionFile(
        student_id(entry.name), None, entry.name + "/",
        f"the folder holds {len(pick)} notebooks ({', '.join(p.name for p in pick[:5])}) and "
        f"none is named {assignment_name}; keep only the one to grade.")


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
            sub = _from_folder(entry, folder, assignment_name)
            if sub is None:
                ignored.append(entry.name + "/")
            else:
                found.append(sub)
    seen: dict[str, int] = {}
    for sub in sorted(found, key=lambda s: (s.student.lower(), s.file)):
        key = sub.student.lower()
        if key in seen:
            seen[key] += 1
            sub.student = f"{sub.student}-{seen[key]}"
        else:
            seen[key] = 1
    return sorted(found, key=lambda s: s.student), ignored


def settings_key(a: Assignment, limits: Limits) -> dict[str, Any]:
    """What a cached record must have been graded with to be reused."""
    return {"template_version": a.version, "grader_version": GRADER_VERSION,
            "limits": asdict(limits)}


@dataclass
class BatchResult:
    records: list[Record]
    graded: int
    skipped: int
    ignored: list[str]
    output: Path
    seconds: float

    def by_student(self) -> dict[str, Record]:
        return {r.student: r for r in self.records}


def _read_file(sub: SubmissionFile, limits: Limits) -> tuple[bytes, str]:
    """The submitted bytes, and why they cannot be graded ('' if they can be tried)."""
    if sub.path is None or sub.error:
        return b"", sub.error
    try:
        size = sub.path.stat().st_size
        if size > limits.max_file_mb * 2**20:
            return b"", (f"Your file could not be read: the file is {size / 2**20:.1f} MB, "
                         f"more than the {limits.max_file_mb:g} MB limit: clear all outputs "
                         "and submit again.")
        return sub.path.read_bytes(), ""
    except OSError as exc:
        return b"", f"Your file could not be read: {exc.strerror}."


def _cached(path: Path, sha: str, key: dict[str, Any]) -> Record | None:
    """The record stored at ``path`` if it was graded from this file with these settings."""
    if not path.is_file():
        return None
    try:
        old = Record.from_json(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return None
    return old if old.sha256 == sha and old.key == key else None


@dataclass
class _Plan:
    tasks: list[Task]        # graded by the pool
    local: list[Task]        # unreadable files: graded here, they run no code
    cached: dict[str, Record]


def _plan(subs: list[SubmissionFile], a: Assignment, limits: Limits, key: dict[str, Any],
          records_dir: Path, force: bool, keep_notebooks: bool) -> _Plan:
    """Sort the submissions into cached, to grade in a worker, and to grade here."""
    plan = _Plan([], [], {})
    for sub in subs:
        data, error = _read_file(sub, limits)
        sha = hashlib.sha256(data).hexdigest()
        old = None if force or error else _cached(records_dir / f"{sub.student}.json", sha, key)
        if old is not None:
            plan.cached[sub.student] = old
            continue
        task = Task(a, limits, sub.student, sub.file, sha, data, error, keep_notebooks)
        readable = not error
        if readable:
            try:
                read_submission(data, limits.max_file_bytes)
            except SubmissionUnreadable:
                readable = False
        (plan.tasks if readable else plan.local).append(task)
    return plan


class _Writer:
    """Called with each new record as it arrives: caches it, writes its files, reports it."""

    def __init__(self, out: Path, a: Assignment, key: dict[str, Any],
                 records: dict[str, Record], n_new: int, say: Callable[[str], None]) -> None:
        self.out, self.a, self.key, self.records = out, a, key, records
        self.n_new, self.say, self.done = n_new, say, 0

    def __call__(self, record: Record) -> None:
        self.done += 1
        record.key = self.key
        notebook, record.notebook = record.notebook, ""
        self.records[record.student] = record
        write_atomic(self.out / "records" / f"{record.student}.json", record_json(record))
        write_atomic(self.out / "feedback" / f"{record.student}.md",
                     feedback_markdown(record, self.a))
        if notebook:
            write_atomic(self.out / "executed" / f"{record.student}.ipynb", notebook)
        flags = f" [{', '.join(record.flags)}]" if record.flags else ""
        self.say(f"[{self.done:>3}/{self.n_new}] {record.student}: {fmt_points(record.total)}/"
                 f"{fmt_points(record.max_total)} {record.status}{flags} "
                 f"({record.seconds:.1f} s)")


def _write_summary(out: Path, a: Assignment, limits: Limits, ordered: list[Record],
                   ignored: list[str]) -> None:
    """The gradebook, ``results.json``, and feedback missing for cached records."""
    for r in ordered:     # feedback for cached records too (e.g. a deleted feedback file)
        fb = out / "feedback" / f"{r.student}.md"
        if not fb.exists():
            write_atomic(fb, feedback_markdown(r, a))
    write_atomic(out / "gradebook.csv", gradebook_csv(ordered, a))
    write_atomic(out / "results.json", results_json(a, limits, ordered, ignored))


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
    key = settings_key(a, limits)
    plan = _plan(subs, a, limits, key, out / "records", force, keep_notebooks)
    records = dict(plan.cached)
    skipped, n_new = len(plan.cached), len(plan.tasks) + len(plan.local)
    say(f"Grading {n_new} submission(s) of {a.name} with {jobs} job(s); "
        f"{skipped} already graded (use --force to regrade)." if skipped or n_new else
        f"No submissions found in {sub_dir}.")
    on_done = _Writer(out, a, key, records, n_new, say)
    try:
        for task in plan.local:
            on_done(grade_submission(task))
        run_pool(plan.tasks, jobs, hard_limit=limits.total_timeout * 1.5 + 120, on_done=on_done)
    finally:
        ordered = [records[s.student] for s in subs if s.student in records]
        _write_summary(out, a, limits, ordered, ignored)
    elapsed = time.monotonic() - started
    counts: dict[str, int] = {}
    for r in ordered:
        counts[r.status] = counts.get(r.status, 0) + 1
    say(f"Done in {elapsed:.1f} s: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
        + f". Gradebook: {out / 'gradebook.csv'}")
    if ignored:
        say(f"Ignored (not notebooks): {', '.join(ignored)}")
    return BatchResult(ordered, n_new, skipped, ignored, out, elapsed)
