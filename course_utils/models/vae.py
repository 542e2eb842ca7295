"""Variational autoencoders for 28x28 grayscale images (chapter 02).

Two models share one architecture:

* :class:`ConvVAE` - a Gaussian encoder q(z|x) = N(mu(x), diag(exp(logvar(x)))) and a
  Bernoulli decoder p(x|z) whose 784 pixel probabilities are ``sigmoid(logits)``. The decoder
  returns LOGITS, never probabilities: the loss uses ``binary_cross_entropy_with_logits``,
  which is numerically stable where ``log(sigmoid(.))`` is not.
* :class:`ConditionalVAE` - the same, with the class label given as a one-hot vector to the
  encoder and to the decoder, so ``sample(n, labels=...)`` draws images of a chosen class.

The encoder is two stride-2 convolutions (28 -> 14 -> 7), each followed by batch
normalisation, a fully connected layer and a linear layer to (mu, logvar); the decoder mirrors
it with transposed convolutions. ``width`` scales the channels and ``hidden`` is the size of the
fully connected layer on each side of the code (0 = none). The defaults (width 16, hidden 128,
16-D latent, about 0.43 M parameters) are those of the shipped checkpoint: the best of the
configurations measured under a 5-minute CPU budget (see ``benchmarks/bench_vae.py``).

The forward pass draws z with the reparameterisation trick (``course_utils.losses.reparameterize``),
so the same ``forward`` serves training and the test ELBO; use :meth:`ConvVAE.reconstruct` for
a deterministic reconstruction (z = mu).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..losses import reparameterize
from ..utils import batched, evaluating  # evaluating is re-exported (see __all__)

IMAGE_SHAPE = (1, 28, 28)

__all__ = ["ConvVAE", "ConditionalVAE", "IMAGE_SHAPE", "evaluating", "encode_mean",
           "latent_interpolation", "active_units", "samples_per_class"]


def _check_images(x: Tensor, where: str) -> None:
    """Raise a clear error unless ``x`` is a float batch of shape (B, 1, 28, 28)."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{where}: expected a torch.Tensor of images, got {type(x).__name__}")
    if x.dim() != 4 or tuple(x.shape[1:]) != IMAGE_SHAPE:
        hint = (" - add the channel axis with x.unsqueeze(1)" if x.dim() == 3 else
                " - reshape flat vectors with x.view(-1, 1, 28, 28)" if x.dim() == 2 else "")
        raise ValueError(f"{where}: expected images of shape (B, 1, 28, 28), got "
                         f"{tuple(x.shape)}{hint}")
    if not x.is_floating_point():
        raise TypeError(f"{where}: expected float pixels in [0, 1], got dtype {x.dtype}; "
                        "divide uint8 images by 255 first")


class ConvVAE(nn.Module):
    """Convolutional VAE with a diagonal-Gaussian encoder and a Bernoulli-logit decoder.

    Args:
        latent_dim: size of the code z (default 16).
        width: channels of the first convolution; the second has ``2 * width``.
        hidden: units of an extra fully connected layer on each side of the code (0 = none).
        batchnorm: batch normalisation after each hidden convolution (it speeds training up
            markedly: 241.3 against 243.6 nats after 120 CPU seconds, width 16, hidden 256).
        num_classes: 0 for an unconditional VAE; :class:`ConditionalVAE` sets it.
    """

    input_shape = IMAGE_SHAPE  # checked by course_utils.training.fit before training

    def __init__(self, latent_dim: int = 16, width: int = 16, hidden: int = 128,
                 num_classes: int = 0, batchnorm: bool = True) -> None:
        super().__init__()
        if latent_dim < 1 or width < 1 or hidden < 0 or num_classes < 0:
            raise ValueError(f"latent_dim and width must be >= 1, hidden and num_classes >= 0; "
                             f"got latent_dim={latent_dim}, width={width}, hidden={hidden}, "
                             f"num_classes={num_classes}")
        self.latent_dim, self.width, self.hidden = latent_dim, width, hidden
        self.num_classes, self.batchnorm = num_classes, batchnorm
        c1, c2 = width, 2 * width
        self._features = c2 * 7 * 7

        def norm(c: int) -> list[nn.Module]:
            return [nn.BatchNorm2d(c)] if batchnorm else []

        # --- encoder q(z|x): image -> (mu, logvar)
        self.enc_conv = nn.Sequential(
            nn.Conv2d(1, c1, 4, stride=2, padding=1),    # (B, c1, 14, 14)
            *norm(c1), nn.ReLU(),
            nn.Conv2d(c1, c2, 4, stride=2, padding=1),   # (B, c2, 7, 7)
            *norm(c2), nn.ReLU(),
            nn.Flatten(),                                 # (B, c2*49)
        )
        enc_in = self._features + num_classes             # (B, c2*49 [+ K one-hot])
        if hidden:
            self.enc_fc: nn.Module = nn.Sequential(nn.Linear(enc_in, hidden), nn.ReLU())  # (B, H)
            enc_in = hidden
        else:
            self.enc_fc = nn.Identity()
        self.enc_stats = nn.Linear(enc_in, 2 * latent_dim)  # (B, 2*D): mu and logvar side by side
        # --- decoder p(x|z): code -> pixel logits
        dec_in = latent_dim + num_classes                 # (B, D [+ K one-hot])
        if hidden:
            self.dec_fc: nn.Module = nn.Sequential(
                nn.Linear(dec_in, hidden), nn.ReLU(),         # (B, H)
                nn.Linear(hidden, self._features), nn.ReLU())  # (B, c2*49)
        else:
            self.dec_fc = nn.Sequential(nn.Linear(dec_in, self._features), nn.ReLU())  # (B, c2*49)
        self.dec_conv = nn.Sequential(
            nn.Unflatten(1, (c2, 7, 7)),                             # (B, c2, 7, 7)
            nn.ConvTranspose2d(c2, c1, 4, stride=2, padding=1),     # (B, c1, 14, 14)
            *norm(c1), nn.ReLU(),
            nn.ConvTranspose2d(c1, 1, 4, stride=2, padding=1),      # (B, 1, 28, 28) logits
        )
        # A conditional decoder also adds a learned per-class image to the logits: a direct
        # path from the label to every pixel, so the label is used from the first epochs
        # (zero at the start: the model begins as an unconditional decoder).
        self.class_logits: nn.Linear | None = None
        if num_classes:
            self.class_logits = nn.Linear(num_classes, 28 * 28, bias=False)  # (B, 784)
            nn.init.zeros_(self.class_logits.weight)

    # ------------------------------------------------------------------ helpers
    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def config(self) -> dict[str, int]:
        """The constructor arguments, e.g. to save beside a checkpoint."""
        return {"latent_dim": self.latent_dim, "width": self.width, "hidden": self.hidden,
                "num_classes": self.num_classes, "batchnorm": self.batchnorm}

    def _one_hot(self, y: Tensor | None, batch: int, where: str) -> Tensor | None:
        """Labels (B,) -> one-hot (B, K) float, or None for an unconditional model."""
        if self.num_classes == 0:
            if y is not None:
                raise ValueError(f"{where}: this VAE is unconditional; do not pass labels "
                                 "(use ConditionalVAE to condition on the class)")
            return None
        if y is None:
            raise ValueError(f"{where}: a ConditionalVAE needs the class labels y of shape (B,)")
        y = torch.as_tensor(y, device=self.device)
        if y.dim() != 1 or y.shape[0] != batch:
            raise ValueError(f"{where}: expected labels of shape ({batch},), got {tuple(y.shape)}")
        if y.is_floating_point() or y.min() < 0 or y.max() >= self.num_classes:
            raise ValueError(f"{where}: labels must be integers in [0, {self.num_classes - 1}]")
        return F.one_hot(y.long(), self.num_classes).float()       # (B, K)

    # ------------------------------------------------------------------ the model
    def encode(self, x: Tensor, y: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Images (B, 1, 28, 28) -> (mu, logvar), each (B, latent_dim)."""
        _check_images(x, f"{type(self).__name__}.encode")
        h = self.enc_conv(x)                                        # (B, c2*49)
        onehot = self._one_hot(y, x.shape[0], "encode")
        if onehot is not None:
            h = torch.cat([h, onehot], dim=1)                       # (B, c2*49 + K)
        h = self.enc_fc(h)                                          # (B, H)
        mu, logvar = self.enc_stats(h).chunk(2, dim=1)              # (B, D), (B, D)
        return mu, logvar

    def decode(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        """Codes (B, latent_dim) -> pixel LOGITS (B, 1, 28, 28); ``sigmoid`` gives p(x=1|z)."""
        if not isinstance(z, Tensor) or z.dim() != 2 or z.shape[1] != self.latent_dim:
            shape = tuple(z.shape) if isinstance(z, Tensor) else type(z).__name__
            raise ValueError(f"{type(self).__name__}.decode: expected codes of shape "
                             f"(B, {self.latent_dim}), got {shape}")
        onehot = self._one_hot(y, z.shape[0], "decode")
        if onehot is None:
            return self.dec_conv(self.dec_fc(z))                    # (B, 1, 28, 28)
        logits = self.dec_conv(self.dec_fc(torch.cat([z, onehot], dim=1)))  # (B, 1, 28, 28)
        assert self.class_logits is not None
        return logits + self.class_logits(onehot).view(-1, *IMAGE_SHAPE)    # (B, 1, 28, 28)

    def forward(self, x: Tensor, y: Tensor | None = None, *,
                generator: torch.Generator | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """Encode, draw z ~ q(z|x) by reparameterisation, decode.

        Returns:
            (logits (B, 1, 28, 28), mu (B, D), logvar (B, D)).
        """
        mu, logvar = self.encode(x, y)                              # (B, D) each
        z = reparameterize(mu, logvar, generator=generator)         # (B, D)
        return self.decode(z, y), mu, logvar

    def reconstruct(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        """Deterministic reconstruction: decode z = mu (in eval mode). Returns probabilities
        (B, 1, 28, 28)."""
        with evaluating(self):
            mu, _ = self.encode(x, y)
            return torch.sigmoid(self.decode(mu, y))

    def sample(self, n: int, generator: torch.Generator | None = None,
               labels: Tensor | None = None) -> Tensor:
        """Draw ``n`` images from the model: z ~ N(0, I), return sigmoid(decode(z)).

        The result is the decoder's mean image (pixel probabilities in [0, 1]), shape
        (n, 1, 28, 28), which is what one shows; drawing Bernoulli pixels would add salt noise.
        ``generator`` (a CPU ``torch.Generator``) makes the draw reproducible.
        """
        if n < 1:
            raise ValueError(f"sample: n must be at least 1, got {n}")
        z = torch.randn(n, self.latent_dim, generator=generator).to(self.device)  # (n, D)
        with evaluating(self):
            return torch.sigmoid(self.decode(z, labels))            # (n, 1, 28, 28)


class ConditionalVAE(ConvVAE):
    """A VAE conditioned on the class: q(z|x, y) and p(x|z, y), with y one-hot.

    The one-hot label is concatenated to the encoder's features and to the code z; the
    decoder also adds a learned per-class image to its logits (initialised to zero), which
    lets it use the label after a short training instead of relying on z for the class.

    ``forward(x, y)``, ``encode(x, y)``, ``decode(z, y)`` take integer labels (B,);
    ``sample(n, labels=...)`` draws images of the given classes (an int repeats one class).
    """

    def __init__(self, latent_dim: int = 16, num_classes: int = 10, width: int = 16,
                 hidden: int = 128, batchnorm: bool = True) -> None:
        if num_classes < 2:
            raise ValueError(f"ConditionalVAE needs num_classes >= 2, got {num_classes}")
        super().__init__(latent_dim=latent_dim, width=width, hidden=hidden,
                         num_classes=num_classes, batchnorm=batchnorm)

    def forward(self, x: Tensor, y: Tensor | None = None, *,  # type: ignore[override]
                generator: torch.Generator | None = None) -> tuple[Tensor, Tensor, Tensor]:
        if y is None:
            raise ValueError("ConditionalVAE.forward needs the labels: call model(x, y)")
        return super().forward(x, y, generator=generator)

    def sample(self, n: int, generator: torch.Generator | None = None,  # type: ignore[override]
               labels: Tensor | int | Any = None) -> Tensor:
        """``n`` images of the classes in ``labels`` (an int, or a tensor of shape (n,))."""
        if labels is None:
            raise ValueError("ConditionalVAE.sample needs labels=<class index or (n,) tensor>")
        if isinstance(labels, int):
            labels = torch.full((n,), labels, dtype=torch.long)
        return super().sample(n, generator=generator, labels=torch.as_tensor(labels))


# ------------------------------------------------------------------------------ helpers

@torch.no_grad()
def encode_mean(model: ConvVAE, x: Tensor, y: Tensor | None = None,
                batch_size: int = 1000) -> Tensor:
    """The posterior means mu(x) of many images, batched, on the CPU: (N, latent_dim)."""
    _check_images(x, "encode_mean")
    with evaluating(model):
        return batched(lambda xb, yb: model.encode(xb, yb)[0], (x, y), batch_size,
                       device=model.device)                         # (N, D)


@torch.no_grad()
def latent_interpolation(model: ConvVAE, x_start: Tensor, x_end: Tensor, steps: int = 10,
                         y: Tensor | int | None = None) -> Tensor:
    """Decode the straight line between the codes (posterior means) of two images.

    Args:
        x_start, x_end: one image each, shape (1, 28, 28) or (1, 1, 28, 28).
        steps: number of images, both ends included.
        y: the class for a conditional VAE (kept fixed along the line).

    Returns:
        (steps, 1, 28, 28) pixel probabilities.
    """
    if steps < 2:
        raise ValueError(f"steps must be at least 2 (the two ends), got {steps}")
    ends = torch.stack([x_start.reshape(1, 28, 28), x_end.reshape(1, 28, 28)])   # (2, 1, 28, 28)
    labels = None
    if model.num_classes:
        if y is None:
            raise ValueError("a conditional VAE needs the class y to interpolate within")
        labels = torch.full((2,), int(y), dtype=torch.long)
    with evaluating(model):
        mu = model.encode(ends.to(model.device), labels)[0]                      # (2, D)
        t = torch.linspace(0, 1, steps, device=mu.device)[:, None]               # (S, 1)
        z = (1 - t) * mu[0] + t * mu[1]                                          # (S, D)
        line_labels = None if labels is None else labels[:1].expand(steps)
        return torch.sigmoid(model.decode(z, line_labels)).cpu()                 # (S, 1, 28, 28)


@torch.no_grad()
def active_units(model: ConvVAE, x: Tensor, y: Tensor | None = None,
                 threshold: float = 0.01) -> int:
    """How many latent dimensions the encoder uses: Var over images of mu_j(x) > threshold.

    Burda, Grosse and Salakhutdinov (2016) define *active units* this way; an inactive
    dimension has collapsed to the prior (its KL is near zero).
    """
    mu = encode_mean(model, x, y)                                                # (N, D)
    return int((mu.var(dim=0) > threshold).sum())


@torch.no_grad()
def samples_per_class(model: ConditionalVAE, n_per_class: int,
                      generator: torch.Generator | None = None) -> Tensor:
    """``n_per_class`` samples of every class, sharing the same ``n_per_class`` codes z.

    Row k of the result (reshape to (K, n, 1, 28, 28)) is class k; column j uses the same z in
    every row, so what changes down a column is the class and what stays is the "style".

    Returns:
        (K * n_per_class, 1, 28, 28) pixel probabilities, class-major.
    """
    if not model.num_classes:
        raise ValueError("samples_per_class needs a ConditionalVAE")
    k = model.num_classes
    z = torch.randn(n_per_class, model.latent_dim, generator=generator)         # (n, D)
    z = z.repeat(k, 1).to(model.device)                                          # (K*n, D)
    labels = torch.arange(k).repeat_interleave(n_per_class).to(model.device)    # (K*n,)
    with evaluating(model):
        return torch.sigmoid(model.decode(z, labels)).cpu()                      # (K*n, 1, 28, 28)
