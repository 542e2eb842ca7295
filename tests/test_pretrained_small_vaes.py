"""The two small chapter-02 VAEs shipped with the course (the 2-D VAE of the latent map and the
conditional VAE) load with the architecture their metadata records, produce finite outputs of
the right shapes, record a test BCE + KL that re-scoring them agrees with, and the script that
makes them runs."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
import torch

from course_utils import pretrained
from course_utils.data import load_dataset
from course_utils.losses import vae_loss_fn
from course_utils.models.vae import ConvVAE
from course_utils.pretrained import HERE, load_cvae, load_vae2d, metadata
from course_utils.pretrained.train_small_vaes import (
    SPECS,
    train_small_vae,
    write_checkpoint,
)
from course_utils.training import evaluate
from course_utils.utils import float_state_dict

LOADERS: dict[str, Callable[[], torch.nn.Module]] = {"vae2d": load_vae2d, "cvae": load_cvae}
SHIPPED = [key for key, spec in SPECS.items() if (HERE / f"{spec.name}.json").is_file()]
N_SLICE = 2000                                  # test images re-scored against the record


def _batch(model: ConvVAE, n: int) -> tuple[torch.Tensor, ...]:
    """``n`` random images (n, 1, 28, 28), plus labels (n,) for a conditional model."""
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(n, 1, 28, 28, generator=gen)
    if not model.num_classes:
        return (x,)
    return x, torch.randint(0, model.num_classes, (n,), generator=gen)


def test_both_small_vaes_are_shipped() -> None:
    missing = sorted(set(SPECS) - set(SHIPPED))
    assert not missing, (f"missing shipped small VAEs {missing}; run "
                         "python -m course_utils.pretrained.train_small_vaes")


@pytest.mark.parametrize("key", SHIPPED)
def test_shipped_small_vae_has_its_recorded_architecture(key: str) -> None:
    spec, model = SPECS[key], LOADERS[key]()
    meta = metadata(spec.name)
    assert type(model) is spec.model_class and not model.training
    assert meta["model"] == f"course_utils.models.vae.{spec.model_class.__name__}"
    assert meta["kwargs"] == spec.kwargs, "the shipped model is not the notebook's architecture"
    assert {k: model.config()[k] for k in meta["kwargs"]} == meta["kwargs"]
    assert meta["parameters"] == sum(p.numel() for p in model.parameters())
    state = torch.load(HERE / f"{spec.name}.pt", map_location="cpu", weights_only=True)
    assert all(v.dtype == torch.float16 for v in state.values() if v.is_floating_point())


@pytest.mark.parametrize("key", SHIPPED)
def test_shipped_small_vae_gives_finite_outputs_of_the_right_shapes(key: str) -> None:
    model = LOADERS[key]()
    batch = _batch(model, 5)
    labels = batch[1:]
    with torch.no_grad():
        logits, mu, logvar = model(*batch)                   # (5, 1, 28, 28), (5, D), (5, D)
        samples = model.sample(7, generator=torch.Generator().manual_seed(1),
                               **({"labels": 3} if labels else {}))
    assert logits.shape == (5, 1, 28, 28)
    assert mu.shape == logvar.shape == (5, model.latent_dim)
    assert samples.shape == (7, 1, 28, 28)
    for t in (logits, mu, logvar, samples):
        assert torch.isfinite(t).all()
    assert samples.min() >= 0 and samples.max() <= 1


@pytest.mark.parametrize("key", SHIPPED)
def test_metadata_records_how_it_was_made(key: str) -> None:
    spec, meta = SPECS[key], metadata(SPECS[key].name)
    assert meta["command"].startswith("python -m course_utils.pretrained.train_small_vaes")
    assert meta["seed"] == 0 and meta["clock"] == "cpu" and meta["threads"] == 1
    assert meta["time_budget"] == spec.time_budget, "not the notebook's budget"
    assert meta["train_seconds_on_clock"] <= spec.time_budget + 5
    assert meta["train_cpu_seconds"] > 0 and meta["epochs"] > 0
    assert meta["given_labels"] == spec.conditional
    assert meta["data"] == "fashion-mnist" and len(meta["data_sha256"]) == 64
    assert meta["n_train"] == 60_000 and meta["n_test"] == 10_000
    assert meta["test_bce_plus_kl"] == pytest.approx(
        meta["test_recon_bce"] + meta["test_kl"], abs=0.01)
    assert meta["torch"] and meta["optimizer"]["lr_schedule"] == "cosine"


@pytest.mark.parametrize("key", SHIPPED)
def test_recorded_loss_agrees_with_a_slice_of_the_test_split(key: str) -> None:
    # The first 2,000 test images even in smoke mode (which keeps fewer by default).
    ds = load_dataset(allow_fallback=True, download=False, max_train=1, max_test=N_SLICE)
    if ds.is_fallback or len(ds.test_x) != N_SLICE:
        pytest.skip("needs Fashion-MNIST's test split on this machine")
    spec, model = SPECS[key], LOADERS[key]()
    meta = metadata(spec.name)
    tensors = (ds.test_x, ds.test_y)[:2 if spec.conditional else 1]
    score = evaluate(model, vae_loss_fn(1.0), tensors, seed=1)
    # A slice of 2,000 images, not the 10,000 of the record: agree within 1%.
    assert score["loss"] == pytest.approx(meta["test_bce_plus_kl"], rel=0.01)
    assert score["kl"] == pytest.approx(meta["test_kl"], rel=0.05)


def test_a_missing_checkpoint_names_the_script_that_makes_it(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(pretrained, "HERE", tmp_path)
    for loader in (load_vae2d, load_cvae):
        with pytest.raises(FileNotFoundError, match=r"pretrained\.train_small_vaes"):
            loader()


@pytest.mark.parametrize("key", list(SPECS))
def test_script_trains_and_writes_a_loadable_checkpoint(key: str, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("COURSE_SMOKE", "1")
    ds = load_dataset(allow_fallback=True)
    spec = SPECS[key]
    model, result = train_small_vae(spec, ds, 0.3, clock="wall", threads=None, progress=False)
    assert result.steps >= 1 and result.metrics["test_loss"] > 0
    meta = write_checkpoint(model, result, ds, spec, seed=0, clock="wall", time_budget=0.3,
                            threads=1, out_dir=tmp_path)
    saved = json.loads((tmp_path / f"{spec.name}.json").read_text())
    assert saved == meta and saved["kwargs"] == spec.kwargs
    state = torch.load(tmp_path / f"{spec.name}.pt", weights_only=True)
    assert all(v.dtype == torch.float16 for v in state.values() if v.is_floating_point())
    again = spec.model_class(**saved["kwargs"])
    again.load_state_dict(float_state_dict(state))
