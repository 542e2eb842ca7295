"""The shipped chapter-01 autoencoders load, match their metadata, and meet the target they
record (at least 30% below PCA at the same code size), and the script that makes them runs."""

from __future__ import annotations

import json

import pytest
import torch

from course_utils.data import load_dataset
from course_utils.metrics import reconstruction_mse
from course_utils.models.autoencoder import ConvAutoencoder
from course_utils.pretrained import HERE, load_autoencoder, metadata
from course_utils.pretrained.train_autoencoder import (
    CODE_SIZES,
    checkpoint_name,
    train_course_autoencoder,
    write_checkpoint,
)

SHIPPED = [k for k in CODE_SIZES if (HERE / f"{checkpoint_name(k)}.json").is_file()]


@pytest.mark.parametrize("k", SHIPPED)
def test_shipped_autoencoder_loads_and_meets_its_recorded_target(k: int) -> None:
    model = load_autoencoder(k)
    meta = metadata(checkpoint_name(k))
    assert isinstance(model, ConvAutoencoder) and not model.training
    assert model.encode(torch.zeros(3, 1, 28, 28)).shape == (3, k)
    assert meta["weights_dtype"] == "float16" and meta["n_test"] == 10_000
    assert meta["change_vs_pca"] == pytest.approx(
        (meta["test_mse"] - meta["pca_test_mse"]) / meta["pca_test_mse"], abs=1e-3)
    assert meta["change_vs_pca"] <= -0.30, "the shipped model misses the 30% target"
    assert meta["train_cpu_seconds"] <= 240, "trained for more than 2 minutes on 2 cores"


@pytest.mark.parametrize("k", SHIPPED[:1])
def test_recorded_error_is_the_shipped_weights_error(k: int) -> None:
    ds = load_dataset(allow_fallback=True)
    if ds.is_fallback or len(ds.test_x) != 10_000:
        pytest.skip("needs the full Fashion-MNIST test split")
    mse = reconstruction_mse(load_autoencoder(k), ds.test_x)
    assert mse == pytest.approx(metadata(checkpoint_name(k))["test_mse"], abs=2e-5)


def test_unknown_code_size_names_the_shipped_ones() -> None:
    with pytest.raises(FileNotFoundError, match="code size 7"):
        load_autoencoder(7)


def test_script_trains_and_writes_a_loadable_checkpoint(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("COURSE_SMOKE", "1")
    ds = load_dataset(allow_fallback=True)
    model, result = train_course_autoencoder(ds, 2, 0.5, clock="wall", threads=None,
                                             progress=False)
    assert result.metrics["test_mse"] > 0 and result.steps >= 1
    meta = write_checkpoint(model, result, ds, code_size=2, seed=0, clock="wall",
                            time_budget=0.5, threads=1, out_dir=tmp_path)
    saved = json.loads((tmp_path / "autoencoder_k2.json").read_text())
    assert saved == meta and saved["kwargs"]["code_size"] == 2
    state = torch.load(tmp_path / "autoencoder_k2.pt", weights_only=True)
    assert all(v.dtype == torch.float16 for v in state.values() if v.is_floating_point())


def test_every_code_size_of_chapter_01_is_shipped() -> None:
    assert SHIPPED == list(CODE_SIZES), (f"missing shipped autoencoders for k = "
                                         f"{sorted(set(CODE_SIZES) - set(SHIPPED))}; run "
                                         "python -m course_utils.pretrained.train_autoencoder")
