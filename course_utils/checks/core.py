"""The exercise-check machinery behind ``check(exercise_id, obj)``.

Each chapter module in this package registers its exercises with :func:`exercise`::

    @exercise("intro_scale", points=1, reference=data.to_minus_one_one,
              hint="A straight line a*x + b: choose a and b so that 0 -> -1 and 1 -> 1.")
    def _check_scale(fn):
        out = fn(torch.rand(4, 1, 28, 28))
        expect(out.shape == (4, 1, 28, 28), "the output must keep the input's shape")

A checker receives the learner's object and raises :class:`CheckFailure` with a short message
when a property does not hold. It must be deterministic and take well under a second.

``check`` prints one of three verdicts and returns the object the notebook should carry on with:

* passed   -> "passed the public checks", returns the learner's object;
* not done -> the object raised ``NotImplementedError``: "not done yet", returns the reference;
* failed   -> the message and the hint (never the answer), returns the reference.

``COURSE_EXPECT=solved`` (solution notebooks in CI) makes anything but a pass raise, and
``COURSE_EXPECT=unsolved`` (student notebooks in CI) makes anything but "not done" raise, so a
plain notebook run checks both directions.

The grader may register extra *hidden* checkers with :func:`hidden_check`; ``check`` never runs
them, so their details stay out of the learner's view.

Probe and judge
---------------
An exercise registered with ``probe=`` is split in two (see :mod:`.protocol`): the decorated
function is the *judge* ``judge(data, case)``, and ``probe(obj, case)`` is the only part that
touches the learner's object. ``check`` runs both in the notebook's process; the batch grader
runs the probe in the sandboxed kernel and the judge in its own process, at the public case
and at hidden cases whose seeds it draws for each submission, so nothing a submission patches
can change its verdict. For such an exercise, ``Exercise.checker`` runs probe and judge in one
process at the public case, and ``Exercise.hidden`` at two fixed hidden cases (what tests use).
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .. import config
from .protocol import (
    ERROR,
    FAILED,
    NOT_DONE,
    STATUS_KEY,
    Case,
    CheckFailure,
    pack,
    run_probe,
    unpack,
    user_frame,
)

Checker = Callable[[Any], None]
Probe = Callable[[Any, Case], dict]
Judge = Callable[[dict, Case], None]

PUBLIC_CASE = Case(seed=0)
TEST_HIDDEN_CASES = (Case(seed=101, hidden=True), Case(seed=202, hidden=True))

# Chapter modules that register exercises; imported on first use of the registry. Each must
# import: registry() raises, naming the module, when one does not.
CHAPTER_MODULES = ("ch00_introduction", "ch01_autoencoder", "ch02_vae", "ch03_dcgan",
                   "ch04_evaluation")


class ExpectationError(AssertionError):
    """Raised under ``COURSE_EXPECT`` when a verdict differs from what CI expects."""


class LearnerCodeError(Exception):
    """The learner's code raised inside a probe; carries the (sanitised) error it raised."""

    def __init__(self, error: str, message: str, where: str = "") -> None:
        super().__init__(f"{error}: {message}")
        self.error, self.message, self.where = error, message, where


class JudgeError(Exception):
    """A judge could not judge the probe data (malformed data, or a bug in the check)."""


def expect(condition: bool, message: str) -> None:
    """Raise :class:`CheckFailure` with ``message`` unless ``condition`` holds."""
    if not condition:
        raise CheckFailure(message)


@dataclass
class Exercise:
    """One graded exercise: its public checker, hidden checkers, points, hint and reference."""

    exercise_id: str
    points: float
    hint: str
    reference: Any
    checker: Checker
    hidden: list[Checker] = field(default_factory=list)
    reveal: str = ""          # explanation printed by check() once the answer passes
    probe: Probe | None = None          # set for probe/judge exercises (see module docstring)
    judge: Judge | None = None
    hidden_judges: list[Judge] = field(default_factory=list)


@dataclass
class CheckResult:
    """The verdict of one check. ``status`` is 'passed', 'not done', 'failed' or 'error'."""

    exercise_id: str
    status: str
    message: str
    seconds: float

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    def __str__(self) -> str:
        return self.message


_REGISTRY: dict[str, Exercise] = {}
_loaded = False


def exercise(exercise_id: str, *, points: float, hint: str, reference: Any, reveal: str = "",
             probe: Probe | None = None) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Decorator registering the check of ``exercise_id``.

    Without ``probe``, the decorated function is a one-process ``checker(obj)``. With
    ``probe``, it is the judge ``judge(data, case)`` of a probe/judge pair.
    ``hint`` is printed when the answer fails and must never give the answer away;
    ``reveal`` (optional) explains the answer and is printed only once it passes.
    """
    def register(fn: Callable[..., None]) -> Callable[..., None]:
        if exercise_id in _REGISTRY:
            raise ValueError(f"exercise {exercise_id!r} is registered twice")
        if probe is None:
            _REGISTRY[exercise_id] = Exercise(exercise_id, points, hint, reference, fn,
                                              reveal=reveal)
            return fn
        ex = Exercise(exercise_id, points, hint, reference, lambda obj: None, reveal=reveal,
                      probe=probe, judge=fn)
        ex.checker = _in_process(ex, PUBLIC_CASE)
        ex.hidden = [_in_process(ex, case, hidden_only=True) for case in TEST_HIDDEN_CASES]
        _REGISTRY[exercise_id] = ex
        return fn
    return register


def hidden_judge(exercise_id: str) -> Callable[[Judge], Judge]:
    """Decorator adding a grader-only judge, run on the same probe data as the public one."""
    def register(judge: Judge) -> Judge:
        _REGISTRY[exercise_id].hidden_judges.append(judge)
        return judge
    return register


def _raise_for_status(data: dict) -> None:
    """Turn a probe's status (not done / failed / error) into the matching exception."""
    status = data.get(STATUS_KEY)
    if status is None:
        return
    if status == NOT_DONE:
        raise NotImplementedError
    if status == FAILED:
        raise CheckFailure(str(data.get("message", "the answer broke a checked property")))
    if status == ERROR:
        raise LearnerCodeError(str(data.get("error", "Exception")), str(data.get("message", "")),
                               str(data.get("where", "")))
    raise JudgeError(f"unknown probe status {status!r}")


def judge_data(ex: Exercise, data: dict, case: Case, *, hidden: bool = False) -> None:
    """Judge probe ``data`` for ``case``: raise like a checker (CheckFailure, ...) or return.

    Runs in whichever process wants the verdict; never touches the learner's object. A judge
    that crashes on the data (malformed or hostile data) raises :class:`JudgeError`.
    """
    assert ex.judge is not None, f"{ex.exercise_id} is not a probe/judge exercise"
    _raise_for_status(data)
    judges = [ex.judge, *(ex.hidden_judges if hidden else [])]
    try:
        for judge in judges:
            judge(data, case)
    except CheckFailure:
        raise
    except Exception as exc:
        raise JudgeError(f"{type(exc).__name__} while judging") from exc


def _in_process(ex: Exercise, case: Case, hidden_only: bool = False) -> Checker:
    """A one-process checker: probe, pack, unpack (as the grader would), judge."""
    def checker(obj: Any) -> None:
        assert ex.probe is not None
        data = unpack(pack(run_probe(ex.probe, obj, case)))
        judge_data(ex, data, case, hidden=hidden_only)
    return checker


def hidden_check(exercise_id: str) -> Callable[[Checker], Checker]:
    """Decorator adding a grader-only checker to an already registered exercise."""
    def register(checker: Checker) -> Checker:
        _REGISTRY[exercise_id].hidden.append(checker)
        return checker
    return register


def registry() -> dict[str, Exercise]:
    """All registered exercises, importing the chapter modules on first call.

    Raises:
        ImportError: naming the chapter module, when one in :data:`CHAPTER_MODULES` is missing
            or fails to import (its own error is chained). Nothing is skipped silently: a
            missing module would otherwise make its exercises look unknown.
    """
    global _loaded
    if not _loaded:
        for module in CHAPTER_MODULES:
            name = f"{__package__}.{module}"
            try:
                importlib.import_module(name)
            except Exception as exc:
                raise ImportError(
                    f"the exercise checks of chapter module {name} could not be imported "
                    f"({type(exc).__name__}: {exc}). Fix that module, or remove {module!r} "
                    "from CHAPTER_MODULES in course_utils/checks/core.py if the chapter has "
                    "no checks.") from exc
        _loaded = True
    return _REGISTRY


def get_exercise(exercise_id: str) -> Exercise:
    """Look up an exercise, with a helpful error for a typo."""
    exercises = registry()
    if exercise_id not in exercises:
        import difflib
        close = difflib.get_close_matches(exercise_id, exercises, n=3)
        tip = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise KeyError(f"No exercise called {exercise_id!r}.{tip}")
    return exercises[exercise_id]


def run_checkers(ex: Exercise, obj: Any, checkers: list[Checker]) -> CheckResult:
    """Run ``checkers`` on ``obj`` and turn the outcome into a :class:`CheckResult`."""
    start = time.perf_counter()
    try:
        for checker in checkers:
            checker(obj)
    except NotImplementedError:
        status, message = "not done", (f"{ex.exercise_id}: not done yet - the notebook continues "
                                       "with the reference implementation.")
    except CheckFailure as exc:
        status, message = "failed", f"{ex.exercise_id}: not yet - {exc}\n  Hint: {ex.hint}"
    except LearnerCodeError as exc:
        status, message = "error", (f"{ex.exercise_id}: your code raised {exc.error}: "
                                    f"{exc.message}{exc.where}\n  Hint: {ex.hint}")
    except JudgeError as exc:
        status, message = "error", (f"{ex.exercise_id}: the check could not judge this answer "
                                    f"({exc}); please report it to the course maintainers.")
    except Exception as exc:  # the learner's code crashed: report it, never crash the notebook
        status, message = "error", (f"{ex.exercise_id}: your code raised {type(exc).__name__}: "
                                    f"{exc}{user_frame(exc)}\n  Hint: {ex.hint}")
    else:
        status, message = "passed", f"{ex.exercise_id}: passed the public checks."
    return CheckResult(ex.exercise_id, status, message, time.perf_counter() - start)


def check(exercise_id: str, obj: Any, *, quiet: bool = False) -> Any:
    """Check the learner's ``obj`` for ``exercise_id``; return what the notebook should use.

    Returns ``obj`` when it passes, otherwise the reference implementation, so an unfinished
    or failing exercise never blocks the rest of the notebook.
    """
    ex = get_exercise(exercise_id)
    result = run_checkers(ex, obj, [ex.checker])
    if not quiet:
        symbol = {"passed": "[ok]", "not done": "[..]"}.get(result.status, "[!!]")
        print(f"{symbol} {result.message}")
        if result.passed and ex.reveal:
            print(f"  {ex.reveal}")
        if result.status in {"failed", "error"}:
            print("  The notebook continues with the reference implementation.")
    expected = config.expected_verdict()
    if expected == "solved" and result.status != "passed":
        raise ExpectationError(f"COURSE_EXPECT=solved but {result.message}")
    if expected == "unsolved" and result.status != "not done":
        raise ExpectationError(f"COURSE_EXPECT=unsolved but {exercise_id} reported "
                               f"{result.status!r}: student stubs must raise NotImplementedError.")
    return obj if result.passed else ex.reference
