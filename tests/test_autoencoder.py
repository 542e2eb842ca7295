"""Autoencoder models and losses (course_utils.models.autoencoder): shapes, ranges, errors,
learning, and the reconstruction loss."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from course_utils.models.autoencoder import (
    Autoencoder,
    ConvAutoencoder,
    MLPAutoencoder,
    add_noise,
    autoencoder_loss,
    denoising_loss,
    reconstruction_loss,
)
from course_utils.training import fit


def small_models(k: int) -> list[Autoencoder]:
    return [MLPAutoencoder(k, hidden=(64, 32)), ConvAutoencoder(k, width=4, hidden=32)]


@pytest.mark.parametrize("k", [2, 7])
def test_shapes_and_output_range(k: int) -> None:
    torch.manual_seed(0)
    x = torch.rand(5, 1, 28, 28)
    for model in small_models(k):
        z = model.encode(x)
        assert z.shape == (5, k)
        x_hat = model.decode(torch.randn(3, k) * 50)        # extreme codes still give pixels
        assert x_hat.shape == (3, 1, 28, 28)
        assert 0.0 <= x_hat.min() and x_hat.max() <= 1.0
        assert model(x).shape == x.shape
        assert model.code_size == k


@pytest.mark.parametrize("bad", [(5, 28, 28), (5, 784), (1, 28, 28), (5, 3, 28, 28),
                                 (5, 1, 32, 32)])
def test_wrong_image_shape_names_the_expected_shape(bad: tuple[int, ...]) -> None:
    for model in small_models(2):
        with pytest.raises(ValueError, match=r"\(B, 1, 28, 28\)"):
            model(torch.rand(*bad))


def test_wrong_code_shape_names_the_expected_shape() -> None:
    model = MLPAutoencoder(3, hidden=(16, 8))
    with pytest.raises(ValueError, match=r"\(B, 3\)"):
        model.decode(torch.randn(4, 2))
    with pytest.raises(ValueError, match=r"unsqueeze\(0\)"):
        model.decode(torch.randn(3))


def test_integer_images_are_rejected_with_a_fix() -> None:
    with pytest.raises(TypeError, match="255"):
        MLPAutoencoder(2, hidden=(16, 8))(torch.zeros(2, 1, 28, 28, dtype=torch.uint8))


def test_wrapper_reports_a_badly_built_encoder_or_decoder() -> None:
    encoder = nn.Sequential(nn.Flatten(), nn.Linear(784, 5))            # (B, 5), not (B, 2)
    decoder = nn.Sequential(nn.Linear(2, 784), nn.Sigmoid(), nn.Unflatten(1, (1, 28, 28)))
    with pytest.raises(RuntimeError, match=r"\(B, 2\)"):
        Autoencoder(encoder, decoder, code_size=2).encode(torch.rand(2, 1, 28, 28))
    flat_decoder = nn.Sequential(nn.Linear(2, 784), nn.Sigmoid())       # forgot to unflatten
    good_encoder = nn.Sequential(nn.Flatten(), nn.Linear(784, 2))
    with pytest.raises(RuntimeError, match=r"\(4, 1, 28, 28\)"):
        Autoencoder(good_encoder, flat_decoder, code_size=2).decode(torch.randn(4, 2))


def test_gradients_reach_every_parameter() -> None:
    torch.manual_seed(0)
    for model in small_models(2):
        reconstruction_loss(model(torch.rand(4, 1, 28, 28)), torch.rand(4, 1, 28, 28)).backward()
        for name, p in model.named_parameters():
            assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_reconstruction_loss_sums_pixels_and_averages_images() -> None:
    gen = torch.Generator().manual_seed(1)
    x_hat, x = torch.rand(3, 1, 28, 28, generator=gen), torch.rand(3, 1, 28, 28, generator=gen)
    expected = sum(((x_hat[i] - x[i]) ** 2).sum() for i in range(3)) / 3
    assert torch.allclose(reconstruction_loss(x_hat, x), expected)
    # it is 784 times the per-pixel MSE, and the batch size does not scale it
    assert torch.allclose(reconstruction_loss(x_hat, x), 784 * ((x_hat - x) ** 2).mean())
    doubled = reconstruction_loss(torch.cat([x_hat, x_hat]), torch.cat([x, x]))
    assert torch.allclose(doubled, reconstruction_loss(x_hat, x))
    with pytest.raises(ValueError, match="same shape"):
        reconstruction_loss(x_hat, x[:2])


def test_autoencoder_loss_logs_the_per_pixel_mse() -> None:
    torch.manual_seed(0)
    model = MLPAutoencoder(2, hidden=(16, 8))
    x = torch.rand(6, 1, 28, 28)
    out = autoencoder_loss(model, (x,))
    assert torch.allclose(out["mse"], ((model(x) - x) ** 2).mean())
    assert out["loss"].requires_grad and not out["mse"].requires_grad


def test_model_overfits_a_tiny_batch() -> None:
    torch.manual_seed(0)
    x = torch.rand(8, 1, 28, 1) * torch.rand(8, 1, 1, 28)   # 8 simple (rank-1) images
    for model in small_models(4):
        history = fit(model, autoencoder_loss, (x,), epochs=25, batch_size=8, lr=1e-2,
                      progress=False, device="cpu").history
        first, last = history["train_loss"][0], history["train_loss"][-1]
        assert last < 0.5 * first, (type(model).__name__, first, last)


def test_denoising_loss_corrupts_the_input_but_scores_the_clean_image() -> None:
    x = torch.rand(4, 1, 28, 28)
    identity = nn.Identity()                                         # copies its input
    assert denoising_loss(0.0)(identity, (x,))["loss"] == 0           # no noise: perfect
    torch.manual_seed(3)
    noisy_loss = denoising_loss(0.5)(identity, (x,))["loss"]
    assert noisy_loss > 1.0                                          # copying the noise costs
    torch.manual_seed(3)
    assert denoising_loss(0.5)(identity, (x,))["loss"] == noisy_loss  # seeded -> repeatable
    with pytest.raises(ValueError):
        denoising_loss(-0.1)


def test_add_noise_stays_in_range() -> None:
    noisy = add_noise(torch.rand(3, 1, 28, 28), 2.0, torch.Generator().manual_seed(0))
    assert noisy.min() >= 0 and noisy.max() <= 1


def test_batched_inference_helpers_match_the_model_and_restore_its_mode() -> None:
    from course_utils.models.autoencoder import decode_codes, encode_images, reconstruct

    torch.manual_seed(0)
    model = ConvAutoencoder(3, width=4, hidden=16).train()
    x = torch.rand(7, 1, 28, 28)
    z = encode_images(model, x, batch_size=3)
    assert z.shape == (7, 3) and not z.requires_grad and model.training
    model.eval()
    with torch.no_grad():
        assert torch.allclose(z, model.encode(x), atol=1e-6)
        assert torch.allclose(decode_codes(model, z, batch_size=2), model.decode(z), atol=1e-6)
        assert torch.allclose(reconstruct(model, x, batch_size=4), model(x), atol=1e-6)
