"""Execute one notebook in a fresh kernel, as JupyterLab would, with a live progress display.

* Figures: the kernel uses matplotlib's inline backend, JupyterLab's default, so every figure
  the notebook shows in JupyterLab is stored in the executed notebook as an image.
* Progress bars inside the notebook are plain text (``COURSE_PROGRESS=text``), so the saved
  notebook shows each bar's final count; widget state is saved too (sliders).
* The kernel process's own stdout and stderr (start-up warnings and the like) go to a log file,
  never into the progress display.
* Shipped checkpoints the notebook loads are recorded (see :mod:`.kernel_side`).
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

from .images import images_per_cell
from .progress import NotebookProgress

INLINE_BACKEND = "module://matplotlib_inline.backend_inline"
SKIP_TAG = "skip-execution"


@dataclass
class NotebookResult:
    """What happened to one notebook of the run."""

    source: Path
    executed: Path
    status: str                   # "ok", "error" or "timeout"
    seconds: float
    message: str = ""             # the error's last line when status is not "ok"
    kernel_log: Path | None = None
    offers_checkpoint: bool = False
    checkpoints: list[str] = field(default_factory=list)   # shipped files it loaded
    figures: list[int] = field(default_factory=list)       # figures per code cell
    html: Path | None = None

    @property
    def name(self) -> str:
        return self.source.name

    def checkpoint_note(self) -> str:
        """``"loaded vae_fashion.pt"``, ``"trained instead"`` or ``""`` (none offered)."""
        if self.checkpoints:
            return "shipped checkpoint loaded: " + ", ".join(self.checkpoints)
        if self.offers_checkpoint:
            return "no shipped checkpoint loaded: it trained instead"
        return ""


def runnable_cells(nb: Any) -> list[int]:
    """Indices of the cells the kernel will run: non-empty code cells not tagged to skip."""
    return [i for i, c in enumerate(nb.cells)
            if c.cell_type == "code" and c.source.strip()
            and SKIP_TAG not in c.get("metadata", {}).get("tags", [])]


def offers_checkpoint(nb: Any) -> bool:
    """Whether the notebook can load a shipped checkpoint (it imports course_utils.pretrained)."""
    return any("course_utils.pretrained" in c.source for c in nb.cells if c.cell_type == "code")


class CourseClient(NotebookClient):
    """An nbclient ``NotebookClient`` that reports each cell and its progress lines to a
    :class:`NotebookProgress`."""

    def __init__(self, nb: Any, progress: NotebookProgress, **kwargs: Any) -> None:
        super().__init__(nb, on_cell_start=self._cell_start, on_cell_executed=self._cell_done,
                         **kwargs)
        self.progress = progress
        self.numbers = {index: k + 1 for k, index in enumerate(runnable_cells(nb))}

    def _cell_start(self, cell: Any, cell_index: int) -> None:
        if cell_index in self.numbers:
            self.progress.start_cell(self.numbers[cell_index])

    def _cell_done(self, cell: Any, cell_index: int, execute_reply: Any) -> None:
        self.progress.end_cell()

    def output(self, outs: list[Any], msg: dict[str, Any], display_id: str | None,
               cell_index: int) -> Any:
        if msg["msg_type"] == "stream":
            self.progress.cell_output(msg["content"].get("text", ""))
        return super().output(outs, msg, display_id, cell_index)


def _error_line(exc: BaseException) -> str:
    """The last non-blank line of an error's text, without terminal colour codes."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__


def _write_atomically(nb: Any, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".tmp")
    nbformat.write(nb, tmp)
    tmp.replace(dest)


def run_notebook(src: Path, dest: Path, *, env: Mapping[str, str], cell_timeout: int,
                 log_dir: Path, progress_file: Any = None) -> NotebookResult:
    """Execute ``src`` in a fresh kernel and write the executed notebook to ``dest``.

    ``env`` is the kernel's whole environment. The notebook is written even when a cell fails,
    so the error can be read in context. The kernel's own output goes to
    ``log_dir/<name>.kernel.log``; the shipped checkpoints it opens to ``<name>.checkpoints``.
    """
    nb = nbformat.read(src, as_version=4)
    log_dir.mkdir(parents=True, exist_ok=True)
    kernel_log = log_dir / f"{src.stem}.kernel.log"
    loaded_log = log_dir / f"{src.stem}.checkpoints"
    loaded_log.unlink(missing_ok=True)
    install = ('__import__("course_utils.run_course.kernel_side", fromlist=["install"])'
               f".install({str(loaded_log)!r})")
    status, message = "ok", ""
    start = time.perf_counter()
    with NotebookProgress(src.name, len(runnable_cells(nb)), file=progress_file) as progress, \
            open(kernel_log, "w", encoding="utf-8") as log:
        client = CourseClient(nb, progress, timeout=cell_timeout, kernel_name="python3",
                              resources={"metadata": {"path": str(src.parent)}},
                              coalesce_streams=True, skip_cells_with_tag=SKIP_TAG,
                              extra_arguments=[f"--IPKernelApp.exec_lines={install}"])
        try:
            client.execute(env=dict(env), stdout=log, stderr=log)
        except CellTimeoutError as exc:
            status, message = "timeout", _error_line(exc)
        except (CellExecutionError, DeadKernelError) as exc:
            status, message = "error", _error_line(exc)
        except Exception as exc:            # e.g. the kernel did not start: report, go on
            status, message = "error", f"{type(exc).__name__}: {_error_line(exc)}"
        finally:
            client.set_widgets_metadata()   # nbclient skips it when a cell fails
    seconds = time.perf_counter() - start
    _write_atomically(nb, dest)
    loaded = loaded_log.read_text(encoding="utf-8").split() if loaded_log.exists() else []
    return NotebookResult(src, dest, status, seconds, message, kernel_log,
                          offers_checkpoint(nb), loaded, images_per_cell(nb))
