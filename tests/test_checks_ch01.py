"""Exercise checks of notebook 01_autoencoder: the reference passes, a stub is "not done",
and each common mistake fails with its own message."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from course_utils.checks import get_exercise, run_checkers
from course_utils.checks.ch01_autoencoder import BeatPCATrial, try_to_beat_pca
from course_utils.checks.ch01_probes import beat_pca_eval_indices
from course_utils.checks.core import PUBLIC_CASE, TEST_HIDDEN_CASES
from course_utils.data import Dataset
from course_utils.models.autoencoder import (
    Autoencoder,
    ConvAutoencoder,
    mlp_encoder_decoder,
)
from tests.wrong_answers.ch01_autoencoder import codebook_autoencoder, course_data


def verdict(exercise_id: str, obj: object) -> tuple[str, str]:
    ex = get_exercise(exercise_id)
    result = run_checkers(ex, obj, [ex.checker])
    return result.status, result.message


def stub(*args: object) -> object:
    raise NotImplementedError("stub")


# ----------------------------------------------------------------------------- encoder/decoder

def test_encoder_decoder_reference_passes_and_stub_is_not_done() -> None:
    assert verdict("ae_encoder_decoder", mlp_encoder_decoder)[0] == "passed"
    assert verdict("ae_encoder_decoder", stub)[0] == "not done"


def test_encoder_decoder_check_leaves_the_global_random_stream_alone() -> None:
    torch.manual_seed(0)
    before = torch.get_rng_state()
    verdict("ae_encoder_decoder", mlp_encoder_decoder)
    assert torch.equal(before, torch.get_rng_state())


def _without_sigmoid(k: int) -> tuple[nn.Module, nn.Module]:
    enc = nn.Sequential(nn.Flatten(), nn.Linear(784, k))
    return enc, nn.Sequential(nn.Linear(k, 784), nn.Unflatten(1, (1, 28, 28)))


def _fixed_code_size(k: int) -> tuple[nn.Module, nn.Module]:
    return mlp_encoder_decoder(2)                      # ignores its argument


def _flat_decoder(k: int) -> tuple[nn.Module, nn.Module]:
    enc = nn.Sequential(nn.Flatten(), nn.Linear(784, k))
    return enc, nn.Sequential(nn.Linear(k, 784), nn.Sigmoid())


class _Frozen(nn.Module):
    def __init__(self, k: int) -> None:
        super().__init__()
        self.layer = nn.Linear(784, k)

    def forward(self, x: Tensor) -> Tensor:
        return self.layer(x.flatten(1)).detach()


def _detached_encoder(k: int) -> tuple[nn.Module, nn.Module]:
    return _Frozen(k), mlp_encoder_decoder(k)[1]


@pytest.mark.parametrize("build, message", [
    (_without_sigmoid, "[0, 1]"),
    (_fixed_code_size, "(4, 5)"),
    (_flat_decoder, "(4, 1, 28, 28)"),
    (_detached_encoder, "gradient"),
    (lambda k: nn.Linear(784, k), "pair"),
])
def test_encoder_decoder_mistakes_fail_with_a_message(build, message: str) -> None:
    status, text = verdict("ae_encoder_decoder", build)
    assert status == "failed" and message in text, text


# ----------------------------------------------------------------------------- loss

def _reference(x_hat: Tensor, x: Tensor) -> Tensor:
    return ((x_hat - x) ** 2).sum(dim=(1, 2, 3)).mean()


@pytest.mark.parametrize("loss_fn, message", [
    (lambda x_hat, x: F.mse_loss(x_hat, x), "784 times too small"),
    (lambda x_hat, x: ((x_hat - x) ** 2).sum(), "divide by the number of images"),
    (lambda x_hat, x: (x_hat - x).abs().sum(dim=(1, 2, 3)).mean(), "absolute error"),
    (lambda x_hat, x: ((x_hat - x) ** 2).sum(dim=(1, 2, 3)), "0-d tensor"),
    (lambda x_hat, x: _reference(x_hat, x).item(), "torch.Tensor"),
    (lambda x_hat, x: _reference(x_hat.detach(), x), "detach"),
    (lambda x_hat, x: _reference(x_hat, x).sqrt(), "square root"),
    (lambda x_hat, x: (x_hat - x).sum(dim=(1, 2, 3)).mean(), "expected"),
    (lambda x_hat, x: _reference(x_hat, x.sub_(0.1)), "in place"),
])
def test_reconstruction_loss_mistakes_fail_with_a_message(loss_fn, message: str) -> None:
    status, text = verdict("ae_reconstruction_loss", loss_fn)
    assert status == "failed" and message in text, text


def test_reconstruction_loss_reference_passes_and_stub_is_not_done() -> None:
    assert verdict("ae_reconstruction_loss", _reference)[0] == "passed"
    assert verdict("ae_reconstruction_loss", get_exercise("ae_reconstruction_loss").reference)[0] \
        == "passed"
    assert verdict("ae_reconstruction_loss", stub)[0] == "not done"


# ----------------------------------------------------------------------------- beat PCA

def _train(model_fn):
    """A training function returning ``model_fn(train_x)``, run once by try_to_beat_pca."""
    def train_k2_autoencoder(train_x: Tensor, time_budget: float) -> object:
        return model_fn(train_x)
    try_to_beat_pca(train_k2_autoencoder, course_data(), time_budget=0.0)
    return train_k2_autoencoder


def grader_verdict(exercise_id: str, obj: object) -> tuple[str, str]:
    """Public case plus the hidden cases (other seeds: other held-out images)."""
    ex = get_exercise(exercise_id)
    result = run_checkers(ex, obj, [ex.checker, *ex.hidden])
    return result.status, result.message


def test_beat_pca_passes_for_a_model_that_beats_pca() -> None:
    def codebook(train_x: Tensor, time_budget: float) -> nn.Module:
        return codebook_autoencoder(train_x)

    trial = try_to_beat_pca(codebook, course_data(), time_budget=0.0)
    assert isinstance(trial, BeatPCATrial) and trial.model is trial.learner_model
    assert verdict("ae_beat_pca", codebook)[0] == "passed"
    assert grader_verdict("ae_beat_pca", codebook)[0] == "passed"


@pytest.mark.parametrize("smoke", ["0", "1"])
def test_beat_pca_fails_for_an_untrained_model(smoke: str,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COURSE_SMOKE", smoke)              # smoke mode relaxes the target ...
    untrained = _train(lambda t: ConvAutoencoder(2, width=4, hidden=16))
    status, text = verdict("ae_beat_pca", untrained)       # ... but not that far
    assert status == "failed" and "not below PCA" in text, text


def test_beat_pca_stub_is_not_done_and_the_notebook_gets_a_model() -> None:
    trial = try_to_beat_pca(stub, course_data(), time_budget=0.0)  # reference: 1 step
    assert isinstance(trial.model, nn.Module) and trial.learner_model is None
    assert verdict("ae_beat_pca", stub)[0] == "not done"


@pytest.mark.parametrize("model_fn, status, message", [
    (lambda t: Autoencoder(codebook_autoencoder(t).encoder, nn.Sequential(
        nn.Linear(2, 784), nn.Sigmoid(), nn.Unflatten(1, (1, 28, 28))), 2),
     "failed", "not below PCA"),
    (lambda t: ConvAutoencoder(3, width=4, hidden=16), "failed", "(B, 2)"),
    (lambda t: "a model", "failed", "nn.Module"),
    (lambda t: nn.Linear(2, 2), "failed", "encode"),
    (lambda t: 1 / 0, "error", "ZeroDivisionError"),
])
def test_beat_pca_mistakes(model_fn, status: str, message: str) -> None:
    got, text = verdict("ae_beat_pca", _train(model_fn))
    assert got == status and message in text, text


def test_beat_pca_needs_the_function_to_have_been_run() -> None:
    def train(train_x: Tensor, time_budget: float) -> nn.Module:
        return codebook_autoencoder(train_x)

    status, text = verdict("ae_beat_pca", train)
    assert status == "failed" and "try_to_beat_pca" in text
    try_to_beat_pca(train, course_data(), time_budget=0.0)
    assert verdict("ae_beat_pca", train)[0] == "passed"

    def train(train_x: Tensor, time_budget: float) -> nn.Module:
        return codebook_autoencoder(train_x)

    assert verdict("ae_beat_pca", train)[0] == "failed"    # a new function needs a new run
    assert verdict("ae_beat_pca", "not a function")[0] == "failed"


def test_beat_pca_is_scored_on_the_judges_own_images() -> None:
    """A model run on another data set, or a kernel that swapped the test images for easy
    ones, is scored on the judge's own copy of the course's test images."""
    data = course_data()
    blank = Dataset("blank", "synthetic", ("blank",), data.train_x[:64], data.train_y[:64],
                    torch.zeros(40, 1, 28, 28), torch.zeros(40, dtype=torch.long))

    def train(train_x: Tensor, time_budget: float) -> nn.Module:
        return codebook_autoencoder(train_x)

    try_to_beat_pca(train, blank, time_budget=0.0)
    status, text = verdict("ae_beat_pca", train)
    assert status == "failed" and "40" in text, text
    swapped = Dataset("swapped", "synthetic", ("x",), data.train_x, data.train_y,
                      data.train_x[:len(data.test_x)], data.test_y)   # training images as test
    try_to_beat_pca(train, swapped, time_budget=0.0)
    status, text = verdict("ae_beat_pca", train)            # compared with the real images
    assert status == "failed" and "not below PCA" in text, text


def test_beat_pca_hidden_cases_score_other_images() -> None:
    ex = get_exercise("ae_beat_pca")
    pool = len(course_data().test_x)
    public = beat_pca_eval_indices(PUBLIC_CASE, pool)
    for case in TEST_HIDDEN_CASES:
        hidden = beat_pca_eval_indices(case, pool)
        assert len(hidden) > 0 and set(hidden.tolist()) != set(public.tolist())
    assert ex.probe is not None and ex.judge is not None
