"""The latent explorer builds without a display, and its sliders drive the shown image."""

from __future__ import annotations

import matplotlib
import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from course_utils import widgets
from course_utils.models.vae import ConditionalVAE, ConvVAE

matplotlib.use("Agg")


@pytest.fixture()
def vae() -> ConvVAE:
    torch.manual_seed(0)
    model = ConvVAE(latent_dim=5, width=4, hidden=16)
    with torch.no_grad():                        # make the decoder respond strongly to z
        for p in model.dec_fc.parameters():
            p.mul_(4)
    return model.eval()


def test_explorer_builds_headless_and_a_slider_changes_the_image(vae):
    explorer = widgets.LatentExplorer(vae, n_sliders=3)
    assert len(explorer.sliders) == 3
    before = explorer.image.copy()
    assert before.shape == (28, 28) and 0 <= before.min() and before.max() <= 1
    explorer.sliders[1].value = 2.5              # what dragging the slider does
    assert explorer.z[1].item() == pytest.approx(2.5)
    assert np.abs(explorer.image - before).max() > 1e-4
    # the figure shows exactly the current image
    assert np.array_equal(np.asarray(explorer._artist.get_array()), explorer.image)
    expected = torch.sigmoid(vae.decode(explorer.z[None]))[0, 0].detach().numpy()
    assert np.allclose(explorer.image, expected, atol=1e-6)
    explorer.reset()
    assert np.allclose(explorer.image, before, atol=1e-6)


def test_explorer_starts_from_a_given_code_and_validates_it(vae):
    z0 = torch.tensor([0.5, -1.0, 0.0, 2.0, 1.0])
    explorer = widgets.LatentExplorer(vae, z0=z0, n_sliders=2)
    assert torch.equal(explorer.z, z0)
    assert explorer.sliders[1].value == pytest.approx(-1.0)
    with pytest.raises(ValueError, match="5 values"):
        widgets.LatentExplorer(vae, z0=torch.zeros(3))
    with pytest.raises(ValueError, match="n_sliders"):
        widgets.LatentExplorer(vae, n_sliders=9)


def test_class_menu_of_a_conditional_vae_changes_the_image():
    torch.manual_seed(0)
    model = ConditionalVAE(latent_dim=3, width=4, hidden=8).eval()
    explorer = widgets.LatentExplorer(model, class_names=[f"c{k}" for k in range(10)])
    before = explorer.image.copy()
    explorer.class_menu.value = 6
    assert explorer.label == 6
    assert np.abs(explorer.image - before).max() > 1e-5


def test_fallback_is_a_static_traversal_outside_a_kernel(vae, monkeypatch):
    monkeypatch.delenv("COURSE_WIDGETS", raising=False)
    assert widgets.widgets_available() is False          # pytest runs outside a kernel
    shown = widgets.show_latent_explorer(vae, n_sliders=2)
    assert isinstance(shown, Figure)
    assert shown.traversal.shape == (2 * 28, 7 * 28)                     # 2 rows x 7 steps
    # row 0 sweeps z[0] from -3 to 3: its first tile is the decoding of z = (-3, 0, ...)
    z = torch.zeros(1, 5)
    z[0, 0] = -3.0
    first = torch.sigmoid(vae.decode(z))[0, 0].detach().numpy()
    assert np.allclose(shown.traversal[:28, :28], first, atol=1e-6)
    forced = widgets.show_latent_explorer(vae, n_sliders=2, interactive=True)
    assert isinstance(forced, widgets.LatentExplorer)


@pytest.mark.parametrize("switch,smoke,in_kernel,expected", [
    ("0", "0", True, False),          # off wins, even in a kernel
    ("1", "1", True, True),           # on wins over smoke mode in a kernel ...
    ("1", "0", False, False),         # ... but nothing can show a widget outside one
    ("auto", "0", True, True),        # auto: shown in a kernel in full mode,
    ("", "1", True, False),           # hidden in smoke mode (automated runs)
    ("auto", "0", False, False),
])
def test_course_widgets_switch(monkeypatch, switch, smoke, in_kernel, expected):
    monkeypatch.setenv("COURSE_WIDGETS", switch)
    monkeypatch.setenv("COURSE_SMOKE", smoke)
    monkeypatch.setattr(widgets, "_in_kernel", lambda: in_kernel)
    assert widgets.widgets_available() is expected


def test_unknown_course_widgets_value_is_an_error_not_automatic(monkeypatch):
    monkeypatch.setenv("COURSE_WIDGETS", "yes please")
    monkeypatch.setattr(widgets, "_in_kernel", lambda: True)
    with pytest.raises(ValueError, match="COURSE_WIDGETS='yes please'.*auto"):
        widgets.widgets_available()


def test_explorer_rejects_a_model_without_a_latent_size():
    with pytest.raises(TypeError, match="latent_dim"):
        widgets.LatentExplorer(torch.nn.Linear(2, 2))
