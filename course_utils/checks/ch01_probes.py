"""Kernel side of chapter 01's checks: the probes, the inputs both halves rebuild from a case,
and the ``ae_beat_pca`` trial record.

Each probe calls the learner's object on inputs built from a :class:`~.protocol.Case` and
returns plain data; the judges in :mod:`.ch01_autoencoder` decide. ``ae_beat_pca`` does not
train inside the check: :func:`try_to_beat_pca` runs the learner's training function once
(in the notebook cell that also calls ``check``) and records, under that very function object,
the trained model and the notebook's test images. The probe looks the record up, encodes the
case's held-out images and decodes their codes in a shuffled order, in chunks and one by one;
the judge scores that against its own copy of the images and its own PCA.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from .. import config
from ..data import Dataset
from ..models.autoencoder import ConvAutoencoder, autoencoder_loss
from ..training import fit, preserve_rng
from ..utils import evaluating
from .core import CheckFailure, expect
from .probe_data import case_seed, tensor_record
from .protocol import Case

CODE_SIZES = (2, 5)          # code sizes ae_encoder_decoder builds
LOSS_BATCHES = (3, 5)        # batch sizes ae_reconstruction_loss is called with
BEAT_PCA_K = 2               # the code size ae_beat_pca asks for
DECODE_CHUNKS = 3            # ae_beat_pca decodes the shuffled codes in this many calls ...
DECODE_SINGLES = 8           # ... and this many codes one at a time


def _call(what: str, fn: Callable[..., object], *args: object) -> object:
    """Call the learner's module; turn a PyTorch shape/type error into a check failure."""
    try:
        return fn(*args)
    except (RuntimeError, TypeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckFailure(f"{what} raised {type(exc).__name__}: {first}") from exc


def _attempt(what: str, fn: Callable[..., object], *args: object) -> tuple[object, dict]:
    """Call the learner's module and record its output, or the PyTorch shape/type error it
    raised (the judge reports it in order, after the checks that come before it)."""
    try:
        out = fn(*args)
    except (RuntimeError, TypeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return None, {"error": f"{what} raised {type(exc).__name__}: {first}"}
    return out, tensor_record(out)


# ----------------------------------------------------------------------------- (a) shapes

def encoder_inputs(case: Case) -> tuple[Tensor, dict[int, Tensor], Tensor]:
    """Images (4, 1, 28, 28), large codes {k: (4, k)} and images (16, 1, 28, 28) for a case."""
    gen = case.generator(10)
    x = torch.rand(4, 1, 28, 28, generator=gen)
    codes = {k: torch.randn(4, k, generator=gen) * 10 for k in CODE_SIZES}
    return x, codes, torch.rand(16, 1, 28, 28, generator=gen)


def _leaf_modules_called(module: nn.Module, x: Tensor) -> list[str]:
    """Type names of the leaf modules that run when ``module(x)`` is computed, in order."""
    order: list[str] = []
    hooks = [m.register_forward_hook(lambda mod, _i, _o: order.append(type(mod).__name__))
             for m in module.modules() if not any(True for _ in m.children())]
    try:
        with torch.no_grad():
            module(x)
    finally:
        for h in hooks:
            h.remove()
    return order[-200:]


def _gradients(encoder: nn.Module, decoder: nn.Module, x: Tensor) -> list[list[list[Any]]]:
    """Per part, [name, |grad| summed or None] for each trainable parameter after a
    backward pass of a squared error on decoder(encoder(x))."""
    encoder.zero_grad(set_to_none=True)
    decoder.zero_grad(set_to_none=True)
    ((decoder(encoder(x)) - x) ** 2).sum().backward()
    return [[[name[:60], None if p.grad is None else float(p.grad.abs().sum())]
             for name, p in module.named_parameters() if p.requires_grad]
            for module in (encoder, decoder)]


def _probe_pair(build: Callable[[int], Any], k: int, x: Tensor, codes: Tensor,
                seed: int) -> dict[str, Any]:
    with preserve_rng(seed=seed):
        parts = build(k)
    expect(isinstance(parts, (tuple, list)) and len(parts) == 2,
           f"return a pair (encoder, decoder), got {type(parts).__name__}")
    encoder, decoder = parts
    expect(isinstance(encoder, nn.Module) and isinstance(decoder, nn.Module),
           "the encoder and the decoder must both be nn.Module objects (e.g. nn.Sequential)")
    rec: dict[str, Any] = {"n_params": [sum(1 for _ in m.parameters())
                                        for m in (encoder, decoder)]}
    rec["z"] = _attempt("encoder(x) for x of shape (4, 1, 28, 28)", encoder, x)[1]
    rec["x_hat"] = _attempt(f"decoder(z) for z of shape (4, {k})", decoder, codes)[1]
    try:                                   # shape errors here were reported by the judge above
        rec["grads"] = _gradients(encoder, decoder, x)
    except Exception as exc:
        rec["grads_error"] = type(exc).__name__[:60]
    return rec


def _probe_structure(build: Callable[[int], Any], x16: Tensor, case: Case) -> dict[str, Any]:
    """Weight-matrix counts, the leaf modules the encoder runs, and codes of fresh builds."""
    with preserve_rng(seed=case_seed(case, 5)):
        encoder, decoder = build(5)
    data: dict[str, Any] = {"weight_matrices": [sum(p.ndim >= 2 for p in m.parameters())
                                                for m in (encoder, decoder)]}
    data["called"] = _leaf_modules_called(encoder, x16)
    fresh = []
    for offset in (11, 12, 13):                    # codes of three fresh builds
        with preserve_rng(seed=case_seed(case, offset)), torch.no_grad():
            fresh.append(_attempt("encoder(x)", build(5)[0], x16)[1])
    data["fresh_codes"] = fresh
    return data


def probe_encoder_decoder(build: Callable[[int], Any], case: Case) -> dict[str, Any]:
    """Build the pair for each code size and record shapes, values, gradients and structure."""
    x, codes, x16 = encoder_inputs(case)
    with preserve_rng(seed=case_seed(case, 0)):
        data: dict[str, Any] = {"pairs": [_probe_pair(build, k, x, codes[k], case_seed(case, k))
                                          for k in CODE_SIZES]}
        try:
            data.update(_probe_structure(build, x16, case))
        except (RuntimeError, TypeError, ValueError) as exc:   # judged after the pairs
            data["structure_error"] = f"encoder(x) raised {type(exc).__name__}"
    return data


# ----------------------------------------------------------------------------- (b) loss

def loss_inputs(case: Case, batch: int) -> tuple[Tensor, Tensor]:
    """Images x and reconstructions x_hat, both (batch, 1, 28, 28) in [0, 1], for a case."""
    gen = case.generator(20 + batch)
    return torch.rand(batch, 1, 28, 28, generator=gen), torch.rand(batch, 1, 28, 28,
                                                                   generator=gen)


def probe_reconstruction_loss(loss_fn: Callable[[Tensor, Tensor], Any],
                              case: Case) -> dict[str, Any]:
    """Call the loss for each batch size; record the value, both inputs after the call and
    the gradient with respect to x_hat."""
    runs = []
    for batch in LOSS_BATCHES:
        x, x_hat = loss_inputs(case, batch)
        x_hat.requires_grad_(True)
        out = loss_fn(x_hat, x)
        rec = {"out": tensor_record(out), "x_after": x.detach().clone(),
               "x_hat_after": x_hat.detach().clone(), "grad": None}
        if isinstance(out, Tensor) and out.ndim == 0 and out.requires_grad:
            out.backward()
            rec["grad"] = None if x_hat.grad is None else x_hat.grad.detach().double()
        runs.append(rec)
    return {"runs": runs}


# ----------------------------------------------------------------------------- (c) beat PCA

def reference_train_k2_autoencoder(train_x: Tensor, time_budget: float) -> nn.Module:
    """Reference solution of ``ae_beat_pca``: a small conv autoencoder, one-cycle schedule."""
    config.seed_everything(0)
    model = ConvAutoencoder(code_size=2)
    fit(model, autoencoder_loss, (train_x,), lr=3e-3, lr_schedule="onecycle",
        epochs=config.pick(smoke=4, full=None), time_budget=time_budget, batch_size=128,
        desc="reference k=2 autoencoder")
    return model


@dataclass
class BeatPCATrial:
    """The outcome of running a learner's training function once, ready for a fast check.

    Attributes:
        learner_model: what the learner's function returned (None if it raised).
        error: the exception it raised, if any.
        model: the model the notebook continues with: the learner's when there is one,
            otherwise one trained by the reference solution.
        test_x: the notebook's test split (N, 1, 28, 28); the check scores on some of it.
        seconds: how long the learner's function ran.
    """

    learner_model: object
    error: BaseException | None
    model: nn.Module
    test_x: Tensor
    seconds: float

    def __repr__(self) -> str:
        state = "raised " + type(self.error).__name__ if self.error else \
            f"returned a {type(self.learner_model).__name__}"
        return f"BeatPCATrial(your function {state} after {self.seconds:.0f} s)"


# Trials recorded by try_to_beat_pca, keyed by the learner's function object.
_TRIALS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def try_to_beat_pca(train_fn: Callable[[Tensor, float], Any], ds: Dataset, *,
                    time_budget: float) -> BeatPCATrial:
    """Run ``train_fn(ds.train_x, time_budget)`` once and record it for the ``ae_beat_pca`` check.

    The check then scores the returned model's ``decode(encode(x))`` on held-out images of
    ``ds``'s test split against PCA with 2 components fitted on the training split. If the
    function is not written yet (or crashes), the reference solution is trained instead, so
    the rest of the notebook has a model to work with; the check still reports the learner's
    outcome.
    """
    start = time.perf_counter()
    error: BaseException | None = None
    learner_model: object = None
    try:
        learner_model = train_fn(ds.train_x, time_budget)
    except Exception as exc:
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
    trial = BeatPCATrial(learner_model, error, model, ds.test_x, seconds)
    _TRIALS[train_fn] = trial
    return trial


def beat_pca_eval_indices(case: Case, pool: int) -> Tensor:
    """Which test images a case scores: the first ones for the public case, a seeded random
    subset (at most half of the split, so that it differs from the public set) otherwise."""
    n = min(config.pick(smoke=512, full=1000), pool)        # keeps the check under a second
    if not case.hidden:
        return torch.arange(n)
    return torch.randperm(pool, generator=case.generator(30))[:min(n, max(pool // 2, 1))]


def beat_pca_decode_order(case: Case, n: int) -> Tensor:
    """The shuffled order in which the probe decodes the n codes."""
    return torch.randperm(n, generator=case.generator(31))


def _encode_decode(model: nn.Module, x: Tensor, case: Case) -> dict[str, Any]:
    """Codes of x, and the decoded shuffled codes: in one call, in chunks, one by one.

    A forward pass with a skip connection around the code, or a decode that reuses what
    encode saw, would score without the code carrying the image; decoding shuffled codes in
    separate calls exposes both.
    """
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    z = _call("model.encode(x)", model.encode, x.to(device))
    data: dict[str, Any] = {"codes": tensor_record(z)}
    if not (isinstance(z, Tensor) and z.ndim >= 1 and len(z) == len(x)):
        return data
    z = z[beat_pca_decode_order(case, len(x)).to(device)]
    data["decoded"] = tensor_record(_call("model.decode(z)", model.decode, z), torch.float32)
    data["chunks"] = [tensor_record(_call("model.decode(z)", model.decode, c), torch.float32)
                      for c in z.tensor_split(DECODE_CHUNKS)]
    data["singles"] = [tensor_record(_call("model.decode(z)", model.decode, z[i:i + 1]),
                                     torch.float32) for i in range(min(DECODE_SINGLES, len(z)))]
    return data


def probe_beat_pca(train_fn: Callable[[Tensor, float], Any], case: Case) -> dict[str, Any]:
    """Look up the recorded trial of ``train_fn`` and record its model's codes and decodings
    of the case's held-out images."""
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
    pool = len(trial.test_x)
    x = trial.test_x[beat_pca_eval_indices(case, pool)]                   # (N, 1, 28, 28)
    with evaluating(model), preserve_rng(seed=0):
        return {"pool_size": pool, **_encode_decode(model, x, case)}
