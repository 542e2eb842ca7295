"""Interactive explorers for the notebooks (ipywidgets), with a static fallback.

:class:`LatentExplorer` puts one slider on each of the first latent dimensions of a VAE (and a
class menu for a conditional VAE); moving a slider decodes the new code and redraws the image,
drawn with matplotlib inside an ``ipywidgets.Output``.

Widgets need a live Jupyter front end. Where there is none - a plain terminal, a script, or a
notebook executed by nbval/papermill in smoke mode - :func:`show_latent_explorer` shows a
static *latent traversal* figure instead (each row varies one dimension), so a notebook run
never depends on a browser. Everything here builds without a display (matplotlib's Agg
backend), which is what the tests use.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure
from torch import Tensor, nn

from . import config
from .plot_grids import min_image_inches
from .utils import evaluating, tile_images

__all__ = ["LatentExplorer", "show_latent_explorer", "latent_traversal", "widgets_available"]


def _in_kernel() -> bool:
    """True inside a Jupyter (IPython kernel) session."""
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython ships with ipywidgets
        return False
    shell = get_ipython()
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})


def widgets_available() -> bool:
    """Whether interactive widgets can be shown here.

    False outside a Jupyter kernel, in smoke mode (automated notebook runs: nothing would see
    the widget), and when ``COURSE_WIDGETS=0``; ``COURSE_WIDGETS=1`` forces them on in a kernel.
    The switch is read by :func:`course_utils.config.widgets_mode`, which raises on a value it
    does not know.
    """
    mode = config.widgets_mode()
    if mode == "off" or not _in_kernel():
        return False
    return mode == "on" or not config.is_smoke()


def _decode_image(model: nn.Module, z: Tensor, label: int | None) -> np.ndarray:
    """Decode one code (D,) to an (H, W) array of pixel probabilities."""
    with evaluating(model):
        zb = z.reshape(1, -1).to(_device(model))                          # (1, D)
        if getattr(model, "num_classes", 0):
            y = torch.tensor([0 if label is None else label], device=zb.device)
            logits = model.decode(zb, y)                                  # (1, 1, H, W)
        else:
            logits = model.decode(zb)                                     # (1, 1, H, W)
    return torch.sigmoid(logits)[0, 0].float().cpu().numpy()             # (H, W)


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def _latent_dim(model: nn.Module) -> int:
    dim = getattr(model, "latent_dim", None)
    if not isinstance(dim, int) or dim < 1:
        raise TypeError(f"{type(model).__name__} has no integer latent_dim attribute; the "
                        "explorer needs a VAE with decode(z) and latent_dim")
    if not callable(getattr(model, "decode", None)):
        raise TypeError(f"{type(model).__name__} has no decode(z) method")
    return dim


class LatentExplorer:
    """Sliders on the first ``n_sliders`` latent dimensions driving the decoded image.

    Args:
        model: a VAE with ``latent_dim`` and ``decode(z[, y])`` returning logits.
        z0: the starting code (D,), e.g. the encoding of a test image (default: zeros, the
            prior's mean). Dimensions without a slider stay at ``z0``.
        n_sliders: how many dimensions get a slider (default: up to 8).
        span: slider range is ``[-span, span]`` (in prior standard deviations).
        class_names: for a conditional VAE, the names shown in the class menu.
        label: the starting class of a conditional VAE.

    Attributes:
        z: the current code (D,) (a CPU tensor).
        image: the image currently shown, an (H, W) array in [0, 1].
        widget: the ``ipywidgets.VBox`` to display.
        sliders: the ``FloatSlider`` of each explored dimension.
    """

    def __init__(self, model: nn.Module, z0: Tensor | None = None, n_sliders: int | None = None,
                 span: float = 3.0, class_names: Sequence[str] | None = None,
                 label: int = 0) -> None:
        import ipywidgets as w

        self.model = model
        dim = _latent_dim(model)
        if z0 is None:
            z0 = torch.zeros(dim)
        z0 = torch.as_tensor(z0, dtype=torch.float32).detach().cpu().reshape(-1)
        if z0.numel() != dim:
            raise ValueError(f"z0 must have {dim} values (the latent size), got {z0.numel()}")
        n_sliders = min(dim, 8) if n_sliders is None else n_sliders
        if not 1 <= n_sliders <= dim:
            raise ValueError(f"n_sliders must be between 1 and {dim}, got {n_sliders}")
        if span <= 0:
            raise ValueError(f"span must be positive, got {span}")
        self.z = z0.clone()
        self.num_classes = int(getattr(model, "num_classes", 0) or 0)
        self.label: int | None = label if self.num_classes else None
        self.sliders = [w.FloatSlider(value=float(np.clip(float(self.z[i]), -span, span)),
                                      min=-span, max=span, step=0.05, description=f"z[{i}]",
                                      continuous_update=False, readout_format=".2f")
                        for i in range(n_sliders)]
        for i, slider in enumerate(self.sliders):
            slider.observe(lambda change, i=i: self._on_slider(i, change["new"]), names="value")
        controls: list[Any] = list(self.sliders)
        self.class_menu = None
        if self.num_classes:
            names = list(class_names) if class_names is not None else \
                [str(k) for k in range(self.num_classes)]
            if len(names) != self.num_classes:
                raise ValueError(f"class_names has {len(names)} names for {self.num_classes} "
                                 "classes")
            self.class_menu = w.Dropdown(options=[(n, k) for k, n in enumerate(names)],
                                         value=label, description="class")
            self.class_menu.observe(lambda change: self._on_class(change["new"]), names="value")
            controls.insert(0, self.class_menu)
        self.reset_button = w.Button(description="reset", tooltip="back to the starting code")
        self._z_start = self.z.clone()
        self.reset_button.on_click(lambda _: self.reset())
        self.output = w.Output()
        # One persistent figure; updates change the AxesImage's data, then redraw it.
        self.figure: Figure = plt.figure(figsize=(2.6, 2.6))
        plt.close(self.figure)          # keep it out of pyplot's list: no duplicate inline plot
        ax = self.figure.add_subplot(1, 1, 1)
        ax.axis("off")
        self.image = _decode_image(model, self.z, self.label)
        self._artist = ax.imshow(self.image, cmap="gray", vmin=0.0, vmax=1.0)
        self._ax = ax
        self.widget = w.HBox([w.VBox(controls + [self.reset_button]), self.output])
        self._render()

    # -------------------------------------------------------------- events
    def _on_slider(self, index: int, value: float) -> None:
        self.z[index] = float(value)
        self._render()

    def _on_class(self, label: int) -> None:
        self.label = int(label)
        self._render()

    def reset(self) -> None:
        """Back to the starting code (moves the sliders, which redraws)."""
        self.z = self._z_start.clone()
        for i, slider in enumerate(self.sliders):
            slider.value = float(np.clip(float(self.z[i]), slider.min, slider.max))
        self._render()

    def set(self, index: int, value: float) -> None:
        """Move slider ``index`` to ``value`` (what dragging it does)."""
        self.sliders[index].value = value

    # -------------------------------------------------------------- drawing
    def _render(self) -> None:
        self.image = _decode_image(self.model, self.z, self.label)
        self._artist.set_data(self.image)
        shown = ", ".join(f"{v:.1f}" for v in self.z[:len(self.sliders)].tolist())
        self._ax.set_title(f"z = ({shown}{', ...' if len(self.z) > len(self.sliders) else ''})",
                           fontsize=7)
        if _in_kernel():
            from IPython.display import display

            with self.output:
                self.output.clear_output(wait=True)
                display(self.figure)

    def _ipython_display_(self) -> None:  # shown when the object ends a cell
        from IPython.display import display

        display(self.widget)


def latent_traversal(model: nn.Module, z0: Tensor | None = None, dims: Sequence[int] | None = None,
                     span: float = 3.0, steps: int = 7, label: int | None = None,
                     title: str = "Latent traversal: one dimension per row") -> Figure:
    """Static figure: row ``i`` decodes ``z0`` with dimension ``dims[i]`` swept over
    ``linspace(-span, span, steps)`` - what dragging each slider would show.

    All codes are decoded in one batch and tiled into one image (fast to draw). The tiled
    array is kept as ``fig.traversal`` (rows x steps tiles of H x W pixels) for inspection.
    """
    dim = _latent_dim(model)
    z0 = torch.zeros(dim) if z0 is None else torch.as_tensor(z0, dtype=torch.float32).reshape(-1)
    if z0.numel() != dim:
        raise ValueError(f"z0 must have {dim} values, got {z0.numel()}")
    dims = list(range(min(dim, 8))) if dims is None else list(dims)
    if not dims or any(not 0 <= d < dim for d in dims):
        raise ValueError(f"dims must be indices in [0, {dim - 1}], got {dims}")
    if steps < 2:
        raise ValueError(f"steps must be at least 2, got {steps}")
    values = torch.linspace(-span, span, steps)                                # (S,)
    codes = z0.detach().cpu().repeat(len(dims) * steps, 1)                     # (R*S, D)
    for r, d in enumerate(dims):
        codes[r * steps:(r + 1) * steps, d] = values
    with evaluating(model):
        codes = codes.to(_device(model))
        if getattr(model, "num_classes", 0):
            y = torch.full((len(codes),), 0 if label is None else int(label), device=codes.device)
            logits = model.decode(codes, y)                                    # (R*S, 1, H, W)
        else:
            logits = model.decode(codes)                                       # (R*S, 1, H, W)
    images = torch.sigmoid(logits)[:, 0].float().cpu().numpy()                 # (R*S, H, W)
    h, w = images.shape[1:]
    canvas = tile_images(images, steps)                                        # (R*H, S*W)
    tile = max(0.8, min_image_inches() * 1.1)            # inches per image: readable tiles
    fig, ax = plt.subplots(figsize=(steps * tile + 0.9, len(dims) * tile + 0.9))
    ax.imshow(canvas, cmap="gray", vmin=0.0, vmax=1.0)
    ax.set_xticks(np.arange(steps) * w + w / 2, [f"{v:+.1f}" for v in values.tolist()],
                  fontsize=7)
    ax.set_yticks(np.arange(len(dims)) * h + h / 2, [f"z[{d}]" for d in dims], fontsize=8)
    ax.set_xlabel("value of the swept coordinate")
    ax.set_title(title, fontsize=9)
    fig.traversal = canvas  # type: ignore[attr-defined]
    fig.tight_layout()
    return fig


def show_latent_explorer(model: nn.Module, z0: Tensor | None = None,
                         n_sliders: int | None = None, span: float = 3.0,
                         class_names: Sequence[str] | None = None, label: int = 0,
                         interactive: bool | None = None) -> LatentExplorer | Figure:
    """Build the slider explorer where widgets can render, else a static traversal figure.

    Assign the result instead of ending a cell with the call. The static figure is a pyplot
    figure, so the inline backend already draws it when the cell finishes; a cell that also
    returns it draws it a second time. The explorer is drawn only when displayed::

        explorer = show_latent_explorer(vae, z0=z0, n_sliders=6)
        if isinstance(explorer, LatentExplorer):
            display(explorer)        # IPython.display.display; the static figure is drawn

    Args:
        interactive: force the choice (default: :func:`widgets_available`).

    Returns:
        The :class:`LatentExplorer` (interactive) or the traversal ``Figure`` (static).
    """
    if interactive is None:
        interactive = widgets_available()
    if interactive:
        return LatentExplorer(model, z0=z0, n_sliders=n_sliders, span=span,
                              class_names=class_names, label=label)
    dims = range(min(_latent_dim(model), 8) if n_sliders is None else n_sliders)
    return latent_traversal(model, z0=z0, dims=dims, span=span,
                            label=label if getattr(model, "num_classes", 0) else None,
                            title="Latent traversal (static view of the slider explorer)")
