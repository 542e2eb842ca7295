"""Wrong and right-but-unusual answers to chapter 01's exercises.

* ``ae_encoder_decoder``: ``build_encoder_decoder(code_size) -> (encoder, decoder)``.
* ``ae_reconstruction_loss``: squared error summed over each image's pixels, batch mean.
* ``ae_beat_pca``: ``train_k2_autoencoder(train_x, time_budget) -> model``. Each factory
  runs :func:`try_to_beat_pca` on the course's data set (the judge scores on its own copy of
  it), then returns the function. Right answers that need no training stand in for a
  trained model: a vector-quantised code (the index of the nearest of 2,048 training images)
  reconstructs held-out images better than PCA with 2 components.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from course_utils import config
from course_utils.checks.ch01_autoencoder import try_to_beat_pca
from course_utils.data import Dataset, load_dataset
from course_utils.models.autoencoder import (
    Autoencoder,
    ConvAutoencoder,
    conv_encoder_decoder,
    mlp_encoder_decoder,
)

Factory = Callable[[], Any]


# ----------------------------------------------------------------------------- encoder/decoder

def _no_sigmoid(k: int) -> tuple[nn.Module, nn.Module]:
    """The decoder's last layer is left without its squashing step: pixels escape [0, 1]."""
    enc = nn.Sequential(nn.Flatten(), nn.Linear(784, 64), nn.ReLU(), nn.Linear(64, k))
    dec = nn.Sequential(nn.Linear(k, 64), nn.ReLU(), nn.Linear(64, 784),
                        nn.Unflatten(1, (1, 28, 28)))
    return enc, dec


def _relu_out(k: int) -> tuple[nn.Module, nn.Module]:
    """ReLU instead of sigmoid at the decoder's end: pixels above 1."""
    enc, dec = mlp_encoder_decoder(k)
    dec[5] = nn.ReLU()
    return enc, dec


def _tanh_out(k: int) -> tuple[nn.Module, nn.Module]:
    """tanh (the GAN's choice) at the decoder's end: pixels in [-1, 1]."""
    enc, dec = mlp_encoder_decoder(k)
    dec[5] = nn.Tanh()
    return enc, dec


def _relu_on_code(k: int) -> tuple[nn.Module, nn.Module]:
    """'Linear then ReLU' copied down to the last encoder layer: codes cannot be negative."""
    enc, dec = mlp_encoder_decoder(k)
    return nn.Sequential(*enc, nn.ReLU()), dec


def _sigmoid_on_code(k: int) -> tuple[nn.Module, nn.Module]:
    """A sigmoid on the code as on the pixels: codes squeezed into (0, 1)."""
    enc, dec = mlp_encoder_decoder(k)
    return nn.Sequential(*enc, nn.Sigmoid()), dec


class _FunctionalReluEncoder(nn.Module):
    """A hand-written encoder whose forward ends in F.relu (no module for a hook to see)."""

    def __init__(self, k: int) -> None:
        super().__init__()
        self.hidden, self.out = nn.Linear(784, 128), nn.Linear(128, k)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.out(F.relu(self.hidden(x.flatten(1)))))


def _functional_relu_code(k: int) -> tuple[nn.Module, nn.Module]:
    return _FunctionalReluEncoder(k), mlp_encoder_decoder(k)[1]


def _no_hidden_layer(k: int) -> tuple[nn.Module, nn.Module]:
    """One Linear each way: a linear encoder, no hidden layer (what PCA already does)."""
    enc = nn.Sequential(nn.Flatten(), nn.Linear(784, k))
    return enc, nn.Sequential(nn.Linear(k, 784), nn.Sigmoid(), nn.Unflatten(1, (1, 28, 28)))


def _no_hidden_decoder(k: int) -> tuple[nn.Module, nn.Module]:
    """A hidden layer in the encoder only."""
    enc = mlp_encoder_decoder(k)[0]
    return enc, nn.Sequential(nn.Linear(k, 784), nn.Sigmoid(), nn.Unflatten(1, (1, 28, 28)))


def _fixed_code_size(k: int) -> tuple[nn.Module, nn.Module]:
    """The argument is ignored: always a 2-number code."""
    return mlp_encoder_decoder(2)


def _flat_decoder(k: int) -> tuple[nn.Module, nn.Module]:
    """The decoder forgets to reshape its 784 numbers into an image."""
    enc, dec = mlp_encoder_decoder(k)
    return enc, dec[:-1]


class _Frozen(nn.Module):
    """An encoder that detaches its output 'to save memory': no gradient reaches it."""

    def __init__(self, k: int) -> None:
        super().__init__()
        self.net = mlp_encoder_decoder(k)[0]

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x).detach()


def _swapped(k: int) -> tuple[nn.Module, nn.Module]:
    """The pair returned in the wrong order."""
    enc, dec = mlp_encoder_decoder(k)
    return dec, enc


def _one_model(k: int) -> nn.Module:
    """The whole autoencoder returned instead of its two parts."""
    return Autoencoder(*mlp_encoder_decoder(k), code_size=k)


# ----------------------------------------------------------------------------- loss

def _ref(x_hat: Tensor, x: Tensor) -> Tensor:
    return ((x_hat - x) ** 2).sum(dim=(1, 2, 3)).mean()


# ----------------------------------------------------------------------------- beat PCA

@lru_cache(maxsize=2)
def _course_data(smoke: bool) -> Dataset:
    """The course's data set, as the notebook loads it (read-only; ``smoke`` keys the cache)."""
    return load_dataset(allow_fallback=True)


def course_data() -> Dataset:
    """The data set the ``ae_beat_pca`` judge scores on, in the current mode."""
    return _course_data(config.is_smoke())


class _Nearest(nn.Module):
    """Encoder of a vector-quantised code: the index of the nearest codebook image, and 0."""

    def __init__(self, book: Tensor) -> None:
        super().__init__()
        self.register_buffer("book", book.flatten(1).clone())                 # (M, 784)

    def forward(self, x: Tensor) -> Tensor:
        index = torch.cdist(x.flatten(1), self.book).argmin(1).float()        # (B,)
        return torch.stack([index, torch.zeros_like(index)], dim=1)           # (B, 2)


class _Lookup(nn.Module):
    """Decoder of that code: the codebook image whose index the code's first number holds."""

    def __init__(self, book: Tensor) -> None:
        super().__init__()
        self.register_buffer("book", book.clone())                            # (M, 1, 28, 28)
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, z: Tensor) -> Tensor:
        index = z[:, 0].round().long().clamp(0, len(self.book) - 1)
        return (self.scale * self.book[index]).clamp(0, 1)                    # (B, 1, 28, 28)


def codebook_autoencoder(train_x: Tensor) -> Autoencoder:
    """A right answer that needs no training: each image is coded by the index of its
    nearest neighbour among the first 2,048 training images (a vector-quantised
    autoencoder), which reconstructs held-out Fashion-MNIST images better than PCA with 2
    components."""
    book = train_x[:2048]
    return Autoencoder(_Nearest(book), _Lookup(book), code_size=2)


class _CentreOfMass(nn.Module):
    """A 2-number code without training: the centre of mass (row, column) of the image."""

    def forward(self, x: Tensor) -> Tensor:
        grid = torch.arange(28.0)
        mass = x.sum(dim=(1, 2, 3)).clamp_min(1e-6)
        y = (x.sum(dim=(1, 3)) * grid).sum(1) / mass
        return torch.stack([y, (x.sum(dim=(1, 2)) * grid).sum(1) / mass], dim=1)


class _SkipForward(Autoencoder):
    """forward adds the input back around the 2-number code (a 'residual' autoencoder); its
    real decode(encode(x)) is an untrained network."""

    def forward(self, x: Tensor) -> Tensor:
        return (0.1 * self.decode(self.encode(x)) + 0.9 * x).clamp(0, 1)


class _IdentityForward(Autoencoder):
    """An untrained model whose forward returns its input."""

    def forward(self, x: Tensor) -> Tensor:
        return x


class _StashingDecoder(Autoencoder):
    """decode ignores z and returns what encode was last given."""

    def encode(self, x: Tensor) -> Tensor:
        self._seen = x
        return super().encode(x)

    def decode(self, z: Tensor) -> Tensor:
        return self._seen + 0 * z.sum()


class _MeanImage(nn.Module):
    """decode returns one learned image (the data's mean) whatever the code."""

    def __init__(self, mean: Tensor) -> None:
        super().__init__()
        self.mean = nn.Parameter(mean.clone())

    def encode(self, x: Tensor) -> Tensor:
        return x.flatten(1)[:, :2]

    def decode(self, z: Tensor) -> Tensor:
        return self.mean.expand(len(z), 1, 28, 28) + 0 * z.sum()


class _EncodeDecodeOnly(nn.Module):
    """A plain module (not an Autoencoder) with encode/decode and no forward at all."""

    def __init__(self, train_x: Tensor) -> None:
        super().__init__()
        self.nearest, self.lookup = _Nearest(train_x[:2048]), _Lookup(train_x[:2048])

    def encode(self, x: Tensor) -> Tensor:
        return self.nearest(x)

    def decode(self, z: Tensor) -> Tensor:
        return self.lookup(z)


def _untrained_conv() -> Autoencoder:
    return ConvAutoencoder(2, width=4, hidden=16)


def _trial(make_model: Callable[[Tensor], Any]) -> Factory:
    """A factory: a training function returning ``make_model(train_x)``, already run once."""
    def factory() -> Callable[[Tensor, float], Any]:
        def train_k2_autoencoder(train_x: Tensor, time_budget: float) -> Any:
            return make_model(train_x)
        try_to_beat_pca(train_k2_autoencoder, course_data(), time_budget=0.0)
        return train_k2_autoencoder
    return factory


def _stub_trial() -> Callable[[Tensor, float], Any]:
    def train_k2_autoencoder(train_x: Tensor, time_budget: float) -> Any:
        raise NotImplementedError("ae_beat_pca")
    try_to_beat_pca(train_k2_autoencoder, course_data(), time_budget=0.0)
    return train_k2_autoencoder


def _trained_mlp_without_sigmoid(train_x: Tensor) -> Autoencoder:
    return Autoencoder(_CentreOfMass(), nn.Sequential(nn.Linear(2, 784),
                                                nn.Unflatten(1, (1, 28, 28))), 2)


WRONG: dict[str, list[tuple[str, Factory]]] = {
    "ae_encoder_decoder": [
        ("decoder_without_sigmoid", lambda: _no_sigmoid),
        ("decoder_ends_in_relu", lambda: _relu_out),
        ("decoder_ends_in_tanh", lambda: _tanh_out),
        ("relu_on_the_code", lambda: _relu_on_code),
        ("sigmoid_on_the_code", lambda: _sigmoid_on_code),
        ("functional_relu_on_the_code", lambda: _functional_relu_code),
        ("no_hidden_layers", lambda: _no_hidden_layer),
        ("no_hidden_layer_in_decoder", lambda: _no_hidden_decoder),
        ("ignores_code_size", lambda: _fixed_code_size),
        ("decoder_not_reshaped", lambda: _flat_decoder),
        ("encoder_output_detached", lambda: lambda k: (_Frozen(k), mlp_encoder_decoder(k)[1])),
        ("pair_swapped", lambda: _swapped),
        ("one_module_not_a_pair", lambda: _one_model),
    ],
    "ae_reconstruction_loss": [
        ("mse_loss_default_mean", lambda: lambda x_hat, x: F.mse_loss(x_hat, x)),
        ("sum_over_channel_only", lambda: lambda x_hat, x: ((x_hat - x) ** 2).sum(dim=1).mean()),
        ("sum_over_batch_too", lambda: lambda x_hat, x: ((x_hat - x) ** 2).sum()),
        ("mse_loss_sum_not_divided",
         lambda: lambda x_hat, x: F.mse_loss(x_hat, x, reduction="sum")),
        ("absolute_error", lambda: lambda x_hat, x: (x_hat - x).abs().sum(dim=(1, 2, 3)).mean()),
        ("per_image_not_averaged", lambda: lambda x_hat, x: ((x_hat - x) ** 2).sum(dim=(1, 2, 3))),
        ("item_breaks_the_graph", lambda: lambda x_hat, x: _ref(x_hat, x).item()),
        ("x_hat_detached", lambda: lambda x_hat, x: _ref(x_hat.detach(), x)),
        ("square_root_norm", lambda: lambda x_hat, x: torch.norm(x_hat - x)),
        ("rmse_per_batch", lambda: lambda x_hat, x: _ref(x_hat, x).sqrt()),
        ("not_squared", lambda: lambda x_hat, x: (x_hat - x).sum(dim=(1, 2, 3)).mean()),
        ("modifies_x_in_place", lambda: lambda x_hat, x: _ref(x_hat, x.sub_(0.1))),
        ("bce_instead_of_squared_error",
         lambda: lambda x_hat, x: F.binary_cross_entropy(x_hat, x, reduction="sum") / len(x)),
    ],
    "ae_beat_pca": [
        ("forward_skip_around_code",
         _trial(lambda t: _SkipForward(*conv_encoder_decoder(2, 4, 16), code_size=2))),
        ("untrained_forward_returns_input",
         _trial(lambda t: _IdentityForward(*conv_encoder_decoder(2, 4, 16), code_size=2))),
        ("decode_reuses_encode_input",
         _trial(lambda t: _StashingDecoder(*conv_encoder_decoder(2, 4, 16), code_size=2))),
        ("returns_untrained_model", _trial(lambda t: _untrained_conv())),
        ("decoder_ignores_code", _trial(lambda t: _MeanImage(t.mean(0)))),
        ("decoder_without_sigmoid", _trial(_trained_mlp_without_sigmoid)),
        ("code_size_3", _trial(lambda t: ConvAutoencoder(3, width=4, hidden=16))),
        ("forgot_return", _trial(lambda t: None)),
        ("returns_history_dict", _trial(lambda t: {"train_loss": [0.1]})),
        ("returns_encoder_only", _trial(lambda t: codebook_autoencoder(t).encoder)),
    ],
}

RIGHT: dict[str, list[tuple[str, Factory]]] = {
    "ae_encoder_decoder": [
        ("conv_encoder_decoder", lambda: conv_encoder_decoder),
        ("two_hidden_layers", lambda: mlp_encoder_decoder),
        ("leaky_relu_hidden", lambda: lambda k: (
            nn.Sequential(nn.Flatten(), nn.Linear(784, 64), nn.LeakyReLU(0.1), nn.Linear(64, k)),
            nn.Sequential(nn.Linear(k, 64), nn.LeakyReLU(0.1), nn.Linear(64, 784), nn.Sigmoid(),
                          nn.Unflatten(1, (1, 28, 28))))),
        ("custom_modules_functional", lambda: lambda k: (_FunctionalEncoder(k),
                                                         _FunctionalDecoder(k))),
        ("tanh_hidden", lambda: lambda k: (
            nn.Sequential(nn.Flatten(), nn.Linear(784, 32), nn.Tanh(), nn.Linear(32, k)),
            nn.Sequential(nn.Linear(k, 32), nn.Tanh(), nn.Linear(32, 784), nn.Sigmoid(),
                          nn.Unflatten(1, (1, 28, 28))))),
    ],
    "ae_reconstruction_loss": [
        ("mse_loss_sum_over_batch_size",
         lambda: lambda x_hat, x: F.mse_loss(x_hat, x, reduction="sum") / x.shape[0]),
        ("mse_loss_times_pixels", lambda: lambda x_hat, x: F.mse_loss(x_hat, x) * 784),
        ("batch_mean_then_pixel_sum", lambda: lambda x_hat, x: ((x_hat - x) ** 2).mean(0).sum()),
        ("view_then_sum", lambda: lambda x_hat, x: (x - x_hat).pow(2).view(len(x), -1).sum(1)
         .mean()),
        ("none_reduction",
         lambda: lambda x_hat, x: F.mse_loss(x_hat, x, reduction="none").sum((1, 2, 3)).mean()),
        ("torch_sum_divided", lambda: lambda x_hat, x: torch.sum((x_hat - x) ** 2) / x.size(0)),
    ],
    "ae_beat_pca": [
        ("nearest_training_image_code", _trial(codebook_autoencoder)),
        ("module_without_forward", _trial(_EncodeDecodeOnly)),
        ("left_in_train_mode", _trial(lambda t: codebook_autoencoder(t).train())),
    ],
}

CRASHES: set[tuple[str, str]] = set()

REFERENCE: dict[str, Factory] = {
    # The real reference trains for minutes on Fashion-MNIST (the solution notebook proves it);
    # here a model that beats PCA without training stands in for it.
    "ae_beat_pca": _trial(codebook_autoencoder),
}

STUB: dict[str, Factory] = {"ae_beat_pca": _stub_trial}


class _FunctionalEncoder(nn.Module):
    """A hand-written encoder using functional ReLU and .view."""

    def __init__(self, k: int) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(784, 100), nn.Linear(100, k)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(F.relu(self.fc1(x.view(x.shape[0], -1))))     # (B, k)


class _FunctionalDecoder(nn.Module):
    """A hand-written decoder: torch.sigmoid and .view back to images."""

    def __init__(self, k: int) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(k, 100), nn.Linear(100, 784)

    def forward(self, z: Tensor) -> Tensor:
        return torch.sigmoid(self.fc2(F.relu(self.fc1(z)))).view(-1, 1, 28, 28)
