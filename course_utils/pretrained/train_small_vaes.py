"""Train the two small VAEs of chapter 02 shipped with the course (``vae2d_fashion.pt``,
``cvae_fashion.pt``).

    python -m course_utils.pretrained.train_small_vaes                 # both: 90 + 150 CPU s
    python -m course_utils.pretrained.train_small_vaes --only cvae --time-budget 10 --out /tmp/v

Chapter 02 trains them in two of its cells; the course ships them so that a full run loads
them instead (``--train``, ``COURSE_TRAIN=1`` or smoke mode still train them there):

* ``vae2d_fashion``: the 2-D VAE of section 8 (the latent map),
  ``ConvVAE(latent_dim=2, width=16, hidden=256, batchnorm=True)``;
* ``cvae_fashion``: the conditional VAE of section 11, also used by chapter 04's comparison
  table, ``ConditionalVAE(latent_dim=16, num_classes=10, width=16, hidden=256,
  batchnorm=True)``.

Both are trained exactly as in the notebook: seed 0, :func:`course_utils.training.fit` with
Adam (lr 3e-3, cosine schedule over the budget, batch 128) on the negative ELBO
(``vae_loss_fn(1.0)``; the CVAE is given the labels), for the notebook's budget of 90 and 150
seconds. For each model the script writes, next to this file:

* ``<name>.pt``: the ``state_dict`` in float16 (the loader turns it back into float32);
* ``<name>.json``: the test BCE + KL of the weights *as shipped* (after the float16 rounding;
  nats per image, grayscale data, so not a log-likelihood; the CVAE's is given the test
  labels), the SHA-256 of the data, the seed, the architecture, the optimiser, the training
  time (on the budget's clock, in CPU and wall seconds) and the per-epoch history.

**The clock.** As for ``train_vae``, the budget counts the *CPU seconds of this process* on
one thread by default (``--clock cpu``), so a machine shared with other jobs slows the run
down but does not shrink the training it gets; ``--clock wall`` counts wall-clock seconds.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .. import config
from ..data import Dataset, load_dataset
from ..losses import vae_loss_fn
from ..models.vae import ConditionalVAE, ConvVAE
from ..training import TrainResult, budget_clock, evaluate, fit
from ..utils import atomic_write, float_state_dict, half_state_dict
from .train_vae import dataset_sha256

HERE = Path(__file__).resolve().parent

# The optimiser of chapter 02's cells 39 and 51 (fit's default batch size, 128).
OPTIM: dict[str, Any] = {"lr": 3e-3, "lr_schedule": "cosine", "batch_size": 128}


@dataclass(frozen=True)
class SmallVAE:
    """One shipped small VAE: file stem, class, constructor kwargs, default budget (seconds)."""

    name: str
    model_class: type[ConvVAE]
    kwargs: dict[str, Any]
    time_budget: float
    where: str

    @property
    def conditional(self) -> bool:
        """Whether the model is given the class labels (a conditional VAE)."""
        return bool(self.kwargs.get("num_classes", 0))


SPECS: dict[str, SmallVAE] = {
    "vae2d": SmallVAE("vae2d_fashion", ConvVAE,
                      {"latent_dim": 2, "width": 16, "hidden": 256, "batchnorm": True},
                      90.0, "chapter 02, section 8 (the 2-D latent map)"),
    "cvae": SmallVAE("cvae_fashion", ConditionalVAE,
                     {"latent_dim": 16, "num_classes": 10, "width": 16, "hidden": 256,
                      "batchnorm": True},
                     150.0, "chapter 02, section 11, and chapter 04's comparison table"),
}


def _tensors(spec: SmallVAE, images: Tensor, labels: Tensor) -> tuple[Tensor, ...]:
    """``(images,)``, or ``(images, labels)`` for a conditional VAE."""
    return (images, labels) if spec.conditional else (images,)


def build_small_vae(spec: SmallVAE, seed: int = 0) -> ConvVAE:
    """A seeded, untrained ``spec.model_class(**spec.kwargs)``, as the notebook builds it."""
    config.seed_everything(seed)
    return spec.model_class(**spec.kwargs)


def train_small_vae(spec: SmallVAE, ds: Dataset, time_budget: float, *, clock: str = "cpu",
                    seed: int = 0, threads: int | None = 1,
                    progress: bool = True) -> tuple[ConvVAE, TrainResult]:
    """Train the model of ``spec`` for ``time_budget`` seconds on ``clock`` (``"cpu"`` or
    ``"wall"``), then score it on the test set.

    Returns:
        The model (eval mode, CPU) and the loop's :class:`TrainResult`, whose ``metrics`` hold
        ``test_loss`` (BCE + KL), ``test_recon``, ``test_kl``, ``epochs``, ``cpu_seconds`` and
        ``wall_seconds`` (both for the whole call).
    """
    budget = budget_clock(clock)
    if threads is not None:
        torch.set_num_threads(threads)
    model = build_small_vae(spec, seed)
    # The notebook's CVAE cell also scores the test set after every epoch; so does this one.
    test = _tensors(spec, ds.test_x, ds.test_y) if spec.conditional else None
    wall0, cpu0 = time.perf_counter(), time.process_time()
    result = fit(model, vae_loss_fn(1.0), _tensors(spec, ds.train_x, ds.train_y),
                 test_tensors=test, lr=OPTIM["lr"], lr_schedule=OPTIM["lr_schedule"],
                 batch_size=OPTIM["batch_size"], time_budget=time_budget, device="cpu",
                 seed=seed, progress=progress, clock=budget,
                 desc=f"{spec.name} ({clock} budget {time_budget:.0f} s)")
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    scores = evaluate(model, vae_loss_fn(1.0), _tensors(spec, ds.test_x, ds.test_y),
                      seed=seed + 1)
    model.eval()
    result.metrics.update({
        "test_loss": scores["loss"], "test_recon": scores["recon"], "test_kl": scores["kl"],
        "epochs": result.history.last["epoch"], "cpu_seconds": cpu, "wall_seconds": wall})
    return model, result


def write_checkpoint(model: ConvVAE, result: TrainResult, ds: Dataset, spec: SmallVAE, *,
                     seed: int, clock: str, time_budget: float, threads: int,
                     out_dir: Path = HERE) -> dict[str, Any]:
    """Save ``<spec.name>.pt`` (float16) and its JSON in ``out_dir``; return the metadata.

    ``model`` is rounded to float16 in place and re-scored, so the JSON's test BCE + KL is that
    of the weights as shipped (the float32 figure is kept beside it).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    figures = result.metrics
    half = half_state_dict(model.state_dict())
    model.load_state_dict(float_state_dict(half))
    shipped = evaluate(model, vae_loss_fn(1.0), _tensors(spec, ds.test_x, ds.test_y),
                       seed=seed + 1)
    model.eval()
    atomic_write(out_dir / f"{spec.name}.pt", lambda f: torch.save(half, f))
    short = next(key for key, value in SPECS.items() if value.name == spec.name)
    meta = {
        "model": f"course_utils.models.vae.{spec.model_class.__name__}",
        "kwargs": spec.kwargs,
        "used_in": spec.where,
        "metric": "test negative ELBO, nats per image: BCE summed over pixels + KL "
                  "(grayscale pixels, not binarised, so it is not a log-likelihood); "
                  "one z sample per image"
                  + ("; the encoder and decoder are given the test labels"
                     if spec.conditional else ""),
        "given_labels": spec.conditional,
        "test_bce_plus_kl": round(shipped["loss"], 3),
        "test_recon_bce": round(shipped["recon"], 3),
        "test_kl": round(shipped["kl"], 3),
        "test_bce_plus_kl_before_float16": round(figures["test_loss"], 3),
        "weights_dtype": "float16",
        "parameters": sum(p.numel() for p in model.parameters()),
        "data": ds.name, "data_sha256": dataset_sha256(ds),
        "n_train": len(ds.train_x), "n_test": len(ds.test_x),
        "seed": seed, "clock": clock, "time_budget": time_budget, "threads": threads,
        "train_seconds_on_clock": round(result.seconds, 1),
        "train_cpu_seconds": round(figures["cpu_seconds"], 1),
        "train_wall_seconds": round(figures["wall_seconds"], 1),
        "epochs": round(figures["epochs"], 3),
        "optimizer": {"name": "Adam", **OPTIM},
        "history": [{k: round(v, 4) for k, v in r.items()} for r in result.history],
        "torch": torch.__version__, "python": platform.python_version(),
        "command": f"python -m course_utils.pretrained.train_small_vaes --only {short} "
                   f"--time-budget {time_budget:g} --clock {clock} --threads {threads} "
                   f"--seed {seed}",
    }
    atomic_write(out_dir / f"{spec.name}.json", lambda f: f.write(
        (json.dumps(meta, indent=2) + "\n").encode()))
    return meta


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", choices=sorted(SPECS), default=list(SPECS),
                        help="models to train (default: both)")
    parser.add_argument("--time-budget", type=float, default=None, metavar="SECONDS",
                        help="training seconds per model on --clock (default: the notebook's, "
                             + ", ".join(f"{k} {s.time_budget:g}" for k, s in SPECS.items())
                             + ")")
    parser.add_argument("--clock", choices=("cpu", "wall"), default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=HERE, help="output folder")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    ds = load_dataset("fashion-mnist")
    if ds.is_fallback or config.is_smoke():
        raise RuntimeError("the shipped small VAEs must be trained on the full Fashion-MNIST "
                           "(unset COURSE_SMOKE)")
    for key in args.only:
        spec = SPECS[key]
        budget = spec.time_budget if args.time_budget is None else args.time_budget
        model, result = train_small_vae(spec, ds, budget, clock=args.clock, seed=args.seed,
                                        threads=args.threads, progress=not args.quiet)
        meta = write_checkpoint(model, result, ds, spec, seed=args.seed, clock=args.clock,
                                time_budget=budget, threads=args.threads, out_dir=args.out)
        print(f"{spec.name}: test BCE + KL {meta['test_bce_plus_kl']:.2f} nats (recon "
              f"{meta['test_recon_bce']:.2f}, KL {meta['test_kl']:.2f}) after "
              f"{meta['epochs']:.1f} epochs, {meta['train_cpu_seconds']:.0f} CPU s "
              f"({meta['train_wall_seconds']:.0f} s wall) | wrote "
              f"{args.out / (spec.name + '.pt')}", flush=True)


if __name__ == "__main__":
    main()
