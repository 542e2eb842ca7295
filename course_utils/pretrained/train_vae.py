"""Train the small convolutional VAE shipped with the course (``vae_fashion.pt``).

    python -m course_utils.pretrained.train_vae                    # 300 CPU seconds, writes here
    python -m course_utils.pretrained.train_vae --time-budget 30 --out /tmp/vae

It trains :class:`course_utils.models.vae.ConvVAE` (16-D latent) on Fashion-MNIST with the
course's shared loop (:func:`course_utils.training.fit`) under a time budget, with the
settings in :mod:`course_utils.recipes` (``VAE_MODEL_KWARGS``, ``VAE_OPTIM``), then writes:

* ``vae_fashion.pt``: the ``state_dict`` in float16 (under 1 MB);
* ``vae_fashion.json``: the test BCE + KL it reached (nats per image, grayscale data, so it is
  not a log-likelihood), the SHA-256 of the data, the seed, the architecture, the optimiser,
  the training time (CPU and wall-clock seconds) and the per-epoch history.

**The clock.** By default the budget counts the *CPU seconds of this process* on one thread
(``--clock cpu``), so a machine shared with other jobs does not shrink the training a run gets;
``--clock wall`` counts wall-clock seconds instead. ``benchmarks/bench_vae.py`` trains with the
same function and the same budget, side by side with the pytorch/examples MLP VAE.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

import torch

from .. import config
from ..data import Dataset, load_dataset
from ..losses import vae_loss_fn
from ..models.vae import ConvVAE
from ..recipes import VAE_MODEL_KWARGS, VAE_OPTIM
from ..training import TrainResult, budget_clock, evaluate, fit
from ..utils import atomic_write, float_state_dict, half_state_dict

HERE = Path(__file__).resolve().parent
NAME = "vae_fashion"


def dataset_sha256(ds: Dataset) -> str:
    """SHA-256 of both splits' images and labels (see ``train_classifier.dataset_hash``)."""
    from .train_classifier import dataset_hash

    return dataset_hash(ds)


def build_vae(model_kwargs: dict[str, Any] | None = None, seed: int = 0) -> ConvVAE:
    """A seeded ``ConvVAE(**model_kwargs)``; the default kwargs are those of the shipped VAE,
    :data:`course_utils.recipes.VAE_MODEL_KWARGS`."""
    config.seed_everything(seed)
    return ConvVAE(**(VAE_MODEL_KWARGS if model_kwargs is None else model_kwargs))


def train_course_vae(model: ConvVAE, ds: Dataset, time_budget: float, *, clock: str = "cpu",
                     seed: int = 0, threads: int | None = 1, progress: bool = True,
                     optim: dict[str, Any] | None = None) -> TrainResult:
    """Train ``model`` (from :func:`build_vae`) for ``time_budget`` seconds on ``clock``
    (``"cpu"`` or ``"wall"``), then evaluate it on the test set.

    Returns:
        The loop's :class:`TrainResult`; its ``metrics`` hold ``test_loss`` (BCE + KL),
        ``test_recon``, ``test_kl``, ``epochs``, ``cpu_seconds``, ``wall_seconds`` (both for
        the whole call), ``images_per_sec`` and ``optim``. The model is left in eval mode.
    """
    budget = budget_clock(clock)
    if threads is not None:
        torch.set_num_threads(threads)
    optim = dict(VAE_OPTIM if optim is None else optim)
    wall0, cpu0 = time.perf_counter(), time.process_time()
    result = fit(model, vae_loss_fn(1.0), (ds.train_x,), lr=optim["lr"],
                 lr_schedule=optim["lr_schedule"], time_budget=time_budget,
                 batch_size=optim["batch_size"], device="cpu", seed=seed, progress=progress,
                 desc=f"ConvVAE ({clock} budget {time_budget:.0f} s)", clock=budget)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    test = evaluate(model, vae_loss_fn(1.0), (ds.test_x,), seed=seed + 1)
    model.eval()
    result.metrics.update({
        "test_loss": test["loss"], "test_recon": test["recon"], "test_kl": test["kl"],
        "epochs": result.history.last["epoch"], "cpu_seconds": cpu, "wall_seconds": wall,
        "images_per_sec": result.steps * optim["batch_size"] / max(result.seconds, 1e-9),
        "optim": optim})
    return result


def write_checkpoint(model: ConvVAE, result: TrainResult, ds: Dataset, *,
                     model_kwargs: dict[str, Any], seed: int, clock: str, time_budget: float,
                     out_dir: Path = HERE,
                     command: str = "python -m course_utils.pretrained.train_vae") -> dict:
    """Save ``vae_fashion.pt`` and ``vae_fashion.json`` in ``out_dir``; return the metadata.

    The weights are stored in float16 (half the size; the loader turns them back into
    float32). ``model`` is rounded the same way in place and re-scored, so the metrics in the
    JSON are those of the weights as shipped; the float32 figures are kept beside them.
    """
    out_dir = Path(out_dir)
    half = half_state_dict(model.state_dict())
    model.load_state_dict(float_state_dict(half))
    shipped = evaluate(model, vae_loss_fn(1.0), (ds.test_x,), seed=seed + 1)
    model.eval()
    atomic_write(out_dir / f"{NAME}.pt", lambda f: torch.save(half, f))
    figures = result.metrics
    meta = {
        "model": "course_utils.models.vae.ConvVAE",
        "kwargs": model_kwargs,
        "metric": "test negative ELBO, nats per image: BCE summed over pixels + KL "
                  "(grayscale pixels, not binarised, so it is not a log-likelihood); "
                  "one z sample per image",
        "test_bce_plus_kl": round(shipped["loss"], 3),
        "test_recon_bce": round(shipped["recon"], 3),
        "test_kl": round(shipped["kl"], 3),
        "test_bce_plus_kl_before_float16": round(figures["test_loss"], 3),
        "weights_dtype": "float16",
        "parameters": sum(p.numel() for p in model.parameters()),
        "data": ds.name, "data_sha256": dataset_sha256(ds),
        "n_train": len(ds.train_x), "n_test": len(ds.test_x),
        "seed": seed, "clock": clock, "time_budget": time_budget,
        "threads": torch.get_num_threads(),
        "train_seconds_on_clock": round(result.seconds, 1),
        "train_cpu_seconds": round(figures["cpu_seconds"], 1),
        "train_wall_seconds": round(figures["wall_seconds"], 1),
        "epochs": round(figures["epochs"], 3),
        "optimizer": {"name": "Adam", **figures["optim"]},
        "history": [{k: round(v, 4) for k, v in r.items()} for r in result.history],
        "torch": torch.__version__, "python": platform.python_version(),
        "command": command,
    }
    atomic_write(out_dir / f"{NAME}.json", lambda f: f.write(
        (json.dumps(meta, indent=2) + "\n").encode()))
    return meta


def main(argv: list[str] | None = None) -> TrainResult:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--time-budget", type=float, default=300.0, metavar="SECONDS",
                        help="training seconds on --clock (default 300)")
    parser.add_argument("--clock", choices=("cpu", "wall"), default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=HERE, help="output folder")
    args = parser.parse_args(argv)
    ds = load_dataset("fashion-mnist")
    if ds.is_fallback or config.is_smoke():
        raise RuntimeError("the shipped VAE must be trained on the full Fashion-MNIST "
                           "(unset COURSE_SMOKE)")
    model = build_vae(seed=args.seed)
    result = train_course_vae(model, ds, args.time_budget, clock=args.clock, seed=args.seed,
                              threads=args.threads)
    meta = write_checkpoint(model, result, ds, model_kwargs=VAE_MODEL_KWARGS, seed=args.seed,
                            clock=args.clock, time_budget=args.time_budget, out_dir=args.out)
    result.metrics["metadata"] = meta
    print(f"test BCE + KL {meta['test_bce_plus_kl']:.2f} nats (recon {meta['test_recon_bce']:.2f}"
          f", KL {meta['test_kl']:.2f}) after {meta['epochs']:.1f} epochs, "
          f"{meta['train_cpu_seconds']:.0f} CPU s | wrote {args.out / (NAME + '.pt')}")
    return result


if __name__ == "__main__":
    main()
