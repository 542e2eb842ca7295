"""VAE chapter: models, reparameterisation, KL, ELBO, loss adapter, checks, pretrained loader."""

from __future__ import annotations

import math

import matplotlib
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from course_utils import losses
from course_utils.checks import get_exercise, run_checkers
from course_utils.losses import ELBOTerms, elbo_loss, kl_standard_normal, reparameterize
from course_utils.models.vae import ConditionalVAE, ConvVAE

matplotlib.use("Agg")


def tiny(**kw) -> ConvVAE:
    torch.manual_seed(0)
    return ConvVAE(latent_dim=kw.pop("latent_dim", 4), width=4, hidden=kw.pop("hidden", 16), **kw)


def gaussian(batch: int, dim: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, dim, generator=g), torch.randn(batch, dim, generator=g) * 0.8


# ----------------------------------------------------------------------------- reparameterize

def test_reparameterize_passes_gradients_to_mu_and_logvar():
    mu, logvar = gaussian(5, 3)
    mu.requires_grad_(True)
    logvar.requires_grad_(True)
    z = reparameterize(mu, logvar, generator=torch.Generator().manual_seed(1))
    assert z.shape == (5, 3)
    (z ** 2).sum().backward()
    assert mu.grad is not None and mu.grad.abs().sum() > 0
    assert logvar.grad is not None and logvar.grad.abs().sum() > 0
    # dz/dmu = 1, dz/dlogvar = eps * sigma / 2 = (z - mu) / 2: check against autograd
    g = torch.Generator().manual_seed(1)
    mu2 = mu.detach().clone().requires_grad_(True)
    lv2 = logvar.detach().clone().requires_grad_(True)
    z2 = reparameterize(mu2, lv2, generator=g)
    z2.sum().backward()
    assert torch.allclose(mu2.grad, torch.ones_like(mu2))
    assert torch.allclose(lv2.grad, (z2 - mu2).detach() / 2, atol=1e-6)


def test_reparameterize_sample_statistics():
    mu = torch.tensor([[1.0, -3.0]]).expand(40000, 2)
    logvar = torch.tensor([[0.5, -1.5]]).expand(40000, 2)
    z = reparameterize(mu, logvar, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(z.mean(0), mu[0], atol=0.03)
    assert torch.allclose(z.std(0), torch.exp(0.5 * logvar[0]), rtol=0.02)


def test_reparameterize_generator_makes_it_reproducible_and_rejects_bad_shapes():
    mu, logvar = gaussian(2, 3)
    a = reparameterize(mu, logvar, generator=torch.Generator().manual_seed(7))
    b = reparameterize(mu, logvar, generator=torch.Generator().manual_seed(7))
    assert torch.equal(a, b)
    with pytest.raises(ValueError, match="same shape"):
        reparameterize(mu, logvar[:, :2])


# ----------------------------------------------------------------------------- KL

def test_kl_matches_monte_carlo_estimate():
    mu, logvar = gaussian(3, 4, seed=3)
    n = 200_000
    g = torch.Generator().manual_seed(4)
    std = torch.exp(0.5 * logvar)
    z = mu + std * torch.randn(n, 3, 4, generator=g)                         # (n, B, D)
    q = torch.distributions.Normal(mu, std)
    p = torch.distributions.Normal(torch.zeros_like(mu), torch.ones_like(mu))
    mc = (q.log_prob(z) - p.log_prob(z)).sum(-1).mean(0)                     # (B,)
    closed = kl_standard_normal(mu, logvar)
    assert closed.shape == (3,)
    assert torch.allclose(closed, mc, rtol=0.03, atol=0.03)


def test_kl_agrees_with_torch_distributions_and_is_zero_at_the_prior():
    mu, logvar = gaussian(6, 5, seed=5)
    q = torch.distributions.Normal(mu, torch.exp(0.5 * logvar))
    p = torch.distributions.Normal(0.0, 1.0)
    expected = torch.distributions.kl_divergence(q, p).sum(1)
    assert torch.allclose(kl_standard_normal(mu, logvar), expected, atol=1e-5)
    assert torch.equal(kl_standard_normal(torch.zeros(2, 3), torch.zeros(2, 3)), torch.zeros(2))
    assert (kl_standard_normal(mu, logvar) > 0).all()


# ----------------------------------------------------------------------------- ELBO

def test_elbo_value_on_a_constructed_case():
    # logits 0 -> every pixel has probability 1/2, so the BCE is log 2 per pixel for any x.
    x = torch.rand(3, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    mu = torch.tensor([[1.0, 0.0], [0.0, 0.0], [2.0, 0.0]])
    logvar = torch.zeros(3, 2)
    terms = elbo_loss(torch.zeros(3, 1, 28, 28), x, mu, logvar, beta=1.0)
    assert isinstance(terms, ELBOTerms)
    assert terms.recon.item() == pytest.approx(784 * math.log(2), rel=1e-6)
    # KL per example is mu^2 / 2 -> (0.5, 0, 2), mean 2.5 / 3
    assert terms.kl.item() == pytest.approx(2.5 / 3, rel=1e-6)
    assert terms.loss.item() == pytest.approx(784 * math.log(2) + 2.5 / 3, rel=1e-6)
    beta4 = elbo_loss(torch.zeros(3, 1, 28, 28), x, mu, logvar, beta=4.0)
    assert beta4.loss.item() == pytest.approx(784 * math.log(2) + 4 * 2.5 / 3, rel=1e-6)


def test_elbo_recon_is_summed_over_pixels_and_averaged_over_batch():
    g = torch.Generator().manual_seed(1)
    logits, x = torch.randn(4, 1, 28, 28, generator=g), torch.rand(4, 1, 28, 28, generator=g)
    mu, logvar = gaussian(4, 3)
    terms = elbo_loss(logits, x, mu, logvar)
    per_pixel_mean = F.binary_cross_entropy_with_logits(logits, x)
    assert terms.recon.item() == pytest.approx(per_pixel_mean.item() * 784, rel=1e-5)


def test_elbo_rejects_mismatched_shapes():
    mu, logvar = gaussian(2, 3)
    with pytest.raises(ValueError, match="same shape"):
        elbo_loss(torch.zeros(2, 784), torch.zeros(2, 1, 28, 28), mu, logvar)


def test_vae_loss_fn_trains_a_tiny_model_with_fit():
    from course_utils.training import fit

    model = tiny()
    x = torch.rand(64, 1, 28, 28, generator=torch.Generator().manual_seed(2)).round()
    history = fit(model, losses.vae_loss_fn(1.0), (x,), epochs=3, batch_size=32, lr=3e-3,
                  progress=False, device="cpu").history
    first, last = history[0]["train_loss"], history[-1]["train_loss"]
    assert {"train_loss", "train_recon", "train_kl"} <= set(history.keys())
    assert last < first
    assert history[-1]["train_loss"] == pytest.approx(
        history[-1]["train_recon"] + history[-1]["train_kl"], rel=1e-4)


def test_vae_loss_fn_uses_labels_for_a_conditional_model_and_beta():
    torch.manual_seed(0)
    model = ConditionalVAE(latent_dim=3, width=4, hidden=8)
    x, y = torch.rand(5, 1, 28, 28), torch.arange(5)
    out = losses.vae_loss_fn(beta=2.0)(model, (x, y))
    assert out["loss"].item() == pytest.approx(out["recon"].item() + 2 * out["kl"].item(), rel=1e-5)
    with pytest.raises(ValueError, match="labels"):
        losses.vae_loss_fn()(model, (x,))


# ----------------------------------------------------------------------------- models

@pytest.mark.parametrize("hidden", [0, 16])
def test_conv_vae_shapes(hidden):
    model = tiny(hidden=hidden)
    x = torch.rand(3, 1, 28, 28)
    logits, mu, logvar = model(x)
    assert logits.shape == (3, 1, 28, 28) and mu.shape == logvar.shape == (3, 4)
    assert model.decode(mu).shape == (3, 1, 28, 28)
    samples = model.sample(5, generator=torch.Generator().manual_seed(0))
    assert samples.shape == (5, 1, 28, 28) and 0 <= samples.min() and samples.max() <= 1
    assert torch.equal(samples, model.sample(5, generator=torch.Generator().manual_seed(0)))


def test_decoder_returns_logits_that_reach_outside_zero_one():
    model = tiny()
    with torch.no_grad():
        for p in model.dec_conv[-1].parameters():
            p.mul_(50)
    logits = model.decode(torch.randn(8, 4))
    assert logits.min() < 0 and logits.max() > 1


@pytest.mark.parametrize("bad, match", [
    (torch.rand(2, 28, 28), "unsqueeze"),
    (torch.rand(2, 784), "view"),
    (torch.rand(2, 3, 28, 28), r"\(B, 1, 28, 28\)"),
    (torch.zeros(2, 1, 28, 28, dtype=torch.uint8), "255"),
])
def test_wrong_input_shape_gives_a_clear_error(bad, match):
    model = tiny()
    with pytest.raises((ValueError, TypeError), match=match):
        model(bad)


def test_decode_rejects_wrong_latent_size():
    with pytest.raises(ValueError, match=r"\(B, 4\)"):
        tiny().decode(torch.zeros(2, 5))


def test_gradients_reach_encoder_and_decoder():
    model = tiny()
    out = losses.vae_loss_fn()(model, (torch.rand(4, 1, 28, 28),))
    out["loss"].backward()
    assert model.enc_conv[0].weight.grad.abs().sum() > 0
    assert model.dec_conv[-1].weight.grad.abs().sum() > 0


def test_changing_the_label_changes_the_conditional_output():
    torch.manual_seed(0)
    model = ConditionalVAE(latent_dim=4, width=4, hidden=8)
    z = torch.randn(3, 4)
    a = model.decode(z, torch.tensor([0, 0, 0]))
    b = model.decode(z, torch.tensor([7, 7, 7]))
    assert (a - b).abs().max() > 1e-4
    mu_a, _ = model.encode(torch.rand(3, 1, 28, 28), torch.tensor([1, 1, 1]))
    assert mu_a.shape == (3, 4)
    g = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    s0, s5 = model.sample(4, generator=g(), labels=0), model.sample(4, generator=g(), labels=5)
    assert s0.shape == (4, 1, 28, 28) and (s0 - s5).abs().max() > 1e-4


def test_conditional_vae_requires_valid_labels():
    torch.manual_seed(0)
    model = ConditionalVAE(latent_dim=2, width=4, hidden=0)
    with pytest.raises(ValueError, match="labels"):
        model(torch.rand(2, 1, 28, 28))
    with pytest.raises(ValueError, match=r"\[0, 9\]"):
        model.decode(torch.zeros(2, 2), torch.tensor([3, 10]))
    with pytest.raises(ValueError, match="unconditional"):
        tiny().decode(torch.zeros(1, 4), torch.tensor([1]))


# ----------------------------------------------------------------------------- checks

def _verdict(exercise_id, obj, hidden=False):
    ex = get_exercise(exercise_id)
    return run_checkers(ex, obj, [ex.checker] + (ex.hidden if hidden else [])).status


@pytest.mark.parametrize("exercise_id", ["vae_reparameterize", "vae_kl", "vae_elbo"])
def test_reference_passes_public_and_hidden_checks(exercise_id):
    assert _verdict(exercise_id, get_exercise(exercise_id).reference, hidden=True) == "passed"


@pytest.mark.parametrize("exercise_id", ["vae_reparameterize", "vae_kl", "vae_elbo"])
def test_stub_is_reported_not_done(exercise_id):
    def stub(*args, **kwargs):
        raise NotImplementedError(exercise_id)
    assert _verdict(exercise_id, stub) == "not done"


def _elbo_with(recon_reduce, kl_sign=1.0, with_kl=True):
    def fn(logits, x, mu, logvar, beta=1.0):
        bce = F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1)
        recon = recon_reduce(bce)
        kl = kl_standard_normal(mu, logvar).mean()
        loss = recon + kl_sign * beta * kl if with_kl else recon
        return ELBOTerms(loss, recon, kl)
    return fn


@pytest.mark.parametrize("wrong, message", [
    (_elbo_with(lambda b: b.mean()), "784 times too small"),                  # mean over pixels
    (_elbo_with(lambda b: b.sum()), "summed over the batch"),
    (_elbo_with(lambda b: b.sum(1).mean(), with_kl=False), "leaves out the KL"),
    (_elbo_with(lambda b: b.sum(1).mean(), kl_sign=-1.0), "subtracts the KL"),
])
def test_elbo_check_catches_common_mistakes(wrong, message):
    ex = get_exercise("vae_elbo")
    result = run_checkers(ex, wrong, [ex.checker])
    assert result.status == "failed" and message in result.message


def test_elbo_check_ignores_beta_mistake_only_if_beta_is_used():
    def no_beta(logits, x, mu, logvar, beta=1.0):
        t = elbo_loss(logits, x, mu, logvar, beta=1.0)
        return t
    assert _verdict("vae_elbo", no_beta) == "failed"


@pytest.mark.parametrize("wrong", [
    lambda mu, lv: mu + torch.exp(lv) * torch.randn_like(mu),               # sigma^2 as sigma
    lambda mu, lv: mu + lv * torch.randn_like(mu),                          # logvar as sigma
    lambda mu, lv: mu + 0 * lv,                                             # no noise
    lambda mu, lv: mu.detach() + torch.exp(0.5 * lv) * torch.randn_like(mu),  # cut from mu
    lambda mu, lv: mu + torch.exp(0.5 * lv) * torch.randn(mu.shape[1]),     # one eps per column
])
def test_reparameterize_check_catches_wrong_versions(wrong):
    assert _verdict("vae_reparameterize", wrong) == "failed"


@pytest.mark.parametrize("wrong", [
    lambda mu, lv: 0.5 * (mu ** 2 + lv.exp() - 1 - lv).mean(1),             # mean over dims
    lambda mu, lv: 0.5 * (mu ** 2 + lv.exp() - 1 - lv).sum(),               # reduced over batch
    lambda mu, lv: (mu ** 2 + lv.exp() - 1 - lv).sum(1),                    # factor 2
    lambda mu, lv: 0.5 * (mu ** 2 + lv.exp() - lv).sum(1),                  # missing -1
    lambda mu, lv: -0.5 * (mu ** 2 + lv.exp() - 1 - lv).sum(1),             # sign
])
def test_kl_check_catches_wrong_versions(wrong):
    assert _verdict("vae_kl", wrong) == "failed"


# ----------------------------------------------------------------------------- helpers, plots

def test_interpolation_ends_decode_the_two_codes():
    from course_utils.models.vae import encode_mean, latent_interpolation

    model = tiny().eval()
    x = torch.rand(2, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    path = latent_interpolation(model, x[0], x[1], steps=5)
    assert path.shape == (5, 1, 28, 28)
    mu = encode_mean(model, x)
    ends = torch.sigmoid(model.decode(mu)).detach()
    assert torch.allclose(path[0], ends[0], atol=1e-6)
    assert torch.allclose(path[-1], ends[1], atol=1e-6)


def test_active_units_counts_dimensions_that_vary():
    from course_utils.models.vae import active_units

    model = tiny(latent_dim=4, hidden=0).eval()
    with torch.no_grad():                      # dims 2 and 3 of mu ignore the input entirely
        w = model.enc_stats.weight
        w[2:4].zero_()
        w[:2].mul_(20)
    x = torch.rand(64, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    assert active_units(model, x, threshold=1e-6) == 2


def test_samples_per_class_shares_codes_across_classes():
    from course_utils.models.vae import samples_per_class

    torch.manual_seed(0)
    model = ConditionalVAE(latent_dim=3, width=4, hidden=8).eval()
    grid = samples_per_class(model, 2, generator=torch.Generator().manual_seed(0))
    assert grid.shape == (20, 1, 28, 28)
    z = torch.randn(2, 3, generator=torch.Generator().manual_seed(0))
    expected = torch.sigmoid(model.decode(z, torch.tensor([4, 4])))
    assert torch.allclose(grid[8:10], expected, atol=1e-6)


def _shown(ax) -> np.ndarray:
    """The pixel array of the one image an axes shows."""
    images = ax.get_images()
    assert len(images) == 1, f"expected one image on {ax.get_title()!r}, found {len(images)}"
    return np.asarray(images[0].get_array())


def test_latent_manifold_tiles_the_decoded_grid():
    from scipy.stats import norm

    from course_utils import plots

    model = tiny(latent_dim=2).eval()

    def decode(z):
        return torch.sigmoid(model.decode(z))

    fig = plots.latent_manifold(decode, grid=4, quantile=0.9, title="my grid")
    assert len(fig.axes) == 1
    ax = fig.axes[0]
    assert ax.get_title() == "my grid"
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("$z_1$", "$z_2$")
    canvas = _shown(ax)
    assert canvas.shape == (4 * 28, 4 * 28)
    coords = norm.ppf(np.linspace(0.1, 0.9, 4))
    # rows run from high z2 (top) to low z2, columns from low z1 to high z1
    for (row, col) in [(0, 0), (0, 3), (3, 0), (2, 1)]:
        z = torch.tensor([[coords[col], coords[3 - row]]], dtype=torch.float32)
        with torch.no_grad():
            tile = decode(z)[0, 0].numpy()
        np.testing.assert_allclose(canvas[row * 28:(row + 1) * 28, col * 28:(col + 1) * 28],
                                   tile, atol=1e-5)
    with pytest.raises(ValueError, match="images for 4 codes"):
        plots.latent_manifold(lambda z: decode(z)[:3], grid=2)
    matplotlib.pyplot.close("all")


def test_interpolation_strip_shows_each_row_in_order():
    from course_utils import plots

    g = torch.Generator().manual_seed(0)
    rows = {"latent": torch.rand(6, 1, 28, 28, generator=g),
            "pixel": torch.rand(6, 1, 28, 28, generator=g) * 2 - 1}      # [-1, 1] is rescaled
    fig = plots.interpolation_strip(rows, title="two paths", end_labels=("shoe", "bag"))
    assert len(fig.axes) == 12
    for r, images in enumerate(rows.values()):
        expected = images[:, 0].numpy() if r == 0 else (images[:, 0].numpy() + 1) / 2
        for c in range(6):
            np.testing.assert_allclose(_shown(fig.axes[r * 6 + c]), expected[c], atol=1e-6)
    assert [fig.axes[0].get_ylabel(), fig.axes[6].get_ylabel()] == ["latent", "pixel"]
    assert (fig.axes[0].get_title(), fig.axes[5].get_title()) == ("shoe", "bag")
    assert "two paths" in [t.get_text() for t in fig.texts]
    with pytest.raises(ValueError, match="same number of steps"):
        plots.interpolation_strip({"a": torch.rand(6, 1, 28, 28), "b": torch.rand(5, 1, 28, 28)})
    matplotlib.pyplot.close("all")


def test_beta_tradeoff_plots_the_given_values_and_samples():
    from course_utils import plots

    g = torch.Generator().manual_seed(0)
    results = [{"beta": b, "recon": 230 + b, "kl": 20 / b,
                "samples": torch.rand(10, 1, 28, 28, generator=g)} for b in (0.5, 1.0, 4.0)]
    results[1]["samples"] = None
    fig = plots.beta_tradeoff(results, n_samples=8)
    assert len(fig.axes) == 2 + 3                       # two bar panels, one sample row per beta
    recon_ax, kl_ax = fig.axes[:2]
    for ax, key in ((recon_ax, "recon"), (kl_ax, "kl")):
        heights = [p.get_height() for p in ax.patches]
        assert heights == pytest.approx([r[key] for r in results])
        assert [t.get_text() for t in ax.get_xticklabels()] == ["0.5", "1", "4"]
    assert "reconstruction" in recon_ax.get_title() and "KL" in kl_ax.get_title()
    rows = fig.axes[2:]
    assert [ax.get_ylabel() for ax in rows] == ["beta=0.5", "beta=1", "beta=4"]
    for ax, r in zip(rows[::2], results[::2], strict=True):
        expected = np.concatenate(list(r["samples"][:8, 0].numpy()), axis=1)   # (28, 8 * 28)
        np.testing.assert_allclose(_shown(ax), expected, atol=1e-6)
    assert rows[1].get_images() == [] and rows[1].texts[0].get_text() == "(no samples given)"
    with pytest.raises(KeyError, match="kl"):
        plots.beta_tradeoff([{"beta": 1.0, "recon": 1.0}])
    matplotlib.pyplot.close("all")


def test_monte_carlo_convergence_draws_estimates_and_the_exact_line():
    from course_utils import plots

    ns, est, se = [10, 100, 1000], [1.1, 1.02, 0.995], [0.1, 0.03, 0.01]
    fig = plots.monte_carlo_convergence(ns, est, se, exact=1.0, ylabel="KL")
    assert len(fig.axes) == 1
    ax = fig.axes[0]
    estimate, exact = ax.get_lines()
    np.testing.assert_allclose(estimate.get_xdata(), ns)
    np.testing.assert_allclose(estimate.get_ydata(), est)
    np.testing.assert_allclose(exact.get_ydata(), [1.0, 1.0])
    band = ax.collections[0].get_paths()[0].vertices       # the +-2 standard error band
    assert band[:, 1].min() == pytest.approx(1.1 - 0.2) and band[:, 1].max() == pytest.approx(1.3)
    assert ax.get_xscale() == "log" and ax.get_ylabel() == "KL"
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "closed form = 1.0000" in labels
    with pytest.raises(ValueError, match="same non-zero length"):
        plots.monte_carlo_convergence([10], [1.0, 2.0], [0.1], exact=1.0)
    matplotlib.pyplot.close("all")


# ----------------------------------------------------------------------------- pretrained

def test_train_script_trains_saves_and_reloads(tmp_path):
    from course_utils.data import Dataset
    from course_utils.pretrained import train_vae
    from course_utils.training import TrainResult

    g = torch.Generator().manual_seed(0)
    ds = Dataset("toy", "test", tuple("0123456789"), torch.rand(64, 1, 28, 28, generator=g),
                 torch.randint(0, 10, (64,), generator=g), torch.rand(32, 1, 28, 28, generator=g),
                 torch.randint(0, 10, (32,), generator=g))
    kwargs = {"latent_dim": 3, "width": 4, "hidden": 0}
    model = train_vae.build_vae(kwargs, seed=0)
    result = train_vae.train_course_vae(model, ds, time_budget=0.2, clock="cpu", threads=None,
                                        progress=False)
    assert isinstance(result, TrainResult) and result.stopped_by == "time"
    figures = result.metrics
    assert figures["epochs"] > 0 and math.isfinite(figures["test_loss"])
    assert figures["test_loss"] == pytest.approx(figures["test_recon"] + figures["test_kl"],
                                                 rel=1e-4)
    meta = train_vae.write_checkpoint(model, result, ds, model_kwargs=kwargs, seed=0,
                                      clock="cpu", time_budget=0.2, out_dir=tmp_path)
    assert (tmp_path / "vae_fashion.pt").is_file() and len(meta["data_sha256"]) == 64
    assert meta["test_bce_plus_kl"] == pytest.approx(figures["test_loss"], abs=0.5)  # float16
    reloaded = ConvVAE(**meta["kwargs"])
    reloaded.load_state_dict(torch.load(tmp_path / "vae_fashion.pt", weights_only=True))
    z = torch.randn(2, 3)
    assert torch.allclose(reloaded.eval().decode(z), model.eval().decode(z))


def test_shipped_checkpoint_loads_and_matches_its_metadata():
    from course_utils.pretrained import HERE, load_vae, metadata

    if not (HERE / "vae_fashion.pt").is_file():
        pytest.skip("vae_fashion.pt not built yet (python -m course_utils.pretrained.train_vae)")
    model, meta = load_vae(), metadata("vae_fashion")
    assert isinstance(model, ConvVAE) and not model.training
    assert model.latent_dim == 16 == meta["kwargs"]["latent_dim"]
    for key in ("test_bce_plus_kl", "data_sha256", "seed", "train_cpu_seconds", "history"):
        assert key in meta
    assert (HERE / "vae_fashion.pt").stat().st_size < 2_000_000
    samples = model.sample(4, generator=torch.Generator().manual_seed(0))
    assert samples.shape == (4, 1, 28, 28) and samples.std() > 0.05   # not a blank decoder


def test_sampling_uses_running_statistics_and_leaves_them_alone():
    torch.manual_seed(0)
    model = ConvVAE(latent_dim=3, width=4, hidden=0, batchnorm=True)
    losses.vae_loss_fn()(model, (torch.rand(8, 1, 28, 28),))    # one forward updates BN stats
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert model.training
    a = model.sample(4, generator=torch.Generator().manual_seed(0))
    assert model.training                                        # mode restored
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    model.eval()
    b = model.sample(4, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(a, b)


def test_conditional_decoder_has_a_direct_per_class_path():
    torch.manual_seed(0)
    model = ConditionalVAE(latent_dim=2, width=4, hidden=0).eval()
    assert model.class_logits is not None and model.class_logits.weight.abs().sum() == 0
    with torch.no_grad():
        model.class_logits.weight[:, 3] = 1.0                    # class 3 adds +1 to every logit
    z = torch.zeros(1, 2)
    diff = model.decode(z, torch.tensor([3])) - model.decode(z, torch.tensor([2]))
    with torch.no_grad():                                         # the rest of the decoder
        model.class_logits.weight.zero_()                          # also sees the label:
    rest = model.decode(z, torch.tensor([3])) - model.decode(z, torch.tensor([2]))  # remove it
    assert torch.allclose(diff - rest, torch.ones_like(diff), atol=1e-5)



def test_benchmark_peers_are_the_published_architectures():
    """The two peer VAEs of benchmarks/bench_vae.py: shapes, sizes and a finite loss."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_vae.py"
    spec = importlib.util.spec_from_file_location("bench_vae", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    x = torch.rand(3, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    mlp, tf = bench.ExamplesMLPVAE(), bench.TFTutorialCVAE()
    for model, latent in ((mlp, 20), (tf, 16)):
        logits, mu, logvar = model(x)
        assert logits.shape == x.shape and mu.shape == logvar.shape == (3, latent)
        assert math.isfinite(losses.vae_loss_fn()(model, (x,))["loss"].item())
    # 784-400-20 MLP; TF tutorial: conv 32, 64 (valid: 28 -> 13 -> 6), dense, 7*7*32, 64, 32, 1
    assert sum(p.numel() for p in mlp.parameters()) == 652_824
    assert tf.encoder[5].in_features == 64 * 6 * 6
    assert sum(p.numel() for p in tf.parameters()) == 156_481
    assert bench._peers()["tfcvae"][2] == {"lr": 1e-4, "lr_schedule": "constant",
                                           "batch_size": 32}
