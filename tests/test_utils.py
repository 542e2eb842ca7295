"""The shared idioms (course_utils.utils) and the shared settings (course_utils.recipes)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from course_utils.utils import (
    atomic_write,
    batched,
    evaluating,
    float_state_dict,
    half_state_dict,
    tile_images,
)


def test_evaluating_switches_to_eval_without_grad_and_restores_the_mode() -> None:
    model = nn.Sequential(nn.Linear(3, 3), nn.Dropout(0.5))
    model.train()
    with evaluating(model):
        assert not model.training and not torch.is_grad_enabled()
        assert not model(torch.ones(1, 3)).requires_grad
    assert model.training and torch.is_grad_enabled()
    with pytest.raises(RuntimeError, match="boom"), evaluating(model):
        raise RuntimeError("boom")
    assert model.training                                    # restored after an error too
    model.eval()
    with evaluating(model):
        pass
    assert not model.training                                # an eval model stays in eval


def test_batched_matches_one_call_and_passes_none_through() -> None:
    x = torch.randn(10, 4)
    w = torch.randn(4, 2, requires_grad=True)
    sizes: list[int] = []

    def fn(xb: torch.Tensor) -> torch.Tensor:
        sizes.append(len(xb))
        return xb @ w

    out = batched(fn, x, batch_size=4)
    assert sizes == [4, 4, 2] and not out.requires_grad
    assert torch.allclose(out, x @ w)
    both = batched(lambda a, b: a + (0 if b is None else b), (x, None), batch_size=3,
                   device="cpu")
    assert torch.equal(both, x)
    with pytest.raises(ValueError, match="batch_size"):
        batched(fn, x, batch_size=0)


def test_tile_images_lays_rows_out_left_to_right() -> None:
    images = torch.arange(6 * 2 * 3, dtype=torch.float32).reshape(6, 1, 2, 3)
    grid = tile_images(images, nrow=3)
    assert grid.shape == (4, 9)
    expected = images[:, 0].numpy().reshape(2, 3, 2, 3).transpose(0, 2, 1, 3).reshape(4, 9)
    assert np.array_equal(grid, expected)
    padded = tile_images(images[:4], nrow=3, padding=1, pad_value=-1.0)
    assert padded.shape == (2 * 3 + 1, 3 * 4 + 1)
    assert np.array_equal(padded[1:3, 1:4], images[0, 0].numpy())
    assert np.array_equal(padded[1:3, 5:8], images[1, 0].numpy())
    assert np.array_equal(padded[4:6, 1:4], images[3, 0].numpy())
    assert (padded[4:6, 9:12] == -1).all()                   # the empty sixth cell
    with pytest.raises(ValueError, match="one-channel"):
        tile_images(torch.zeros(2, 3, 4, 4), nrow=2)


def test_half_and_float_state_dicts_round_trip_and_keep_integer_buffers() -> None:
    model = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    half = half_state_dict(model.state_dict())
    assert half["0.weight"].dtype == torch.float16
    assert half["1.num_batches_tracked"].dtype == torch.int64
    back = float_state_dict(half)
    assert back["0.weight"].dtype == torch.float32
    assert torch.allclose(back["0.weight"], model.state_dict()["0.weight"], atol=1e-3)
    model.load_state_dict(back)


def test_atomic_write_replaces_whole_files_only(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "notes.txt"
    atomic_write(path, lambda f: f.write(b"first"))
    assert path.read_bytes() == b"first"

    def broken(f) -> None:
        f.write(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(path, broken)
    assert path.read_bytes() == b"first" and os.listdir(path.parent) == ["notes.txt"]


# ----------------------------------------------------------------------------- recipes

def test_recipes_are_the_settings_the_shipped_checkpoints_record() -> None:
    from course_utils.pretrained import HERE, metadata
    from course_utils.recipes import DCGAN_RECIPE, VAE_MODEL_KWARGS, VAE_OPTIM

    if (HERE / "dcgan_generator.json").is_file():
        shipped = metadata("dcgan_generator")["recipe"]
        assert json.loads(json.dumps(DCGAN_RECIPE.to_json())) == shipped
    if (HERE / "vae_fashion.json").is_file():
        meta = metadata("vae_fashion")
        assert meta["kwargs"] == VAE_MODEL_KWARGS
        assert {k: meta["optimizer"][k] for k in VAE_OPTIM} == VAE_OPTIM


def test_dcgan_recipe_builds_seeded_models_and_fit_gan_arguments() -> None:
    from course_utils.recipes import DCGAN_RECIPE
    from course_utils.training import AdamConfig

    (g1, _), (g2, _) = DCGAN_RECIPE.build(seed=3), DCGAN_RECIPE.build(seed=3)
    assert all(torch.equal(a, b) for a, b in zip(g1.state_dict().values(),
                                                 g2.state_dict().values(), strict=True))
    assert g1.latent_dim == DCGAN_RECIPE.latent_dim
    kwargs = DCGAN_RECIPE.fit_kwargs()
    assert kwargs["batch_size"] == 64 and kwargs["real_label"] == 0.9
    assert isinstance(kwargs["g_optim"], AdamConfig)
