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
"""

from __future__ import annotations

import importlib
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable

from .. import config

Checker = Callable[[Any], None]

# Chapter modules that register exercises; imported on first use of the registry. Each must
# import: registry() raises, naming the module, when one does not.
CHAPTER_MODULES = ("ch00_introduction", "ch01_autoencoder", "ch02_vae", "ch03_dcgan")


class CheckFailure(AssertionError):
    """Raised by a checker when the learner's object breaks a checked property."""


class ExpectationError(AssertionError):
    """Raised under ``COURSE_EXPECT`` when a verdict differs from what CI expects."""


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


def exercise(exercise_id: str, *, points: float, hint: str, reference: Any
             ) -> Callable[[Checker], Checker]:
    """Decorator registering ``checker`` as the public check of ``exercise_id``."""
    def register(checker: Checker) -> Checker:
        if exercise_id in _REGISTRY:
            raise ValueError(f"exercise {exercise_id!r} is registered twice")
        _REGISTRY[exercise_id] = Exercise(exercise_id, points, hint, reference, checker)
        return checker
    return register


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


def _user_frame(exc: BaseException) -> str:
    """Where in the learner's code an exception came from (last frame outside course_utils)."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__)
              if "course_utils" not in f.filename.replace("\\", "/")]
    if not frames:
        return ""
    f = frames[-1]
    return f" (in {f.name}, line {f.lineno}: {f.line})" if f.line else f" (in {f.name})"


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
    except Exception as exc:  # the learner's code crashed: report it, never crash the notebook
        status, message = "error", (f"{ex.exercise_id}: your code raised {type(exc).__name__}: "
                                    f"{exc}{_user_frame(exc)}\n  Hint: {ex.hint}")
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
        if result.status in {"failed", "error"}:
            print("  The notebook continues with the reference implementation.")
    expected = config.expected_verdict()
    if expected == "solved" and result.status != "passed":
        raise ExpectationError(f"COURSE_EXPECT=solved but {result.message}")
    if expected == "unsolved" and result.status != "not done":
        raise ExpectationError(f"COURSE_EXPECT=unsolved but {exercise_id} reported "
                               f"{result.status!r}: student stubs must raise NotImplementedError.")
    return obj if result.passed else ex.reference
