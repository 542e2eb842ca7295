"""Code the runner starts inside each notebook's kernel, before the first cell.

It must stay import-light (no torch, no course_utils submodules) and leave no names in the
notebook's namespace: the runner calls it as
``__import__("course_utils.run_course.kernel_side", fromlist=["x"]).install(log)``.
"""

from __future__ import annotations

import os
import sys
from typing import Any


def pretrained_dir() -> str:
    """The folder of the shipped checkpoints, with a trailing separator (realpath)."""
    import course_utils

    return os.path.join(os.path.dirname(os.path.realpath(course_utils.__file__)),
                        "pretrained", "")


def install(log_path: str) -> None:
    """Record every shipped checkpoint (``pretrained/*.pt``) the kernel opens in ``log_path``.

    It uses a Python audit hook on the ``open`` event, so it sees ``torch.load`` of a shipped
    file whichever loader or notebook cell does it, without changing any code. One line per
    file, the file name only, each at most once.
    """
    root = pretrained_dir()
    seen: set[str] = set()

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if event != "open" or not args or not isinstance(args[0], (str, os.PathLike)):
            return
        path = os.fspath(args[0])
        if not isinstance(path, str) or not path.endswith(".pt") or path in seen:
            return
        seen.add(path)          # before opening the log, whose own open event comes back here
        if os.path.realpath(path).startswith(root):
            with open(log_path, "a", encoding="utf-8") as log:
                log.write(os.path.basename(path) + "\n")

    sys.addaudithook(hook)
