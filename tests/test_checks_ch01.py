"""Exercise checks of notebook 01_autoencoder: the reference passes, a stub is "not done",
and each common mistake fails with its own message."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from course_utils.checks import get_exercise, run_checkers
from course_utils.checks.ch01_autoencoder import BeatPCATrial, try_to_beat_pca
from course_utils.data import Dataset
from course_utils.models.autoencoder import Autoencoder, ConvAutoencoder, mlp_encoder_decoder


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

def _bumps(n: int, seed: int) -> tuple[Tensor, Tensor]:
    """Images of one Gaussian bump at a random position (u, v): a 2-D curved manifold that
    PCA with 2 components cannot follow, but an oracle autoencoder reproduces exactly."""
    gen = torch.Generator().manual_seed(seed)
    centres = 6 + 16 * torch.rand(n, 2, generator=gen)                 # (N, 2) in pixels
    return _render(centres), centres


def _render(centres: Tensor) -> Tensor:
    grid = torch.arange(28.0)
    gy = torch.exp(-(grid[None, :] - centres[:, :1]) ** 2 / 8)         # (N, 28)
    gx = torch.exp(-(grid[None, :] - centres[:, 1:]) ** 2 / 8)         # (N, 28)
    return (gy[:, :, None] * gx[:, None, :]).unsqueeze(1)              # (N, 1, 28, 28)


class _Locate(nn.Module):
    """Centre of mass of the image: the exact code of a bump."""

    def forward(self, x: Tensor) -> Tensor:
        grid = torch.arange(28.0)
        mass = x.sum(dim=(1, 2, 3))
        y = (x.sum(dim=(1, 3)) * grid).sum(1) / mass
        return torch.stack([y, (x.sum(dim=(1, 2)) * grid).sum(1) / mass], dim=1)


class _Render(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, z: Tensor) -> Tensor:
        return (self.scale * _render(z)).clamp(0, 1)


@pytest.fixture(scope="module")
def bumps() -> Dataset:
    train_x, train_c = _bumps(300, 0)
    test_x, test_c = _bumps(100, 1)
    zeros = lambda t: torch.zeros(len(t), dtype=torch.long)  # noqa: E731
    return Dataset("bumps", "synthetic", ("bump",), train_x, zeros(train_x), test_x, zeros(test_x))


def test_beat_pca_passes_for_a_model_that_beats_pca(bumps: Dataset) -> None:
    def oracle(train_x: Tensor, time_budget: float) -> nn.Module:
        return Autoencoder(_Locate(), _Render(), code_size=2)

    trial = try_to_beat_pca(oracle, bumps, time_budget=0.0)
    assert isinstance(trial, BeatPCATrial) and trial.pca_mse > 1e-3
    assert trial.model is trial.learner_model
    assert verdict("ae_beat_pca", oracle)[0] == "passed"


@pytest.mark.parametrize("smoke", ["0", "1"])
def test_beat_pca_fails_for_an_untrained_model(bumps: Dataset, smoke: str,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COURSE_SMOKE", smoke)              # smoke mode relaxes the target ...
    def untrained(train_x: Tensor, time_budget: float) -> nn.Module:
        return ConvAutoencoder(2, width=4, hidden=16)

    try_to_beat_pca(untrained, bumps, time_budget=0.0)
    status, text = verdict("ae_beat_pca", untrained)       # ... but not that far
    assert status == "failed" and "not below PCA" in text, text


def test_beat_pca_stub_is_not_done_and_the_notebook_gets_a_model(bumps: Dataset) -> None:
    trial = try_to_beat_pca(stub, bumps, time_budget=0.0)  # trains the reference for 1 step
    assert isinstance(trial.model, nn.Module) and trial.learner_model is None
    assert verdict("ae_beat_pca", stub)[0] == "not done"


@pytest.mark.parametrize("train_fn, status, message", [
    (lambda x, t: Autoencoder(_Locate(), nn.Sequential(nn.Linear(2, 784), nn.Sigmoid(),
                                                       nn.Unflatten(1, (1, 28, 28))), 2),
     "failed", "not below PCA"),
    (lambda x, t: ConvAutoencoder(3, width=4, hidden=16), "failed", "(B, 2)"),
    (lambda x, t: "a model", "failed", "nn.Module"),
    (lambda x, t: nn.Linear(2, 2), "failed", "encode"),
    (lambda x, t: 1 / 0, "error", "ZeroDivisionError"),
])
def test_beat_pca_mistakes(bumps: Dataset, train_fn, status: str, message: str) -> None:
    try_to_beat_pca(train_fn, bumps, time_budget=0.0)
    got, text = verdict("ae_beat_pca", train_fn)
    assert got == status and message in text, text


def test_beat_pca_needs_the_function_to_have_been_run(bumps: Dataset) -> None:
    def train(train_x: Tensor, time_budget: float) -> nn.Module:
        return Autoencoder(_Locate(), _Render(), code_size=2)

    status, text = verdict("ae_beat_pca", train)
    assert status == "failed" and "try_to_beat_pca" in text
    try_to_beat_pca(train, bumps, time_budget=0.0)
    assert verdict("ae_beat_pca", train)[0] == "passed"

    def train(train_x: Tensor, time_budget: float) -> nn.Module:  # noqa: F811 - redefined
        return Autoencoder(_Locate(), _Render(), code_size=2)

    assert verdict("ae_beat_pca", train)[0] == "failed"    # a new function needs a new run
    assert verdict("ae_beat_pca", "not a function")[0] == "failed"
