"""DCGAN models, GAN losses, the GAN training step and loop, and the chapter 03 checks."""

from __future__ import annotations

import copy
import math

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from course_utils import plots
from course_utils.checks import get_exercise, run_checkers
from course_utils.checks.ch03_dcgan import DebugGenerator, debug_train_step
from course_utils.losses import discriminator_loss, generator_loss
from course_utils.models.dcgan import Discriminator, Generator, sample_noise
from course_utils.training import SnapshotConfig, fit_gan, gan_train_step

matplotlib.use("Agg")


@pytest.fixture(autouse=True)
def no_expectation(monkeypatch):
    monkeypatch.delenv("COURSE_EXPECT", raising=False)


def tiny_pair(seed: int = 0, width: int = 4, latent: int = 8, sn: bool = False):
    torch.manual_seed(seed)
    return Generator(latent_dim=latent, width=width), Discriminator(width=width, spectral_norm=sn)


# ----------------------------------------------------------------------------- models

@pytest.mark.parametrize("width,latent", [(4, 8), (8, 100)])
def test_generator_shape_and_tanh_range(width, latent):
    G = Generator(latent_dim=latent, width=width)
    x = G(sample_noise(5, latent, generator=torch.Generator().manual_seed(0)))
    assert x.shape == (5, 1, 28, 28)
    assert x.min() >= -1 and x.max() <= 1 and x.min() < 0 < x.max()


@pytest.mark.parametrize("sn", [False, True])
def test_discriminator_returns_one_logit_per_image(sn):
    _, D = tiny_pair(sn=sn)
    out = D(torch.rand(7, 1, 28, 28) * 2 - 1)
    assert out.shape == (7,)
    assert out.dtype == torch.float32


def test_spectral_norm_replaces_batchnorm_in_the_discriminator():
    _, plain = tiny_pair()
    _, sn = tiny_pair(sn=True)
    assert any(isinstance(m, nn.BatchNorm2d) for m in plain.modules())
    assert not any(isinstance(m, nn.BatchNorm2d) for m in sn.modules())
    convs = [m for m in sn.modules() if isinstance(m, nn.Conv2d)]
    assert convs and all(hasattr(m, "parametrizations") for m in convs)
    # spectral norm bounds each layer: the largest singular value of W / sigma is about 1
    sn.train()
    for _ in range(20):          # power iterations run in training-mode forward passes
        sn(torch.randn(2, 1, 28, 28))
    w = convs[1].weight.detach().flatten(1)
    assert torch.linalg.matrix_norm(w, ord=2) == pytest.approx(1.0, abs=0.1)


def test_paper_initialisation():
    G = Generator(latent_dim=16, width=16)
    conv_w = torch.cat([m.weight.detach().flatten() for m in G.modules()
                        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))])
    bn_w = torch.cat([m.weight.detach() for m in G.modules() if isinstance(m, nn.BatchNorm2d)])
    assert conv_w.mean().abs() < 0.002 and conv_w.std() == pytest.approx(0.02, rel=0.1)
    assert bn_w.mean() == pytest.approx(1.0, abs=0.01)
    assert bn_w.std() == pytest.approx(0.02, rel=0.3)


def test_models_reject_wrong_shapes_with_a_clear_message():
    G, D = tiny_pair()
    with pytest.raises(ValueError, match=r"\(B, 8\)"):
        G(torch.randn(3, 9))
    with pytest.raises(ValueError, match="1 channel"):
        D(torch.randn(3, 3, 28, 28))
    with pytest.raises(ValueError, match="positive"):
        Generator(width=0)


def test_generator_receives_gradients_through_the_discriminator():
    G, D = tiny_pair()
    loss = generator_loss(D(G(torch.randn(4, 8))))
    loss.backward()
    for name, p in G.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


# ----------------------------------------------------------------------------- losses

def test_discriminator_loss_matches_its_formula():
    g = torch.Generator().manual_seed(0)
    r, f = torch.randn(32, generator=g) * 2, torch.randn(20, generator=g) * 2
    d_real, d_fake = torch.sigmoid(r), torch.sigmoid(f)
    expected = -(torch.log(d_real).mean() + torch.log(1 - d_fake).mean())
    assert discriminator_loss(r, f) == pytest.approx(float(expected), rel=1e-5)
    smooth = -(0.9 * torch.log(d_real) + 0.1 * torch.log(1 - d_real)).mean() \
        - torch.log(1 - d_fake).mean()
    assert discriminator_loss(r, f, real_label=0.9) == pytest.approx(float(smooth), rel=1e-5)


def test_generator_losses_match_their_formulas():
    f = torch.randn(32, generator=torch.Generator().manual_seed(1)) * 2
    d = torch.sigmoid(f)
    assert generator_loss(f) == pytest.approx(float(-torch.log(d).mean()), rel=1e-5)
    assert generator_loss(f, "minimax") == pytest.approx(float(torch.log(1 - d).mean()), rel=1e-5)
    with pytest.raises(ValueError, match="minimax"):
        generator_loss(f, "wasserstein")


def test_losses_are_stable_for_extreme_logits():
    big = torch.tensor([80.0, -80.0], requires_grad=True)
    for value in (discriminator_loss(big, big), generator_loss(big),
                  generator_loss(big, "minimax")):
        assert torch.isfinite(value)
        value.backward()
        assert torch.isfinite(big.grad).all()
        big.grad = None
    assert generator_loss(torch.tensor([-80.0])) == pytest.approx(80.0)


def test_minimax_gradient_vanishes_where_non_saturating_does_not():
    # D confidently rejects the fakes: D(G(z)) = sigmoid(-6) ~ 0.0025
    logit = torch.tensor([-6.0], requires_grad=True)
    generator_loss(logit, "minimax").backward()
    mm = logit.grad.abs().item()
    logit.grad = None
    generator_loss(logit, "non_saturating").backward()
    ns = logit.grad.abs().item()
    assert mm == pytest.approx(torch.sigmoid(torch.tensor(-6.0)).item(), rel=1e-4)
    assert ns > 100 * mm


def test_loss_shape_errors():
    with pytest.raises(ValueError, match=r"\(B,\)"):
        discriminator_loss(torch.zeros(4, 1), torch.zeros(4))
    with pytest.raises(ValueError, match="real_label"):
        discriminator_loss(torch.zeros(4), torch.zeros(4), real_label=1.5)


# ----------------------------------------------------------------------------- training step

def test_discriminator_step_leaves_the_generator_unchanged():
    G, D = tiny_pair()
    g_before = [p.detach().clone() for p in G.parameters()]
    opt_d = torch.optim.Adam(D.parameters(), lr=1e-2)
    fake = G(torch.randn(8, 8))
    loss = discriminator_loss(D(torch.rand(8, 1, 28, 28) * 2 - 1), D(fake.detach()))
    opt_d.zero_grad()
    loss.backward()
    opt_d.step()
    assert all(p.grad is None for p in G.parameters())           # detach cut the graph
    assert all(torch.equal(a, b) for a, b in zip(g_before, G.parameters(), strict=True))


def test_one_training_step_moves_d_and_g_the_right_way():
    G, D = tiny_pair(width=4)
    real = torch.rand(16, 1, 28, 28) * 2 - 1
    z = torch.randn(16, 8)
    opt_g = torch.optim.Adam(G.parameters(), lr=2e-3, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(D.parameters(), lr=2e-3, betas=(0.5, 0.999))
    G.eval(), D.eval()                      # measure with fixed BatchNorm statistics
    with torch.no_grad():
        d_real0 = torch.sigmoid(D(real)).mean()
    G.train(), D.train()
    G_before = copy.deepcopy(G)
    out = gan_train_step(G, D, opt_g, opt_d, real, z)
    assert set(out) == {"d_loss", "g_loss", "d_real", "d_fake"}
    assert 0 <= out["d_real"] <= 1 and 0 <= out["d_fake"] <= 1
    assert all(math.isfinite(float(v)) for v in out.values())
    with torch.no_grad():                   # the updated D, in the training mode of the step
        assert torch.sigmoid(D(G(z))).mean() > torch.sigmoid(D(G_before(z))).mean(), \
            "G's update should make its fakes look more real to D"
    G.eval(), D.eval()
    with torch.no_grad():
        assert torch.sigmoid(D(real)).mean() > d_real0          # D learned "real" on real data


# ----------------------------------------------------------------------------- fit_gan

def _images(n: int = 48, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(seed))


def test_fit_gan_runs_a_few_steps_and_records_diagnostics(tmp_path):
    G, D = tiny_pair()
    result = fit_gan(G, D, _images(), epochs=2, batch_size=16, log_every=2,
                     snapshot=SnapshotConfig(n_fixed=8, every=3, dir=tmp_path / "grids"),
                     progress=False, device="cpu")
    assert result.steps == 6 and result.stopped_by == "epochs"
    h = result.history.to_dict()
    assert {"step", "epoch", "d_loss", "g_loss", "d_real", "d_fake"} <= set(h)
    assert h["step"] == [2, 4, 6]
    assert all(0 <= v <= 1 for v in h["d_real"] + h["d_fake"])
    assert [s for s, _ in result.snapshots] == [0, 3, 6]
    assert result.snapshots[-1][1].shape == (8, 1, 28, 28)
    assert sorted(p.name for p in (tmp_path / "grids").iterdir()) == \
        ["step_000000.png", "step_000003.png", "step_000006.png"]


def test_fit_gan_resume_continues_exactly(tmp_path):
    data = _images()
    G1, D1 = tiny_pair(seed=1)
    fit_gan(G1, D1, data, epochs=2, batch_size=16, progress=False, device="cpu", seed=3)
    G2, D2 = tiny_pair(seed=1)
    ckpt = tmp_path / "gan.pt"
    fit_gan(G2, D2, data, epochs=1, batch_size=16, progress=False, device="cpu", seed=3,
            checkpoint_path=ckpt)
    G3, D3 = tiny_pair(seed=7)                   # different weights: all must come from the file
    r = fit_gan(G3, D3, data, epochs=2, batch_size=16, progress=False, device="cpu", seed=3,
                checkpoint_path=ckpt, resume=True)
    assert r.steps == 6
    for a, b in zip(G1.state_dict().values(), G3.state_dict().values(), strict=True):
        assert torch.allclose(a.float(), b.float(), atol=1e-6)


def test_fit_gan_time_budget_and_custom_step():
    calls = []

    def step(G, D, opt_g, opt_d, real, z, **kw):
        calls.append(kw)
        return gan_train_step(G, D, opt_g, opt_d, real, z, **kw)

    G, D = tiny_pair()
    r = fit_gan(G, D, _images(), time_budget=0.0, batch_size=16, real_label=0.9,
                g_loss="minimax", step_fn=step, progress=False, device="cpu")
    assert r.stopped_by == "time" and r.steps == 1
    assert calls == [{"real_label": 0.9, "g_loss_kind": "minimax"}]
    assert len(r.history) == 1                   # the partial interval is still recorded


def test_fit_gan_max_steps_stops_inside_an_epoch():
    G, D = tiny_pair()
    r = fit_gan(G, D, _images(), max_steps=2, batch_size=16, log_every=1, progress=False,
                device="cpu")
    assert r.steps == 2 and r.stopped_by == "max_steps" and len(r.history) == 2
    with pytest.raises(ValueError, match="max_steps"):
        fit_gan(G, D, _images(), batch_size=16, progress=False)


def test_fit_gan_rejects_minus_one_one_data():
    G, D = tiny_pair()
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        fit_gan(G, D, _images() * 2 - 1, epochs=1, progress=False)


# ----------------------------------------------------------------------------- checks

def verdict(exercise_id, obj):
    ex = get_exercise(exercise_id)
    return run_checkers(ex, obj, [ex.checker])


# the stubs as the student notebook has them: the answer replaced by NotImplementedError
def stub_d_loss(real_logits, fake_logits, real_label=1.0):
    raise NotImplementedError("gan_d_loss")


def stub_g_loss(fake_logits, kind="non_saturating"):
    raise NotImplementedError("gan_g_loss")


def stub_step(G, D, opt_g, opt_d, real, z, real_label=1.0, g_loss_kind="non_saturating"):
    raise NotImplementedError("gan_train_step")


class StubGenerator(nn.Module):
    def __init__(self, latent_dim=16, width=8):
        raise NotImplementedError("gan_debug_generator")


def stub_debug_step(G, D, opt_g, opt_d, real, z):
    raise NotImplementedError("gan_debug_step")


@pytest.mark.parametrize("exercise_id,reference,stub", [
    ("gan_d_loss", discriminator_loss, stub_d_loss), ("gan_g_loss", generator_loss, stub_g_loss),
    ("gan_train_step", gan_train_step, stub_step),
    ("gan_debug_generator", DebugGenerator, StubGenerator),
    ("gan_debug_step", debug_train_step, stub_debug_step)])
def test_reference_passes_and_stub_is_not_done(exercise_id, reference, stub):
    assert verdict(exercise_id, reference).status == "passed"
    assert verdict(exercise_id, stub).status == "not done"
    assert get_exercise(exercise_id).reference is reference


def d_loss_via_probabilities(real, fake, real_label=1.0):
    d_r, d_f = torch.sigmoid(real), torch.sigmoid(fake)
    return F.binary_cross_entropy(d_r, torch.full_like(d_r, real_label)) + \
        F.binary_cross_entropy(d_f, torch.zeros_like(d_f))


def caught(exercise_id, buggy):
    """The check must *fail* the bug: "error" (something crashed) is not a catch."""
    result = verdict(exercise_id, buggy)
    assert result.status == "failed", result.message


@pytest.mark.parametrize("buggy", [
    d_loss_via_probabilities,                                                   # unstable
    lambda r, f, real_label=1.0: discriminator_loss(f, r, real_label),          # swapped sides
    lambda r, f, real_label=1.0: F.binary_cross_entropy_with_logits(           # two-sided
        r, torch.full_like(r, real_label)) + F.binary_cross_entropy_with_logits(
        f, torch.full_like(f, 1 - real_label)),
    lambda r, f, real_label=1.0: discriminator_loss(r, f),                     # ignores smoothing
])
def test_d_loss_check_catches_bugs(buggy):
    caught("gan_d_loss", buggy)


@pytest.mark.parametrize("buggy", [
    lambda f, kind="non_saturating": -torch.log(torch.sigmoid(f)).mean() if kind ==
    "non_saturating" else torch.log(1 - torch.sigmoid(f)).mean(),               # unstable
    lambda f, kind="non_saturating": generator_loss(f, "minimax"),              # ignores kind
    lambda f, kind="non_saturating": -generator_loss(f, kind),                  # wrong sign
    lambda f, kind="non_saturating": F.binary_cross_entropy_with_logits(        # "fake" target
        f, torch.zeros_like(f)),
])
def test_g_loss_check_catches_bugs(buggy):
    caught("gan_g_loss", buggy)


bce = F.binary_cross_entropy_with_logits


def step_raw_noise(G, D, opt_g, opt_d, real, z, real_label=1.0, g_loss_kind="non_saturating"):
    fake = G(z)
    d_loss = bce(D(real), torch.ones(len(real))) + \
        bce(D(torch.rand_like(real) * 2 - 1), torch.zeros(len(z)))              # raw noise
    opt_d.zero_grad()
    d_loss.backward()
    opt_d.step()
    loss = bce(D(fake), torch.ones(len(z)))
    opt_g.zero_grad()
    loss.backward()
    opt_g.step()
    return {"d_loss": d_loss, "g_loss": loss}


def step_fake_label(G, D, opt_g, opt_d, real, z, real_label=1.0, g_loss_kind="non_saturating"):
    fake = G(z)
    d_loss = bce(D(real), torch.ones(len(real))) + bce(D(fake.detach()), torch.zeros(len(z)))
    opt_d.zero_grad()
    d_loss.backward()
    opt_d.step()
    loss = bce(D(fake), torch.zeros(len(z)))                                   # "fake" target
    opt_g.zero_grad()
    loss.backward()
    opt_g.step()
    return {"d_loss": d_loss, "g_loss": loss}


def step_no_detach(G, D, opt_g, opt_d, real, z, real_label=1.0, g_loss_kind="non_saturating"):
    opt_d.zero_grad()
    opt_g.zero_grad()                      # zeroed once at the top: D's loss leaks into G
    fake = G(z)
    d_loss = bce(D(real), torch.ones(len(real))) + bce(D(fake), torch.zeros(len(z)))
    d_loss.backward()
    opt_d.step()
    loss = bce(D(G(z)), torch.ones(len(z)))  # a fresh graph, so no "backward twice" error
    loss.backward()
    opt_g.step()
    return {"d_loss": d_loss, "g_loss": loss}


def step_wrong_optimizer(G, D, opt_g, opt_d, real, z, real_label=1.0, g_loss_kind="non_saturating"):
    fake = G(z)
    d_loss = bce(D(real), torch.ones(len(real))) + bce(D(fake.detach()), torch.zeros(len(z)))
    opt_d.zero_grad()
    d_loss.backward()
    opt_d.step()
    loss = bce(D(fake), torch.ones(len(z)))
    opt_g.zero_grad()
    loss.backward()
    opt_d.step()                                                               # wrong optimizer
    return {"d_loss": d_loss, "g_loss": loss}


def step_g_first(G, D, opt_g, opt_d, real, z, real_label=1.0, g_loss_kind="non_saturating"):
    fake = G(z)
    loss = bce(D(fake), torch.ones(len(z)))
    opt_g.zero_grad()
    loss.backward()
    opt_g.step()
    d_loss = bce(D(real), torch.ones(len(real))) + bce(D(fake.detach()), torch.zeros(len(z)))
    opt_d.zero_grad()
    d_loss.backward()
    opt_d.step()
    return {"d_loss": d_loss, "g_loss": loss}


def step_ignores_options(G, D, opt_g, opt_d, real, z, real_label=1.0, g_loss_kind="non_saturating"):
    return gan_train_step(G, D, opt_g, opt_d, real, z)


BUGGY_STEPS = [step_raw_noise, step_fake_label, step_no_detach, step_wrong_optimizer,
               step_g_first]


@pytest.mark.parametrize("buggy", BUGGY_STEPS + [step_ignores_options])
def test_train_step_check_catches_bugs(buggy):
    caught("gan_train_step", buggy)


def test_a_crashing_step_is_an_error_not_a_catch():
    def crashes(G, D, opt_g, opt_d, real, z, real_label=1.0, g_loss_kind="non_saturating"):
        raise RuntimeError("shape mismatch")

    result = verdict("gan_train_step", crashes)
    assert result.status == "error" and "RuntimeError: shape mismatch" in result.message


@pytest.mark.parametrize("buggy", BUGGY_STEPS)
def test_debug_step_check_catches_each_planted_bug(buggy):
    result = verdict("gan_debug_step", buggy)
    assert result.status == "failed", result.message


class ThreeChannels(DebugGenerator):
    def __init__(self, latent_dim=16, width=8):
        super().__init__(latent_dim, width)
        self.up2 = nn.ConvTranspose2d(width, 3, 4, 2, 1)


class SigmoidOut(DebugGenerator):
    def __init__(self, latent_dim=16, width=8):
        super().__init__(latent_dim, width)
        self.out = nn.Sigmoid()


class UnusedLayer(DebugGenerator):
    def forward(self, z):
        h = F.relu(self.bn0(self.project(z))).view(-1, 2 * self.width, 7, 7)
        return self.out(self.up2(F.relu(self.up1(h))))          # bn1 is never applied


@pytest.mark.parametrize("buggy", [ThreeChannels, SigmoidOut, UnusedLayer])
def test_debug_generator_check_catches_each_planted_bug(buggy):
    result = verdict("gan_debug_generator", buggy)
    assert result.status == "failed", result.message


class DefinedInAnotherOrder(DebugGenerator):
    """Right: the same layers, defined in another order (other initial weights)."""

    def __init__(self, latent_dim=16, width=8):
        nn.Module.__init__(self)
        self.latent_dim, self.width = latent_dim, width
        self.up2 = nn.ConvTranspose2d(width, 1, 4, 2, 1)
        self.bn1 = nn.BatchNorm2d(width)
        self.up1 = nn.ConvTranspose2d(2 * width, width, 4, 2, 1, bias=False)
        self.bn0 = nn.BatchNorm1d(2 * width * 7 * 7)
        self.project = nn.Linear(latent_dim, 2 * width * 7 * 7, bias=False)
        self.out = nn.Tanh()


class BN1Removed(DebugGenerator):
    """'Fixes' the unused layer by deleting it: the notebook's architecture has it."""

    def __init__(self, latent_dim=16, width=8):
        super().__init__(latent_dim, width)
        del self.bn1

    def forward(self, z):
        h = F.relu(self.bn0(self.project(z))).view(-1, 2 * self.width, 7, 7)
        return self.out(self.up2(F.relu(self.up1(h))))


class SigmoidStretched(SigmoidOut):
    """Keeps the sigmoid and stretches it to [-1, 1]: other images than the architecture's."""

    def forward(self, z):
        return 2 * super().forward(z) - 1


def test_debug_generator_is_judged_by_the_fixed_architecture_with_its_own_weights():
    assert verdict("gan_debug_generator", DefinedInAnotherOrder).passed
    for changed, fragment in ((BN1Removed, "layers do not match"),
                              (SigmoidStretched, "computes other images")):
        result = verdict("gan_debug_generator", changed)
        assert result.status == "failed" and fragment in result.message, result.message


def test_step_checks_record_two_steps_per_run_and_judge_them_against_the_reference():
    from course_utils.checks.ch03_probes import step_runs
    from course_utils.checks.core import PUBLIC_CASE, judge_data
    from course_utils.checks.protocol import pack, run_probe, unpack

    ex = get_exercise("gan_train_step")
    data = unpack(pack(run_probe(ex.probe, gan_train_step, PUBLIC_CASE)))
    main, extra = step_runs(PUBLIC_CASE, with_options=True)
    assert len(data["main"]) == len(main) == 2 and data["extra"] == extra == []
    assert all(len(run["steps"]) == 2 for run in data["main"])
    judge_data(ex, data, PUBLIC_CASE)
    # a step recorded from another answer is judged against the reference, not against itself
    from tests.wrong_answers.ch03_dcgan import make_step

    wrong = unpack(pack(run_probe(ex.probe, make_step(g_target_zero=True), PUBLIC_CASE)))
    with pytest.raises(AssertionError, match="D rates G.z. as less real"):
        judge_data(ex, wrong, PUBLIC_CASE)


# ----------------------------------------------------------------------------- plots

def _shown(ax) -> np.ndarray:
    """The pixel array of the one image an axes shows."""
    images = ax.get_images()
    assert len(images) == 1, f"expected one image, found {len(images)}"
    return np.asarray(images[0].get_array())


def test_gan_loss_gradients_draws_both_losses_and_their_gradients():
    fig = plots.gan_loss_gradients(title="why non-saturating")
    assert len(fig.axes) == 3 and "why non-saturating" in [t.get_text() for t in fig.texts]
    for ax in fig.axes:
        assert len(ax.get_lines()) == 2
        assert [t.get_text().split(":")[0] for t in ax.get_legend().get_texts()] == \
            ["minimax", "non-saturating"]
    minimax, non_saturating = fig.axes[2].get_lines()       # gradient reaching the logit
    d = minimax.get_xdata()
    np.testing.assert_allclose(minimax.get_ydata(), -d)
    np.testing.assert_allclose(non_saturating.get_ydata(), -(1 - d))
    np.testing.assert_allclose(fig.axes[0].get_lines()[1].get_ydata(), -np.log(d))
    plt.close("all")


def test_gan_diagnostics_plots_the_history_with_smoothing():
    hist = {"step": [10, 20, 30, 40], "d_loss": [1.0, 0.8, 0.6, 0.4],
            "g_loss": [0.7, 0.8, 0.9, 1.0], "d_real": [0.6, 0.6, 0.7, 0.9],
            "d_fake": [0.4, 0.3, 0.3, 0.1]}
    fig = plots.gan_diagnostics(hist, title="run 1")
    losses, probs = fig.axes
    assert "run 1" in [t.get_text() for t in fig.texts]
    assert (losses.get_title(), probs.get_title()) == ("losses", 'D\'s probability of "real"')
    (d_line, g_line), (real_line, fake_line, half) = losses.get_lines(), probs.get_lines()
    for line, key in ((d_line, "d_loss"), (g_line, "g_loss"), (real_line, "d_real"),
                      (fake_line, "d_fake")):
        np.testing.assert_allclose(line.get_xdata(), hist["step"])
        np.testing.assert_allclose(line.get_ydata(), hist[key])
    np.testing.assert_allclose(half.get_ydata(), [0.5, 0.5])          # the equilibrium line
    smoothed = plots.gan_diagnostics(hist, smooth=2).axes[0].get_lines()[0]
    np.testing.assert_allclose(smoothed.get_xdata(), [20, 30, 40])   # a 2-step moving average
    np.testing.assert_allclose(smoothed.get_ydata(), [0.9, 0.7, 0.5])
    with pytest.raises(KeyError, match="d_fake"):
        plots.gan_diagnostics({k: v for k, v in hist.items() if k != "d_fake"})
    plt.close("all")


def test_grids_over_time_shows_one_row_per_snapshot():
    g = torch.Generator().manual_seed(0)
    early = torch.rand(5, 1, 28, 28, generator=g) * 2 - 1               # tanh output, [-1, 1]
    late = torch.rand(5, 1, 28, 28, generator=g)                         # [0, 1]
    fig = plots.grids_over_time([(0, early), (500, late)], n_show=4)
    assert len(fig.axes) == 2 * 4                            # the first n_show of each
    row0, row1 = fig.axes[:4], fig.axes[4:]
    for c in range(4):
        np.testing.assert_allclose(_shown(row0[c]), (early[c, 0].numpy() + 1) / 2, atol=1e-6)
        np.testing.assert_allclose(_shown(row1[c]), late[c, 0].numpy(), atol=1e-6)
    assert (row0[0].get_ylabel(), row1[0].get_ylabel()) == ("step 0", "step 500")
    assert "Fixed noise over training" in [t.get_text() for t in fig.texts]
    with pytest.raises(ValueError, match="no snapshots"):
        plots.grids_over_time([])
    plt.close("all")


def test_class_histograms_draw_one_bar_per_class_and_run():
    hists = {"collapsed": [0.9, 0.1, 0.0], "healthy": [0.3, 0.4, 0.3]}
    fig = plots.class_histograms(hists, ["shirt", "bag", "boot"], title="coverage")
    (ax,) = fig.axes
    assert ax.get_title() == "coverage"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["shirt", "bag", "boot"]
    heights = [p.get_height() for p in ax.patches]
    assert heights == pytest.approx([0.9, 0.1, 0.0, 0.3, 0.4, 0.3])    # run by run
    uniform = ax.get_lines()[0]
    np.testing.assert_allclose(uniform.get_ydata(), [1 / 3, 1 / 3])
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["uniform", "collapsed", "healthy"]
    with pytest.raises(ValueError, match="bins"):
        plots.class_histograms({"a": [1.0]}, ["x", "y"])
    plt.close("all")
