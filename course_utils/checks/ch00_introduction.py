"""Checks for notebook 00_introduction."""

from __future__ import annotations

import numpy as np
import torch

from ..data import to_minus_one_one
from .core import exercise, expect
from .protocol import Case


def _as_array(t: torch.Tensor) -> np.ndarray:
    """A plain NumPy copy of a returned tensor (what leaves the kernel)."""
    return np.array(torch.Tensor.numpy(torch.Tensor.cpu(torch.Tensor.detach(t))), copy=True)


def _probe_scale(fn, case: Case) -> dict:
    """Call the learner's function on a batch, on the two ends and on a float64 batch."""
    x = torch.rand(5, 1, 28, 28, generator=case.generator())      # (B, 1, 28, 28) in [0, 1]
    out = fn(x)
    expect(isinstance(out, torch.Tensor), f"return a torch.Tensor, not {type(out).__name__}")
    data = {"shape": [int(n) for n in out.shape], "dtype": str(out.dtype),
            "value": _as_array(out), "input_after": _as_array(x)}
    ends = fn(torch.tensor([0.0, 0.5, 1.0]))
    expect(isinstance(ends, torch.Tensor), f"return a torch.Tensor, not {type(ends).__name__}")
    data["ends"] = _as_array(ends)
    x64 = torch.rand(3, 1, 28, 28, dtype=torch.float64, generator=case.generator(1))
    try:                                       # only the grader's hidden judge looks at it
        out64 = fn(x64)
        data["dtype64"] = str(out64.dtype)
        data["value64"] = _as_array(out64)
    except Exception as exc:
        data["error64"] = type(exc).__name__[:60]
    return data


@exercise("intro_scale", points=1, reference=to_minus_one_one,
          hint="Reread section 4: the map is a straight line, fixed by where the two ends of "
               "[0, 1] must land. Work it out on paper for 0, 1/2 and 1, and build a new "
               "tensor rather than changing the one you are given.", probe=_probe_scale)
def _judge_scale(data: dict, case: Case) -> None:
    x = torch.rand(5, 1, 28, 28, generator=case.generator()).numpy()
    expect(data.get("shape") == list(x.shape),
           f"keep the shape: got {tuple(data.get('shape') or ())}, expected {tuple(x.shape)}")
    expect(data.get("dtype") == "torch.float32",
           f"keep the dtype torch.float32, got {data.get('dtype')}")
    value, ends, after = data.get("value"), data.get("ends"), data.get("input_after")
    expect(isinstance(after, np.ndarray) and after.shape == x.shape,
           "the input tensor changed shape")
    expect(bool(np.array_equal(after, x)),
           "do not change the input tensor in place; return a new one")
    expect(isinstance(ends, np.ndarray) and ends.shape == (3,),
           "the output for the 3 values 0, 0.5, 1 must have shape (3,)")
    expect(bool(np.allclose(ends, [-1.0, 0.0, 1.0], atol=1e-6)),
           f"0, 0.5 and 1 should map to -1, 0 and 1; got {[round(float(v), 3) for v in ends]}")
    expect(isinstance(value, np.ndarray) and value.shape == x.shape,
           "the output must keep the input's shape")
    expect(bool(np.allclose(value, x * 2 - 1, atol=1e-6)),
           "some pixels are mapped to the wrong value")
