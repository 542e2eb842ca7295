"""The grader's two central objects: a :class:`Task` (one submission to grade) and the
:class:`Record` that grading it produces.

A task travels to a worker process (it is pickled), so it holds plain data: the assignment,
the limits and the submitted bytes. A record is what ``records/<student>.json`` stores and
``results.json`` lists; :meth:`Record.to_json` and :meth:`Record.from_json` convert it, and
the JSON layout (keys and their order) is the grader's cache format.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import hmac
import json
import os
import secrets
import stat
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from .assignment import GRADER_VERSION, Assignment, ExerciseSpec, Limits

# Student-facing note for a submission the grader could not grade through no fault of theirs.
GRADER_PROBLEM_NOTE = ("The grader could not grade this submission because of a problem on the "
                       "grader's side; your instructor has been told.")


@dataclass(frozen=True)
class Task:
    """One submission to grade, as sent to a worker process."""

    assignment: Assignment
    limits: Limits
    student: str
    file: str                       # the submitted file's name, relative to the folder
    sha256: str                     # of ``data``: the cache key of the record
    data: bytes = b""
    error: str = ""                 # why the file cannot be graded at all ('' when it can)
    keep_notebook: bool = False     # return the executed notebook with the record


@dataclass
class ExerciseResult:
    """The grade of one exercise, as the record stores it."""

    points: float = 0.0
    max_points: float = 0.0
    status: str = "not-graded"      # passed, failed, failed-hidden, error, not-done, missing, ...
    message: str = ""               # student-facing
    detail: str = ""                # instructor-facing (e.g. a hidden test's message)
    matched_by: str = ""            # how the exercise's cell was found, see submission.Match
    reference: str = ""             # why the answer looks like the reference implementation

    @classmethod
    def empty(cls, spec: ExerciseSpec, message: str = "") -> ExerciseResult:
        """An ungraded result for ``spec``."""
        return cls(max_points=spec.points, message=message)


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


@dataclass
class Record:
    """The result of grading one submission.

    ``status`` is the most serious of the ``incidents`` (see ``verdicts.STATUS_ORDER``);
    ``flags`` ask the instructor to look (``review``, ``reference-used``), ``notes`` are shown
    to the student and ``review`` only to the instructor. ``key`` (the assignment version,
    grader version and limits) is set when the record is written, for the cache.
    ``dropped_output`` and ``notebook`` are working data of the worker, never stored.
    """

    student: str
    file: str
    sha256: str
    template_version: str = ""
    grader_version: str = GRADER_VERSION
    status: str = "graded"
    incidents: list[str] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)
    total: float = 0.0
    max_total: float = 0.0
    exercises: dict[str, ExerciseResult] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    review: list[str] = field(default_factory=list)
    attempts: int = 0
    seconds: float = 0.0
    graded_at: str = ""
    key: dict[str, Any] | None = None
    signature: str = ""             # HMAC of the stored record, see :func:`sign`
    dropped_output: int = 0         # characters of printed output the grader discarded
    notebook: str = ""              # the executed notebook (with ``--keep-notebooks``)

    _NOT_STORED = ("dropped_output", "notebook")

    @classmethod
    def start(cls, task: Task) -> Record:
        """A fresh record for ``task``: every exercise not graded yet."""
        a = task.assignment
        return cls(task.student, task.file, task.sha256, template_version=a.version,
                   max_total=a.total_points, graded_at=_now(),
                   exercises={e.id: ExerciseResult.empty(e) for e in a.exercises})

    @classmethod
    def failed(cls, task: Task, why: str) -> Record:
        """A ``grader-error`` record for a submission the grader could not grade (``why``)."""
        a = task.assignment
        return cls(task.student, task.file, task.sha256, template_version=a.version,
                   status="grader-error", incidents=["grader-error"], max_total=a.total_points,
                   exercises={e.id: ExerciseResult.empty(e, "not graded (grader problem).")
                              for e in a.exercises},
                   notes=[GRADER_PROBLEM_NOTE], review=[why], graded_at=_now())

    def to_json(self) -> dict[str, Any]:
        """The record as stored in ``records/<student>.json`` and ``results.json``."""
        data = asdict(self)
        for name in self._NOT_STORED:
            del data[name]
        if data["key"] is None:
            del data["key"]
        return data

    @classmethod
    def from_json(cls, data: Any) -> Record:
        """Read a stored record; raises ValueError if ``data`` is not one."""
        names = {f.name for f in fields(cls)} - set(cls._NOT_STORED)
        if not isinstance(data, dict) or not {"student", "file", "sha256"} <= set(data) \
                or not set(data) <= names or not isinstance(data.get("exercises", {}), dict):
            raise ValueError("not a grading record")
        try:
            exercises = {k: ExerciseResult(**v) for k, v in data.get("exercises", {}).items()}
            return cls(**{**data, "exercises": exercises})
        except TypeError as exc:
            raise ValueError(f"not a grading record: {exc}") from None


# --- the cache's signature ------------------------------------------------------------------

KEY_FILE = ".course-grade-key"


def grader_key(output: Path) -> bytes:
    """The secret that signs this output folder's records, created on first use.

    It lives in ``<output>/.course-grade-key`` (mode 0600), read only by the grader process:
    the sandboxed kernels cannot see the output folder at all. A record that was not written
    by a grader holding this key (edited by hand, forged by a leftover process, copied from
    another output folder) fails :func:`verify` and is graded again.
    """
    path = output / KEY_FILE
    output.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0),
                     0o600)
    except FileExistsError:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        with os.fdopen(fd, "rb") as fh:
            st = os.fstat(fh.fileno())
            key = fh.read(256).strip()
        if not stat.S_ISREG(st.st_mode) or len(key) < 32:
            raise ValueError(f"{path} is not a grader key file; delete it (every record "
                             "will be graded again)") from None
        return key
    key = secrets.token_hex(32).encode()
    with os.fdopen(fd, "wb") as fh:
        fh.write(key + b"\n")
    return key


def _mac(key: bytes, record: Record) -> str:
    data = record.to_json()
    data.pop("signature", None)
    text = json.dumps(data, sort_keys=True, ensure_ascii=True, separators=(",", ":"))
    return hmac.new(key, text.encode(), hashlib.sha256).hexdigest()


def sign(key: bytes, record: Record) -> None:
    """Set ``record.signature`` to the HMAC-SHA256 of everything else it stores."""
    record.signature = _mac(key, record)


def verify(key: bytes, record: Record) -> bool:
    """Whether ``record`` was signed with ``key`` and not changed since."""
    return bool(record.signature) and hmac.compare_digest(record.signature, _mac(key, record))
