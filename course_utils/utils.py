"""Small idioms the rest of the package shares, written once.

* :func:`evaluating`: a block in eval mode without gradients, the model's mode put back after.
* :func:`batched`: run a function over a large tensor in slices, without gradients.
* :func:`tile_images`: lay a batch of images out as one picture (a grid).
* :func:`half_state_dict` / :func:`float_state_dict`: store weights in float16, load as float32.
* :func:`atomic_write`: write a file so that a crash never leaves a half-written one.
"""

from __future__ import annotations

import contextlib
import math
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import IO

import numpy as np
import torch
from torch import Tensor, nn

__all__ = ["evaluating", "batched", "tile_images", "half_state_dict", "float_state_dict",
           "atomic_write"]


@contextlib.contextmanager
def evaluating(model: nn.Module) -> Iterator[nn.Module]:
    """Run a block in eval mode and without gradients, then restore the model's mode.

    Inference (sampling, reconstructing, scoring) must use batch norm's running statistics
    and dropout switched off, and must not update them. The previous train/eval mode comes
    back even if the block raises.

    Example:
        >>> with evaluating(model):
        ...     x_hat = model(x)
    """
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield model
    finally:
        model.train(was_training)


@torch.no_grad()
def batched(fn: Callable[..., Tensor], x: Tensor | tuple[Tensor | None, ...], batch_size: int,
            *, device: torch.device | str | None = None) -> Tensor:
    """``fn`` applied to ``x`` in slices of ``batch_size`` rows, concatenated on the CPU.

    Args:
        fn: maps a slice (B, ...) to a result (B, ...). With a tuple ``x`` it is called with
            one slice of each tensor (``None`` entries are passed on as ``None``).
        x: one tensor (N, ...) or a tuple of tensors with N rows each.
        batch_size: rows per call.
        device: move each slice there before calling ``fn`` (default: leave it where it is).

    Returns:
        The results of every slice, moved to the CPU and concatenated: (N, ...).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    tensors = x if isinstance(x, tuple) else (x,)
    n = next(t.shape[0] for t in tensors if t is not None)

    def part(t: Tensor | None, i: int) -> Tensor | None:
        if t is None:
            return None
        return t[i:i + batch_size] if device is None else t[i:i + batch_size].to(device)

    return torch.cat([fn(*(part(t, i) for t in tensors)).cpu() for i in range(0, n, batch_size)])


def tile_images(images: Tensor | np.ndarray, nrow: int, *, padding: int = 0,
                pad_value: float = 1.0) -> np.ndarray:
    """Lay (B, H, W) or (B, 1, H, W) images out as one (rows, ``nrow``) grid, row by row.

    Args:
        images: the images; pixel values are copied as they are.
        nrow: images per row. ``ceil(B / nrow)`` rows; unused cells are ``pad_value``.
        padding: pixels of ``pad_value`` around and between the images.
        pad_value: value of the padding and of empty cells (1.0: white in [0, 1]).

    Returns:
        A float array of shape (rows * (H + padding) + padding, nrow * (W + padding) + padding).
    """
    x = images.detach().cpu().numpy() if isinstance(images, Tensor) else np.asarray(images)
    if x.ndim == 4:
        if x.shape[1] != 1:
            raise ValueError(f"tile_images takes one-channel images, got shape {x.shape}")
        x = x[:, 0]
    if x.ndim != 3:
        raise ValueError(f"tile_images expects (B, H, W) or (B, 1, H, W), got {x.shape}")
    b, h, w = x.shape
    rows, p = math.ceil(b / nrow), padding
    canvas = np.full((rows * (h + p) + p, nrow * (w + p) + p), pad_value,
                     dtype=np.result_type(x.dtype, np.float32))
    for i in range(b):
        r, c = divmod(i, nrow)
        canvas[p + r * (h + p): p + r * (h + p) + h, p + c * (w + p): p + c * (w + p) + w] = x[i]
    return canvas


def half_state_dict(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """A copy of a ``state_dict`` with its floating-point tensors in float16 (half the file);
    integer buffers (e.g. batch norm's step counter) stay as they are."""
    return {k: v.half() if v.is_floating_point() else v for k, v in state.items()}


def float_state_dict(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """The inverse of :func:`half_state_dict`: floating-point tensors back to float32."""
    return {k: v.float() if v.is_floating_point() else v for k, v in state.items()}


def atomic_write(path: str | os.PathLike[str], write: Callable[[IO[bytes]], object]) -> Path:
    """Create or replace the file ``path`` atomically: ``write(f)`` fills a temporary file in
    the same folder, which then replaces ``path`` in one step (``os.replace``).

    A crash while writing leaves the previous file intact and no temporary file behind.

    Example:
        >>> atomic_write("model.pt", lambda f: torch.save(state, f))
        >>> atomic_write("notes.txt", lambda f: f.write("text".encode()))
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path
