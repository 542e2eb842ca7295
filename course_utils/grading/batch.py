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
import stat
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .assignment import GRADER_VERSION, Assignment, AssignmentError, Limits, load_assignment
from .pool import run_pool
from .records import Record, Task, grader_key, sign, verify
from .reports import (
    feedback_markdown,
    fmt_points,
    gradebook_csv,
    record_json,
    results_json,
    write_atomic,
)
from .sandbox import NO_SANDBOX_WARNING, Sandbox, default_data_dirs, require_bwrap
from .shards import Shard
from .submission import SubmissionUnreadable, read_submission
from .verdicts import grade_submission

_PLAIN_ID = re.compile(r"[a-z0-9_]{1,64}")


def student_id(name: str) -> str:
    """The student id of a submitted file (``name.ipynb``) or folder (``name/``).

    Unique by construction: a plain lower-case name (``carol.ipynb``: letters, digits,
    ``_``) keeps it as is (``carol``); any other name gets a readable, safe part and ``-``
    plus a hash of the *exact* name (``Carol.ipynb`` -> ``carol-3b1c...``). A plain id never
    holds a ``-``, so a suffixed id cannot collide with a real name, two different names give
    two ids (barring a hash collision), and a re-run maps each file to the same id. Ids are
    lower case, so they stay distinct on case-insensitive file systems too.
    """
    stem = name[:-len(".ipynb")] if name.endswith(".ipynb") else None
    if stem is not None and _PLAIN_ID.fullmatch(stem):
        return stem
    readable = re.sub(r"[^\w]+", "_", name.removesuffix(".ipynb").casefold(), flags=re.UNICODE)
    readable = re.sub(r"^_+|_+$", "", readable)[:60] or "student"
    digest = hashlib.sha256(name.encode("utf-8", "surrogateescape")).hexdigest()[:10]
    return f"{readable}-{digest}"


@dataclass
class SubmissionFile:
    student: str
    path: Path | None
    file: str
    error: str = ""


SYMLINK_REFUSED = ("the submission is a symbolic link, not a file; the grader does not follow "
                   "links. Submit the notebook file itself.")


def _notebooks_in(entry: Path) -> list[Path]:
    """The notebooks under a student's folder, without following symbolic links to folders
    (a link is listed, so that it can be refused) or looking into hidden folders."""
    found: list[Path] = []
    for root, dirs, files in os.walk(entry, followlinks=False):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d != "__pycache__")
        found += [Path(root) / f for f in files
                  if f.lower().endswith(".ipynb") and not f.startswith(".")]
    return sorted(found)


def _from_folder(entry: Path, folder: Path, assignment_name: str) -> SubmissionFile | None:
    """A student's folder: the notebook named like the assignment, else its only notebook."""
    student = student_id(entry.name + "/")
    notebooks = _notebooks_in(entry)
    same = [p for p in notebooks if p.name == assignment_name]
    pick = same or notebooks
    if not pick:
        return None
    names = ", ".join(str(p.relative_to(entry)) for p in pick[:5])
    if len(same) > 1:
        return SubmissionFile(student, None, entry.name + "/", (
            f"the folder holds {len(same)} notebooks named {assignment_name} ({names}); keep "
            "only the one to grade."))
    if len(pick) > 1:
        return SubmissionFile(student, None, entry.name + "/", (
            f"the folder holds {len(pick)} notebooks ({names}) and none is named "
            f"{assignment_name}; keep only the one to grade."))
    rel = str(pick[0].relative_to(folder))
    if pick[0].is_symlink():
        return SubmissionFile(student, None, rel, SYMLINK_REFUSED)
    return SubmissionFile(student, pick[0], rel)


def collect_submissions(folder: Path, assignment_name: str,
                        exclude: Iterable[Path] = ()) -> tuple[list[SubmissionFile], list[str]]:
    """One notebook per student: ``folder/<student>.ipynb`` or ``folder/<student>/*.ipynb``.

    Symbolic links are never followed: a linked notebook or folder is refused with a status
    that says so. Returns the submissions (sorted by student id) and the ignored names.
    """
    excluded = {p.resolve() for p in exclude}
    found: list[SubmissionFile] = []
    ignored: list[str] = []
    for entry in sorted(folder.iterdir(), key=lambda p: p.name):
        if entry.name.startswith(".") or entry.resolve() in excluded:
            continue
        if entry.is_symlink():
            name = entry.name + ("/" if entry.is_dir() else "")
            if entry.is_dir() or entry.name.lower().endswith(".ipynb"):
                found.append(SubmissionFile(student_id(name), None, name, SYMLINK_REFUSED))
            else:
                ignored.append(name)
        elif entry.is_file():
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
    """The submitted bytes, and why they cannot be graded ('' if they can be tried).

    Opened without following a symbolic link and without blocking on a FIFO; only a plain
    file is read.
    """
    if sub.path is None or sub.error:
        return b"", sub.error
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(sub.path, flags)
    except OSError as exc:
        if sub.path.is_symlink():
            return b"", SYMLINK_REFUSED
        return b"", f"Your file could not be read: {exc.strerror}."
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fh.fileno())
        if not stat.S_ISREG(st.st_mode):
            return b"", "Your submission is not a plain file."
        if st.st_size > limits.max_file_mb * 2**20:
            return b"", (f"Your file could not be read: the file is {st.st_size / 2**20:.1f} "
                         f"MB, more than the {limits.max_file_mb:g} MB limit: clear all "
                         "outputs and submit again.")
        return fh.read(int(limits.max_file_mb * 2**20) + 1), ""


def _cached(path: Path, sub: SubmissionFile, sha: str, key: dict[str, Any],
            secret: bytes) -> Record | None:
    """The record stored at ``path`` if this grader signed it (see :func:`records.verify`),
    for this very file (name and content), graded with these settings."""
    if path.is_symlink() or not path.is_file():
        return None
    try:
        old = Record.from_json(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return None
    if not verify(secret, old) or old.student != sub.student or old.file != sub.file:
        return None
    return old if old.sha256 == sha and old.key == key else None


@dataclass
class _Plan:
    tasks: list[Task]        # graded by the pool
    local: list[Task]        # unreadable files: graded here, they run no code
    cached: dict[str, Record]


def _plan(subs: list[SubmissionFile], a: Assignment, limits: Limits, key: dict[str, Any],
          records_dir: Path, force: bool, keep_notebooks: bool, secret: bytes) -> _Plan:
    """Sort the submissions into cached, to grade in a worker, and to grade here."""
    plan = _Plan([], [], {})
    for sub in subs:
        data, error = _read_file(sub, limits)
        sha = hashlib.sha256(data).hexdigest()
        old = None if force or error else _cached(records_dir / f"{sub.student}.json", sub, sha,
                                                  key, secret)
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
                 records: dict[str, Record], n_new: int, say: Callable[[str], None],
                 secret: bytes) -> None:
        self.out, self.a, self.key, self.records, self.secret = out, a, key, records, secret
        self.n_new, self.say, self.done = n_new, say, 0

    def __call__(self, record: Record) -> None:
        self.done += 1
        record.key = self.key
        notebook, record.notebook = record.notebook, ""
        sign(self.secret, record)
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
    for r in ordered:     # rewritten from the verified records: a changed file is undone
        write_atomic(out / "feedback" / f"{r.student}.md", feedback_markdown(r, a))
    write_atomic(out / "gradebook.csv", gradebook_csv(ordered, a))
    write_atomic(out / "results.json", results_json(a, limits, ordered, ignored))


def _check_isolation(limits: Limits, private: list[Path]) -> None:
    """With the sandbox on: bubblewrap must work, and none of the folders the kernels must not
    see (output, submissions, hidden tests) may lie inside a folder the sandbox shows them.

    Raises:
        SandboxUnavailable: bubblewrap is missing (nothing has been written yet).
        AssignmentError: a private folder is visible inside the sandbox.
    """
    if not limits.sandbox:
        return
    require_bwrap()
    shown = Sandbox(Path(tempfile.gettempdir()), readonly=default_data_dirs()).binds()
    for path in private:
        path = path.resolve()
        for bound in shown:
            if path == bound or bound in path.parents:
                raise AssignmentError(
                    f"{path} is inside {bound}, which the sandbox shows to submitted code "
                    "(read-only): move it elsewhere, so that no submission can read it")


def grade_batch(assignment: str | os.PathLike[str], submissions: str | os.PathLike[str],
                output: str | os.PathLike[str], *, jobs: int = 2, force: bool = False,
                limits: Limits | None = None, manifest: str | os.PathLike[str] | None = None,
                hidden_tests: str | os.PathLike[str] | None = None, keep_notebooks: bool = False,
                log: Callable[[str], None] | None = print,
                shard: Shard | None = None) -> BatchResult:
    """Grade every submission in ``submissions`` against ``assignment`` into ``output``.

    With ``shard``, grade only that shard's part of the class (see :mod:`.shards`).
    """
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
    _check_isolation(limits, [out, sub_dir, *([Path(a.hidden_tests)] if a.hidden_tests else [])])
    if not limits.sandbox:
        say("warning: " + NO_SANDBOX_WARNING)
    subs, ignored = collect_submissions(sub_dir, a.name, exclude=[out])
    if shard is not None:
        subs = shard.take(subs, out)
    key = settings_key(a, limits)
    secret = grader_key(out)
    plan = _plan(subs, a, limits, key, out / "records", force, keep_notebooks, secret)
    records = dict(plan.cached)
    skipped, n_new = len(plan.cached), len(plan.tasks) + len(plan.local)
    say(f"Grading {n_new} submission(s) of {a.name} with {jobs} job(s); "
        f"{skipped} already graded (use --force to regrade)." if skipped or n_new else
        f"No submissions found in {sub_dir}.")
    on_done = _Writer(out, a, key, records, n_new, say, secret)
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
