"""Run the course headless: execute the notebooks into ``build/``, export them to HTML, summarise.

Usage::

    python -m course_utils.run_course                   # full mode, shipped checkpoints
    python -m course_utils.run_course --train           # train everything from scratch
    python -m course_utils.run_course --smoke           # seconds-long smoke run
    python -m course_utils.run_course --only 00 02      # a subset, by number prefix
    python -m course_utils.run_course notebooks/02_vae.ipynb   # one notebook, given by path

(``course-run`` is the same command.) By default it runs the *solution* notebooks (the complete
course, exercises solved), so the executed copies show every result. Each notebook runs in a
fresh kernel, with matplotlib's inline backend as in JupyterLab, so ``build/`` holds:

* ``NN_name.ipynb``: the executed notebook, with its figures, final progress-bar counts and
  saved widget state; written even when a cell fails, so the error can be read in context;
* ``NN_name.html``: the same as a standalone page (figures embedded), and ``index.html``, the
  chapter table with each chapter's status, time and links;
* ``logs/NN_name.kernel.log``: what the kernel process itself printed (shown on failure).

While it runs, a progress bar shows the notebook, the cell it is on, the elapsed time and the
cell's own progress bar. A failure is reported and the run moves on to the next notebook; the
exit status is 1 if any notebook failed.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from .execute import INLINE_BACKEND, NotebookResult, run_notebook
from .export import export_html, format_seconds, write_index
from .progress import write

__all__ = ["main", "select_notebooks", "kernel_environment", "NotebookResult"]

REPO = Path(__file__).resolve().parents[2]
BANNER = "!" * 78
LOG_TAIL = 25


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m course_utils.run_course",
        description="Execute the course notebooks into build/ (notebooks, HTML, index.html).")
    p.add_argument("notebooks", nargs="*", type=Path, metavar="NOTEBOOK",
                   help="run only these notebook files (default: every chapter)")
    p.add_argument("--only", nargs="+", default=None, metavar="PREFIX",
                   help="run only chapters whose names start with these prefixes, e.g. 01 02")
    p.add_argument("--train", action="store_true",
                   help="train every model from scratch instead of loading shipped checkpoints "
                        "(also COURSE_TRAIN=1)")
    p.add_argument("--smoke", action="store_true",
                   help="tiny, seconds-long runs for testing (also COURSE_SMOKE=1)")
    p.add_argument("--device", default=None, help="cpu, cuda or mps (default: automatic)")
    p.add_argument("--student", action="store_true",
                   help="run the student notebooks (exercises unsolved) instead of the solutions")
    p.add_argument("--out", type=Path, default=REPO / "build", help="output folder (build/)")
    p.add_argument("--cell-timeout", type=int, default=3600, help="seconds per cell")
    p.add_argument("--no-html", action="store_true", help="skip the HTML pages and index.html")
    return p


def select_notebooks(paths: Sequence[Path], only: Sequence[str] | None,
                     student: bool) -> list[Path]:
    """The notebooks to run: ``paths`` if given, else every ``NN_*.ipynb`` chapter of the
    solutions (or, with ``student``, of ``notebooks/``); ``only`` keeps names with a prefix.

    Raises:
        FileNotFoundError: if a given path is not a notebook file.
    """
    if paths:
        missing = [str(p) for p in paths if not p.is_file() or p.suffix != ".ipynb"]
        if missing:
            raise FileNotFoundError(f"not a notebook file: {', '.join(missing)}")
        notebooks = [p.resolve() for p in paths]
    else:
        source_dir = REPO / "notebooks" / ("" if student else "solutions")
        notebooks = sorted(source_dir.glob("[0-9][0-9]_*.ipynb"))
    if only:
        notebooks = [p for p in notebooks if p.name.startswith(tuple(only))]
    return notebooks


def kernel_environment(base: dict[str, str], *, smoke: bool, train: bool,
                       device: str | None) -> dict[str, str]:
    """The kernels' environment: ``base`` plus the course switches, JupyterLab's inline
    matplotlib backend and plain-text progress bars, minus the test suite's expectations."""
    env = dict(base, COURSE_SMOKE="1" if smoke else "0", COURSE_TRAIN="1" if train else "0",
               MPLBACKEND=INLINE_BACKEND, COURSE_PROGRESS="text")
    env.pop("COURSE_EXPECT", None)          # only the test suite sets expectations
    if device:
        env["COURSE_DEVICE"] = device
    return env


def data_status() -> tuple[bool, str]:
    """Whether Fashion-MNIST is available (locally or by download), and a line saying so."""
    from .. import data

    try:
        ds = data.load_dataset("fashion-mnist", max_train=1, max_test=1)
    except data.DataError as exc:
        return False, str(exc)
    return True, f"Fashion-MNIST found: {ds.source}"


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status (0 all ok, 1 a failure, 2 usage)."""
    saved = dict(os.environ)
    try:
        return _main(argv)
    finally:                      # leave the caller's environment as it was
        os.environ.clear()
        os.environ.update(saved)


def _main(argv: list[str] | None) -> int:
    args = _parser().parse_args(argv)
    from .. import config

    try:
        notebooks = select_notebooks(args.notebooks, args.only, args.student)
        smoke = args.smoke or config.is_smoke()
        train = args.train or config.train_from_scratch()
    except (FileNotFoundError, ValueError) as exc:
        print(f"run_course: {exc}", file=sys.stderr)
        return 2
    if not notebooks:
        print(f"No notebooks to run (selection {args.only or args.notebooks or 'all'}): "
              "the chapters are notebooks/solutions/NN_*.ipynb.", file=sys.stderr)
        return 2
    env = kernel_environment(dict(os.environ), smoke=smoke, train=train, device=args.device)
    os.environ.update({k: env[k] for k in ("COURSE_SMOKE", "COURSE_TRAIN")})
    os.environ.pop("COURSE_EXPECT", None)
    if args.device:
        os.environ["COURSE_DEVICE"] = args.device
    setup = config.describe_setup()
    print(setup)
    data_ok, line = data_status()
    if data_ok:
        print(line)
    else:
        print(f"\n{BANNER}\nFASHION-MNIST IS NOT AVAILABLE: the notebooks will use scikit-learn's "
              f"8x8 digits instead,\nso figures and numbers will differ from the text.\n{line}\n"
              f"{BANNER}\n")
    mode = (f"{'smoke' if smoke else 'full'} mode, "
            f"{'training from scratch' if train else 'shipped checkpoints where offered'}")
    print(f"Running {len(notebooks)} notebook(s) into {args.out} ({mode}); the kernels' own "
          f"messages go to {args.out / 'logs'}/", flush=True)

    start = time.perf_counter()
    results = [_run_one(src, args, env) for src in notebooks]
    total = time.perf_counter() - start
    index = None if args.no_html else write_index(args.out, results, mode=mode, setup=setup,
                                                  total_seconds=total)
    _summary(results, total, index, args.out)
    if not data_ok:
        print(f"{BANNER}\nReminder: these results use the digits fallback, not Fashion-MNIST.\n"
              f"{BANNER}")
    return 1 if any(r.status != "ok" for r in results) else 0


def _run_one(src: Path, args: argparse.Namespace, env: dict[str, str]) -> NotebookResult:
    """Run one notebook (and export it), print its result line, and return the result."""
    result = run_notebook(src, args.out / src.name, env=env, cell_timeout=args.cell_timeout,
                          log_dir=args.out / "logs")
    html_note = ""
    if not args.no_html:
        html = args.out / f"{src.stem}.html"
        try:
            export_html(result.executed, html, src.parent)
            result.html = html
        except Exception as exc:          # a broken export must not stop the course run
            html_note = f" | HTML export failed: {type(exc).__name__}: {exc}"
    note = result.checkpoint_note()
    write(f"  {result.status:7} {format_seconds(result.seconds):>12}  {src.name}"
          f"  ({sum(result.figures)} figures{'; ' + note if note else ''}){html_note}")
    if result.status != "ok":
        _report_failure(result)
    return result


def _report_failure(result: NotebookResult) -> None:
    """Show why a notebook failed: the error, where to read it, and the kernel's own log."""
    write(f"          {result.message}")
    write(f"          the traceback is in {result.executed} (open it in JupyterLab)")
    if result.kernel_log and result.kernel_log.exists():
        lines = result.kernel_log.read_text(encoding="utf-8", errors="replace").splitlines()
        write(f"          kernel log {result.kernel_log} (last {min(len(lines), LOG_TAIL)} "
              f"of {len(lines)} lines):")
        for line in lines[-LOG_TAIL:]:
            write(f"          | {line}")


def _summary(results: Sequence[NotebookResult], total: float, index: Path | None,
             out: Path) -> None:
    print(f"\nSummary: {len(results)} notebook(s) in {format_seconds(total)}")
    for r in results:
        note = r.checkpoint_note()
        print(f"  {r.status:7} {format_seconds(r.seconds):>12}  {r.name:<24} "
              f"{sum(r.figures):3d} figures  {note}".rstrip())
    failed = [r.name for r in results if r.status != "ok"]
    if failed:
        print(f"FAILED: {', '.join(failed)} (see above; kernel logs in {out / 'logs'})")
    if index:
        print(f"Read the course in a browser: {index}")
    print(f"Open the executed notebooks in JupyterLab: jupyter lab {out}")
