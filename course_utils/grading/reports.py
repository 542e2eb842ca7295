"""Reports: the files a batch writes, each written atomically.

Under the output folder: ``gradebook.csv`` (one row per student), ``results.json`` (every
record, the limits and the assignment's exercises), ``feedback/<student>.md`` (what the
student sees: points, what passed or failed, the hints, never the answers) and
``records/<student>.json`` (the cache that lets a re-run skip submissions graded before).
"""

from __future__ import annotations

import csv
import datetime as _dt
import io
import json
import os
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

from .assignment import GRADER_VERSION, Assignment, Limits
from .records import Record


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


def _json_text(data: Any) -> str:
    return json.dumps(data, indent=1, ensure_ascii=False) + "\n"


def record_json(record: Record) -> str:
    """The text of ``records/<student>.json``."""
    return _json_text(record.to_json())


def fmt_points(points: float) -> str:
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
            "not-graded": "not graded", "no-data": "no usable result"}


def feedback_markdown(record: Record, a: Assignment) -> str:
    """The student's feedback: points, what passed or failed and the hints; never the answers."""
    lines = [f"# Feedback: {a.stem} - {record.student}", "",
             f"**Score: {fmt_points(record.total)} / {fmt_points(record.max_total)} points** · "
             f"status: {_STATUS_TEXT.get(record.status, record.status)}", "",
             f"File: `{record.file}` · graded {record.graded_at} "
             f"(assignment version {a.version})", "",
             "| exercise | points | result |", "|---|---|---|"]
    for ex_id, ex in record.exercises.items():
        lines.append(f"| {ex_id} | {fmt_points(ex.points)} / {fmt_points(ex.max_points)} | "
                     f"{_EX_TEXT.get(ex.status, ex.status)} |")
    for ex_id, ex in record.exercises.items():
        lines += ["", f"## {ex_id}: {fmt_points(ex.points)} / {fmt_points(ex.max_points)}", ""]
        msg = ex.message or _EX_TEXT.get(ex.status, ex.status)
        lines += ["```text", msg.replace("```", "'''"), "```"]
        if ex.reference:
            lines += ["", f"**Note:** {ex.reference}. Your instructor will review this."]
    if record.notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in record.notes]
    if "review" in record.flags:
        lines += ["", "Some of your code was marked for your instructor to look at (it reaches "
                  "into Python or grader internals)."]
    lines += ["", "The grade comes from the grader's own run of your exercise cells inside the "
              "assignment's notebook; outputs stored in your file are not used.", ""]
    return "\n".join(lines)


def _spreadsheet_safe(text: str) -> str:
    """Keep spreadsheets from reading a cell as a formula."""
    return "'" + text if text[:1] in ("=", "+", "-", "@") else text


def gradebook_csv(records: list[Record], a: Assignment) -> str:
    """The gradebook: one row per record, points per exercise, total, status, flags, file."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    ids = [e.id for e in a.exercises]
    writer.writerow(["student", *ids, "total", "status", "flags", "file"])
    for r in records:
        points = [r.exercises[i].points if i in r.exercises else 0.0 for i in ids]
        writer.writerow([_spreadsheet_safe(r.student), *[fmt_points(p) for p in points],
                         fmt_points(r.total), r.status, ";".join(r.flags),
                         _spreadsheet_safe(r.file)])
    return buf.getvalue()


def results_json(a: Assignment, limits: Limits, records: list[Record], ignored: list[str]) -> str:
    """The text of ``results.json``: the batch's settings and every record."""
    return _json_text({
        "assignment": a.name, "template": a.template_path, "template_version": a.version,
        "grader_version": GRADER_VERSION,
        "generated_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "limits": asdict(limits), "hidden_tests": bool(a.hidden_tests),
        "exercises": [{"id": e.id, "points": e.points, "hint": e.hint} for e in a.exercises],
        "max_total": a.total_points, "ignored_files": ignored,
        "students": [r.to_json() for r in records]})
