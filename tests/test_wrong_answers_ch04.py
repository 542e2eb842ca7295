"""Chapter 04's checks against its corpus of wrong and right-but-unusual answers.

Every WRONG entry in ``tests/wrong_answers/ch04_evaluation.py`` must fail the public check
and the grader's checks (public + hidden); every RIGHT entry, and the reference, must pass
both; the stub must be "not done". Hints and messages must not give the answer away.
"""

from __future__ import annotations

import pytest
from wrong_answers import ch04_evaluation as corpus

from course_utils.checks import get_exercise
from course_utils.checks.core import run_checkers

EXERCISES = ("eval_frechet", "eval_class_coverage", "eval_iwae")
WRONG = [(ex, name, factory) for ex in EXERCISES for name, factory in corpus.WRONG[ex]]
RIGHT = [(ex, name, factory) for ex in EXERCISES for name, factory in corpus.RIGHT[ex]]
# Fragments of the reference solutions that no message or hint may show.
ANSWER_FRAGMENTS = ("sqrtm(", "logsumexp(", "np.cov(", "bincount(", "math.log(k)", "log(k)",
                    "p * log", "sigma1 @ sigma2", "trace(sigma")


@pytest.fixture(autouse=True)
def no_expectation(monkeypatch):
    monkeypatch.delenv("COURSE_EXPECT", raising=False)


def test_corpus_is_large_enough():
    for ex in EXERCISES:
        assert len(corpus.WRONG[ex]) >= 6, ex
        assert len(corpus.RIGHT[ex]) >= 3, ex


@pytest.mark.parametrize("ex_id, name, factory", WRONG, ids=[f"{e}::{n}" for e, n, _ in WRONG])
def test_wrong_answer_fails(ex_id, name, factory):
    ex = get_exercise(ex_id)
    allowed = {"failed", "error"} if (ex_id, name) in corpus.CRASHES else {"failed"}
    for checkers in ([ex.checker], [ex.checker, *ex.hidden]):
        result = run_checkers(ex, factory(), checkers)
        assert result.status in allowed, f"{name}: {result.status}: {result.message}"
        assert "Hint:" in result.message
        if result.status == "failed":  # an "error" quotes the learner's own line, not ours
            assert not any(f in result.message for f in ANSWER_FRAGMENTS), result.message


@pytest.mark.parametrize("ex_id, name, factory", RIGHT, ids=[f"{e}::{n}" for e, n, _ in RIGHT])
def test_right_answer_passes(ex_id, name, factory):
    ex = get_exercise(ex_id)
    for checkers in ([ex.checker], [ex.checker, *ex.hidden]):
        result = run_checkers(ex, factory(), checkers)
        assert result.status == "passed", f"{name}: {result.message}"


@pytest.mark.parametrize("ex_id", EXERCISES)
def test_reference_passes_and_stub_is_not_done(ex_id):
    ex = get_exercise(ex_id)

    def stub(*args, **kwargs):
        raise NotImplementedError(ex_id)

    for checkers in ([ex.checker], [ex.checker, *ex.hidden]):
        assert run_checkers(ex, ex.reference, checkers).status == "passed"
        assert run_checkers(ex, stub, checkers).status == "not done"


@pytest.mark.parametrize("ex_id", EXERCISES)
def test_public_check_is_deterministic(ex_id):
    ex = get_exercise(ex_id)
    results = [run_checkers(ex, ex.reference, [ex.checker]) for _ in range(2)]
    assert all(r.passed for r in results)
    wrong = corpus.WRONG[ex_id][0][1]
    messages = {run_checkers(ex, wrong(), [ex.checker]).message for _ in range(2)}
    assert len(messages) == 1


def test_specific_messages_for_common_mistakes():
    expected = {
        ("eval_frechet", "mean_term_only"): "covariance term is missing",
        ("eval_frechet", "entrywise_sqrt"): "square root",
        ("eval_frechet", "product_of_roots"): "do not commute",
        ("eval_frechet", "square_root_returned"): "squared form",
        ("eval_class_coverage", "present_classes"): "min_fraction",
        ("eval_class_coverage", "strict_threshold"): "exactly min_fraction",
        ("eval_class_coverage", "kl_reversed"): "wrong direction",
        ("eval_class_coverage", "kl_bits"): "nats",
        ("eval_class_coverage", "nan_from_empty"): "0 * log 0",
        ("eval_iwae", "mean_log_weights"): "ELBO",
        ("eval_iwae", "missing_log_k"): "log k",
        ("eval_iwae", "naive_log_mean_exp"): "log-space",
        ("eval_iwae", "bits"): "nats",
        ("eval_iwae", "logvar_as_log_std"): "VARIANCE",
    }
    for (ex_id, name), fragment in expected.items():
        factory = dict(corpus.WRONG[ex_id])[name]
        ex = get_exercise(ex_id)
        message = run_checkers(ex, factory(), [ex.checker]).message
        assert fragment in message, f"{ex_id}::{name}: {message}"
