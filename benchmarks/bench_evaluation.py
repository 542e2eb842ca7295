"""Chapter 04 benchmark: the comparison table of four generators, and the time each part takes.

    nice -n 10 python benchmarks/bench_evaluation.py          # full: ~6 min on 2 cores
    COURSE_SMOKE=1 python benchmarks/bench_evaluation.py       # smoke: seconds, numbers meaningless

It does what ``notebooks/solutions/04_evaluation.ipynb`` does, without the figures:

* trains a convolutional autoencoder (16-D code) and a conditional VAE for a wall-clock
  budget (``--ae-seconds``, ``--cvae-seconds``), and loads the shipped VAE and DCGAN;
* the importance-weighted bound of the shipped VAE on a binarised copy of the first
  ``--iwae-images`` test images, for k = 1, 10, 100, 1000;
* :func:`course_utils.evaluation.compare_generators` with ``--samples`` images per model:
  Frechet distance (and the real-train vs real-test floor), classes covered, KL to uniform,
  precision, recall, memorisation ratio, sampling speed, plus each model's training time,
  test reconstruction MSE and BCE + KL where it has them.

Every part's wall-clock time is printed, so the cost of each measurement is visible.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import torch

from course_utils import config, metrics
from course_utils import evaluation as ev
from course_utils.data import load_dataset, to_zero_one
from course_utils.losses import vae_loss_fn
from course_utils.models.autoencoder import ConvAutoencoder, autoencoder_loss, encode_images
from course_utils.models.vae import ConditionalVAE
from course_utils.pretrained import load_classifier, load_dcgan_generator, load_vae, metadata
from course_utils.training import fit

TIMES: dict[str, float] = {}


def timed(name: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Call fn, record and print its wall-clock seconds under ``name``."""
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    TIMES[name] = time.perf_counter() - start
    print(f"  [{TIMES[name]:7.1f} s] {name}", flush=True)
    return out


def train_models(ds: Any, ae_seconds: float, cvae_seconds: float
                 ) -> tuple[ConvAutoencoder, ConditionalVAE]:
    """The two models that have no shipped checkpoint, trained for a time budget each."""
    config.seed_everything(0)
    ae = ConvAutoencoder(code_size=16, **config.pick(smoke=dict(width=8, hidden=64), full={}))
    timed("train autoencoder", fit, ae, autoencoder_loss, (ds.train_x,), time_budget=ae_seconds,
          lr=2e-3)
    config.seed_everything(0)
    cvae = ConditionalVAE(latent_dim=16, num_classes=10, **config.pick(
        smoke=dict(width=8, hidden=0), full=dict(width=16, hidden=256)))
    timed("train conditional VAE", fit, cvae, vae_loss_fn(1.0), (ds.train_x, ds.train_y),
          time_budget=cvae_seconds, lr=3e-3)
    return ae.eval(), cvae.eval()


def samplers(ds: Any, ae: ConvAutoencoder, cvae: ConditionalVAE, vae: torch.nn.Module,
             iwae: float) -> dict[str, ev.Sampler]:
    """The four generators, with the columns only some of them have."""
    G = load_dcgan_generator().eval()
    ae_mse = timed("autoencoder test MSE", metrics.reconstruction_mse, ae, ds.test_x)
    vae_s = timed("VAE test BCE + KL", ev.vae_test_scores, vae, ds.test_x)
    cvae_s = timed("CVAE test BCE + KL", ev.vae_test_scores, cvae, ds.test_x, ds.test_y)
    codes = encode_images(ae, ds.train_x[:20_000])
    return {
        "AE + fitted Gaussian": ev.Sampler(
            ev.gaussian_code_sampler(ae.decode, codes),
            {"train s": TIMES["train autoencoder"], "test MSE/px": ae_mse}),
        "VAE": ev.Sampler(
            lambda n, g: vae.sample(n, generator=g),
            {"train s": metadata("vae_fashion")["train_cpu_seconds"],
             "test MSE/px": vae_s["mse_per_pixel"], "BCE+KL": vae_s["bce_plus_kl"],
             "IWAE (bin.)": iwae}),
        "CVAE": ev.Sampler(
            lambda n, g: cvae.sample(n, generator=g,
                                     labels=torch.randint(0, 10, (n,), generator=g)),
            {"train s": TIMES["train conditional VAE"], "test MSE/px": cvae_s["mse_per_pixel"],
             "BCE+KL": cvae_s["bce_plus_kl"]}),
        "DCGAN": ev.Sampler(
            lambda n, g: to_zero_one(G(torch.randn(n, G.latent_dim, generator=g))),
            {"train s": metadata("dcgan_generator")["train_seconds"]}),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=config.pick(smoke=300, full=10_000))
    parser.add_argument("--iwae-images", type=int, default=config.pick(smoke=16, full=200))
    parser.add_argument("--ae-seconds", type=float, default=config.pick(smoke=2, full=30))
    parser.add_argument("--cvae-seconds", type=float, default=config.pick(smoke=3, full=90))
    args = parser.parse_args(argv)
    if args.samples <= 128:
        parser.error("--samples must exceed the feature dimension (128)")

    torch.set_grad_enabled(True)
    print(config.describe_setup(torch.device("cpu")))
    ds = timed("load data", load_dataset, allow_fallback=True)
    print(ds.describe())
    classifier, vae = load_classifier(), load_vae()
    ae, cvae = train_models(ds, args.ae_seconds, args.cvae_seconds)

    x_bin = ev.binarize(ds.test_x[:args.iwae_images], seed=0)
    ks = config.pick(smoke=[1, 10, 100], full=[1, 10, 100, 1000])
    bounds = {k: timed(f"IWAE k={k} on {len(x_bin)} images", ev.vae_iwae_bound, vae, x_bin, k,
                       seed=k) for k in ks}
    print("IWAE bound of the shipped VAE, binarised test images (nats per image):")
    for k in ks:
        gain = bounds[k] - bounds[ks[0]]
        print(f"  k = {k:>4d}: {bounds[k].mean():8.2f} +- {bounds[k].std() / len(x_bin) ** 0.5:.2f}"
              f"   gain over k = 1: {gain.mean():5.2f} +- {gain.std() / len(x_bin) ** 0.5:.2f}")

    models = samplers(ds, ae, cvae, vae, float(bounds[ks[-1]].mean()))
    table = timed("compare_generators", ev.compare_generators, models, classifier, ds.test_x,
                  ds.train_x, n=min(args.samples, len(ds.test_x)),
                  n_memorisation=config.pick(smoke=100, full=1000))
    print(f"\nComparison table ({table.n:,} samples per model):")
    print(table)
    print("\nseconds per part of compare_generators:")
    for name, seconds in table.seconds.items():
        print(f"  {seconds:7.1f} s  {name}")
    print(f"\ntotal: {sum(TIMES.values()):.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
