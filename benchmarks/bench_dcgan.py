"""DCGAN benchmark: the course's recipe against the PyTorch tutorial's settings, same CPU time.

    nice -n 10 python benchmarks/bench_dcgan.py                # 900 s per model (~35 min)
    python benchmarks/bench_dcgan.py --time-budget 60           # a quick try (~3 min)

Both models train in turns on the same machine (so that a change in load hits both): the
course's recipe (``course_utils.recipes.DCGAN_RECIPE``: width 32, batch 64, one-sided label
smoothing) and a DCGAN with the PyTorch tutorial's settings (``peers.DCGAN_PEER``: width 64,
latent 100, Adam 2e-4 with beta1 0.5, batch 128). At 1/3, 2/3 and all of ``--time-budget``
seconds of *training* time (scoring is not counted) each model is scored with the shipped
classifier:

* Frechet distance between 10,000 samples and the 10,000 test images, in the classifier's
  128-d penultimate features (not comparable with Inception FID), next to the real-train vs
  real-test floor;
* classes covered (>= 1% of samples) and KL(class histogram || uniform);
* a sample grid saved as a PNG.

Target (see ``benchmarks/README.md``): at 900 s, all 10 classes, KL < 0.03, and a Frechet
distance at least 30% below the peer's. Results go to ``benchmarks/results/dcgan/``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from peers import DCGAN_PEER

from course_utils import config
from course_utils.data import load_dataset
from course_utils.metrics import classifier_features, evaluate_generator, real_floor
from course_utils.models.dcgan import sample_images
from course_utils.pretrained import load_classifier
from course_utils.recipes import DCGAN_RECIPE
from course_utils.training import SnapshotConfig, fit_gan, save_grid_png


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--time-budget", type=float, default=900.0, metavar="SECONDS",
                        help="training seconds per model (reports at 1/3, 2/3 and 3/3)")
    parser.add_argument("--samples", type=int, default=10_000, help="samples per score")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "dcgan")
    args = parser.parse_args(argv)
    if args.samples <= 128:
        parser.error("--samples must exceed the feature dimension (128)")

    print(config.describe_setup(torch.device("cpu")))
    ds = load_dataset("fashion-mnist")
    classifier = load_classifier()
    n = min(args.samples, len(ds.test_x))
    floor = real_floor(classifier, ds.train_x, ds.test_x, n=n, seed=args.seed)
    real_features = classifier_features(classifier, ds.test_x[:n])
    print(f"{ds.describe()}\nreal-train vs real-test Frechet floor ({n:,} per side): {floor:.3f}")
    args.out.mkdir(parents=True, exist_ok=True)

    runs = {"course": DCGAN_RECIPE, "peer": DCGAN_PEER}
    models = {name: recipe.build(args.seed) for name, recipe in runs.items()}
    segment = args.time_budget / 3
    results: list[dict] = []
    for k in (1, 2, 3):
        for name, recipe in runs.items():
            G, D = models[name]
            ckpt = args.out / f"{name}.ckpt.pt"
            r = fit_gan(G, D, ds.train_x, time_budget=segment, seed=args.seed, device="cpu",
                        checkpoint_path=ckpt, resume=k > 1, checkpoint_every=10**9,
                        progress=False, log_every=100, snapshot=SnapshotConfig(n_fixed=16),
                        **recipe.fit_kwargs())
            t0 = time.perf_counter()
            scores = evaluate_generator(G, classifier, ds, n=n, seed=args.seed + 7,
                                        real_features=real_features)
            fake = sample_images(G, 64, seed=args.seed + 11)
            grid = args.out / f"{name}_{k * segment:.0f}s.png"
            save_grid_png(fake * 2 - 1, grid)
            row = {"model": name, "train_seconds": round(r.seconds, 1), "steps": r.steps,
                   "images_seen": r.steps * recipe.batch_size,
                   "images_per_sec": round(r.steps * recipe.batch_size / r.seconds, 1),
                   **{k2: v for k2, v in scores.items() if k2 != "class_fractions"},
                   "grid": str(grid), "score_seconds": round(time.perf_counter() - t0, 1)}
            results.append(row)
            print(f"[{row['train_seconds']:6.0f} s] {name:6s} steps {r.steps:6d} "
                  f"({row['images_per_sec']:6.1f} img/s) | Frechet {scores['frechet']:7.2f} | "
                  f"classes {scores['classes_covered']:2d}/10 | KL {scores['kl_to_uniform']:.4f} "
                  f"| memorisation ratio {scores['memorisation_ratio']:.2f} | {grid.name}",
                  flush=True)

    print("\nAt each report point (course vs peer):")
    ok = True
    for k in (1, 2, 3):
        ours, peer = results[2 * (k - 1)], results[2 * (k - 1) + 1]
        gain = 1 - ours["frechet"] / peer["frechet"]
        met = ours["classes_covered"] == 10 and ours["kl_to_uniform"] < 0.03 and gain >= 0.30
        if k == 3:
            ok = met
        print(f"  {k * segment:6.0f} s: Frechet {ours['frechet']:.2f} vs "
              f"{peer['frechet']:.2f} ({gain:.0%} lower), classes {ours['classes_covered']}/10, "
              f"KL {ours['kl_to_uniform']:.4f} -> {'target met' if met else 'target NOT met'}")
    summary = {"time_budget": args.time_budget, "samples": n, "floor": round(floor, 4),
               "results": results, "target_met_at_end": ok,
               "setup": config.describe_setup(torch.device("cpu")),
               "recipes": {"course": DCGAN_RECIPE.to_json(), "peer": DCGAN_PEER.to_json()}}
    path = args.out / f"bench_dcgan_{args.time_budget:g}s.json"
    path.write_text(json.dumps(summary, indent=1) + "\n")
    for name in runs:
        (args.out / f"{name}.ckpt.pt").unlink(missing_ok=True)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
