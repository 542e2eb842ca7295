"""Checks for notebook 01_autoencoder.

Three graded exercises:

* ``ae_encoder_decoder``: ``build_encoder_decoder(code_size) -> (encoder, decoder)``;
  checked for shapes on random input, the output range, and gradients reaching both parts.
* ``ae_reconstruction_loss``: ``reconstruction_loss(x_hat, x)`` = squared error summed over
  the pixels of each image, averaged over the batch; compared with a reference on random
  inputs, with a specific message for each common mistake.
* ``ae_beat_pca``: ``train_k2_autoencoder(train_x, time_budget) -> model`` must reach a lower
  held-out MSE than PCA with 2 components. Training takes minutes, so the check does not
  train: :func:`try_to_beat_pca` runs the learner's function once (in the notebook cell that
  also calls ``check``) and records, under that very function object, the trained model and
  the PCA figure on the same held-out images. ``check("ae_beat_pca", train_k2_autoencoder)``
  then looks the record up and scores the model in well under a second. Redefining the
  function makes a new object, so its old record no longer counts: train again.
"""

from __future__ import annotations

import time
import weakref
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .. import config
from ..data import Dataset
from ..metrics import pca_baseline, reconstruction_mse
from ..training import fit, preserve_rng
from ..models.autoencoder import (ConvAutoencoder, autoencoder_loss, mlp_encoder_decoder,
                                  reconstruction_loss)
from .core import exercise, expect

__all__ = ["BeatPCATrial", "try_to_beat_pca", "reference_train_k2_autoencoder",
           "beat_pca_tolerance"]


# ----------------------------------------------------------------------------- (a) shapes

def _shape(t: object) -> object:
    return tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__


@exercise("ae_encoder_decoder", points=2, reference=mlp_encoder_decoder,
          hint="Flatten the image, then Linear layers with ReLU between them down to code_size "
               "numbers; the decoder goes back up to 784 numbers, squashes them into [0, 1], "
               "and reshapes to (B, 1, 28, 28) (nn.Unflatten).")
def _check_encoder_decoder(build) -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(4, 1, 28, 28, generator=gen)                       # (B, 1, 28, 28)
    for k in (2, 5):
        with preserve_rng(seed=k):                                    # seeded, no side effect
            parts = build(k)
        expect(isinstance(parts, (tuple, list)) and len(parts) == 2,
               f"return a pair (encoder, decoder), got {type(parts).__name__}")
        encoder, decoder = parts
        expect(isinstance(encoder, nn.Module) and isinstance(decoder, nn.Module),
               "the encoder and the decoder must both be nn.Module objects (e.g. nn.Sequential)")
        expect(any(True for _ in encoder.parameters()) and any(True for _ in decoder.parameters()),
               "both parts need learnable layers (nn.Linear ...)")
        z = encoder(x)
        expect(isinstance(z, Tensor) and tuple(z.shape) == (4, k),
               f"encoder(x) for x of shape (4, 1, 28, 28) must have shape (4, {k}) with "
               f"code_size={k}; got {_shape(z)}")
        codes = torch.randn(4, k, generator=gen) * 10                # large codes, on purpose
        x_hat = decoder(codes)
        expect(isinstance(x_hat, Tensor) and tuple(x_hat.shape) == (4, 1, 28, 28),
               f"decoder(z) for z of shape (4, {k}) must have shape (4, 1, 28, 28); "
               f"got {_shape(x_hat)}")
        expect(bool(torch.isfinite(x_hat).all()), "the decoder produced NaN or infinity")
        x_hat = x_hat.detach()
        expect(float(x_hat.min()) >= 0.0 and float(x_hat.max()) <= 1.0,
               f"decoded pixels must lie in [0, 1] whatever the code; got values from "
               f"{float(x_hat.min()):.3g} to {float(x_hat.max()):.3g}")
        expect(not torch.allclose(x_hat[0], x_hat[1]),
               "the decoder gives the same image for different codes")
        expect(not torch.allclose(z[0], z[1]), "the encoder gives the same code for different "
               "images")
        encoder.zero_grad(set_to_none=True)
        decoder.zero_grad(set_to_none=True)
        ((decoder(encoder(x)) - x) ** 2).sum().backward()
        for part, module in (("encoder", encoder), ("decoder", decoder)):
            missing = [name for name, p in module.named_parameters()
                       if p.requires_grad and p.grad is None]
            expect(not missing, f"no gradient reaches the {part}'s parameters {missing[:3]}: "
                   "keep every step in PyTorch (no .detach(), .numpy() or torch.no_grad())")
            expect(any(p.grad is not None and float(p.grad.abs().sum()) > 0
                       for p in module.parameters()),
                   f"the gradients of the {part} are all zero")


# ----------------------------------------------------------------------------- (b) loss

@exercise("ae_reconstruction_loss", points=2, reference=reconstruction_loss,
          hint="For each image, add up the squared differences over all its pixels; then take "
               "the mean of those per-image sums over the batch. Stay in PyTorch so that "
               "gradients flow.")
def _check_reconstruction_loss(loss_fn) -> None:
    gen = torch.Generator().manual_seed(1)
    for batch in (3, 5):
        x = torch.rand(batch, 1, 28, 28, generator=gen)                # (B, 1, 28, 28)
        x_hat = torch.rand(batch, 1, 28, 28, generator=gen).requires_grad_(True)
        x_before, x_hat_before = x.clone(), x_hat.detach().clone()
        out = loss_fn(x_hat, x)
        expect(torch.equal(x, x_before) and torch.equal(x_hat.detach(), x_hat_before),
               "do not change x or x_hat in place")
        expect(isinstance(out, Tensor), f"return a torch.Tensor, not {type(out).__name__}: "
               "avoid .item(), float() and NumPy so that gradients can flow")
        expect(out.ndim == 0, f"return one number for the whole batch (a 0-d tensor), got shape "
               f"{tuple(out.shape)}: average the per-image sums over the batch")
        diff = x_hat.detach() - x
        reference = diff.pow(2).flatten(1).sum(1).mean()
        value = out.detach().double()
        close = lambda target: bool(torch.isclose(value, target.double(), rtol=1e-4, atol=1e-6))  # noqa: E731
        if not close(reference):
            expect(not close(diff.pow(2).mean()),
                   "this is the mean over pixels too (784 times too small): sum over the "
                   "pixels of each image, then average over the images")
            expect(not close(diff.pow(2).sum()),
                   f"this sums over the batch as well ({batch} times too large): divide by "
                   "the number of images")
            expect(not close(diff.abs().flatten(1).sum(1).mean()),
                   "this is the absolute error: square the differences instead")
            expect(not close(diff.pow(2).flatten(1).sum(1).mean().sqrt()),
                   "do not take a square root: the loss is the squared error itself")
            expect(False, f"got {float(value):.4f} for a batch of {batch} random images, "
                   f"expected {float(reference):.4f}")
        expect(out.requires_grad, "the loss does not depend on x_hat through PyTorch operations "
               "(did you detach it?), so no gradient can reach the model")
        out.backward()
        expect(x_hat.grad is not None and torch.allclose(x_hat.grad, 2 * diff / batch, atol=1e-6),
               "the gradient with respect to x_hat is not that of the squared error")


# ----------------------------------------------------------------------------- (c) beat PCA

def reference_train_k2_autoencoder(train_x: Tensor, time_budget: float) -> nn.Module:
    """Reference solution of ``ae_beat_pca``: a small conv autoencoder, one-cycle schedule."""
    config.seed_everything(0)
    model = ConvAutoencoder(code_size=2)
    fit(model, autoencoder_loss, (train_x,), lr=3e-3, lr_schedule="onecycle",
        epochs=config.pick(smoke=4, full=None), time_budget=time_budget, batch_size=128,
        desc="reference k=2 autoencoder")
    return model


def beat_pca_tolerance() -> float:
    """How close to PCA the held-out MSE must come: below PCA in full mode; in smoke mode
    (a few seconds of training on 2,048 images) within 1.5x of PCA, which an untrained model
    (about 4x PCA) or the mean image (about 2x PCA) still misses."""
    return config.pick(smoke=1.5, full=1.0)


@dataclass
class BeatPCATrial:
    """The outcome of running a learner's training function once, ready for a fast check.

    Attributes:
        learner_model: what the learner's function returned (None if it raised).
        error: the exception it raised, if any.
        model: the model the notebook continues with: the learner's when there is one,
            otherwise one trained by the reference solution.
        eval_x: held-out images the check scores on (the first images of the test split).
        pca_mse: MSE per pixel on ``eval_x`` of a PCA with ``code_size`` components fitted on
            the training split.
        code_size: the code size the exercise asks for (2).
        seconds: how long the learner's function ran.
    """

    learner_model: object
    error: BaseException | None
    model: nn.Module
    eval_x: Tensor
    pca_mse: float
    code_size: int
    seconds: float

    def __repr__(self) -> str:
        state = "raised " + type(self.error).__name__ if self.error else \
            f"returned a {type(self.learner_model).__name__}"
        return (f"BeatPCATrial(your function {state} after {self.seconds:.0f} s; "
                f"PCA k={self.code_size} held-out MSE {self.pca_mse:.4f} on {len(self.eval_x)} "
                "test images)")


# Trials recorded by try_to_beat_pca, keyed by the learner's function object.
_TRIALS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def try_to_beat_pca(train_fn, ds: Dataset, *, time_budget: float, code_size: int = 2,
                    n_eval: int | None = None) -> BeatPCATrial:
    """Run ``train_fn(ds.train_x, time_budget)`` once and record it for the ``ae_beat_pca`` check.

    The PCA baseline is fitted on the training split and scored on the same held-out images
    as the model. If the function is not written yet (or crashes), the reference solution is
    trained instead, so the rest of the notebook has a model to work with; the check still
    reports the learner's outcome.
    """
    n_eval = n_eval or config.pick(smoke=512, full=2000)
    eval_x = ds.test_x[:n_eval]
    pca_mse = pca_baseline(ds.train_x, eval_x, code_size)
    start = time.perf_counter()
    error: BaseException | None = None
    learner_model: object = None
    try:
        learner_model = train_fn(ds.train_x, time_budget)
    except Exception as exc:  # noqa: BLE001 - reported by the check, with the learner's line
        error = exc
    seconds = time.perf_counter() - start
    if error is None and isinstance(learner_model, nn.Module):
        model = learner_model
    else:
        why = "is not written yet" if isinstance(error, NotImplementedError) else \
            f"raised {type(error).__name__}" if error else "did not return an nn.Module"
        print(f"Your training function {why}: training the reference solution instead "
              f"({time_budget:.0f} s) so that the notebook can continue.")
        model = reference_train_k2_autoencoder(ds.train_x, time_budget)
    trial = BeatPCATrial(learner_model, error, model, eval_x, pca_mse, code_size, seconds)
    _TRIALS[train_fn] = trial
    return trial


@exercise("ae_beat_pca", points=3, reference=reference_train_k2_autoencoder,
          hint="Use ConvAutoencoder(code_size=2) and course_utils.training.fit with the "
               "time_budget you are given; a higher learning rate with a decaying schedule "
               "(lr_schedule='onecycle' or 'cosine') gets further in the same time.")
def _check_beat_pca(train_fn) -> None:
    expect(callable(train_fn), "pass your training function itself: "
           "check('ae_beat_pca', train_k2_autoencoder)")
    trial = _TRIALS.get(train_fn)
    expect(trial is not None, "this function has not been run yet: the check scores the model "
           "it trained, so run try_to_beat_pca(train_k2_autoencoder, ds, time_budget=...) first "
           "(again after every change to the function)")
    if trial.error is not None:
        raise trial.error                       # NotImplementedError -> "not done yet"
    model = trial.learner_model
    expect(isinstance(model, nn.Module),
           f"train_k2_autoencoder must return the trained nn.Module, got {type(model).__name__}")
    expect(callable(getattr(model, "encode", None)) and callable(getattr(model, "decode", None)),
           "the model needs encode(x) and decode(z) methods (ConvAutoencoder and "
           "MLPAutoencoder have them)")
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    k = trial.code_size
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            x = trial.eval_x[:16].to(device)                               # (16, 1, 28, 28)
            z = model.encode(x)
            expect(isinstance(z, Tensor) and tuple(z.shape) == (16, k),
                   f"model.encode(x) must give codes of shape (B, {k}) for this exercise, got "
                   f"{_shape(z)}")
            x_hat = model.decode(z)
            expect(isinstance(x_hat, Tensor) and tuple(x_hat.shape) == (16, 1, 28, 28),
                   f"model.decode(z) must give images of shape (B, 1, 28, 28), got "
                   f"{_shape(x_hat)}")
            expect(float(x_hat.min()) >= 0 and float(x_hat.max()) <= 1,
                   "decoded pixels must lie in [0, 1]")
    finally:
        model.train(was_training)
    mse = reconstruction_mse(model, trial.eval_x)
    tolerance = beat_pca_tolerance()
    target = tolerance * trial.pca_mse
    relaxed = f" ({tolerance:g} x PCA in smoke mode)" if tolerance != 1.0 else ""
    expect(mse < target,
           f"held-out MSE per pixel {mse:.4f} is not below PCA's {trial.pca_mse:.4f}{relaxed}: "
           "train longer, use a faster-learning setup, or check that you return the trained "
           "model")
