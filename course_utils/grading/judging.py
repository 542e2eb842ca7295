"""Judging: verdicts computed in the grader's own process, from the probe data of a kernel.

For a probe/judge exercise (see :mod:`course_utils.checks.protocol`) the sandboxed kernel
only runs the exercise's *probe* at each case of the grader's plan and writes the data it
returns to one ``.npz`` file per case. After the kernel is gone, the grader reads those files
(:func:`~.execution.read_untrusted`, size-capped, never following links), decodes them with
:func:`~course_utils.checks.protocol.unpack` (no pickles, no objects: plain data only), and
runs the exercise's judge here, against a reference computed here. Nothing the submission did
to its own process (patched ``torch`` functions, replaced modules, lying tensor subclasses,
``__torch_dispatch__``, forged files) takes part in that comparison: it can only change the
data, and the data must then match the reference at seeds drawn afresh for each run.

The hidden tests file (``--hidden-tests``) is loaded here too, and only here: the kernel
never sees it. Its hidden judges (``@hidden_judge``) run on the hidden cases' data.
"""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path
from typing import Any

from ..checks.core import JudgeError, get_exercise, judge_data, registry, run_checkers
from ..checks.protocol import (
    ERROR,
    FAILED,
    STATUS_KEY,
    Case,
    ProbeDataError,
    sanitise,
    unpack,
)
from .assignment import ExerciseSpec

_LOADED_HIDDEN: set[str] = set()


def load_hidden_tests(path: str | None) -> str:
    """Load the hidden tests file into this process (once per content); '' or the error."""
    if not path:
        return ""
    try:
        registry()                        # hidden judges attach to registered exercises
        data = Path(path).read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        if digest in _LOADED_HIDDEN:
            return ""
        spec = importlib.util.spec_from_file_location(f"_course_hidden_{digest[:16]}", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        _LOADED_HIDDEN.add(digest)
        return ""
    except BaseException as exc:  # a broken hidden-tests file is the grader's problem
        return f"{type(exc).__name__}: {exc}"


def _clean(data: dict[str, Any]) -> dict[str, Any]:
    """Probe data with the learner-controlled texts of a status report sanitised."""
    if data.get(STATUS_KEY) in (ERROR, FAILED, "timeout"):
        data = dict(data)
        data["error"] = sanitise(str(data.get("error", "Exception")), 60)
        data["message"] = sanitise(str(data.get("message", "")))
        data["where"] = sanitise(str(data.get("where", "")), 200)
    return data


def _judge_case(ex: Any, data: dict[str, Any], case: Case) -> dict[str, str]:
    """Judge one case's data: {'status', 'message', 'judge_error'} in the grader's words."""
    if data.get(STATUS_KEY) == "timeout":
        return {"status": "timeout", "message": str(data.get("message", "")),
                "judge_error": ""}
    judge_errors: list[str] = []

    def checker(_obj: Any) -> None:
        try:
            judge_data(ex, data, case, hidden=case.hidden)
        except JudgeError as exc:
            cause = exc.__cause__
            judge_errors.append(f"{exc}: {type(cause).__name__}: {cause}" if cause else str(exc))
            raise
    result = run_checkers(ex, None, [checker])
    return {"status": result.status, "message": result.message,
            "judge_error": judge_errors[0] if judge_errors else ""}


def _decode(blob: bytes | None) -> tuple[dict[str, Any] | None, str]:
    if blob is None:
        return None, "no probe data file (missing, not a plain file, or too large)"
    try:
        return unpack(blob), ""
    except ProbeDataError as exc:
        return None, str(exc)


def judge_probes(spec: ExerciseSpec, report: dict[str, Any], blobs: list[bytes | None],
                 cases: list[list[Any]]) -> dict[str, Any]:
    """The verdict of a probed exercise: ``{"status": "checked", "public": ..., "hidden": ...}``.

    The public case decides pass/fail as the notebook's check() would; when it passes, every
    hidden case is judged with the hidden judges too. Data that is missing or unreadable gives
    ``no-data``; a judge that cannot judge the data (JudgeError) gives an ``error`` verdict
    whose ``judge_error`` the record shows the instructor.
    """
    ex = get_exercise(spec.id)
    if not cases or len(blobs) != len(cases):
        return {"status": "no-data", "detail": "the kernel was given no probe cases"}
    decoded = [_decode(b) for b in blobs]
    missing = [f"case {i}: {why}" for i, (d, why) in enumerate(decoded) if d is None]
    if missing:
        return {"status": "no-data", "detail": "; ".join(missing)[:1500]}
    datas = [_clean(d) for d, _ in decoded if d is not None]
    verdict: dict[str, Any] = {"status": "checked", "reference": report.get("reference", ""),
                               "n_hidden": len(cases) - 1, "hidden": None}
    public = _judge_case(ex, datas[0], Case(seed=int(cases[0][0]), hidden=False))
    verdict["public"], verdict["judge_error"] = public, public["judge_error"]
    if public["status"] != "passed":
        return verdict
    for (seed, _), data in zip(cases[1:], datas[1:], strict=True):
        hidden = _judge_case(ex, data, Case(seed=int(seed), hidden=True))
        if hidden["status"] != "passed":
            verdict["hidden"] = hidden
            verdict["judge_error"] = hidden["judge_error"]
            break
    return verdict
