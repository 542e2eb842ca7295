"""Count the figures an executed notebook holds, cell by cell, as a reader would see them.

A figure is an image output (PNG, JPEG or SVG). Figures drawn inside an ipywidgets ``Output``
(the latent explorers) live in the notebook's saved widget state, not in the cell's outputs;
they are counted for the cell whose widget shows them.
"""

from __future__ import annotations

from typing import Any

IMAGE_TYPES = ("image/png", "image/jpeg", "image/svg+xml")
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"


def _output_images(output: dict[str, Any]) -> int:
    """1 if the output is a figure (one figure may carry several image formats), else 0."""
    data = output.get("data", {})
    return int(any(kind in data for kind in IMAGE_TYPES))


def widget_states(nb: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``{model_id: state}`` of the widget state saved in the notebook (empty if none)."""
    saved = nb.get("metadata", {}).get("widgets", {}).get(WIDGET_STATE, {})
    return {model_id: entry.get("state", {}) for model_id, entry in saved.get("state", {}).items()}


def widget_figures(model_id: str, states: dict[str, dict[str, Any]],
                   seen: set[str] | None = None) -> list[dict[str, Any]]:
    """The figure outputs shown by widget ``model_id``: its own (an ``Output`` widget's) and
    those of its children, each widget visited once."""
    seen = set() if seen is None else seen
    if model_id in seen or model_id not in states:
        return []
    seen.add(model_id)
    state = states[model_id]
    figures = [out for out in state.get("outputs", []) if _output_images(out)]
    children = state.get("children", [])
    for child in children if isinstance(children, list) else []:
        if isinstance(child, str) and child.startswith("IPY_MODEL_"):
            figures += widget_figures(child[len("IPY_MODEL_"):], states, seen)
    return figures


def cell_images(cell: dict[str, Any], states: dict[str, dict[str, Any]]) -> int:
    """The number of figures one code cell shows, widget contents included."""
    count, seen = 0, set()
    for output in cell.get("outputs", []):
        count += _output_images(output)
        view = output.get("data", {}).get(WIDGET_VIEW)
        if view:
            count += len(widget_figures(view.get("model_id", ""), states, seen))
    return count


def images_per_cell(nb: dict[str, Any]) -> list[int]:
    """Figures shown by each code cell of an executed notebook, in order."""
    states = widget_states(nb)
    return [cell_images(c, states) for c in nb.get("cells", []) if c.get("cell_type") == "code"]
