"""Autoencoders for 28x28 grayscale images: an MLP one and a convolutional one.

An autoencoder squeezes an image ``x`` of shape (B, 1, 28, 28) through a *code* ``z`` of shape
(B, k) and rebuilds it::

    z = encoder(x)          # (B, k)          k = code_size, e.g. 2, 10 or 32
    x_hat = decoder(z)      # (B, 1, 28, 28)  pixels in [0, 1] (the decoder ends in a sigmoid)

:class:`Autoencoder` wraps any encoder/decoder pair and checks the shapes that go in and come
out, so a mistake is reported where it happens with the expected shape in the message.
:class:`MLPAutoencoder` and :class:`ConvAutoencoder` build the two pairs used in chapter 1.

The loss functions for :func:`course_utils.training.fit` live here too:
:func:`reconstruction_loss` (squared error summed over the pixels of an image, averaged over
the batch), :func:`autoencoder_loss` and :func:`denoising_loss`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from ..utils import batched, evaluating

__all__ = ["IMAGE_SHAPE", "Autoencoder", "MLPAutoencoder", "ConvAutoencoder",
           "mlp_encoder_decoder", "conv_encoder_decoder", "check_images",
           "reconstruction_loss", "autoencoder_loss", "denoising_loss", "add_noise",
           "encode_images", "decode_codes", "reconstruct"]

IMAGE_SHAPE: tuple[int, int, int] = (1, 28, 28)
_PIXELS = 28 * 28


def check_images(x: Tensor, name: str = "x") -> None:
    """Raise ``ValueError`` unless ``x`` is a float tensor of shape (B, 1, 28, 28).

    The message names the expected shape and the usual fix.
    """
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (B, 1, 28, 28), "
                        f"got {type(x).__name__}.")
    if x.ndim != 4 or tuple(x.shape[1:]) != IMAGE_SHAPE:
        hint = ""
        if x.ndim == 3 and tuple(x.shape[1:]) == (28, 28):
            hint = " Add the channel dimension with x.unsqueeze(1)."
        elif x.ndim == 2 and x.shape[1] == _PIXELS:
            hint = " Reshape flat images with x.view(-1, 1, 28, 28)."
        elif x.ndim == 3 and tuple(x.shape) == IMAGE_SHAPE:
            hint = " Add the batch dimension with x.unsqueeze(0)."
        raise ValueError(f"{name} must have shape (B, 1, 28, 28), got {tuple(x.shape)}.{hint}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must hold floats in [0, 1], got dtype {x.dtype}; "
                        "use x.float() / 255 for raw bytes.")


def _check_codes(z: Tensor, code_size: int, name: str = "z") -> None:
    """Raise ``ValueError`` unless ``z`` has shape (B, code_size)."""
    if not isinstance(z, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (B, {code_size}), "
                        f"got {type(z).__name__}.")
    if z.ndim != 2 or z.shape[1] != code_size:
        hint = " Add the batch dimension with z.unsqueeze(0)." if tuple(z.shape) == (code_size,) \
            else ""
        raise ValueError(f"{name} must have shape (B, {code_size}) for code_size={code_size}, "
                         f"got {tuple(z.shape)}.{hint}")


class Autoencoder(nn.Module):
    """An encoder/decoder pair with shape checks: ``x (B,1,28,28) -> z (B,k) -> x_hat``.

    Args:
        encoder: maps (B, 1, 28, 28) images to (B, code_size) codes.
        decoder: maps (B, code_size) codes to (B, 1, 28, 28) images in [0, 1].
        code_size: k, the number of numbers in the code.

    Attributes:
        input_shape: (1, 28, 28); :func:`course_utils.training.fit` checks data against it.
    """

    input_shape: tuple[int, int, int] = IMAGE_SHAPE

    def __init__(self, encoder: nn.Module, decoder: nn.Module, code_size: int) -> None:
        super().__init__()
        if int(code_size) < 1:
            raise ValueError(f"code_size must be a positive integer, got {code_size}.")
        self.encoder = encoder
        self.decoder = decoder
        self.code_size = int(code_size)

    def encode(self, x: Tensor) -> Tensor:
        """Images (B, 1, 28, 28) in [0, 1] -> codes (B, k)."""
        check_images(x)
        z = self.encoder(x)                                   # (B, k)
        if tuple(z.shape) != (x.shape[0], self.code_size):
            raise RuntimeError(f"the encoder returned shape {tuple(z.shape)}, expected "
                               f"(B, {self.code_size}) = ({x.shape[0]}, {self.code_size}); "
                               "check its last layer.")
        return z

    def decode(self, z: Tensor) -> Tensor:
        """Codes (B, k) -> images (B, 1, 28, 28) with pixels in [0, 1]."""
        _check_codes(z, self.code_size)
        x_hat = self.decoder(z)                               # (B, 1, 28, 28)
        if tuple(x_hat.shape) != (z.shape[0], *IMAGE_SHAPE):
            raise RuntimeError(f"the decoder returned shape {tuple(x_hat.shape)}, expected "
                               f"({z.shape[0]}, 1, 28, 28); check its last layers.")
        return x_hat

    def forward(self, x: Tensor) -> Tensor:
        """Reconstruct images: (B, 1, 28, 28) -> (B, 1, 28, 28) in [0, 1]."""
        return self.decode(self.encode(x))

    def extra_repr(self) -> str:
        return f"code_size={self.code_size}"


def mlp_encoder_decoder(code_size: int, hidden: tuple[int, int] = (512, 128)
                        ) -> tuple[nn.Sequential, nn.Sequential]:
    """The MLP encoder and decoder: 784 -> h1 -> h2 -> k and back, ReLU in between.

    Args:
        code_size: k, the size of the code.
        hidden: widths (h1, h2) of the two hidden layers; the decoder mirrors them.
    """
    h1, h2 = hidden
    encoder = nn.Sequential(
        nn.Flatten(),                                  # (B, 784)
        nn.Linear(_PIXELS, h1), nn.ReLU(),             # (B, h1)
        nn.Linear(h1, h2), nn.ReLU(),                  # (B, h2)
        nn.Linear(h2, code_size),                      # (B, k)  no activation: codes are free
    )
    decoder = nn.Sequential(
        nn.Linear(code_size, h2), nn.ReLU(),           # (B, h2)
        nn.Linear(h2, h1), nn.ReLU(),                  # (B, h1)
        nn.Linear(h1, _PIXELS), nn.Sigmoid(),          # (B, 784) in [0, 1]
        nn.Unflatten(1, IMAGE_SHAPE),                  # (B, 1, 28, 28)
    )
    return encoder, decoder


def conv_encoder_decoder(code_size: int, width: int = 16, hidden: int = 256
                         ) -> tuple[nn.Sequential, nn.Sequential]:
    """The convolutional encoder and decoder.

    Two stride-2 convolutions halve the image twice (28 -> 14 -> 7); a small MLP head maps the
    (2w, 7, 7) feature map to the code. The decoder mirrors it with transposed convolutions.
    BatchNorm after each convolution makes training faster and less sensitive to the
    learning rate.

    Args:
        code_size: k, the size of the code.
        width: channels of the first convolution (w); the second has 2w.
        hidden: width of the fully connected layer between the feature map and the code.
    """
    w = width
    encoder = nn.Sequential(
        nn.Conv2d(1, w, 4, stride=2, padding=1),                # (B, w, 14, 14)
        nn.BatchNorm2d(w), nn.ReLU(),
        nn.Conv2d(w, 2 * w, 4, stride=2, padding=1),            # (B, 2w, 7, 7)
        nn.BatchNorm2d(2 * w), nn.ReLU(),
        nn.Flatten(),                                           # (B, 2w*49)
        nn.Linear(2 * w * 49, hidden), nn.ReLU(),               # (B, hidden)
        nn.Linear(hidden, code_size),                           # (B, k)
    )
    decoder = nn.Sequential(
        nn.Linear(code_size, hidden), nn.ReLU(),                # (B, hidden)
        nn.Linear(hidden, 2 * w * 49), nn.ReLU(),               # (B, 2w*49)
        nn.Unflatten(1, (2 * w, 7, 7)),                         # (B, 2w, 7, 7)
        nn.ConvTranspose2d(2 * w, w, 4, stride=2, padding=1),   # (B, w, 14, 14)
        nn.BatchNorm2d(w), nn.ReLU(),
        nn.ConvTranspose2d(w, 1, 4, stride=2, padding=1),       # (B, 1, 28, 28)
        nn.Sigmoid(),                                           # pixels in [0, 1]
    )
    return encoder, decoder


class MLPAutoencoder(Autoencoder):
    """Fully connected autoencoder 784 -> 512 -> 128 -> k -> 128 -> 512 -> 784.

    >>> model = MLPAutoencoder(code_size=2)
    >>> model.encode(torch.rand(5, 1, 28, 28)).shape
    torch.Size([5, 2])
    """

    def __init__(self, code_size: int = 32, hidden: tuple[int, int] = (512, 128)) -> None:
        super().__init__(*mlp_encoder_decoder(code_size, hidden), code_size=code_size)


class ConvAutoencoder(Autoencoder):
    """Convolutional autoencoder: two stride-2 convolutions, an MLP head, and their mirror.

    >>> model = ConvAutoencoder(code_size=10, width=16)
    >>> model(torch.rand(3, 1, 28, 28)).shape
    torch.Size([3, 1, 28, 28])
    """

    def __init__(self, code_size: int = 32, width: int = 16, hidden: int = 256) -> None:
        super().__init__(*conv_encoder_decoder(code_size, width, hidden), code_size=code_size)


# ----------------------------------------------------------------------------- inference

def _batched_eval(model: nn.Module, method: str, inputs: Tensor, batch_size: int) -> Tensor:
    """Apply ``model.<method>`` in eval mode and without gradients, batch by batch, on the
    model's device; return the results on the CPU. The model's train/eval mode is restored."""
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    with evaluating(model):
        return batched(getattr(model, method), inputs, batch_size, device=device)


def encode_images(model: nn.Module, x: Tensor, batch_size: int = 1000) -> Tensor:
    """Codes (N, k) of images (N, 1, 28, 28), computed in eval mode without gradients."""
    return _batched_eval(model, "encode", x, batch_size)


def decode_codes(model: nn.Module, z: Tensor, batch_size: int = 1000) -> Tensor:
    """Images (N, 1, 28, 28) decoded from codes (N, k), in eval mode without gradients."""
    return _batched_eval(model, "decode", z, batch_size)


def reconstruct(model: nn.Module, x: Tensor, batch_size: int = 1000) -> Tensor:
    """Reconstructions ``model(x)`` of images (N, 1, 28, 28), in eval mode without gradients."""
    return _batched_eval(model, "forward", x, batch_size)


# ----------------------------------------------------------------------------- losses

def reconstruction_loss(x_hat: Tensor, x: Tensor) -> Tensor:
    """Squared error summed over the pixels of each image, averaged over the batch.

    .. math:: L = \\frac{1}{B} \\sum_{i=1}^{B} \\sum_{j} (\\hat x_{ij} - x_{ij})^2

    Dividing by the number of pixels (784) gives the per-pixel MSE that the course reports.

    Args:
        x_hat: reconstructions, shape (B, ...).
        x: targets, same shape.

    Returns:
        A scalar tensor.
    """
    if x_hat.shape != x.shape:
        raise ValueError(f"x_hat and x must have the same shape, got {tuple(x_hat.shape)} "
                         f"and {tuple(x.shape)}.")
    return (x_hat - x).pow(2).flatten(1).sum(dim=1).mean()           # () scalar


def autoencoder_loss(model: nn.Module, batch: tuple[Tensor, ...]) -> dict[str, Tensor]:
    """Loss for :func:`course_utils.training.fit`: reconstruct the first tensor of the batch.

    Returns ``{"loss": squared error per image, "mse": per-pixel MSE}``; only ``loss`` is
    differentiated, ``mse`` is logged (it is the figure to compare with PCA).
    """
    x = batch[0]                                                     # (B, 1, 28, 28)
    x_hat = model(x)                                                 # (B, 1, 28, 28)
    loss = reconstruction_loss(x_hat, x)
    return {"loss": loss, "mse": loss.detach() / x[0].numel()}


def add_noise(x: Tensor, noise_std: float, generator: torch.Generator | None = None) -> Tensor:
    """Add Gaussian noise of standard deviation ``noise_std`` and clip back to [0, 1]."""
    noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    return (x + noise_std * noise).clamp(0.0, 1.0)


def denoising_loss(noise_std: float = 0.3
                   ) -> Callable[[nn.Module, tuple[Tensor, ...]], dict[str, Tensor]]:
    """A loss for a *denoising* autoencoder: corrupt the input, reconstruct the clean image.

    The noise is drawn from PyTorch's global generator, which :func:`~course_utils.training.fit`
    seeds and saves in its checkpoints, so runs are reproducible and resumable.

    In evaluation (``model.training`` is False) the input is corrupted too, so the logged
    test figure measures denoising.
    """
    if noise_std < 0:
        raise ValueError(f"noise_std must be >= 0, got {noise_std}.")

    def loss_fn(model: nn.Module, batch: tuple[Tensor, ...]) -> dict[str, Tensor]:
        x = batch[0]                                                 # (B, 1, 28, 28) clean
        x_noisy = add_noise(x, noise_std)                            # (B, 1, 28, 28) corrupted
        loss = reconstruction_loss(model(x_noisy), x)
        return {"loss": loss, "mse": loss.detach() / x[0].numel()}

    loss_fn.__name__ = f"denoising_loss(noise_std={noise_std})"
    return loss_fn
