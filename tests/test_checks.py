"""The in-notebook check machinery: verdicts, fallbacks, hints and CI expectations."""

from __future__ import annotations

import pytest
import torch

from course_utils.checks import check, get_exercise, registry
from course_utils.checks.core import ExpectationError, run_checkers
from course_utils.data import to_minus_one_one


def stub(x):
    raise NotImplementedError("intro_scale")


@pytest.fixture(autouse=True)
def no_expectation(monkeypatch):
    monkeypatch.delenv("COURSE_EXPECT", raising=False)


def test_every_registered_exercise_has_points_hint_and_reference():
    exercises = registry()
    assert "intro_scale" in exercises
    for ex in exercises.values():
        assert ex.points > 0 and ex.hint and ex.reference is not None


def test_not_done_falls_back_to_reference(capsys):
    used = check("intro_scale", stub)
    assert used is to_minus_one_one
    assert "not done yet" in capsys.readouterr().out


def test_pass_returns_the_learners_object(capsys):
    mine = lambda x: x * 2 - 1  # noqa: E731
    assert check("intro_scale", mine) is mine
    out = capsys.readouterr().out
    assert "passed the public checks" in out and "correct" not in out.lower()


@pytest.mark.parametrize("wrong, fragment", [
    (lambda x: x * 2, "should map to -1, 0 and 1"),
    (lambda x: x.mul_(2).sub_(1), "in place"),
    (lambda x: (x * 2 - 1).double(), "dtype"),
    (lambda x: (x * 2 - 1).flatten(), "shape"),
    (lambda x: (x * 2 - 1).numpy(), "torch.Tensor"),
])
def test_wrong_answers_fail_with_message_and_hint_but_not_the_answer(wrong, fragment, capsys):
    assert check("intro_scale", wrong) is to_minus_one_one
    out = capsys.readouterr().out
    assert fragment in out and "Hint:" in out
    assert "x * 2 - 1" not in out and "2 * x - 1" not in out


def test_crashing_code_is_reported_not_raised(capsys):
    def crashes(x):
        return x / undefined_name  # noqa: F821
    check("intro_scale", crashes)
    out = capsys.readouterr().out
    assert "NameError" in out and "crashes" in out


def test_unknown_id_suggests_close_names():
    with pytest.raises(KeyError, match="intro_scale"):
        check("intro_scal", stub)


def test_expectations_for_ci(monkeypatch):
    monkeypatch.setenv("COURSE_EXPECT", "solved")
    with pytest.raises(ExpectationError):
        check("intro_scale", stub, quiet=True)
    check("intro_scale", to_minus_one_one, quiet=True)
    monkeypatch.setenv("COURSE_EXPECT", "unsolved")
    with pytest.raises(ExpectationError):
        check("intro_scale", to_minus_one_one, quiet=True)
    check("intro_scale", stub, quiet=True)


def test_checks_are_fast_and_deterministic():
    ex = get_exercise("intro_scale")
    results = [run_checkers(ex, to_minus_one_one, [ex.checker]) for _ in range(2)]
    assert all(r.passed for r in results)
    assert max(r.seconds for r in results) < 1.0


def test_every_exercise_rejects_a_stub():
    for ex in registry().values():
        def not_done(*args, **kwargs):
            raise NotImplementedError(ex.exercise_id)
        result = run_checkers(ex, not_done, [ex.checker])
        assert result.status in {"not done", "failed", "error"}, ex.exercise_id
        assert not result.passed
