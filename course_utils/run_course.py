"""Run the whole course headless: execute every notebook into ``build/`` and summarise.

Usage::

    python -m course_utils.run_course                 # full mode, shipped checkpoints
    python -m course_utils.run_course --train         # train everything from scratch
    python -m course_utils.run_course --smoke         # seconds-long smoke run
    python -m course_utils.run_course --only 00 02    # a subset, by number prefix

By default it runs the *solution* notebooks (the complete course, exercises solved), so the
executed copies in ``build/`` show every result. Each notebook runs in a fresh kernel; a
failure is reported and the run moves on to the next notebook. The executed notebook is
written even when a cell fails, so the error can be read in context.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

BANNER = "!" * 78


def data_status() -> tuple[bool, str]:
    """Whether Fashion-MNIST is available (locally or by download), and a line saying so."""
    from . import data

    try:
        ds = data.load_dataset("fashion-mnist", max_train=1, max_test=1)
    except data.DataError as exc:
        return False, str(exc)
    return True, f"Fashion-MNIST found: {ds.source}"


def run_notebook(src: Path, dest: Path, cell_timeout: int, env: dict[str, str]
                 ) -> tuple[str, float, str]:
    """Execute ``src`` into ``dest``; return (status, seconds, message)."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    nb = nbformat.read(src, as_version=4)
    old_env = dict(os.environ)
    os.environ.update(env)          # the kernel inherits this process's environment
    start = time.perf_counter()
    status, message = "ok", ""
    try:
        NotebookClient(nb, timeout=cell_timeout, kernel_name="python3",
                       resources={"metadata": {"path": str(src.parent)}}).execute()
    except CellTimeoutError as exc:
        status, message = "timeout", str(exc).strip().splitlines()[-1]
    except (CellExecutionError, DeadKernelError) as exc:
        lines = [l for l in str(exc).strip().splitlines() if l.strip()]
        status, message = "error", lines[-1] if lines else type(exc).__name__
    finally:
        os.environ.clear()
        os.environ.update(old_env)
    seconds = time.perf_counter() - start
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".tmp")
    nbformat.write(nb, tmp)
    tmp.replace(dest)
    return status, seconds, message


def main(argv: list[str] | None = None) -> int:
    saved = dict(os.environ)
    try:
        return _main(argv)
    finally:                      # leave the caller's environment as it was
        os.environ.clear()
        os.environ.update(saved)


def _main(argv: list[str] | None) -> int:
    parser = argparse.ArgumentParser(description="Execute every course notebook into build/.")
    parser.add_argument("--train", action="store_true",
                        help="train every model from scratch instead of loading shipped checkpoints")
    parser.add_argument("--smoke", action="store_true", help="tiny, seconds-long runs (for testing)")
    parser.add_argument("--device", default=None, help="cpu, cuda or mps (default: automatic)")
    parser.add_argument("--student", action="store_true",
                        help="run the student notebooks (exercises unsolved) instead of the solutions")
    parser.add_argument("--only", nargs="*", default=None, metavar="PREFIX",
                        help="run only notebooks whose names start with these prefixes, e.g. 01 02")
    parser.add_argument("--out", type=Path, default=REPO / "build", help="output folder")
    parser.add_argument("--cell-timeout", type=int, default=3600, help="seconds per cell")
    args = parser.parse_args(argv)

    source_dir = REPO / "notebooks" / ("" if args.student else "solutions")
    notebooks = sorted(source_dir.glob("[0-9][0-9]_*.ipynb"))
    if args.only:
        notebooks = [p for p in notebooks if p.name.startswith(tuple(args.only))]
    if not notebooks:
        print(f"No notebooks found in {source_dir}.", file=sys.stderr)
        return 2

    env = {"COURSE_SMOKE": "1" if args.smoke else "0", "COURSE_TRAIN": "1" if args.train else "0",
           "MPLBACKEND": "Agg"}
    os.environ.pop("COURSE_EXPECT", None)   # only the test suite sets expectations
    if args.device:
        env["COURSE_DEVICE"] = args.device
    os.environ.update({k: v for k, v in env.items() if k != "MPLBACKEND"})

    from . import config
    print(config.describe_setup())
    ok, line = data_status()
    if ok:
        print(line)
    else:
        print(f"\n{BANNER}\nFASHION-MNIST IS NOT AVAILABLE: the notebooks will use scikit-learn's "
              f"8x8 digits instead,\nso figures and numbers will differ from the text.\n{line}\n"
              f"{BANNER}\n")
    print(f"Running {len(notebooks)} notebook(s) from {source_dir.relative_to(REPO)} "
          f"({'smoke' if args.smoke else 'full'} mode, "
          f"{'training from scratch' if args.train else 'shipped checkpoints where offered'})")

    results = []
    for src in notebooks:
        dest = args.out / src.name
        print(f"  {src.name} ...", end="", flush=True)
        status, seconds, message = run_notebook(src, dest, args.cell_timeout, env)
        print(f" {status} in {seconds:.0f} s" + (f": {message}" if message else ""))
        results.append((src.name, status, seconds, dest))

    print("\nSummary")
    for name, status, seconds, dest in results:
        print(f"  {status:8} {seconds:7.0f} s  {dest}")
    print(f"Open the executed notebooks in JupyterLab: jupyter lab {args.out}")
    if not ok:
        print(f"{BANNER}\nReminder: these results use the digits fallback, not Fashion-MNIST.\n{BANNER}")
    failed = [r for r in results if r[1] != "ok"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
