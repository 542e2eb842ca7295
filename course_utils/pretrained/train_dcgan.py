"""Train the DCGAN generator shipped with the course.

    python -m course_utils.pretrained.train_dcgan --max-steps 2500   # what was shipped
    python -m course_utils.pretrained.train_dcgan --time-budget 300  # a time budget instead
    python -m course_utils.pretrained.train_dcgan --time-budget 60 --out /tmp/gan
    python -m course_utils.pretrained.train_dcgan --score-only       # re-score the saved one

A step budget makes the result independent of how busy the machine is: 2,500 steps of 64
images is about 5 minutes of an otherwise idle 2-core CPU (about 470 images/s at width 32).

It trains :class:`course_utils.models.dcgan.Generator` and ``Discriminator`` with
:func:`course_utils.training.fit_gan` using :data:`course_utils.recipes.DCGAN_RECIPE`, then
scores the generator with the shipped classifier (10,000 samples against the 10,000 test
images) and writes, next to this file by default:

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

from ..data import load_dataset, to_zero_one
from ..metrics import evaluate_generator
from ..recipes import DCGAN_RECIPE
from ..training import GANResult, SnapshotConfig, fit_gan
from ..utils import atomic_write, float_state_dict, half_state_dict

HERE = Path(__file__).resolve().parent


def _write_json(path: Path, meta: dict[str, Any]) -> None:
    atomic_write(path, lambda f: f.write((json.dumps(meta, indent=1) + "\n").encode()))


def score(out_dir: Path = HERE) -> dict[str, Any]:
    """Score the generator saved in ``out_dir`` with the shipped classifier; update its JSON."""
    from ..metrics import real_floor
    from ..models.dcgan import Generator
    from . import load_classifier

    out_dir = Path(out_dir)
    meta = json.loads((out_dir / "dcgan_generator.json").read_text())
    state = torch.load(out_dir / "dcgan_generator.pt", map_location="cpu", weights_only=True)
    G = Generator(**meta["kwargs"])
    G.load_state_dict(float_state_dict(state))
    ds = load_dataset("fashion-mnist")
    classifier = load_classifier()
    meta["scores"] = evaluate_generator(G.eval(), classifier, ds)
    meta["frechet_floor_train_vs_test"] = round(
        real_floor(classifier, ds.train_x, ds.test_x, n=10_000), 4)
    _write_json(out_dir / "dcgan_generator.json", meta)
    return meta


def train(time_budget: float | None = None, max_steps: int | None = None, seed: int = 0,
          out_dir: Path = HERE, progress: bool = True, device: str | None = "cpu",
          with_scores: bool = True) -> GANResult:
    """Train with :data:`~course_utils.recipes.DCGAN_RECIPE` for ``time_budget`` seconds or
    ``max_steps`` steps, save the files, score; the result's ``metrics`` hold the metadata."""
    from .train_classifier import dataset_hash

    if (time_budget is None) == (max_steps is None):
        raise ValueError("give exactly one of time_budget and max_steps")
    ds = load_dataset("fashion-mnist")
    if ds.is_fallback:
        raise RuntimeError("the shipped generator must be trained on Fashion-MNIST")
    recipe = DCGAN_RECIPE
    G, D = recipe.build(seed)
    result = fit_gan(G, D, ds.train_x, time_budget=time_budget, max_steps=max_steps, seed=seed,
                     device=device, progress=progress, desc="DCGAN", log_every=50,
                     snapshot=SnapshotConfig(n_fixed=16),       # 8 snapshots, evenly spaced
                     **recipe.fit_kwargs())
    G.cpu().eval()

    out_dir = Path(out_dir)
    atomic_write(out_dir / "dcgan_generator.pt",
                 lambda f: torch.save(half_state_dict(G.state_dict()), f))
    atomic_write(out_dir / "dcgan_discriminator.pt",
                 lambda f: torch.save(half_state_dict(D.cpu().state_dict()), f))
    snaps = {"steps": torch.tensor([s for s, _ in result.snapshots]),
             "images": torch.stack([(to_zero_one(img) * 255).round().to(torch.uint8)
                                    for _, img in result.snapshots])}
    atomic_write(out_dir / "dcgan_generator_snapshots.pt", lambda f: torch.save(snaps, f))
    records = list(result.history)
    keep = max(1, len(records) // 200)
    budget = f"--time-budget {time_budget:g}" if time_budget is not None \
        else f"--max-steps {max_steps}"
    meta = {
        "model": "course_utils.models.dcgan.Generator",
        "kwargs": {"latent_dim": recipe.latent_dim, "width": recipe.width},
        "discriminator_kwargs": {"width": recipe.width, "spectral_norm": recipe.spectral_norm},
        "recipe": recipe.to_json(), "seed": seed, "time_budget": time_budget,
        "steps": result.steps, "images_seen": result.steps * recipe.batch_size,
        "train_seconds": round(result.seconds, 1), "device": str(device),
        "scores": None, "frechet_floor_train_vs_test": None,
        "classifier": "classifier.pt (see classifier.json)",
        "data": ds.name, "data_sha256": dataset_hash(ds),
        "history": [{k: round(v, 4) for k, v in r.items()} for r in records[::keep]],
        "torch": torch.__version__, "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        "command": f"python -m course_utils.pretrained.train_dcgan {budget}",
    }
    _write_json(out_dir / "dcgan_generator.json", meta)
    result.metrics.update(score(out_dir) if with_scores else meta)
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--time-budget", type=float, metavar="SECONDS",
                        help="training seconds (wall clock)")
    budget.add_argument("--max-steps", "--steps", type=int, dest="max_steps",
                        help="training steps (default 2500)")
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
        max_steps = args.max_steps or (2500 if args.time_budget is None else None)
        meta = train(args.time_budget, max_steps, args.seed, args.out, device=args.device,
                     with_scores=not args.no_score).metrics
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
