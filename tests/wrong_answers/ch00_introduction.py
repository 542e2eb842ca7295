"""Wrong and right-but-unusual answers to chapter 00's exercise (``intro_scale``).

``scale_to_pm1(x)`` maps pixels in [0, 1] linearly to [-1, 1], returning a new tensor of the
same shape and dtype and leaving ``x`` unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

Factory = Callable[[], Any]


def _in_place(x: Tensor) -> Tensor:
    """Right values, but the learner's own tensor is overwritten."""
    return x.mul_(2).sub_(1)


WRONG: dict[str, list[tuple[str, Factory]]] = {
    "intro_scale": [
        ("missing_shift", lambda: lambda x: x * 2),                     # [0, 2]
        ("missing_scale", lambda: lambda x: x - 0.5),                   # [-0.5, 0.5]
        ("shift_before_scale", lambda: lambda x: (x - 1) * 2),          # [-2, 0]
        ("wrong_sign", lambda: lambda x: 1 - 2 * x),                    # flips the image
        ("divide_instead_of_multiply", lambda: lambda x: x / 2 - 1),    # [-1, -0.5]
        ("min_max_of_the_batch", lambda: lambda x: (x - x.min()) / (x.max() - x.min()) * 2 - 1),
        ("standardise_instead", lambda: lambda x: (x - x.mean()) / x.std()),
        ("in_place", lambda: _in_place),
        ("float64_result", lambda: lambda x: (x * 2 - 1).double()),
        ("flattened", lambda: lambda x: (x * 2 - 1).flatten()),
        ("numpy_result", lambda: lambda x: (x * 2 - 1).numpy()),
        ("tanh_squash", lambda: lambda x: torch.tanh(x)),               # nonlinear, [0, 0.76]
    ],
}

RIGHT: dict[str, list[tuple[str, Factory]]] = {
    "intro_scale": [
        ("centre_then_divide", lambda: lambda x: (x - 0.5) / 0.5),
        ("method_chain", lambda: lambda x: x.mul(2).sub(1)),
        ("lerp", lambda: lambda x: torch.lerp(-torch.ones_like(x), torch.ones_like(x), x)),
        ("clone_then_in_place", lambda: lambda x: x.clone().mul_(2).sub_(1)),
        ("clamped", lambda: lambda x: (2 * x - 1).clamp(-1, 1)),
        ("normalize_transform", lambda: lambda x: (x - 0.5) * 2.0),
    ],
}
