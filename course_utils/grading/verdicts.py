"""Verdicts: grade one submission, from its bytes to a :class:`~.records.Record`.

:func:`grade_submission` reads and matches the file (:mod:`.submission`), reviews the code
statically, runs the graded notebook (:mod:`.execution`) and turns the kernel's verdicts into
points, statuses and the student's messages. If an exercise hangs, exhausts memory or kills the
kernel, that exercise gets 0 points and the notebook is run again with the assignment's stub in
its place (:func:`run_with_retries`), so the other exercises are still graded.
"""

from __future__ import annotations

import signal
import time
import traceback
from typing import Any

from ..checks.protocol import sanitise
from .assignment import Assignment, ExerciseSpec, Limits
from .execution import Attempt, build_graded_notebook, run_attempt
from .judging import judge_probes, load_hidden_tests
from .records import GRADER_PROBLEM_NOTE, ExerciseResult, Record, Task
from .submission import (
    Match,
    Matching,
    SubmissionUnreadable,
    match_exercises,
    read_submission,
    scan_source,
)

# The record's status is the first of these among its incidents ("graded" if none).
STATUS_ORDER = ("invalid", "grader-error", "outdated", "crashed", "timeout", "memory",
                "incomplete", "recovered", "graded")
_MEMORY_PATTERNS = ("MemoryError", "can't allocate memory", "Cannot allocate memory",
                    "out of memory", "std::bad_alloc")


def _signal_of(code: int | None) -> int | None:
    """The signal that killed the kernel: ``-N`` from Popen, ``128 + N`` through bubblewrap."""
    if code is None:
        return None
    if code < 0:
        return -code
    if 128 < code < 128 + 65:
        return code - 128
    return None


def _signal_name(code: int | None) -> str:
    if code is None:
        return "the kernel process died"
    sig = _signal_of(code)
    if sig is not None:
        try:
            return f"the kernel process was killed by {signal.Signals(sig).name}"
        except ValueError:
            return f"the kernel process was killed by signal {sig}"
    return f"the kernel process exited with code {code}"


def is_memory_error(text: str) -> bool:
    """Whether an error text says that memory ran out (RLIMIT_AS makes Python raise)."""
    return any(p in text for p in _MEMORY_PATTERNS)


# --- one exercise -----------------------------------------------------------------------------

def _passed_public(res: ExerciseResult, spec: ExerciseSpec, verdict: dict[str, Any]
                   ) -> ExerciseResult:
    """The result of an exercise that passed its public checks: the hidden ones decide."""
    hidden = verdict.get("hidden")
    if hidden is None or hidden["status"] == "passed":
        n_hidden = verdict.get("n_hidden", 0)
        res.points, res.status = spec.points, "passed"
        res.message = (f"{spec.id}: passed the public checks"
                       + (" and the grader's hidden tests." if n_hidden else "."))
        return res
    res.status = "timeout" if hidden["status"] == "timeout" else "failed-hidden"
    res.message = (f"{spec.id}: passed the public checks but not the grader's hidden "
                   f"tests. Hint: {spec.hint}")
    res.detail = hidden["message"][:1500]
    if any(p in hidden["message"] for p in _MEMORY_PATTERNS):
        res.status = "memory"
    return res


def _failed_public(res: ExerciseResult, spec: ExerciseSpec, status: str, message: str,
                   cell_error: str, limits: Limits) -> ExerciseResult:
    """The result of an exercise whose public checks did not pass (``status``, ``message``)."""
    hint = spec.hint
    if status == "not done":
        res.status = "not-done"
        res.message = f"{spec.id}: not done (the function still raises NotImplementedError)."
    elif status == "timeout":
        res.status = "timeout"
        res.message = (f"{spec.id}: your code did not finish within {limits.cell_timeout:g} s "
                       f"(an infinite loop?). Hint: {hint}")
    elif status == "failed":
        res.status, res.message = "failed", message
    else:
        extra = ""
        if "input() cannot be answered" in message or "StdinNotImplementedError" in message:
            extra = ("\n  input() cannot be answered during grading: pass values as arguments "
                     "instead of asking for them.")
        elif "NameError" in message:
            extra = ("\n  Only your exercise cells are taken from your notebook; code in cells "
                     "you added yourself does not run during grading.")
        if any(p in message for p in _MEMORY_PATTERNS):
            res.status = "memory"
            res.message = (f"{spec.id}: your code ran out of memory (the limit is "
                           f"{limits.memory_mb} MB). Hint: {hint}")
            res.detail = message
            return res
        res.status, res.message = "error", message + extra
    if cell_error and res.status != "passed":
        res.detail = f"the exercise cell raised {cell_error}"
    return res


def exercise_verdict(spec: ExerciseSpec, verdict: dict[str, Any] | None, match: Match,
                     cell_error: str, limits: Limits, probes: list[bytes | None] | None = None,
                     plan: list[list[Any]] | None = None) -> ExerciseResult:
    """Turn the kernel's report into points, a status and the student-facing message.

    For a probe/judge exercise the kernel only reports that it probed; the verdict is
    computed here, by :func:`judge_probes`, from the probe data (``probes``, one blob per
    case of ``plan``). A "checked" verdict that did not come from those judges (no plan: it
    could only have been written by the kernel) is never trusted.
    """
    res = ExerciseResult(max_points=spec.points, matched_by=match.how)
    if match.how in ("missing", "not-code"):
        res.status, res.message = "missing", match.message
        return res
    if verdict is None:
        res.message = ("not graded: the grading run stopped before reaching this exercise "
                       "(see the notes).")
        return res
    kind = verdict.get("status")
    if cell_error and is_memory_error(cell_error):
        res.status, res.detail = "memory", f"the exercise cell raised {cell_error[:300]}"
        res.message = (f"{spec.id}: your exercise cell ran out of memory (the limit is "
                       f"{limits.memory_mb} MB), so it did not finish. Hint: {spec.hint}")
        return res
    if plan is not None and kind not in ("undefined", "internal", "disabled", "not-captured"):
        # A probe/judge exercise: whatever the kernel's file says (it may be forged), the
        # verdict comes from judging the probe data here.
        verdict = judge_probes(spec, verdict, probes or [], plan)
        kind = verdict["status"]
    if kind == "no-data":
        res.status, res.detail = "no-data", verdict["detail"]
        res.message = (f"{spec.id}: the grader received no usable result from your code for "
                       "this exercise, so it gave 0 points.")
        return res
    if kind == "undefined":
        why = f" Your cell raised {sanitise(cell_error)}." if cell_error else ""
        res.status = "error"
        res.message = (f"{spec.id}: your cell did not define {verdict.get('target')}.{why} "
                       f"Hint: {spec.hint}")
        return res
    if plan is None and kind == "checked":          # not judged here: written in the kernel
        kind = "unjudged"
    if kind != "checked":
        res.message = "not graded (internal grader problem)."
        res.detail = f"kernel verdict: {kind} {verdict.get('error', '')}".strip()
        return res
    public = verdict["public"]
    res.reference = verdict.get("reference", "")
    if verdict.get("judge_error"):
        res.detail = f"the judge could not judge the probe data: {verdict['judge_error']}"
    if public["status"] == "passed":
        return _passed_public(res, spec, verdict)
    message = str(public.get("message", ""))[:1500]
    return _failed_public(res, spec, public["status"], message, cell_error, limits)


# --- running with retries ---------------------------------------------------------------------

def failure_verdict(culprit: str, attempt: Attempt, spec: ExerciseSpec,
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
    # RLIMIT_AS makes allocations fail (MemoryError, std::bad_alloc): that is memory. A
    # SIGKILL alone is not evidence of it (os.kill(os.getpid(), 9) is a crash).
    if is_memory_error(attempt.kernel_log):
        return "memory", (f"{culprit}: the Python process running your code ran out of memory "
                          f"(limit {limits.memory_mb} MB) and was stopped; {_signal_name(code)}.")
    return "crashed", (f"{culprit}: your code crashed the Python process ({_signal_name(code)}; "
                       "e.g. os._exit(), exit() or a crash in a library). The grader gave 0 "
                       "points and graded the rest with the reference.")


def _note_total_timeout(record: Record, limits: Limits) -> None:
    record.incidents.append("timeout")
    record.notes.append(f"The grading run hit the total time limit of "
                        f"{limits.total_timeout:g} s.")


def run_with_retries(a: Assignment, sources: dict[str, str | None], limits: Limits,
                     deadline: float, record: Record, keep_notebook: bool
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
        record.attempts += 1
        attempt = final = run_attempt(a, sources, limits, deadline, disabled, keep_notebook)
        record.dropped_output = max(record.dropped_output, attempt.dropped_output)
        if not attempt.failure and attempt.verdicts and attempt.verdicts.get("complete"):
            break
        if attempt.failure in ("startup", "grader"):
            record.incidents.append("grader-error")
            record.review.append(f"the grading kernel failed ({attempt.failure}): "
                                 f"{attempt.kernel_log[-1500:]}")
            record.notes.append("The grader could not run your notebook because of a problem "
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
                _note_total_timeout(record, limits)
            else:
                record.incidents.append("grader-error")
                record.review.append(f"the template's own cell {cell} failed "
                                     f"({attempt.failure}); raise the limits or fix the "
                                     f"template. {attempt.kernel_log[-800:]}")
            break
        disabled[culprit] = failure_verdict(culprit, attempt, specs[culprit], limits)
        if attempt.exit_code is not None:
            record.review.append(f"{culprit}: {_signal_name(attempt.exit_code)}; kernel "
                                 f"log: {attempt.kernel_log[-300:]}")
        if time.monotonic() >= deadline - 1:
            _note_total_timeout(record, limits)
            break
    return final, disabled


# --- one submission ---------------------------------------------------------------------------

def grade_submission(task: Task) -> Record:
    """Grade one submission (this runs in a worker process).

    Never raises: an unexpected problem becomes a record with status ``grader-error``.
    """
    start = time.monotonic()
    record = Record.start(task)
    try:
        _grade_into(record, task, start)
    except Exception as exc:  # a bug or an environment problem: never stop the batch
        record.incidents.append("grader-error")
        record.review.append("grader error: " + "".join(
            traceback.format_exception_only(type(exc), exc)).strip())
        record.review.append(traceback.format_exc()[-3000:])
        record.notes.append(GRADER_PROBLEM_NOTE)
    record.total = round(sum(e.points for e in record.exercises.values()), 6)
    record.incidents = list(dict.fromkeys(record.incidents))
    record.flags = list(dict.fromkeys(record.flags))
    record.status = next((s for s in STATUS_ORDER if s in record.incidents), "graded")
    record.seconds = round(time.monotonic() - start, 2)
    return record


def _mark_invalid(record: Record, note: str, message: str) -> None:
    record.incidents.append("invalid")
    record.notes.append(note)
    for ex in record.exercises.values():
        ex.message = message


def _read_and_match(record: Record, task: Task) -> Matching | None:
    """Read the file and find its exercises; None (record marked invalid) if unreadable."""
    if task.error:
        _mark_invalid(record, task.error, "not graded: " + task.error)
        return None
    try:
        parsed = read_submission(task.data, task.limits.max_file_bytes)
    except SubmissionUnreadable as exc:
        _mark_invalid(record, f"Your file could not be read: {exc}",
                      "not graded: the file could not be read.")
        return None
    if parsed.schema_problems:
        record.incidents.append("recovered")
        record.notes += [f"Notebook format: {p} The grader read what it could." for p in
                         parsed.schema_problems]
    matching = match_exercises(parsed, task.assignment)
    record.notes += matching.notes
    if matching.recovered:
        record.incidents.append("recovered")
    if matching.outdated:
        record.incidents.append("outdated")
        record.notes.insert(0, matching.outdated)
    if any(m.how in ("missing", "not-code") for m in matching.matches.values()):
        record.incidents.append("incomplete")
    return matching


def _review_sources(record: Record, matching: Matching, specs: dict[str, ExerciseSpec]) -> None:
    """Static review of the submitted code (flags only; it does not change points)."""
    for ex_id, m in matching.matches.items():
        if m.source is None:
            continue
        ref_hits, review = scan_source(m.source, specs[ex_id])
        if ref_hits:
            record.flags.append("reference-used")
            record.review.append(f"{ex_id}: {'; '.join(ref_hits)}")
            record.exercises[ex_id].reference = (
                f"your code uses the course's reference implementation "
                f"({specs[ex_id].reference}) ({ref_hits[0]})")
        if review:
            record.flags.append("review")
            record.review.append(f"{ex_id}: code to review: {', '.join(review)}")


def _apply_verdicts(record: Record, a: Assignment, matching: Matching, final: Attempt | None,
                    disabled: dict[str, tuple[str, str]], limits: Limits) -> None:
    """Put each exercise's result from the last run (or from its disabling) into the record."""
    verdicts = (final.verdicts or {}) if final else {}
    exercise_verdicts = verdicts.get("exercises", {})
    cell_errors = final.exercise_errors if final else {}
    for spec in a.exercises:
        m = matching.matches[spec.id]
        ex = record.exercises[spec.id]
        if spec.id in disabled and m.source is not None:
            status, message = disabled[spec.id]
            ex.points, ex.status, ex.message, ex.matched_by = 0.0, status, message, m.how
            record.incidents.append({"timeout": "timeout", "memory": "memory"}.get(
                status, "crashed"))
            continue
        kernel_verdict = exercise_verdicts.get(spec.id)
        res = exercise_verdict(spec, kernel_verdict, m, cell_errors.get(spec.id, ""), limits,
                               final.probes.get(spec.id) if final else None,
                               final.plan.get(spec.id) if final else None)
        _flag_verdict(record, spec.id, res)
        if ex.reference and not res.reference:
            res.reference = ex.reference
        record.exercises[spec.id] = res
        if res.reference:
            record.flags.append("reference-used")
        if res.status in ("timeout", "memory"):
            record.incidents.append(res.status)
        if res.status == "not-graded" and m.source is not None:
            record.incidents.append("timeout" if "timeout" in record.incidents
                                    else "grader-error")


def _flag_verdict(record: Record, ex_id: str, res: ExerciseResult) -> None:
    """Flag for review what the instructor must look at: probe data that could not be read or
    judged."""
    if res.status == "no-data":
        record.flags.append("review")
        record.review.append(f"{ex_id}: no usable probe data: {res.detail}")
    elif res.detail.startswith("the judge could not judge"):
        res.points, res.status = 0.0, "error"
        record.flags.append("review")
        record.review.append(f"{ex_id}: {res.detail}")


def _note_run(record: Record, final: Attempt | None, limits: Limits) -> None:
    """Report tampering, hidden-test loading errors and discarded output from the last run."""
    verdicts = (final.verdicts or {}) if final else {}
    tampered = verdicts.get("tampered") or []
    if tampered:
        record.flags.append("review")
        record.review.append("changed at run time (restored before grading): "
                             + ", ".join(tampered[:20]))
    dropped, record.dropped_output = record.dropped_output, 0
    if dropped:
        record.notes.append(f"Your code printed about {dropped / 1e6:.1f} MB more than the "
                            f"{limits.output_kb} KB per cell the grader keeps; the rest was "
                            "discarded (printed output never counts towards the grade).")
    if final and final.notebook_json:
        record.notebook = final.notebook_json


def _grade_into(record: Record, task: Task, start: float) -> None:
    a, limits = task.assignment, task.limits
    specs = {s.id: s for s in a.exercises}
    matching = _read_and_match(record, task)
    if matching is None:
        return
    _review_sources(record, matching, specs)
    if not any(m.source is not None for m in matching.matches.values()):
        for ex_id, m in matching.matches.items():
            record.exercises[ex_id] = exercise_verdict(specs[ex_id], None, m, "", limits)
        return
    hidden_error = load_hidden_tests(a.hidden_tests)
    if hidden_error:
        record.incidents.append("grader-error")
        record.review.append(f"the hidden tests failed to load: {hidden_error}")
    sources = {k: m.source for k, m in matching.matches.items()}
    final, disabled = run_with_retries(a, sources, limits, start + limits.total_timeout,
                                       record, task.keep_notebook)
    _apply_verdicts(record, a, matching, final, disabled, limits)
    _note_run(record, final, limits)
