"""The live display of a course run: one tqdm bar for the notebook that is running.

The bar shows the notebook, how many of its code cells are done, the elapsed time, the cell it
is on (``cell k/N``) and, when that cell prints a progress bar of its own (a training loop), the
latest state of that bar. A background thread refreshes it so the clock keeps moving during a
long cell that prints nothing.
"""

from __future__ import annotations

import re
import sys
import threading
from typing import TextIO

from tqdm.std import tqdm

# A tqdm line ends its counts with "[elapsed<remaining, rate]" or "[elapsed, rate]".
_TQDM_LINE = re.compile(r"\[\d+:\d\d(?::\d\d)?(?:<|,|\])")
_BAR_FORMAT = "{desc} {bar:12} {n_fmt}/{total_fmt} cells done [{elapsed}]{postfix}"
_DETAIL_WIDTH = 70


def last_progress_line(text: str) -> str | None:
    """The last tqdm-style progress line in a chunk of a cell's stream output, if any.

    A plain-text tqdm bar redraws itself with carriage returns, so the chunk is split on both
    ``\\r`` and ``\\n`` and the last segment that looks like a tqdm line wins.

    >>> last_progress_line("a: 10%|# | 1/10 [00:01<00:09]\\ra: 20%|## | 2/10 [00:02<00:08]")
    'a: 20%|## | 2/10 [00:02<00:08]'
    >>> last_progress_line("epoch 3 done\\n") is None
    True
    """
    for segment in reversed(re.split(r"[\r\n]", text)):
        if _TQDM_LINE.search(segment):
            return segment.strip()
    return None


def _shorten(text: str, width: int = _DETAIL_WIDTH) -> str:
    """``text`` cut to ``width`` characters, keeping its end (the counts and the rate)."""
    return text if len(text) <= width else "..." + text[-(width - 3):]


class NotebookProgress:
    """The progress bar of one running notebook (use :meth:`close`, or ``with``).

    Args:
        name: shown at the left of the bar.
        n_cells: the number of code cells that will run.
        file: where the bar is drawn (default ``sys.stderr``).
        tick_seconds: how often the background thread redraws the bar; ``None`` picks 1 s on
            a terminal and 30 s otherwise (a log file gets a line every 30 s, not a flood).
    """

    def __init__(self, name: str, n_cells: int, file: TextIO | None = None,
                 tick_seconds: float | None = None) -> None:
        file = file or sys.stderr
        if tick_seconds is None:
            tick_seconds = 1.0 if file.isatty() else 30.0
        self.n_cells = n_cells
        self.cell = 0                     # 1-based number of the cell running now; 0: none yet
        self.detail = ""                  # the running cell's own progress line
        self.bar = tqdm(total=n_cells, desc=name, unit="cell", file=file, leave=False,
                        dynamic_ncols=True, mininterval=0, bar_format=_BAR_FORMAT)
        self._show(refresh=True)
        self._stop = threading.Event()
        self._ticker = threading.Thread(target=self._tick, args=(tick_seconds,), daemon=True)
        self._ticker.start()

    def __enter__(self) -> NotebookProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start_cell(self, number: int) -> None:
        """Cell ``number`` (1-based, among code cells) starts running."""
        self.cell, self.detail = number, ""
        self.bar.n = number - 1
        self._show(refresh=True)

    def cell_output(self, text: str) -> None:
        """A chunk of the running cell's stream output arrived; keep its progress line."""
        line = last_progress_line(text)
        if line:
            self.detail = _shorten(line)
            self._show(refresh=False)     # the ticker redraws; output can arrive 10 times a second

    def end_cell(self) -> None:
        """The running cell has finished."""
        self.bar.n, self.detail = self.cell, ""
        self._show(refresh=True)

    def _show(self, refresh: bool) -> None:
        text = f"cell {self.cell}/{self.n_cells}" if self.cell else "starting the kernel"
        if self.detail:
            text += f" | {self.detail}"
        self.bar.set_postfix_str(text, refresh=refresh)

    def _tick(self, seconds: float) -> None:
        while not self._stop.wait(seconds):
            self.bar.refresh()

    def close(self) -> None:
        """Stop the ticker and remove the bar (the caller prints the notebook's result)."""
        self._stop.set()
        self._ticker.join()
        self.bar.close()


def write(line: str, file: TextIO | None = None) -> None:
    """Print ``line`` above any progress bar that is showing, without breaking it."""
    tqdm.write(line, file=file or sys.stdout)
