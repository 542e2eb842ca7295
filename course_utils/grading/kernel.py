"""Kernel side: the code the grader injects into the grading kernel, next to submitted code.

The graded notebook (see :mod:`course_utils.grading.execution`) calls three functions of this
module from cells the grader adds:

* :func:`kernel_prelude`, before any template or submitted code: imports the assignment's
  check modules and snapshots the library functions the checks rely on;
* :func:`kernel_capture`, after each exercise cell: keeps the object the exercise defined,
  before the notebook's own ``check`` cell can replace it;
* :func:`kernel_finish`, last: restores anything the submission replaced, then, for each
  probe/judge exercise, runs its *probe* on the captured object at each case of the grader's
  plan (under a time limit) and writes the data to ``<probes>/<exercise>-<i>.npz``. It decides
  nothing: the grader judges that data in its own process (:mod:`.judging`). Every exercise
  has a probe (``tests/test_grader.py`` checks it); one without is reported, never checked
  here.

This module is imported inside the student's kernel, so its top-level imports are the
standard library only (``tests/test_grader.py`` enforces it): importing it must not pull in
the grader's own dependencies, and the course's check modules and PyTorch are imported by
:func:`kernel_prelude` at a known moment, before the snapshot is taken.
"""

from __future__ import annotations

import builtins
import importlib
import inspect
import json
import math
import os
import signal
import site
import sys
import sysconfig
import tempfile
import threading
import time
import types
from collections.abc import Iterable
from pathlib import Path
from typing import Any

_PACKAGE_DIR = Path(__file__).resolve().parents[1]          # .../course_utils

_KSTATE: dict[str, Any] = {"snapshot": None, "captured": {}}
_VOLATILE_BUILTINS = {"input", "raw_input", "getpass", "display", "get_ipython", "exit", "quit",
                      "help", "copyright", "credits", "license", "__IPYTHON__", "_"}


_SYS_HOOKS = ("settrace", "setprofile", "gettrace", "getprofile", "exit", "setrecursionlimit")


class _GradingTimeout(BaseException):
    """Raised by the grader's alarm; a BaseException so `except Exception` cannot swallow it."""


def _snapshot_owners() -> list[tuple[str, Any, bool]]:
    owners: list[tuple[str, Any, bool]] = [
        ("builtins", builtins, False), ("json", json, False), ("math", math, False),
        ("os", os, False), ("os.path", os.path, False), ("signal", signal, False),
        ("tempfile", tempfile, False), ("time", time, False), ("importlib", importlib, False)]
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
            items = {k: v for k, v in items.items()
                     if callable(v) or isinstance(v, types.ModuleType)}
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
    from ..checks import core
    if modules:
        for name in modules:
            importlib.import_module(name)
        core._loaded = True
    else:
        core.registry()
    importlib.import_module("torch")      # the checks use it; snapshot it as imported now
    # PyTorch imports torch._dynamo lazily, at the first optimizer step, and that import wraps
    # torch.manual_seed. Import it now, so that PyTorch's own change is not taken for tampering.
    importlib.import_module("torch._dynamo")
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
    roots = set(site.getsitepackages() + [site.getusersitepackages()])
    roots |= {sysconfig.get_paths()[k] for k in ("stdlib", "platstdlib", "purelib", "platlib")}
    return tuple(sorted(r for r in roots if r))


def _call_watcher(ref_codes: set[Any], ref_calls: list[str]) -> Any:
    """A profile function noting calls of the reference from outside the course's code."""
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
    return watch


def _limited(work: Any, seconds: float, ref_codes: set[Any], ref_calls: list[str],
             label: str) -> dict[str, Any]:
    """Run ``work()`` (which returns a dict) under an alarm, with input() off and a call
    watcher; a timeout or a BaseException from submitted code becomes a status dict."""
    def alarm(signum: int, frame: Any) -> None:
        raise _GradingTimeout()

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
            sys.setprofile(_call_watcher(ref_codes, ref_calls))
        try:
            return work()
        finally:
            sys.setprofile(None)
    except _GradingTimeout:
        return {"status": "timeout", "message": f"did not finish within {seconds:g} s"}
    except BaseException as exc:  # SystemExit, KeyboardInterrupt raised by submitted code
        return {"status": "error", "error": type(exc).__name__[:60],
                "message": f"{label}: your code raised {type(exc).__name__}: {exc}"}
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
                  disabled: Iterable[str] = (), plan: dict[str, list[list[Any]]] | None = None,
                  probe_dir: str = "") -> None:
    """Injected last: restore libraries, then run the probes.

    ``plan`` maps each probe/judge exercise to its cases ``[seed, hidden]``: the probe's data
    for case ``i`` goes to ``<probe_dir>/<exercise id>-<i>.npz`` and the grader judges it in
    its own process. No verdict is computed here for such an exercise. The JSON file at
    ``results_path`` only says how far the run got (and which exercises were probed).
    """
    sys.settrace(None)
    sys.setprofile(None)
    threading.settrace(None)
    threading.setprofile(None)
    snap = _KSTATE.get("snapshot")
    tampered = _restore_snapshot(snap) if snap else ["the grader's snapshot was removed"]
    out: dict[str, Any] = {"nonce": nonce, "complete": False, "current": None,
                           "exercises": {}, "tampered": tampered}
    _write_json_atomic(results_path, out)
    disabled, plan = set(disabled), plan or {}
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
            verdict = _in_captured_state(cap, lambda cap=cap, ex_id=ex_id: _grade_captured(
                ex_id, cap["obj"], seconds, plan.get(ex_id), probe_dir))
        out["exercises"][ex_id] = verdict
        _write_json_atomic(results_path, out)
    out["current"] = None
    out["complete"] = True
    _write_json_atomic(results_path, out)


def _in_captured_state(cap: dict[str, Any], work: Any) -> dict[str, Any]:
    """Run ``work()`` with the notebook's globals as they were right after the exercise cell."""
    namespace = _KSTATE.get("namespace")
    saved = dict(namespace) if namespace is not None else None
    try:
        if namespace is not None:
            namespace.clear()
            namespace.update(cap["globals"])
        return work()
    except BaseException as exc:  # the grader's own failure: report, do not guess
        return {"status": "internal", "error": f"{type(exc).__name__}: {exc}"}
    finally:
        if namespace is not None and saved is not None:
            namespace.clear()
            namespace.update(saved)


def _grade_captured(ex_id: str, obj: Any, seconds: float, cases: list[list[Any]] | None,
                    probe_dir: str) -> dict[str, Any]:
    from ..checks import core
    ex = core.get_exercise(ex_id)
    if ex.probe is None or cases is None:               # never judged in the student's process
        return {"status": "no-probe", "message": f"{ex_id} has no probe to run"}
    return _probe_captured(ex, obj, seconds, cases, probe_dir)


def _write_bytes_atomic(path: str, blob: bytes) -> None:
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "wb") as fh:
        fh.write(blob)
    os.replace(tmp, path)


def _probe_captured(ex: Any, obj: Any, seconds: float, cases: list[list[Any]],
                    probe_dir: str) -> dict[str, Any]:
    """Run the exercise's probe at each case; write each case's data; decide nothing."""
    from ..checks import protocol
    os.makedirs(probe_dir, exist_ok=True)
    ref_codes = _reference_codes(ex.reference)
    ref_calls: list[str] = []
    for i, (seed, hidden) in enumerate(cases):
        case = protocol.Case(seed=int(seed), hidden=bool(hidden))

        def work(case: Any = case) -> dict[str, Any]:
            return protocol.run_probe(ex.probe, obj, case)
        data = _limited(work, seconds, ref_codes, ref_calls, ex.exercise_id)
        if "status" in data and protocol.STATUS_KEY not in data and set(data) <= {
                "status", "error", "message"}:      # _limited's own timeout / error report
            data = {protocol.STATUS_KEY: data["status"], "error": data.get("error", ""),
                    "message": protocol.sanitise(data["message"])}
        try:
            blob = protocol.pack(data)
        except protocol.ProbeDataError as exc:
            blob = protocol.pack({protocol.STATUS_KEY: protocol.FAILED, "message": (
                "your answer returned something that is not a plain tensor or number "
                f"({protocol.sanitise(str(exc), 200)})")})
        _write_bytes_atomic(os.path.join(probe_dir, f"{ex.exercise_id}-{i}.npz"), blob)
    return {"status": "probed", "cases": len(cases), "reference": _reference_note(ex, obj,
                                                                                ref_calls)}


def _reference_note(ex: Any, obj: Any, ref_calls: list[str]) -> str:
    """Why the answer looks like the reference implementation ('' if it does not)."""
    ref = ex.reference
    if obj is ref and ref is not None:
        return "your answer is the reference object itself"
    if isinstance(obj, type) and isinstance(ref, type) and issubclass(obj, ref):
        return f"your class is a subclass of the reference {ref.__name__}"
    if ref_calls:
        return f"your code calls the reference implementation ({ref_calls[0]})"
    return ""
