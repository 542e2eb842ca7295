"""Probes and judges: how a check is split so that no submission can judge itself.

A check has two halves:

* the **probe** runs where the learner's object lives (the notebook's kernel). It calls that
  object on inputs chosen from a :class:`Case` and returns *plain data*: numbers, strings,
  booleans, lists and arrays. It never decides anything.
* the **judge** runs wherever the verdict is needed. It rebuilds the same inputs from the same
  :class:`Case`, computes what a right answer gives, compares, and raises
  :class:`CheckFailure` with a message from its own vocabulary.

In a notebook, ``check()`` runs both halves in one process. The batch grader runs the probe in
the sandboxed student kernel, carries the data out in a format that cannot carry code (one
``.npz`` file read with ``allow_pickle=False``), and runs the judge in its own process, with
seeds the kernel only learns when the probe starts. Patching ``torch`` in the kernel, forging
files or lying ``__eq__`` methods cannot change a verdict: they can only change the data, and
the data must then match the reference on inputs chosen afresh for each submission.

This module holds the case type, the data codec and the probe runner; ``core`` registers
exercises and runs judges.
"""

from __future__ import annotations

import io
import json
import math
import re
import traceback
from dataclasses import dataclass
from typing import Any

import numpy as np

# Statuses a probe can report besides a normal result.
NOT_DONE = "not done"
FAILED = "failed"
ERROR = "error"
STATUS_KEY = "__status__"

MAX_MESSAGE = 300                  # characters of a learner's exception kept in a message
MAX_PROBE_BYTES = 64 * 2 ** 20     # a probe result larger than this is refused
_JSON_KEY = "__json__"


@dataclass(frozen=True)
class Case:
    """Which inputs a probe and its judge use.

    ``seed`` drives every random input; ``hidden`` is True for the grader's extra cases, whose
    seeds are drawn afresh for each submission and never shown to the learner.
    """

    seed: int = 0
    hidden: bool = False

    def generator(self, offset: int = 0) -> Any:
        """A ``torch.Generator`` seeded from this case (``offset`` gives independent streams)."""
        import torch
        return torch.Generator().manual_seed((self.seed * 1_000_003 + offset) % 2 ** 63)


class CheckFailure(AssertionError):
    """Raised by a checker, judge or probe when the learner's object breaks a checked property.

    Defined here (and re-exported by :mod:`.core`) so that probes can raise it without this
    module importing ``core``.
    """


class ProbeDataError(ValueError):
    """Probe data that is not plain data, too large, or unreadable."""


# ----------------------------------------------------------------------------------- codec

def _to_plain(value: Any, arrays: dict[str, np.ndarray], path: str) -> Any:
    """Replace arrays (NumPy or torch) by references into ``arrays``; refuse anything else."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else {"__float__": repr(value)}
    if isinstance(value, (list, tuple)):
        return [_to_plain(v, arrays, f"{path}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict):
        out = {}
        for key, v in value.items():
            if not isinstance(key, str):
                raise ProbeDataError(f"probe data keys must be strings, got {key!r} at {path}")
            out[key] = _to_plain(v, arrays, f"{path}.{key}")
        return out
    if type(value).__module__.startswith("torch") and hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    if isinstance(value, np.generic):
        return _to_plain(value.item(), arrays, path)
    if type(value) is np.ndarray and value.dtype != object:
        name = f"a{len(arrays)}"
        arrays[name] = np.array(value, order="C", copy=True)   # keeps 0-d arrays 0-d
        return {"__array__": name}
    raise ProbeDataError(f"probe data at {path} is a {type(value).__name__}; only numbers, "
                         "strings, booleans, lists, dicts and arrays can leave the kernel")


def _from_plain(value: Any, arrays: dict[str, np.ndarray]) -> Any:
    if isinstance(value, list):
        return [_from_plain(v, arrays) for v in value]
    if isinstance(value, dict):
        if set(value) == {"__array__"}:
            return arrays[value["__array__"]]
        if set(value) == {"__float__"}:
            return float(value["__float__"])
        return {k: _from_plain(v, arrays) for k, v in value.items()}
    return value


def pack(data: dict[str, Any]) -> bytes:
    """Encode probe data as one ``.npz`` file: arrays as arrays, the rest as JSON text."""
    arrays: dict[str, np.ndarray] = {}
    plain = _to_plain(data, arrays, "data")
    text = json.dumps(plain, allow_nan=False).encode("utf-8")
    buffer = io.BytesIO()
    np.savez(buffer, **{_JSON_KEY: np.frombuffer(text, dtype=np.uint8)}, **arrays)
    blob = buffer.getvalue()
    if len(blob) > MAX_PROBE_BYTES:
        raise ProbeDataError(f"probe data is {len(blob)} bytes, over the {MAX_PROBE_BYTES} limit")
    return blob


def unpack(blob: bytes) -> dict[str, Any]:
    """Decode :func:`pack`'s output. Never unpickles: object arrays are refused."""
    if len(blob) > MAX_PROBE_BYTES:
        raise ProbeDataError(f"probe data is {len(blob)} bytes, over the {MAX_PROBE_BYTES} limit")
    try:
        with np.load(io.BytesIO(blob), allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
        plain = json.loads(arrays.pop(_JSON_KEY).tobytes().decode("utf-8"))
        data = _from_plain(plain, arrays)
    except (ValueError, KeyError, OSError, UnicodeDecodeError, EOFError) as exc:
        raise ProbeDataError(f"unreadable probe data ({type(exc).__name__})") from None
    if not isinstance(data, dict):
        raise ProbeDataError("probe data must be a dict")
    return data


# ----------------------------------------------------------------------------------- probes

_PATHLIKE = re.compile(r"(/[\w.\-]+){2,}/?")


def sanitise(text: str, limit: int = MAX_MESSAGE) -> str:
    """A learner's exception text made safe to show: no paths, no control characters, capped."""
    text = _PATHLIKE.sub("<path>", str(text))
    text = "".join(ch if ch.isprintable() else " " for ch in text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def user_frame(exc: BaseException) -> str:
    """Where in the learner's code an exception came from (last frame outside course_utils)."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__)
              if "course_utils" not in f.filename.replace("\\", "/")]
    if not frames:
        return ""
    f = frames[-1]
    return f" (in {f.name}, line {f.lineno}: {f.line})" if f.line else f" (in {f.name})"


def run_probe(probe: Any, obj: Any, case: Case) -> dict[str, Any]:
    """Run ``probe(obj, case)`` and return its data, or a status dict when it did not finish.

    ``NotImplementedError`` (the student stub) becomes ``not done``; a
    :class:`CheckFailure` raised by the probe itself (a property
    that can be seen before any comparison, such as "return a pair") becomes ``failed``; any
    other exception, from the learner's code, becomes ``error`` with a sanitised excerpt.
    """
    try:
        data = probe(obj, case)
    except NotImplementedError:
        return {STATUS_KEY: NOT_DONE}
    except CheckFailure as exc:
        return {STATUS_KEY: FAILED, "message": str(exc)}
    except Exception as exc:  # the learner's code crashed: report it, never crash the caller
        return {STATUS_KEY: ERROR, "error": type(exc).__name__,
                "message": sanitise(str(exc)), "where": sanitise(user_frame(exc), 200)}
    if not isinstance(data, dict):
        raise ProbeDataError(f"a probe must return a dict, got {type(data).__name__}")
    return data
