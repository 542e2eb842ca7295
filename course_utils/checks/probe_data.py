"""Helpers shared by probes and judges: tensors recorded as plain data, and read back safely.

A probe records what the learner's function returned with :func:`tensor_record` (its type,
shape, dtype, ``requires_grad`` and values, as data that :func:`~.protocol.pack` accepts). A
judge treats probe data as hostile: :func:`values` returns a record's values only when they
are a numeric array (else ``None``), and :func:`describe` names what was returned for a
message, so that malformed data fails with a message instead of crashing the judge.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

import numpy as np
import torch
from torch import Tensor

from .core import expect

T = TypeVar("T")


def case_seed(case: Any, offset: int) -> int:
    """A seed for ``torch.manual_seed`` derived from a case (``offset`` gives other streams)."""
    return (int(case.seed) * 7_919 + offset) % 2 ** 31


def tensor_record(out: object, dtype: torch.dtype = torch.float64) -> dict[str, Any]:
    """What ``out`` is, as plain data: type name, shape, dtype, requires_grad and values.

    Values are detached, moved to the CPU and converted to ``dtype`` (float64 by default,
    float32 for images); a non-tensor gives only its type name.
    """
    if not isinstance(out, Tensor):
        return {"type": type(out).__name__[:60], "shape": None, "value": None}
    value = out.detach().cpu()
    return {"type": "Tensor", "shape": [int(n) for n in out.shape], "dtype": str(out.dtype),
            "requires_grad": bool(out.requires_grad),
            "value": None if value.is_complex() else value.to(dtype)}


def grad_array(t: Tensor) -> Tensor | None:
    """The gradient stored on a leaf tensor after backward (None when none reached it)."""
    return None if t.grad is None else t.grad.detach().cpu().double()


# ----------------------------------------------------------------------------- judge side

def is_numeric(value: object) -> bool:
    """True for a NumPy array of booleans, integers or floats (what a tensor becomes)."""
    return isinstance(value, np.ndarray) and value.dtype.kind in "biuf"


def record(data: object, key: str) -> dict[str, Any]:
    """``data[key]`` when it is a dict (a tensor record or a sub-record); else a failure."""
    value = data.get(key) if isinstance(data, dict) else None
    expect(isinstance(value, dict), f"the check's data has no valid record {key!r}; run the "
                                    "check again from the notebook")
    return value


def records(data: object, key: str, count: int) -> list[dict[str, Any]]:
    """``data[key]`` as a list of ``count`` dicts; else a failure."""
    value = data.get(key) if isinstance(data, dict) else None
    expect(isinstance(value, list) and len(value) == count
           and all(isinstance(v, dict) for v in value),
           f"the check's data has no valid list {key!r}; run the check again from the notebook")
    return value


def extra_records(data: object, sizes: Sequence[T]) -> list[tuple[int, dict[str, Any], T]]:
    """The extra runs a hidden case records, paired with the sizes they ran at:
    ``(offset, record, size)`` with offsets from 1 (offset 0 is the main record's inputs)."""
    runs = records(data, "extra", len(sizes))
    return [(i, rec, size) for i, (rec, size) in enumerate(zip(runs, sizes, strict=True), start=1)]


def values(rec: object) -> np.ndarray | None:
    """A tensor record's values as float64 in the recorded shape, or None when they are
    missing, not numeric, or do not fit that shape. (The codec stores a 0-d array as shape
    (1,); the recorded shape restores it.)"""
    value = rec.get("value") if isinstance(rec, dict) else None
    if not is_numeric(value):
        return None
    shape = rec.get("shape")
    if isinstance(shape, list) and all(type(n) is int and n >= 0 for n in shape):
        if value.size != int(np.prod(shape, dtype=np.int64)):
            return None
        value = value.reshape(shape)
    return value.astype(np.float64)


def as_array(value: object) -> np.ndarray | None:
    """``value`` as a float64 array, or None when it is not a numeric array."""
    return value.astype(np.float64) if is_numeric(value) else None


def array(data: object, key: str) -> np.ndarray | None:
    """``data[key]`` as a float64 array, or None when it is missing or not numeric."""
    return as_array(data.get(key) if isinstance(data, dict) else None)


def describe(rec: object) -> str:
    """What a record holds, for a message: ``(4, 2)`` for a tensor, else its type name."""
    value = values(rec)
    if value is not None:
        return str(tuple(int(n) for n in value.shape))
    name = rec.get("type") if isinstance(rec, dict) else None
    return str(name)[:60] if isinstance(name, str) else "nothing"


def flag(data: object, key: str) -> bool:
    """``data[key]`` if it is exactly a bool, else False."""
    value = data.get(key) if isinstance(data, dict) else None
    return value is True


def same(a: np.ndarray | None, b: np.ndarray) -> bool:
    """True when ``a`` holds exactly the values of ``b`` (same shape)."""
    return a is not None and a.shape == b.shape and bool(np.array_equal(a, b))
