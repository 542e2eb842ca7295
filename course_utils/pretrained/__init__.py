"""Small checkpoints shipped with the package, their loaders, and the scripts that made them.

Each ``*.pt`` file has a ``*.json`` next to it recording how it was made (command, seed, data
hash, metrics). Loaders return models in eval mode on the CPU (move them with ``.to(device)``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from ..utils import float_state_dict

HERE = Path(__file__).resolve().parent


# The script that makes a checkpoint, where it is not ``train_<first word of its name>``.
_SCRIPTS = {"vae2d_fashion": "train_small_vaes", "cvae_fashion": "train_small_vaes"}


def _read(name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Load ``name.pt`` (a state_dict) and ``name.json`` (its metadata) from this folder."""
    weights, meta = HERE / f"{name}.pt", HERE / f"{name}.json"
    missing = [p.name for p in (weights, meta) if not p.is_file()]
    if missing:
        script = _SCRIPTS.get(name, f"train_{name.split('_')[0]}")
        raise FileNotFoundError(f"the shipped checkpoint files {missing} are missing from {HERE}; "
                                f"reinstall course_utils, or recreate them with "
                                f"python -m course_utils.pretrained.{script}")
    return torch.load(weights, map_location="cpu", weights_only=True), json.loads(meta.read_text())


def metadata(name: str) -> dict[str, Any]:
    """The JSON metadata of a shipped checkpoint, e.g. ``metadata("classifier")``."""
    path = HERE / f"{name}.json"
    if not path.is_file():
        raise FileNotFoundError(f"no metadata {path}")
    return json.loads(path.read_text())


# ---------------------------------------------------------------- DCGAN chapter (classifier, G)

def load_classifier() -> torch.nn.Module:
    """The Fashion-MNIST classifier used for class histograms and Frechet distances."""
    from ..models.classifier import FashionClassifier

    state, meta = _read("classifier")
    model = FashionClassifier(**meta["kwargs"])
    model.load_state_dict(state)
    return model.eval()


def load_dcgan_generator() -> torch.nn.Module:
    """The shipped DCGAN generator (``python -m course_utils.pretrained.train_dcgan``).

    Its weights are stored in float16 to halve the file; they are loaded as float32.
    """
    from ..models.dcgan import Generator

    state, meta = _read("dcgan_generator")
    model = Generator(**meta["kwargs"])
    model.load_state_dict(float_state_dict(state))
    return model.eval()


def load_dcgan_discriminator() -> torch.nn.Module:
    """The discriminator trained together with the shipped generator (float16 on disk)."""
    from ..models.dcgan import Discriminator

    meta = metadata("dcgan_generator")
    path = HERE / "dcgan_discriminator.pt"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; reinstall course_utils or run "
                                "python -m course_utils.pretrained.train_dcgan")
    state = torch.load(path, map_location="cpu", weights_only=True)
    model = Discriminator(**meta["discriminator_kwargs"])
    model.load_state_dict(float_state_dict(state))
    return model.eval()


def load_dcgan_run() -> tuple[dict[str, list[float]], list[tuple[int, torch.Tensor]]]:
    """The shipped generator's training history ``{metric: [values]}`` (thinned) and its
    fixed-noise snapshots ``[(step, images (16, 1, 28, 28) in [0, 1])]``, for the plots in
    :mod:`course_utils.plots`."""
    records = metadata("dcgan_generator")["history"]
    history = {k: [r[k] for r in records] for k in records[0]}
    path = HERE / "dcgan_generator_snapshots.pt"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; reinstall course_utils or run "
                                "python -m course_utils.pretrained.train_dcgan")
    snaps = torch.load(path, map_location="cpu", weights_only=True)
    pairs = zip(snaps["steps"], snaps["images"], strict=True)
    return history, [(int(s), img.float() / 255) for s, img in pairs]


# ---------------------------------------------------------------- VAE chapter (02)

def load_vae() -> torch.nn.Module:
    """The shipped convolutional VAE (16-D latent), trained on Fashion-MNIST by
    ``python -m course_utils.pretrained.train_vae``; ``metadata("vae_fashion")`` gives the
    test BCE + KL it reached, the data hash, the seed and the training time."""
    from ..models.vae import ConvVAE

    state, meta = _read("vae_fashion")
    model = ConvVAE(**meta["kwargs"])
    model.load_state_dict(float_state_dict(state))
    return model.eval()


def load_vae2d() -> torch.nn.Module:
    """The shipped 2-D ``ConvVAE`` of chapter 02's latent map (section 8), trained on
    Fashion-MNIST by ``python -m course_utils.pretrained.train_small_vaes``;
    ``metadata("vae2d_fashion")`` gives its test BCE + KL, the seed, the data hash and the
    training time."""
    from ..models.vae import ConvVAE

    state, meta = _read("vae2d_fashion")
    model = ConvVAE(**meta["kwargs"])
    model.load_state_dict(float_state_dict(state))
    return model.eval()


def load_cvae() -> torch.nn.Module:
    """The shipped ``ConditionalVAE`` (16-D latent, 10 classes) of chapter 02's section 11 and
    chapter 04's comparison, trained by ``python -m course_utils.pretrained.train_small_vaes``;
    ``metadata("cvae_fashion")`` gives its test BCE + KL (given the labels), the seed, the data
    hash and the training time."""
    from ..models.vae import ConditionalVAE

    state, meta = _read("cvae_fashion")
    model = ConditionalVAE(**meta["kwargs"])
    model.load_state_dict(float_state_dict(state))
    return model.eval()


# ---------------------------------------------------------------- autoencoder chapter (01)

def load_autoencoder(code_size: int) -> torch.nn.Module:
    """The shipped ``ConvAutoencoder`` with a ``code_size``-number code (2, 10 or 32), trained
    on Fashion-MNIST by ``python -m course_utils.pretrained.train_autoencoder``;
    ``metadata(f"autoencoder_k{code_size}")`` gives its test MSE per pixel, PCA's at the same
    code size, the training time and the data hash."""
    from ..models.autoencoder import ConvAutoencoder

    if not (HERE / f"autoencoder_k{code_size}.json").is_file():
        shipped = sorted(int(p.stem.split("_k")[1]) for p in HERE.glob("autoencoder_k*.json"))
        raise FileNotFoundError(f"no shipped autoencoder with code size {code_size}; the "
                                f"shipped code sizes are {shipped}")
    state, meta = _read(f"autoencoder_k{code_size}")
    model = ConvAutoencoder(**meta["kwargs"])
    model.load_state_dict(float_state_dict(state))
    return model.eval()
