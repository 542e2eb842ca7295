"""Checks for notebook 00_introduction."""

from __future__ import annotations

import torch

from ..data import to_minus_one_one
from .core import exercise, expect


@exercise("intro_scale", points=1, reference=to_minus_one_one,
          hint="A straight line a*x + b works: pick a and b so that 0 maps to -1 and 1 maps to 1.")
def _check_scale(fn) -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(5, 1, 28, 28, generator=gen)          # (B, 1, 28, 28) in [0, 1]
    original = x.clone()
    out = fn(x)
    expect(isinstance(out, torch.Tensor), f"return a torch.Tensor, not {type(out).__name__}")
    expect(out.shape == x.shape, f"keep the shape: got {tuple(out.shape)}, expected {tuple(x.shape)}")
    expect(out.dtype == x.dtype, f"keep the dtype {x.dtype}, got {out.dtype}")
    expect(torch.equal(x, original), "do not change the input tensor in place; return a new one")
    ends = fn(torch.tensor([0.0, 0.5, 1.0]))
    expect(torch.allclose(ends, torch.tensor([-1.0, 0.0, 1.0]), atol=1e-6),
           f"0, 0.5 and 1 should map to -1, 0 and 1; got {[round(v, 3) for v in ends.tolist()]}")
    expect(torch.allclose(out, x * 2 - 1, atol=1e-6), "some pixels are mapped to the wrong value")
