"""The moving average of the generator's weights: ``fit_gan(g_ema=...)``, ``model_ema``, and
the recipe field that sets it."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from course_utils.models.dcgan import Discriminator, Generator
from course_utils.recipes import DCGAN_RECIPE, DCGANRecipe
from course_utils.training import fit_gan, gan_train_step, load_checkpoint, model_ema


def tiny_pair(seed: int = 0) -> tuple[Generator, Discriminator]:
    torch.manual_seed(seed)
    return Generator(latent_dim=8, width=4), Discriminator(width=4)


def images(n: int = 48, seed: int = 0) -> Tensor:
    """(n, 1, 28, 28) in [0, 1]: with batch 16, three steps per epoch."""
    return torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(seed))


def floats(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """The floating-point entries of a state dict (weights, running statistics)."""
    return {k: v.detach().clone() for k, v in state.items() if v.is_floating_point()}


def recording_step(trajectory: list[dict[str, Tensor]]):
    """A ``step_fn`` that appends G's weights and buffers after each step to ``trajectory``."""

    def step(G, D, opt_g, opt_d, real, z, **kw):
        metrics = gan_train_step(G, D, opt_g, opt_d, real, z, **kw)
        trajectory.append(floats(G.state_dict()))
        return metrics

    return step


def expected_ema(trajectory: list[dict[str, Tensor]], decay: float) -> dict[str, Tensor]:
    """The documented average: a copy of G after the first step, then update n (n >= 1) with
    the decay min(decay, (1 + n) / (10 + n))."""
    ema = dict(trajectory[0])
    for n, weights in enumerate(trajectory[1:], start=1):
        d = min(decay, (1 + n) / (10 + n))
        ema = {k: d * ema[k] + (1 - d) * weights[k] for k in ema}
    return ema


def assert_close(a: dict[str, Tensor], b: dict[str, Tensor], atol: float = 1e-6) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k], b[k], atol=atol), k


# ----------------------------------------------------------------------------- model_ema

def test_model_ema_starts_as_a_copy_and_follows_the_warmed_up_decay() -> None:
    model = nn.Linear(3, 2)
    ema = model_ema(model, 0.99)
    assert ema.module is not model and ema.module.training is False
    assert not any(p.requires_grad for p in ema.parameters())
    trajectory = []
    for i in range(6):
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(torch.full_like(p, float(i * i)))     # far apart: every weight counts
        ema.update_parameters(model)
        trajectory.append(floats(model.state_dict()))
    assert int(ema.n_averaged) == 6
    assert_close(floats(ema.module.state_dict()), expected_ema(trajectory, 0.99))
    assert torch.all(ema.module.weight < 25.0)                 # lags behind the last weights


def test_model_ema_rejects_a_decay_outside_zero_one() -> None:
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        model_ema(nn.Linear(2, 2), 1.5)


# ----------------------------------------------------------------------------- fit_gan

def test_decay_zero_gives_g_itself() -> None:
    G, D = tiny_pair()
    start = floats(G.state_dict())
    r = fit_gan(G, D, images(), epochs=2, batch_size=16, progress=False, device="cpu",
                g_ema=0.0)
    assert isinstance(r.g_ema, Generator) and r.g_ema is not G and not r.g_ema.training
    assert_close(floats(r.g_ema.state_dict()), floats(G.state_dict()))
    assert any(not torch.allclose(start[k], v) for k, v in floats(G.state_dict()).items())


def test_the_average_is_the_documented_convex_combination_of_g_after_each_step() -> None:
    G, D = tiny_pair()
    trajectory: list[dict[str, Tensor]] = []
    r = fit_gan(G, D, images(), epochs=3, batch_size=16, progress=False, device="cpu",
                g_ema=0.999, step_fn=recording_step(trajectory))
    assert len(trajectory) == r.steps == 9
    averaged = floats(r.g_ema.state_dict())
    assert_close(averaged, expected_ema(trajectory, 0.999))
    last = trajectory[-1]
    assert any(not torch.allclose(averaged[k], last[k]) for k in last)   # it lags behind G
    for k, v in averaged.items():                    # inside the range G's weights went through
        stacked = torch.stack([w[k] for w in trajectory])
        assert torch.all(v >= stacked.amin(0) - 1e-6) and torch.all(v <= stacked.amax(0) + 1e-6)


def test_without_g_ema_nothing_is_averaged_or_saved(tmp_path) -> None:
    G, D = tiny_pair()
    r = fit_gan(G, D, images(), epochs=1, batch_size=16, progress=False, device="cpu",
                checkpoint_path=tmp_path / "gan.pt")
    assert r.g_ema is None
    assert "G_ema" not in load_checkpoint(tmp_path / "gan.pt")


def test_fit_gan_rejects_a_bad_decay_before_training() -> None:
    G, D = tiny_pair()
    with pytest.raises(ValueError, match="EMA decay"):
        fit_gan(G, D, images(), epochs=1, batch_size=16, progress=False, g_ema=-0.1)


def test_resume_continues_the_average_exactly(tmp_path) -> None:
    data = images()
    G1, D1 = tiny_pair(seed=1)
    whole = fit_gan(G1, D1, data, epochs=2, batch_size=16, progress=False, device="cpu",
                    seed=3, g_ema=0.9)
    ckpt = tmp_path / "gan.pt"
    G2, D2 = tiny_pair(seed=1)
    fit_gan(G2, D2, data, epochs=1, batch_size=16, progress=False, device="cpu", seed=3,
            checkpoint_path=ckpt, g_ema=0.9)
    saved = load_checkpoint(ckpt)
    assert int(saved["G_ema"]["n_averaged"]) == 3
    G3, D3 = tiny_pair(seed=7)                   # different weights: all must come from the file
    resumed = fit_gan(G3, D3, data, epochs=2, batch_size=16, progress=False, device="cpu",
                      seed=3, checkpoint_path=ckpt, resume=True, g_ema=0.9)
    assert resumed.steps == 6
    assert_close(floats(resumed.g_ema.state_dict()), floats(whole.g_ema.state_dict()))
    assert_close(floats(G3.state_dict()), floats(G1.state_dict()))


def test_a_checkpoint_without_an_average_resumes_with_one_started_from_g(tmp_path) -> None:
    data = images()
    ckpt = tmp_path / "old.pt"
    G, D = tiny_pair(seed=1)
    fit_gan(G, D, data, epochs=1, batch_size=16, progress=False, device="cpu", seed=3,
            checkpoint_path=ckpt)                                  # saved without G_ema
    G2, D2 = tiny_pair(seed=7)
    trajectory: list[dict[str, Tensor]] = []
    r = fit_gan(G2, D2, data, epochs=3, batch_size=16, progress=False, device="cpu", seed=3,
                checkpoint_path=ckpt, resume=True, g_ema=0.5, step_fn=recording_step(trajectory))
    assert r.steps == 9 and len(trajectory) == 6                  # steps 4..9 of this call
    assert_close(floats(r.g_ema.state_dict()), expected_ema(trajectory, 0.5))
    assert int(load_checkpoint(ckpt)["G_ema"]["n_averaged"]) == 6


# ----------------------------------------------------------------------------- recipe

def test_recipe_passes_g_ema_and_lists_it_in_json_only_when_set() -> None:
    assert DCGAN_RECIPE.g_ema is None and "g_ema" not in DCGAN_RECIPE.to_json()
    assert DCGAN_RECIPE.fit_kwargs()["g_ema"] is None
    with_ema = DCGANRecipe(g_ema=0.999)
    assert with_ema.to_json()["g_ema"] == 0.999
    assert with_ema.fit_kwargs()["g_ema"] == 0.999
    plain = with_ema.to_json()
    del plain["g_ema"]
    assert plain == DCGANRecipe().to_json()
