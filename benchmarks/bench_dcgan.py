"""DCGAN benchmark: the course's recipe, one-variable variants of it and the PyTorch tutorial's
settings, over several seeds, each run given the same CPU time.

    nice -n 10 python benchmarks/bench_dcgan.py    # course + peer, seeds 0 1 2: ~50 min, 2 cores
    python benchmarks/bench_dcgan.py --variants course course_ema --seeds 0 --time-budget 60

What is compared (``--variants``, default ``course peer``):

* ``course``: ``course_utils.recipes.DCGAN_RECIPE`` (width 32, batch 64, one-sided label
  smoothing);
* ``peer``: the PyTorch tutorial's settings, ``peers.DCGAN_PEER`` (width 64, latent 100, Adam
  2e-4 with beta1 0.5, batch 128);
* one-variable changes of the course recipe (``dataclasses.replace``): ``course_ema`` (an
  exponential moving average of G's weights, decay 0.999), ``course_lr2x`` (both learning
  rates doubled), ``course_bs32`` (batch 32), ``course_ttur`` (D 4e-4, G 1e-4).

Each (variant, seed) trains in its own child process with one torch thread, its budget counted
on that process's CPU clock (``budget_clock("cpu")``), at most ``--jobs`` processes at a time:
other load on the machine stretches the wall time without changing what a run gets. At 1/3,
2/3 and all of ``--time-budget`` seconds of training (scoring is not counted) the generator is
scored with the shipped classifier (``evaluate_generator``, ``--samples`` samples): Frechet
distance (FD) to the test images in the classifier's 128-d penultimate features (not
comparable with Inception FID; the real-train vs real-test floor is printed), classes covered
(>= 1% of samples), KL(class histogram || uniform), and a sample grid as a PNG. A variant with
the moving average is scored twice at each point, G itself (``course_ema``) and the average
(``course_ema+ema``), both on the same training run and the same noise.

The table gives, per report point and entry, the FD mean +- standard deviation over seeds and
its range, classes covered, KL, and images seen. Targets, for the course's entries: FD (mean
over seeds) <= 45 at 300 s; at 900 s FD <= 25, 10/10 classes and KL < 0.01 in every seed;
each entry's FD is also given as a ratio to the peer's. With another budget, the targets are
checked at the first and last report points. Results go to ``benchmarks/results/dcgan/``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from peers import DCGAN_PEER

from course_utils.recipes import DCGAN_RECIPE, DCGANRecipe

_C = DCGAN_RECIPE
#: The runs one can compare: the course recipe, the peer, and one-variable changes of the recipe.
VARIANTS: dict[str, DCGANRecipe] = {
    "course": _C,
    "peer": DCGAN_PEER,
    "course_ema": dataclasses.replace(_C, g_ema=0.999),
    "course_lr2x": dataclasses.replace(_C, g_optim=dataclasses.replace(_C.g_optim, lr=4e-4),
                                       d_optim=dataclasses.replace(_C.d_optim, lr=4e-4)),
    "course_bs32": dataclasses.replace(_C, batch_size=32),
    "course_ttur": dataclasses.replace(_C, g_optim=dataclasses.replace(_C.g_optim, lr=1e-4),
                                       d_optim=dataclasses.replace(_C.d_optim, lr=4e-4)),
}
TARGET_EARLY = (300.0, 45.0)                    # (seconds, FD at most)
TARGET_END = (900.0, 25.0, 0.01)                # (seconds, FD at most, KL below), 10/10 classes
POINTS = (1, 2, 3)                              # report at k/3 of the budget


# ----------------------------------------------------------------------------- one run (a child)

def _worker(variant: str, seed: int, time_budget: float, samples: int, out: Path
            ) -> list[dict[str, Any]]:
    """Train one (variant, seed) on one thread and the CPU clock; score at each report point."""
    from course_utils.data import load_dataset
    from course_utils.metrics import classifier_features
    from course_utils.pretrained import load_classifier
    from course_utils.training import SnapshotConfig, budget_clock, fit_gan

    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)
    recipe = VARIANTS[variant]
    ds = load_dataset("fashion-mnist")
    classifier = load_classifier()
    n = min(samples, len(ds.test_x))
    real_features = classifier_features(classifier, ds.test_x[:n])
    G, D = recipe.build(seed)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for k in POINTS:
            r = fit_gan(G, D, ds.train_x, time_budget=time_budget / len(POINTS), seed=seed,
                        device="cpu", checkpoint_path=Path(tmp) / "run.pt", resume=k > 1,
                        checkpoint_every=10**9, progress=False, log_every=100,
                        snapshot=SnapshotConfig(n_fixed=16), clock=budget_clock("cpu"),
                        **recipe.fit_kwargs())
            at = {"variant": variant, "seed": seed, "point": k,
                  "point_seconds": k * time_budget / len(POINTS),
                  "train_seconds": round(r.seconds, 1), "steps": r.steps,
                  "images_seen": r.steps * recipe.batch_size,
                  "images_per_sec": round(r.steps * recipe.batch_size / max(r.seconds, 1e-9), 1)}
            generators = {variant: G}
            if r.g_ema is not None:                     # the average, on the same run
                generators[f"{variant}+ema"] = r.g_ema
            for entry, g in generators.items():
                rows.append(_score(entry, g, at, classifier, ds, n, real_features, out))
    return rows


def _score(entry: str, G: torch.nn.Module, at: dict[str, Any], classifier: torch.nn.Module,
           ds: Any, n: int, real_features: Any, out: Path) -> dict[str, Any]:
    """Score one generator at one report point, save its sample grid, print one line."""
    from course_utils.metrics import evaluate_generator
    from course_utils.models.dcgan import sample_images
    from course_utils.training import save_grid_png

    t0 = time.perf_counter()
    scores = evaluate_generator(G, classifier, ds, n=n, seed=at["seed"] + 7,
                                real_features=real_features)
    grid = out / f"{entry}_s{at['seed']}_{at['point_seconds']:.0f}s.png"
    save_grid_png(sample_images(G, 64, seed=at["seed"] + 11) * 2 - 1, grid)
    row = {"entry": entry, **at, **scores, "grid": str(grid),
           "score_seconds": round(time.perf_counter() - t0, 1)}
    print(f"[{entry:>16} s{at['seed']} {at['point_seconds']:5.0f} s] steps {at['steps']:6d} "
          f"({at['images_per_sec']:6.1f} img/s) | FD {scores['frechet']:7.2f} | classes "
          f"{scores['classes_covered']:2d}/10 | KL {scores['kl_to_uniform']:.4f} | "
          f"memorisation {scores['memorisation_ratio']:.2f} | score {row['score_seconds']:.0f} s",
          flush=True)
    return row


# ----------------------------------------------------------------------------- the parent

def _run_children(tasks: list[tuple[str, int]], args: argparse.Namespace
                  ) -> list[dict[str, Any]]:
    """Run each (variant, seed) as a child process of this script, ``args.jobs`` at a time."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "COURSE_SMOKE": "0"}
    pending, running, rows, failed = list(tasks), [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        while pending or running:
            while pending and len(running) < args.jobs:
                variant, seed = pending.pop(0)
                result = Path(tmp) / f"{variant}_s{seed}.json"
                cmd = [sys.executable, __file__, "--worker", variant, "--seeds", str(seed),
                       "--time-budget", str(args.time_budget), "--samples", str(args.samples),
                       "--out", str(args.out), "--result", str(result)]
                running.append((subprocess.Popen(cmd, env=env), f"{variant} seed {seed}", result))
            time.sleep(0.5)
            for child, name, result in [c for c in running if c[0].poll() is not None]:
                running.remove((child, name, result))
                if child.returncode == 0:
                    rows.extend(json.loads(result.read_text()))
                else:
                    failed.append(f"{name} (exit code {child.returncode})")
    if failed:
        raise RuntimeError(f"benchmark runs failed: {', '.join(failed)}")
    return rows


def _summarise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (report point, entry): FD mean, sd and range over seeds, classes, KL, images."""
    groups: dict[tuple[int, str], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["point"], r["entry"]), []).append(r)
    summary = []
    for (point, entry), rs in groups.items():
        fd = [r["frechet"] for r in rs]
        summary.append({
            "point": point, "point_seconds": rs[0]["point_seconds"], "entry": entry,
            "seeds": sorted(r["seed"] for r in rs), "fd_mean": statistics.fmean(fd),
            "fd_sd": statistics.stdev(fd) if len(fd) > 1 else 0.0, "fd_min": min(fd),
            "fd_max": max(fd), "classes_min": min(r["classes_covered"] for r in rs),
            "classes_max": max(r["classes_covered"] for r in rs),
            "kl_mean": statistics.fmean(r["kl_to_uniform"] for r in rs),
            "kl_max": max(r["kl_to_uniform"] for r in rs),
            "images_seen": statistics.fmean(r["images_seen"] for r in rs)})
    return summary


def _print_table(summary: list[dict[str, Any]], entries: list[str]) -> None:
    """The summary, one line per report point and entry."""
    header = (f"{'point':>7}  {'entry':<18} {'FD mean +- sd':>16} {'FD min-max':>15} "
              f"{'classes':>8} {'KL mean (max)':>16} {'images seen':>12} {'seeds':>5}")
    print(header)
    print("-" * len(header))
    order = {e: i for i, e in enumerate(entries)}
    for s in sorted(summary, key=lambda s: (s["point"], order[s["entry"]])):
        classes = f"{s['classes_min']}" if s["classes_min"] == s["classes_max"] \
            else f"{s['classes_min']}-{s['classes_max']}"
        print(f"{s['point_seconds']:5.0f} s  {s['entry']:<18} "
              f"{s['fd_mean']:8.2f} +- {s['fd_sd']:5.2f} {s['fd_min']:7.2f}-{s['fd_max']:<7.2f} "
              f"{classes + '/10':>8} {s['kl_mean']:7.4f} ({s['kl_max']:.4f}) "
              f"{s['images_seen']:12,.0f} {len(s['seeds']):>5}")


def _targets(summary: list[dict[str, Any]], entries: list[str]) -> list[dict[str, Any]]:
    """Check the targets for every entry that is not the peer's; print and return verdicts."""
    at = {(s["point"], s["entry"]): s for s in summary}
    first, last = POINTS[0], POINTS[-1]
    verdicts = []
    print("\nTargets (FD: mean over seeds; classes and KL: in every seed):")
    for entry in entries:
        if entry.startswith("peer"):
            continue
        ratios = "no peer in this run"
        if "peer" in entries:
            ratios = ", ".join(f"{at[k, entry]['point_seconds']:.0f} s "
                               f"{at[k, entry]['fd_mean'] / at[k, 'peer']['fd_mean']:.2f}"
                               for k in POINTS)
        early, end = at[first, entry], at[last, entry]
        ok_early = early["fd_mean"] <= TARGET_EARLY[1]
        ok_end = (end["fd_mean"] <= TARGET_END[1] and end["classes_min"] == 10
                  and end["kl_max"] < TARGET_END[2])
        verdicts.append({"entry": entry, "early_met": ok_early, "end_met": ok_end})
        print(f"  {entry}: at {early['point_seconds']:.0f} s FD {early['fd_mean']:.2f} <= "
              f"{TARGET_EARLY[1]:g}: {'met' if ok_early else 'NOT met'}")
        print(f"  {' ' * len(entry)}  at {end['point_seconds']:.0f} s FD {end['fd_mean']:.2f} <= "
              f"{TARGET_END[1]:g}, classes {end['classes_min']}/10 in every seed, KL max "
              f"{end['kl_max']:.4f} < {TARGET_END[2]:g}: {'met' if ok_end else 'NOT met'}")
        print(f"  {' ' * len(entry)}  FD / peer's FD: {ratios}")
    return verdicts


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--time-budget", type=float, default=900.0, metavar="SECONDS",
                        help="training CPU seconds per run (reports at 1/3, 2/3 and 3/3)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--variants", nargs="+", default=["course", "peer"],
                        choices=sorted(VARIANTS), help="what to compare (default course peer)")
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time (one thread each)")
    parser.add_argument("--samples", type=int, default=10_000, help="samples per score")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "dcgan")
    parser.add_argument("--worker", choices=sorted(VARIANTS), help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.samples <= 128:
        parser.error("--samples must exceed the feature dimension (128)")
    if args.jobs < 1:
        parser.error("--jobs must be at least 1")
    args.variants = list(dict.fromkeys(args.variants))
    return args


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.worker:                                   # one (variant, seed) in a child process
        rows = _worker(args.worker, args.seeds[0], args.time_budget, args.samples, args.out)
        args.result.write_text(json.dumps(rows))
        return 0
    from course_utils import config
    from course_utils.data import load_dataset
    from course_utils.metrics import real_floor
    from course_utils.pretrained import load_classifier

    if config.is_smoke():
        print("note: COURSE_SMOKE is set; the benchmark needs the full data, unsetting it")
        os.environ["COURSE_SMOKE"] = "0"
    torch.set_num_threads(1)
    load0, t0 = os.getloadavg(), time.perf_counter()
    tasks = [(v, s) for s in args.seeds for v in args.variants]
    print(f"{config.describe_setup(torch.device('cpu'))}\n{len(tasks)} runs of "
          f"{args.time_budget:g} CPU s each (variants {' '.join(args.variants)}, seeds "
          f"{' '.join(map(str, args.seeds))}), {args.jobs} at a time, one thread each; "
          f"load average at start {load0[0]:.2f} ({os.cpu_count()} CPUs)", flush=True)
    rows = _run_children(tasks, args)
    ds = load_dataset("fashion-mnist")
    n = min(args.samples, len(ds.test_x))
    floor = real_floor(load_classifier(), ds.train_x, ds.test_x, n=n, seed=0)
    load1, wall = os.getloadavg(), time.perf_counter() - t0
    entries = list(dict.fromkeys(r["entry"] for r in rows))
    entries.sort(key=lambda e: (args.variants.index(e.removesuffix("+ema")), e))
    summary = _summarise(rows)
    print(f"\nDCGAN benchmark: {args.time_budget:g} CPU s per run, {n:,} samples per score, "
          f"real-train vs real-test FD floor {floor:.3f}")
    print(f"load average at start {load0[0]:.2f}, at end {load1[0]:.2f} (above "
          f"{os.cpu_count()} means the CPU was shared); total wall time {wall:.0f} s")
    _print_table(summary, entries)
    verdicts = _targets(summary, entries)
    if args.time_budget != TARGET_END[0]:
        print(f"  (the targets are for {TARGET_EARLY[0]:g} s and {TARGET_END[0]:g} s; this run's "
              f"report points are {', '.join(f'{k * args.time_budget / 3:g}' for k in POINTS)} s)")
    path = args.out / (f"bench_dcgan_{args.time_budget:g}s_{'-'.join(args.variants)}_seeds"
                       f"{'-'.join(map(str, args.seeds))}.json")
    path.write_text(json.dumps({
        "time_budget": args.time_budget, "samples": n, "floor": round(floor, 4),
        "seeds": args.seeds, "load_average": [load0[0], load1[0]], "wall_seconds": round(wall),
        "recipes": {v: VARIANTS[v].to_json() for v in args.variants}, "summary": summary,
        "targets": verdicts, "results": rows, "setup": config.describe_setup(torch.device("cpu"))
    }, indent=1) + "\n")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
