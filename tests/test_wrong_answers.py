"""Every exercise check is proven against learners' mistakes and right-but-unusual answers.

Discovers every ``tests/wrong_answers/ch*.py`` corpus module (the convention is in
``tests/wrong_answers/README.md``) and, for each exercise it lists, runs the public check and
the grader's checks (public plus hidden) on: each WRONG entry (must fail, and its message must
not show the solution), each RIGHT entry (must pass), the reference (must pass) and a stub
(must be "not done").
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import nbformat
import pytest

from course_utils.checks import get_exercise, registry
from course_utils.checks.core import CheckResult, Exercise, run_checkers
from course_utils.grading.generate import normalise, solution_fragments

HERE = Path(__file__).resolve().parent
CORPUS_DIR = HERE / "wrong_answers"
SOLUTIONS = HERE.parent / "notebooks" / "solutions"
MIN_WRONG = 6
MIN_WRONG_CORE = 10
# The VAE, GAN-loss and training-step exercises: where a subtle slip is most likely.
CORE_EXERCISES = ("vae_reparameterize", "vae_kl", "vae_elbo", "gan_d_loss", "gan_g_loss",
                  "gan_train_step", "gan_debug_step")


def _modules() -> list[ModuleType]:
    return [importlib.import_module(f"tests.wrong_answers.{p.stem}")
            for p in sorted(CORPUS_DIR.glob("ch*.py"))]


MODULES = _modules()


def _entries(kind: str) -> list[Any]:
    params = []
    for module in MODULES:
        short = module.__name__.rsplit(".", 1)[-1]
        for ex_id, entries in getattr(module, kind, {}).items():
            for name, factory in entries:
                params.append(pytest.param(module, ex_id, name, factory,
                                           id=f"{short}::{ex_id}::{name}"))
    return params


def _exercises() -> list[Any]:
    seen = []
    for module in MODULES:
        short = module.__name__.rsplit(".", 1)[-1]
        for ex_id in {**getattr(module, "WRONG", {}), **getattr(module, "RIGHT", {})}:
            seen.append(pytest.param(module, ex_id, id=f"{short}::{ex_id}"))
    return seen


@pytest.fixture(autouse=True)
def _no_expectation(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COURSE_EXPECT", raising=False)


def _public(ex: Exercise, obj: Any) -> CheckResult:
    return run_checkers(ex, obj, [ex.checker])


def _grader(ex: Exercise, obj: Any) -> CheckResult:
    """As the grader judges: for a probe/judge exercise, probe -> pack -> unpack -> judge at
    the public case, then at the hidden cases with the hidden judges too."""
    return run_checkers(ex, obj, [ex.checker, *ex.hidden])


_FRAGMENTS: dict[str, set[str]] = {}


def _fragments(ex_id: str) -> set[str]:
    """Normalised solution fragments of ``ex_id`` from the solution notebooks."""
    if not _FRAGMENTS:
        for path in sorted(SOLUTIONS.glob("*.ipynb")):
            _FRAGMENTS.update(solution_fragments(nbformat.read(path, as_version=4)))
    return _FRAGMENTS.get(ex_id, set())


def _shows_solution(ex_id: str, message: str) -> list[str]:
    text = normalise(message.replace("\n", " "))
    return sorted(f for f in _fragments(ex_id) if f in text)


@pytest.mark.parametrize("module, ex_id, name, factory", _entries("WRONG"))
def test_wrong_answer_fails(module: ModuleType, ex_id: str, name: str,
                            factory: Callable[[], Any]) -> None:
    ex = get_exercise(ex_id)
    allowed = {"failed", "error"} if (ex_id, name) in getattr(module, "CRASHES", set()) \
        else {"failed"}
    runs = [("grader", _grader)]
    if (ex_id, name) not in getattr(module, "HIDDEN_ONLY", set()):
        runs.insert(0, ("public check", _public))
    for label, run in runs:
        result = run(ex, factory())
        assert result.status in allowed, f"{label} gave {result.status!r}: {result.message}"
        leaked = _shows_solution(ex_id, result.message)
        assert not leaked, f"{label}'s message shows solution code {leaked}: {result.message}"


@pytest.mark.parametrize("module, ex_id, name, factory", _entries("RIGHT"))
def test_right_but_unusual_answer_passes(module: ModuleType, ex_id: str, name: str,
                                         factory: Callable[[], Any]) -> None:
    ex = get_exercise(ex_id)
    for label, run in (("public check", _public), ("grader", _grader)):
        result = run(ex, factory())
        assert result.status == "passed", f"{label} gave {result.status!r}: {result.message}"


def _stub_factory(ex_id: str) -> Callable[[], Any]:
    def stub(*args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(ex_id)
    return lambda: stub


@pytest.mark.parametrize("module, ex_id", _exercises())
def test_reference_passes_and_stub_is_not_done(module: ModuleType, ex_id: str) -> None:
    ex = get_exercise(ex_id)
    reference = getattr(module, "REFERENCE", {}).get(ex_id, lambda: ex.reference)
    stub = getattr(module, "STUB", {}).get(ex_id, _stub_factory(ex_id))
    for label, run in (("public check", _public), ("grader", _grader)):
        result = run(ex, reference())
        assert result.status == "passed", f"reference, {label}: {result.message}"
        result = run(ex, stub())
        assert result.status == "not done", f"stub, {label}: {result.message}"


@pytest.mark.parametrize("module, ex_id", _exercises())
def test_each_exercise_has_enough_wrong_answers(module: ModuleType, ex_id: str) -> None:
    wrong = getattr(module, "WRONG", {}).get(ex_id, [])
    names = [name for name, _ in wrong]
    assert len(names) == len(set(names)), f"duplicate names in {ex_id}: {names}"
    need = MIN_WRONG_CORE if ex_id in CORE_EXERCISES else MIN_WRONG
    assert len(wrong) >= need, f"{ex_id} has {len(wrong)} wrong answers, needs {need}"
    assert ex_id in registry(), f"{ex_id} is not a registered exercise"


def test_every_registered_exercise_has_a_corpus() -> None:
    covered = {ex_id for module in MODULES for ex_id in getattr(module, "WRONG", {})}
    missing = sorted(set(registry()) - covered)
    assert not missing, (f"exercises without wrong answers in tests/wrong_answers/: {missing}; "
                         "see tests/wrong_answers/README.md")


def test_corpus_modules_are_found() -> None:
    names = {m.__name__.rsplit(".", 1)[-1] for m in MODULES}
    assert {"ch00_introduction", "ch01_autoencoder", "ch02_vae"} <= names
    assert os.path.isfile(CORPUS_DIR / "README.md")
