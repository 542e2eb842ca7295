"""Train the Fashion-MNIST classifier the course uses to measure generated images.

    python -m course_utils.pretrained.train_classifier            # writes classifier.pt/.json
    python -m course_utils.pretrained.train_classifier --epochs 1 --out /tmp/clf

It trains :class:`course_utils.models.classifier.FashionClassifier` with the course's shared
loop (:func:`course_utils.training.fit`), then writes, next to this file by default:

* ``classifier.pt``: the ``state_dict`` (float32, well under 1 MB);
* ``classifier.json``: test accuracy, the SHA-256 of the data it saw, the seed, the
  architecture, the training time and the real-train vs real-test Frechet floor.

``--flip`` adds random horizontal flips (Fashion-MNIST items are nearly left-right symmetric);
the shipped weights were trained without it (see ``augmentation`` in the JSON).
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import platform
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import config
from ..data import Dataset, load_dataset
from ..models.classifier import FashionClassifier
from ..training import TrainResult, evaluate, fit
from ..utils import atomic_write

HERE = Path(__file__).resolve().parent


def dataset_hash(ds: Dataset) -> str:
    """SHA-256 of the images (as bytes 0-255) and labels of both splits, in order."""
    digest = hashlib.sha256()
    for t in (ds.train_x, ds.train_y, ds.test_x, ds.test_y):
        if t.is_floating_point():
            t = (t * 255).round().to(torch.uint8)
        digest.update(t.contiguous().numpy().tobytes())
    return digest.hexdigest()


def classification_loss(model: nn.Module, batch: tuple[Tensor, ...],
                        flip: bool = False) -> dict[str, Tensor]:
    """Cross-entropy and accuracy; with ``flip``, half the training images are mirrored."""
    x, y = batch                                               # (B, 1, 28, 28), (B,)
    if flip and model.training:
        flip = torch.rand(len(x), device=x.device) < 0.5
        x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    logits = model(x)                                          # (B, 10)
    return {"loss": F.cross_entropy(logits, y),
            "accuracy": (logits.argmax(1) == y).float().mean()}


def train(epochs: int = 5, lr: float = 3e-3, batch_size: int = 128, seed: int = 0,
          width: int = 16, feature_dim: int = 128, out_dir: Path = HERE,
          flip: bool = False, progress: bool = True,
          checkpoint: Path | None = None) -> TrainResult:
    """Train, save ``classifier.pt`` and ``classifier.json`` in ``out_dir``; the result's
    ``metrics`` hold the metadata written to the JSON."""
    ds = load_dataset("fashion-mnist")
    if ds.is_fallback:
        raise RuntimeError("the shipped classifier must be trained on Fashion-MNIST")
    config.seed_everything(seed)
    model = FashionClassifier(width=width, feature_dim=feature_dim)
    start = time.perf_counter()
    result = fit(model, functools.partial(classification_loss, flip=flip),
                 (ds.train_x, ds.train_y), test_tensors=(ds.test_x, ds.test_y), epochs=epochs,
                 lr=lr, lr_schedule="onecycle", batch_size=batch_size, device="cpu", seed=seed,
                 progress=progress, desc="classifier", checkpoint_path=checkpoint,
                 resume=checkpoint is not None)
    seconds = time.perf_counter() - start
    model.eval()
    test = evaluate(model, classification_loss, (ds.test_x, ds.test_y))

    from ..metrics import real_floor
    floor = real_floor(model, ds.train_x, ds.test_x, n=10_000, seed=seed)

    out_dir = Path(out_dir)
    atomic_write(out_dir / "classifier.pt", lambda f: torch.save(model.state_dict(), f))
    meta = {
        "model": "course_utils.models.classifier.FashionClassifier",
        "kwargs": {"width": width, "feature_dim": feature_dim, "num_classes": 10},
        "test_accuracy": round(test["accuracy"], 4),
        "test_loss": round(test["loss"], 4),
        "frechet_floor_train_vs_test_10k": round(floor, 4),
        "data": ds.name, "data_sha256": dataset_hash(ds),
        "n_train": len(ds.train_x), "n_test": len(ds.test_x),
        "seed": seed, "epochs": epochs, "lr": lr, "lr_schedule": "onecycle",
        "batch_size": batch_size, "augmentation": "random horizontal flip" if flip else "none",
        "train_seconds": round(seconds, 1),
        "history": [{k: round(v, 4) for k, v in r.items()} for r in result.history],
        "torch": torch.__version__, "python": platform.python_version(),
        "command": "python -m course_utils.pretrained.train_classifier",
    }
    atomic_write(out_dir / "classifier.json",
                 lambda f: f.write((json.dumps(meta, indent=2) + "\n").encode()))
    result.metrics.update(meta)
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--flip", action="store_true", help="random horizontal flips")
    parser.add_argument("--out", type=Path, default=HERE, help="output folder")
    parser.add_argument("--checkpoint", type=Path,
                        help="save progress here every epoch and resume from it if present")
    args = parser.parse_args(argv)
    meta = train(args.epochs, args.lr, args.batch_size, args.seed, args.width, out_dir=args.out,
                 flip=args.flip, checkpoint=args.checkpoint).metrics
    print(f"test accuracy {meta['test_accuracy']:.4f} | Frechet floor "
          f"{meta['frechet_floor_train_vs_test_10k']:.3f} | {meta['train_seconds']:.0f} s | "
          f"wrote {args.out / 'classifier.pt'}")


if __name__ == "__main__":
    main()
