"""Train the DCGAN generator shipped with the course (and define the course's DCGAN recipe).

    python -m course_utils.pretrained.train_dcgan --steps 2500    # what was shipped
    python -m course_utils.pretrained.train_dcgan --minutes 5     # a time budget instead
    python -m course_utils.pretrained.train_dcgan --minutes 1 --out /tmp/gan
    python -m course_utils.pretrained.train_dcgan --score-only    # re-score the saved one

A step budget makes the result independent of how busy the machine is: 2,500 steps of 64
images is about 5 minutes of an otherwise idle 2-core CPU (about 470 images/s at width 32).

It trains :class:`course_utils.models.dcgan.Generator` and ``Discriminator`` with
:func:`course_utils.training.fit_gan` using :data:`RECIPE`, then scores the generator with the
shipped classifier (10,000 samples against the 10,000 test images) and writes, next to this
file by default:

* ``dcgan_generator.pt``: the generator's ``state_dict``, stored in float16 to halve its size
  (the loader converts it back to float32);
* ``dcgan_generator.json``: the recipe, seed, data hash, training time, steps, the scores
  (Frechet distance, real-train vs real-test floor, classes covered, KL to uniform,
  memorisation ratio), and a thinned training history for the notebook's diagnostics plot;
* ``dcgan_generator_snapshots.pt``: 16 fixed-noise images at 9 or 10 points of training,
  from step 0 to the end (uint8);
* ``dcgan_discriminator.pt``: its discriminator at the end (float16), which the notebook's
  mode-collapse experiment starts from.
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
from ..data import load_dataset, to_zero_one
from ..models.dcgan import Discriminator, Generator
from ..training import fit_gan

HERE = Path(__file__).resolve().parent

#: The course's DCGAN recipe. Width 32 is two to three times as fast per image as the PyTorch
#: tutorial's width 64 on a CPU, so it sees more images in the same time, and a batch of 64
#: gives it more updates per image; one-sided label smoothing (Salimans et al. 2016) keeps the
#: discriminator from growing over-confident on real images.
RECIPE: dict[str, Any] = {
    "latent_dim": 64, "width": 32, "batch_size": 64,
    "lr_g": 2e-4, "lr_d": 2e-4, "betas_g": (0.5, 0.999), "betas_d": (0.5, 0.999),
    "real_label": 0.9, "g_loss": "non_saturating", "spectral_norm": False,
}

#: The PyTorch DCGAN tutorial's settings, the benchmark's peer (same architecture family).
PEER: dict[str, Any] = {
    "latent_dim": 100, "width": 64, "batch_size": 128,
    "lr_g": 2e-4, "lr_d": 2e-4, "betas_g": (0.5, 0.999), "betas_d": (0.5, 0.999),
    "real_label": 1.0, "g_loss": "non_saturating", "spectral_norm": False,
}


def build(recipe: dict[str, Any], seed: int = 0) -> tuple[Generator, Discriminator]:
    """Seeded generator and discriminator for a recipe."""
    config.seed_everything(seed)
    G = Generator(latent_dim=recipe["latent_dim"], width=recipe["width"])
    D = Discriminator(width=recipe["width"], spectral_norm=recipe["spectral_norm"])
    return G, D


def fit_kwargs(recipe: dict[str, Any]) -> dict[str, Any]:
    """The arguments of :func:`fit_gan` that a recipe sets."""
    keys = ("batch_size", "lr_g", "lr_d", "betas_g", "betas_d", "real_label", "g_loss")
    return {k: recipe[k] for k in keys}


@torch.no_grad()
def sample(G: torch.nn.Module, n: int, seed: int = 123, batch_size: int = 1000) -> torch.Tensor:
    """``n`` generated images in [0, 1] (eval mode), from seeded noise."""
    gen = torch.Generator().manual_seed(seed)
    device = next(G.parameters()).device
    was_training = G.training
    G.eval()
    out = [to_zero_one(G(torch.randn(min(batch_size, n - i), G.latent_dim, generator=gen)
                         .to(device))).cpu() for i in range(0, n, batch_size)]
    G.train(was_training)
    return torch.cat(out)


def evaluate_generator(G: torch.nn.Module, classifier: torch.nn.Module, ds: Any,
                       n: int = 10_000, seed: int = 123, real_features: Any = None,
                       n_memorisation: int = 500) -> dict[str, Any]:
    """Frechet distance (vs the first ``n`` test images), coverage, KL to uniform, and the
    memorisation ratio (nearest-train distances of ``n_memorisation`` samples vs test images)."""
    from ..metrics import memorisation_check, score_samples

    fake = sample(G, n, seed=seed)
    scores = score_samples(classifier, fake, ds.test_x[:n], real_features=real_features)
    memo = memorisation_check(fake[:n_memorisation], ds.train_x, ds.test_x[:n_memorisation])
    return {"frechet": round(scores.frechet, 3), "classes_covered": scores.histogram.covered,
            "kl_to_uniform": round(scores.histogram.kl_to_uniform, 4),
            "class_fractions": [round(float(f), 4) for f in scores.histogram.fractions],
            "memorisation_ratio": round(memo.ratio, 3), "n_samples": n}


def score(out_dir: Path = HERE) -> dict[str, Any]:
    """Score the generator saved in ``out_dir`` with the shipped classifier; update its JSON."""
    from . import load_classifier
    from ..metrics import real_floor
    from ..models.dcgan import Generator

    out_dir = Path(out_dir)
    meta = json.loads((out_dir / "dcgan_generator.json").read_text())
    state = torch.load(out_dir / "dcgan_generator.pt", map_location="cpu", weights_only=True)
    G = Generator(**meta["kwargs"])
    G.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    ds = load_dataset("fashion-mnist")
    classifier = load_classifier()
    meta["scores"] = evaluate_generator(G.eval(), classifier, ds)
    meta["frechet_floor_train_vs_test"] = round(
        real_floor(classifier, ds.train_x, ds.test_x, n=10_000), 4)
    (out_dir / "dcgan_generator.json").write_text(json.dumps(meta, indent=1) + "\n")
    return meta


def train(minutes: float | None = None, steps: int | None = None, seed: int = 0,
          out_dir: Path = HERE, progress: bool = True, device: str | None = "cpu",
          with_scores: bool = True) -> dict[str, Any]:
    """Train with :data:`RECIPE` for ``minutes`` or ``steps``, save the three files, score."""
    from .train_classifier import dataset_hash

    if (minutes is None) == (steps is None):
        raise ValueError("give exactly one of minutes and steps")
    ds = load_dataset("fashion-mnist")
    if ds.is_fallback:
        raise RuntimeError("the shipped generator must be trained on Fashion-MNIST")
    G, D = build(RECIPE, seed)
    result = fit_gan(G, D, ds.train_x, time_budget=None if minutes is None else minutes * 60,
                     max_steps=steps, seed=seed, device=device, progress=progress,
                     desc="DCGAN", log_every=50, n_fixed=16,
                     **fit_kwargs(RECIPE))          # 8 snapshots, evenly spaced
    G.cpu().eval()

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    def half(model: torch.nn.Module) -> dict[str, torch.Tensor]:
        return {k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}

    torch.save(half(G), out_dir / "dcgan_generator.pt")
    torch.save(half(D.cpu()), out_dir / "dcgan_discriminator.pt")
    snaps = result.snapshots
    torch.save({"steps": torch.tensor([s for s, _ in snaps]),
                "images": torch.stack([(to_zero_one(img) * 255).round().to(torch.uint8)
                                       for _, img in snaps])},
               out_dir / "dcgan_generator_snapshots.pt")
    records = list(result.history)
    keep = max(1, len(records) // 200)
    meta = {
        "model": "course_utils.models.dcgan.Generator",
        "kwargs": {"latent_dim": RECIPE["latent_dim"], "width": RECIPE["width"]},
        "discriminator_kwargs": {"width": RECIPE["width"],
                                 "spectral_norm": RECIPE["spectral_norm"]},
        "recipe": RECIPE, "seed": seed, "minutes": minutes, "steps": result.steps,
        "images_seen": result.steps * RECIPE["batch_size"],
        "train_seconds": round(result.seconds, 1), "device": str(device),
        "scores": None, "frechet_floor_train_vs_test": None,
        "classifier": "classifier.pt (see classifier.json)",
        "data": ds.name, "data_sha256": dataset_hash(ds),
        "history": [{k: round(v, 4) for k, v in r.items()} for r in records[::keep]],
        "torch": torch.__version__, "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        "command": "python -m course_utils.pretrained.train_dcgan "
                   + (f"--minutes {minutes:g}" if minutes is not None else f"--steps {steps}"),
    }
    (out_dir / "dcgan_generator.json").write_text(json.dumps(meta, indent=1) + "\n")
    return score(out_dir) if with_scores else meta


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--minutes", type=float, help="training time budget")
    budget.add_argument("--steps", type=int, help="training steps (default 2500)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=HERE, help="output folder")
    parser.add_argument("--no-score", action="store_true", help="skip scoring")
    parser.add_argument("--score-only", action="store_true",
                        help="only (re)score the generator already saved in --out")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    if args.score_only:
        meta = score(args.out)
    else:
        steps = args.steps if args.steps or args.minutes else 2500
        meta = train(args.minutes, steps if args.minutes is None else None, args.seed, args.out,
                     device=args.device, with_scores=not args.no_score)
    if meta["scores"] is None:
        print(f"{meta['steps']} steps in {meta['train_seconds']:.0f} s; not scored")
        return
    s = meta["scores"]
    print(f"{meta['steps']} steps | Frechet {s['frechet']:.2f} (floor "
          f"{meta['frechet_floor_train_vs_test']:.2f}) | {s['classes_covered']}/10 classes | "
          f"KL {s['kl_to_uniform']:.3f} | memorisation ratio {s['memorisation_ratio']:.2f} | "
          f"{time.perf_counter() - start:.0f} s in all")


if __name__ == "__main__":
    main()
