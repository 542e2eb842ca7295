"""Print the shape each layer of a model produces, to read an architecture from its data flow.

    >>> trace_shapes(vae, torch.zeros(4, 1, 28, 28), method="encode")   # doctest: +SKIP
      enc_conv.0    Conv2d        (4, 16, 14, 14)
      ...
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .utils import evaluating

Row = tuple[str, str, tuple[int, ...]]


def _shape(output: Any) -> tuple[int, ...]:
    """The shape of a layer's output (the first tensor if it returns several)."""
    if isinstance(output, torch.Tensor):
        return tuple(output.shape)
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return tuple(output[0].shape)
    return ()


def trace_shapes(model: nn.Module, *inputs: Any, method: str = "forward",
                 show: bool = True) -> list[Row]:
    """Run ``model.<method>(*inputs)`` once (eval mode, no gradients) and record, in call order,
    the output shape of every leaf layer (a module with no sub-modules) that ran.

    Args:
        model: any ``nn.Module``.
        inputs: the arguments of the call, e.g. a batch of images (B, 1, 28, 28).
        method: which method to call: ``"forward"``, ``"encode"``, ``"decode"``...
        show: print one line per layer: its name in the model, its type and its output shape.

    Returns:
        ``[(name, layer type, output shape), ...]`` in the order the layers ran.
    """
    call = getattr(model, method, None)
    if not callable(call):
        raise AttributeError(f"{type(model).__name__} has no method {method!r} to trace")
    rows: list[Row] = []
    hooks = [module.register_forward_hook(
                 lambda mod, _inp, out, name=name: rows.append((name, type(mod).__name__,
                                                                _shape(out))))
             for name, module in model.named_modules()
             if name and not any(True for _ in module.children())]
    try:
        with evaluating(model):
            call(*inputs)
    finally:
        for hook in hooks:
            hook.remove()
    if show:
        width = max((len(name) for name, _, _ in rows), default=0)
        for name, kind, shape in rows:
            print(f"  {name:<{width}s}  {kind:<16s} -> {shape}")
    return rows
