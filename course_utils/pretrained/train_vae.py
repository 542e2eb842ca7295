"""Train the small convolutional VAE shipped with the course (``vae_fashion.pt``).

    python -m course_utils.pretrained.train_vae                    # 5 CPU-minutes, writes here
    python -m course_utils.pretrained.train_vae --minutes 0.5 --out /tmp/vae

It trains :class:`course_utils.models.vae.ConvVAE` (16-D latent) on Fashion-MNIST with the
course's shared loop (:func:`course_utils.training.fit`) under a time budget, then writes:

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
from typing import Any, Callable

import torch

from .. import config, training
from ..data import Dataset, load_dataset
from ..losses import vae_loss_fn
from ..models.vae import ConvVAE

HERE = Path(__file__).resolve().parent
NAME = "vae_fashion"

# The configuration the checkpoint and the benchmark use (chosen by measurement; see the JSON).
MODEL_KWARGS: dict[str, Any] = {"latent_dim": 16, "width": 16, "hidden": 128, "batchnorm": True}
OPTIM: dict[str, Any] = {"lr": 3e-3, "lr_schedule": "cosine", "batch_size": 128}


def budget_clock(clock: str) -> Callable[[], float]:
    """The seconds counter for ``fit``'s time budget: ``"cpu"`` (this process's CPU seconds,
    all threads; with one thread, "N seconds on one core" whatever else the machine runs)
    or ``"wall"``."""
    if clock not in {"cpu", "wall"}:
        raise ValueError(f"clock must be 'cpu' or 'wall', got {clock!r}")
    return time.process_time if clock == "cpu" else time.perf_counter


def dataset_sha256(ds: Dataset) -> str:
    """SHA-256 of both splits' images and labels (see ``train_classifier.dataset_hash``)."""
    from .train_classifier import dataset_hash

    return dataset_hash(ds)


def train_course_vae(ds: Dataset, seconds: float, *, clock: str = "cpu", seed: int = 0,
                     threads: int | None = 1, progress: bool = True,
                     model_kwargs: dict[str, Any] | None = None,
                     optim: dict[str, Any] | None = None) -> tuple[ConvVAE, dict[str, Any]]:
    """Train the course's ConvVAE for ``seconds`` on ``clock`` and evaluate it on the test set.

    Returns:
        The model (eval mode, CPU) and a dict of figures: ``test_loss`` (BCE + KL),
        ``test_recon``, ``test_kl``, ``epochs``, ``cpu_seconds``, ``wall_seconds`` (both for
        the whole call), ``train_seconds`` (training time on ``clock``),
        ``images_per_sec`` and the ``history`` records.
    """
    if clock not in {"cpu", "wall"}:
        raise ValueError(f"clock must be 'cpu' or 'wall', got {clock!r}")
    if threads is not None:
        torch.set_num_threads(threads)
    model_kwargs = dict(MODEL_KWARGS if model_kwargs is None else model_kwargs)
    optim = dict(OPTIM if optim is None else optim)
    config.seed_everything(seed)
    model = ConvVAE(**model_kwargs)
    wall0, cpu0 = time.perf_counter(), time.process_time()
    history = training.fit(model, vae_loss_fn(1.0), (ds.train_x,), lr=optim["lr"],
                           lr_schedule=optim["lr_schedule"], time_budget=seconds,
                           batch_size=optim["batch_size"], device="cpu", seed=seed,
                           progress=progress, desc=f"ConvVAE ({clock} budget {seconds:.0f} s)",
                           clock=budget_clock(clock))
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    test = training.evaluate(model, vae_loss_fn(1.0), (ds.test_x,), seed=seed + 1)
    model.eval()
    return model, {
        "test_loss": test["loss"], "test_recon": test["recon"], "test_kl": test["kl"],
        "epochs": history.last["epoch"], "cpu_seconds": cpu, "wall_seconds": wall,
        "train_seconds": history.last["elapsed"],
        "images_per_sec": history.last["step"] * optim["batch_size"]
        / max(history.last["elapsed"], 1e-9),
        "history": history.records, "model_kwargs": model_kwargs, "optim": optim,
    }


def write_checkpoint(model: ConvVAE, figures: dict[str, Any], ds: Dataset, *, seed: int,
                     clock: str, budget_seconds: float, out_dir: Path = HERE,
                     command: str = "python -m course_utils.pretrained.train_vae") -> dict:
    """Save ``vae_fashion.pt`` and ``vae_fashion.json`` in ``out_dir``; return the metadata.

    The weights are stored in float16 (half the size; the loader turns them back into
    float32). ``model`` is rounded the same way in place and re-scored, so the metrics in the
    JSON are those of the weights as shipped; the float32 figures are kept beside them.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    half = {k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in half.items()})
    shipped = training.evaluate(model, vae_loss_fn(1.0), (ds.test_x,), seed=seed + 1)
    model.eval()
    torch.save(half, out_dir / f"{NAME}.pt")
    meta = {
        "model": "course_utils.models.vae.ConvVAE",
        "kwargs": figures["model_kwargs"],
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
        "seed": seed, "clock": clock, "budget_seconds": budget_seconds,
        "threads": torch.get_num_threads(),
        "train_seconds_on_clock": round(figures["train_seconds"], 1),
        "train_cpu_seconds": round(figures["cpu_seconds"], 1),
        "train_wall_seconds": round(figures["wall_seconds"], 1),
        "epochs": round(figures["epochs"], 3),
        "optimizer": {"name": "Adam", **figures["optim"]},
        "history": [{k: round(v, 4) for k, v in r.items()} for r in figures["history"]],
        "torch": torch.__version__, "python": platform.python_version(),
        "command": command,
    }
    (out_dir / f"{NAME}.json").write_text(json.dumps(meta, indent=2) + "\n")
    return meta


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=5.0, help="training budget")
    parser.add_argument("--clock", choices=("cpu", "wall"), default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=HERE, help="output folder")
    args = parser.parse_args(argv)
    ds = load_dataset("fashion-mnist")
    if ds.is_fallback or config.is_smoke():
        raise RuntimeError("the shipped VAE must be trained on the full Fashion-MNIST "
                           "(unset COURSE_SMOKE)")
    model, figures = train_course_vae(ds, args.minutes * 60, clock=args.clock, seed=args.seed,
                                      threads=args.threads)
    meta = write_checkpoint(model, figures, ds, seed=args.seed, clock=args.clock,
                            budget_seconds=args.minutes * 60, out_dir=args.out)
    print(f"test BCE + KL {meta['test_bce_plus_kl']:.2f} nats (recon {meta['test_recon_bce']:.2f}"
          f", KL {meta['test_kl']:.2f}) after {meta['epochs']:.1f} epochs, "
          f"{meta['train_cpu_seconds']:.0f} CPU s | wrote {args.out / (NAME + '.pt')}")


if __name__ == "__main__":
    main()
