"""Checks for notebook 01_autoencoder: the judges (the probes are in :mod:`.ch01_probes`).

Three graded exercises:

* ``ae_encoder_decoder``: ``build_encoder_decoder(code_size) -> (encoder, decoder)``;
  checked for shapes on random input, the output range, gradients reaching both parts, and
  the rules the notebook states: a hidden layer in each part, no activation on the code.
* ``ae_reconstruction_loss``: ``reconstruction_loss(x_hat, x)`` = squared error summed over
  the pixels of each image, averaged over the batch; compared with a reference on random
  inputs, with a specific message for each common mistake.
* ``ae_beat_pca``: ``train_k2_autoencoder(train_x, time_budget) -> model`` must reach a lower
  held-out MSE than PCA with 2 components. Training takes minutes, so the check does not
  train: :func:`try_to_beat_pca` runs the learner's function once and records the model; the
  probe encodes the case's held-out images and decodes the codes (never ``model(x)``, which
  a skip connection around the code could fake), and the judge scores the decoded images
  against its own copy of the test split and its own PCA baseline.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import config
from ..data import load_dataset
from ..metrics import fit_pca
from ..models.autoencoder import mlp_encoder_decoder, reconstruction_loss
from .ch01_probes import (
    BEAT_PCA_K,
    CODE_SIZES,
    DECODE_CHUNKS,
    LOSS_BATCHES,
    BeatPCATrial,
    beat_pca_decode_order,
    beat_pca_eval_indices,
    loss_inputs,
    probe_beat_pca,
    probe_encoder_decoder,
    probe_reconstruction_loss,
    reference_train_k2_autoencoder,
    try_to_beat_pca,
)
from .core import exercise, expect

if TYPE_CHECKING:
    from sklearn.decomposition import PCA
from .probe_data import array, describe, flag, record, records, same, values
from .protocol import Case, sanitise

__all__ = ["BeatPCATrial", "try_to_beat_pca", "reference_train_k2_autoencoder",
           "beat_pca_tolerance"]

# Activations that must not follow the encoder's last layer (a code may be any real number).
_ACTIVATIONS = {"ReLU", "ReLU6", "LeakyReLU", "PReLU", "ELU", "SELU", "CELU", "GELU", "SiLU",
                "Mish", "Sigmoid", "Tanh", "Hardtanh", "Softplus", "Softmax", "Hardsigmoid",
                "Hardswish", "LogSigmoid"}
_FREE_CODE = "activation, so that a code can be any real number (section 2)"


# ----------------------------------------------------------------------------- (a) shapes

def _judge_gradients(rec: dict[str, Any]) -> None:
    """A loss on decoder(encoder(x)) must have sent non-zero gradients to both parts."""
    grads = rec.get("grads")
    expect(isinstance(grads, list) and len(grads) == 2 and all(isinstance(g, list)
                                                               for g in grads),
           "the gradients of the encoder and the decoder could not be computed: "
           f"decoder(encoder(x)) raised {sanitise(str(rec.get('grads_error')), 60)}")
    for part, entries in zip(("encoder", "decoder"), grads, strict=True):
        pairs = [e for e in entries if isinstance(e, list) and len(e) == 2]
        missing = [str(name) for name, g in pairs if g is None]
        expect(not missing, f"no gradient reaches the {part}'s parameters {missing[:3]}: "
               "keep every step in PyTorch (no .detach(), .numpy() or torch.no_grad())")
        expect(any(isinstance(g, float) and g > 0 for _, g in pairs),
               f"the gradients of the {part} are all zero")


def _called(rec: dict[str, Any]) -> dict[str, Any]:
    """A recorded call: the learner's error, if it raised, fails here with its first line."""
    error = rec.get("error")
    expect(error is None, sanitise(str(error)))
    return rec


def _judge_pair(rec: dict[str, Any], k: int) -> None:
    """Shapes, range, distinct outputs and gradients of one (encoder, decoder) pair."""
    counts = rec.get("n_params")
    expect(isinstance(counts, list) and len(counts) == 2
           and all(isinstance(n, int) and n > 0 for n in counts),
           "both parts need learnable layers (nn.Linear ...)")
    z_rec = _called(record(rec, "z"))
    z = values(z_rec)
    expect(z is not None and z.shape == (4, k),
           f"encoder(x) for x of shape (4, 1, 28, 28) must have shape (4, {k}) with "
           f"code_size={k}; got {describe(z_rec)}")
    x_rec = _called(record(rec, "x_hat"))
    x_hat = values(x_rec)
    expect(x_hat is not None and x_hat.shape == (4, 1, 28, 28),
           f"decoder(z) for z of shape (4, {k}) must have shape (4, 1, 28, 28); "
           f"got {describe(x_rec)}")
    expect(bool(np.isfinite(x_hat).all()), "the decoder produced NaN or infinity")
    expect(float(x_hat.min()) >= 0.0 and float(x_hat.max()) <= 1.0,
           f"decoded pixels must lie in [0, 1] whatever the code; got values from "
           f"{float(x_hat.min()):.3g} to {float(x_hat.max()):.3g}")
    expect(not np.allclose(x_hat[0], x_hat[1]),
           "the decoder gives the same image for different codes")
    expect(not np.allclose(z[0], z[1]), "the encoder gives the same code for different images")
    _judge_gradients(rec)


def _judge_structure(data: dict[str, Any]) -> None:
    """The structural rules of section 2: hidden layers, and a free (signed) code."""
    error = data.get("structure_error")
    expect(error is None, sanitise(str(error), 100))
    counts = data.get("weight_matrices")
    expect(isinstance(counts, list) and len(counts) == 2
           and all(isinstance(n, int) for n in counts), "the layers could not be counted")
    for part, n in zip(("encoder", "decoder"), counts, strict=True):
        expect(n >= 2, f"the {part} has {n} layer(s) with a weight matrix: the exercise asks "
               f"for at least one hidden layer in each part, so the {part} needs two or more")
    called = data.get("called")
    last = called[-1] if isinstance(called, list) and called else None
    expect(last not in _ACTIVATIONS, f"the encoder ends with {sanitise(str(last), 60)}: "
                                     f"its last layer must have no {_FREE_CODE}")
    codes = [values(r) for r in records(data, "fresh_codes", 3)]
    expect(any(c is not None and bool((c < 0).any()) for c in codes),
           "the codes are never negative: the encoder's last layer must have no "
           f"{_FREE_CODE}")


@exercise("ae_encoder_decoder", points=2, reference=mlp_encoder_decoder,
          hint="Reread section 2 and the exercise's list of rules: the message above names the "
               "rule that failed (shapes, hidden layers, a code free to take any real value, "
               "decoded pixels in the data's range, or gradients reaching both parts).",
          probe=probe_encoder_decoder)
def _judge_encoder_decoder(data: dict[str, Any], case: Case) -> None:
    pairs = records(data, "pairs", len(CODE_SIZES))
    for rec, k in zip(pairs, CODE_SIZES, strict=True):
        _judge_pair(rec, k)
    _judge_structure(data)


# ----------------------------------------------------------------------------- (b) loss

def _judge_loss_value(value: float, diff: np.ndarray, batch: int) -> None:
    """The loss value against the reference, naming the common mistakes."""
    reference = (diff ** 2).reshape(batch, -1).sum(1).mean()

    def close(target: float) -> bool:
        return abs(value - target) <= 1e-6 + 1e-4 * abs(target)

    if close(reference):
        return
    expect(not close((diff ** 2).mean()),
           "this is the mean over pixels too (784 times too small): sum over the "
           "pixels of each image, then average over the images")
    expect(not close((diff ** 2).sum()), f"this sums over the batch as well ({batch} times too "
                                         "large): divide by the number of images")
    expect(not close(np.abs(diff).reshape(batch, -1).sum(1).mean()),
           "this is the absolute error: square the differences instead")
    expect(not close(float(np.sqrt(reference))),
           "do not take a square root: the loss is the squared error itself")
    expect(False, f"got {value:.4f} for a batch of {batch} random images, "
           f"expected {reference:.4f}")


@exercise("ae_reconstruction_loss", points=2, reference=reconstruction_loss,
          hint="Reread the definition of the loss in section 1: over which dimensions is the "
               "squared error added up, and over which is it averaged? The message compares "
               "the size of your value with the expected one. Every step must be a PyTorch "
               "operation on x_hat, so that gradients flow.", probe=probe_reconstruction_loss)
def _judge_reconstruction_loss(data: dict[str, Any], case: Case) -> None:
    for rec, batch in zip(records(data, "runs", len(LOSS_BATCHES)), LOSS_BATCHES, strict=True):
        x, x_hat = (t.numpy().astype(np.float64) for t in loss_inputs(case, batch))
        expect(same(array(rec, "x_after"), x) and same(array(rec, "x_hat_after"), x_hat),
               "do not change x or x_hat in place")
        out = record(rec, "out")
        value = values(out)
        expect(value is not None, f"return a torch.Tensor, not {describe(out)}: "
               "avoid .item(), float() and NumPy so that gradients can flow")
        expect(value.ndim == 0, f"return one number for the whole batch (a 0-d tensor), got "
               f"shape {tuple(value.shape)}: average the per-image sums over the batch")
        diff = x_hat - x
        _judge_loss_value(float(value), diff, batch)
        expect(flag(out, "requires_grad"), "the loss does not depend on x_hat through PyTorch "
               "operations (did you detach it?), so no gradient can reach the model")
        grad = array(rec, "grad")
        expect(grad is not None and grad.shape == diff.shape
               and bool(np.allclose(grad, 2 * diff / batch, rtol=1e-5, atol=1e-6)),
               "the gradient with respect to x_hat is not that of the squared error")


# ----------------------------------------------------------------------------- (c) beat PCA

def beat_pca_tolerance() -> float:
    """How close to PCA the held-out MSE must come: below PCA in full mode; in smoke mode
    (a few seconds of training on 2,048 images) within 1.5x of PCA, which an untrained model
    (about 4x PCA) or the mean image (about 2x PCA) still misses."""
    return config.pick(smoke=1.5, full=1.0)


@lru_cache(maxsize=4)
def _judge_dataset(k: int, smoke: bool) -> tuple[np.ndarray, PCA]:
    """The judge's own test split (N, 784) and a PCA with k components fitted on the training
    split, loaded once per process (``smoke`` keys the cache: it changes the subsets)."""
    ds = load_dataset(allow_fallback=True)
    test = ds.test_x.reshape(len(ds.test_x), -1).numpy().astype(np.float32)
    return test, fit_pca(ds.train_x, k)


def _judge_decoding(data: dict[str, Any], n: int) -> np.ndarray:
    """The decoded images (n, 1, 28, 28), checked for shape, range and for depending on the
    codes alone (the same images whether decoded in one call, in chunks or one by one)."""
    codes = record(data, "codes")
    z = values(codes)
    expect(z is not None and z.shape == (n, BEAT_PCA_K),
           f"model.encode(x) must give codes of shape (B, {BEAT_PCA_K}) for this exercise, "
           f"got {describe(codes)}")
    decoded = record(data, "decoded")
    x_hat = values(decoded)
    expect(x_hat is not None and x_hat.shape == (n, 1, 28, 28),
           f"model.decode(z) must give images of shape (B, 1, 28, 28), got {describe(decoded)}")
    expect(bool(np.isfinite(x_hat).all()) and float(x_hat.min()) >= 0
           and float(x_hat.max()) <= 1, "decoded pixels must lie in [0, 1]")
    chunks = [values(r) for r in records(data, "chunks", DECODE_CHUNKS)]
    singles = [values(r) for r in records(data, "singles", min(8, n))]
    parts = np.array_split(x_hat, DECODE_CHUNKS) + [x_hat[i:i + 1] for i in range(len(singles))]
    expect(all(got is not None and got.shape == want.shape
               and bool(np.allclose(got, want, rtol=1e-5, atol=1e-4))
               for got, want in zip(chunks + singles, parts, strict=True)),
           "model.decode(z) must depend on the codes z alone: decoding a few codes on their "
           "own gave other images than decoding them in a batch (does decode reuse something "
           "that encode stored?)")
    expect(float(x_hat.std(0).max()) > 1e-6,
           "model.decode gives the same image whatever the code: it must decode the code")
    return x_hat


@exercise("ae_beat_pca", points=3, reference=reference_train_k2_autoencoder,
          reveal="What made the difference in section 3: convolutions share their weights over "
                 "the image, so they learn from fewer steps, and a one-cycle schedule spends "
                 "the time budget at a high learning rate before settling.",
          hint="Section 3 compared models and training setups at the same time budget: reuse "
               "what it showed, hand the whole time budget to the training loop, and return "
               "the trained model. The score is the held-out error of decode(encode(x)).",
          probe=probe_beat_pca)
def _judge_beat_pca(data: dict[str, Any], case: Case) -> None:
    pool, pca = _judge_dataset(BEAT_PCA_K, config.is_smoke())
    expect(data.get("pool_size") == len(pool),
           f"the check scores on the course's test split ({len(pool)} images here), but "
           f"try_to_beat_pca was given a data set with {data.get('pool_size')!r} test images: "
           "pass the notebook's ds, loaded with load_dataset(allow_fallback=True)")
    x = pool[beat_pca_eval_indices(case, len(pool)).numpy()]                  # (n, 784)
    x_hat = _judge_decoding(data, len(x)).reshape(len(x), -1)
    shuffled = x[beat_pca_decode_order(case, len(x)).numpy()]
    mse = float(np.mean((x_hat - shuffled) ** 2))
    pca_mse = float(np.mean((pca.inverse_transform(pca.transform(x)) - x) ** 2))
    tolerance = beat_pca_tolerance()
    relaxed = f" ({tolerance:g} x PCA in smoke mode)" if tolerance != 1.0 else ""
    expect(mse < tolerance * pca_mse,
           f"held-out MSE per pixel of decode(encode(x)) {mse:.4f} is not below PCA's "
           f"{pca_mse:.4f}{relaxed}: train longer, use a faster-learning setup, or check "
           "that you return the trained model")

