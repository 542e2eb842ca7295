"""Malformed probe data, as a hostile kernel could write it: shared by the judge tests.

Each mutation turns the probe data of a right answer into data a judge must reject with a
message (``CheckFailure``), never with a crash. A test skips a mutation that leaves an
exercise's data unchanged. Each test module picks the mutations its judges are held to with
:func:`pick`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np


def map_leaves(value: Any, leaf: Callable[[Any], Any]) -> Any:
    """``value`` with ``leaf`` applied to every leaf (non-dict, non-list) value."""
    if isinstance(value, dict):
        return {k: map_leaves(v, leaf) for k, v in value.items()}
    if isinstance(value, list):
        return [map_leaves(v, leaf) for v in value]
    return leaf(value)


def _arrays(change: Callable[[np.ndarray], Any]) -> Callable[[Any], Any]:
    return lambda d: map_leaves(d, lambda v: change(v) if isinstance(v, np.ndarray) else v)


MUTATIONS: dict[str, Callable[[Any], Any]] = {
    "empty": lambda d: {},
    "arrays_as_text": _arrays(lambda v: "x"),
    "arrays_of_text": _arrays(lambda v: np.array(["a"] * v.size).reshape(v.shape)),
    "arrays_flattened": _arrays(lambda v: v.reshape(-1)[:1]),
    "arrays_of_nan": _arrays(lambda v: np.full(v.shape, np.nan)),
    "numbers_as_text": lambda d: map_leaves(d, lambda v: "1" if isinstance(v, (int, float)) else v),
    "floats_as_text": lambda d: map_leaves(d, lambda v: "1" if isinstance(v, float) else v),
    "numbers_as_nan": lambda d: map_leaves(d, lambda v: float("nan")
                                           if isinstance(v, float) else v),
    "bools_flipped": lambda d: map_leaves(d, lambda v: (not v) if isinstance(v, bool) else v),
    "huge_shapes": lambda d: map_leaves(d, lambda v: 2 ** 40 if isinstance(v, int)
                                        and not isinstance(v, bool) else v),
    "strings_as_lists": lambda d: map_leaves(d, lambda v: [[v]] if isinstance(v, str) else v),
    "leaves_as_none": lambda d: map_leaves(d, lambda v: None),
    "lists_emptied": lambda d: {k: [] if isinstance(v, list) else v for k, v in d.items()},
    "dicts_as_lists": lambda d: {k: [v] if isinstance(v, dict) else v for k, v in d.items()},
    "records_as_numbers": lambda d: {k: 1.0 for k in d},
}


def pick(*names: str) -> dict[str, Callable[[Any], Any]]:
    """The named mutations (a KeyError names a typo)."""
    return {name: MUTATIONS[name] for name in names}
