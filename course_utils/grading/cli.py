"""The command line of the batch grader: ``course-grade`` and ``python -m course_utils.grading``.

Usage (see ``docs/instructors.md``)::

    course-grade notebooks/00_introduction.ipynb submissions/ -o grades/00_introduction
    python -m course_utils.grading notebooks/00_introduction.ipynb submissions/ --jobs 4
    # one class on several machines: shard K of N per job-array task, then merge
    course-grade notebooks/00_introduction.ipynb submissions/ --shard 2/3 -o shards/2
    course-grade merge grades/00_introduction shards/1 shards/2 shards/3

How a submission is graded
--------------------------
1. The file is read leniently (bytes -> JSON -> cells). A file that is not a notebook at all
   (invalid JSON, truncated, no cell list) gets status ``invalid`` and 0 points
   (:mod:`.submission`).
2. Only the *exercise cells* are taken from it, matched by their ``exercise_id`` metadata, or,
   when the metadata was stripped, by the names the cell defines (``def scale_to_pm1``) or by
   its position. Everything else comes from the instructor's template (the student notebook
   in ``notebooks/`` plus ``notebooks/manifest.json``, see :mod:`.assignment`), so edited or
   deleted check cells, stored outputs, changed ``points`` metadata or another kernel name
   change nothing.
3. The rebuilt notebook runs in a fresh kernel process, in a temporary working directory, in
   smoke mode on the CPU, with a per-cell time limit, a total time limit and a memory limit
   (:mod:`.execution`). Three kinds of cells are injected (:mod:`.kernel`): a prelude before
   any submitted code (it records the state of the libraries the checks use), a capture cell
   after each exercise cell (it keeps the object the exercise defined, before the notebook's
   own ``check`` cell can replace it), and a final cell that restores any library function
   the submission replaced, then runs each exercise's *probe* on the captured object at the
   public case and at hidden cases with fresh random seeds, writing plain data only. The
   grader judges that data in its own process (:mod:`.judging`), with the public judge and
   the hidden judges of ``--hidden-tests``; nothing the submission printed, stored or wrote
   is ever read as a grade.
4. If an exercise hangs, exhausts memory or kills the kernel, that exercise gets 0 points
   and the notebook is run again with the assignment's stub in its place, so the other
   exercises are still graded (:mod:`.verdicts`).

Submissions are graded in parallel worker processes (:mod:`.pool`). Results are written
atomically (temporary file + ``os.replace``) under the output folder: ``gradebook.csv``,
``results.json``, ``feedback/<student>.md`` and ``records/<student>.json`` (the cache that lets
a re-run skip submissions graded before; ``--force`` regrades), see :mod:`.reports` and
:mod:`.batch`. The submitted files are only ever opened for reading.

Security note: every grading kernel runs in a bubblewrap sandbox (:mod:`.sandbox`): no
network, a private ``/tmp``, a read-only view of the environment, one writable scratch folder,
no view of the output folder, the submissions or the hidden tests, a cleared environment, and
its own PID namespace that dies with it. Verdicts of probe/judge exercises are computed in the
grader's process from plain data (:mod:`.judging`). Without bubblewrap the grader refuses to
run unless ``--no-sandbox`` is passed, which gives all that up (run it in a disposable
container or VM then). Code that reaches into the grader or Python internals
is flagged for review in the gradebook.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .assignment import AssignmentError, Limits
from .batch import grade_batch
from .sandbox import SandboxUnavailable
from .shards import merge_main, shard_arg


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="course-grade",
        description="Grade a folder of submitted notebooks into a gradebook (CSV), per-student "
                    "feedback (Markdown) and results.json.",
        epilog="Example: course-grade notebooks/00_introduction.ipynb submissions/ "
               "-o grades/00_introduction --jobs 2. Join --shard outputs with "
               "`course-grade merge OUT SHARD_DIR...` (see its --help).")
    p.add_argument("assignment", help="the student notebook handed out, e.g. "
                   "notebooks/00_introduction.ipynb (its manifest.json is read from the same "
                   "folder)")
    p.add_argument("submissions", help="folder with one .ipynb per student (student id = file "
                   "name) or one sub-folder per student")
    p.add_argument("-o", "--output", help="output folder (default: grades/<assignment name>)")
    p.add_argument("-j", "--jobs", type=int, default=2, help="submissions graded in parallel "
                   "(default: %(default)s)")
    p.add_argument("--force", action="store_true", help="regrade submissions graded before")
    p.add_argument("--cell-timeout", type=float, default=Limits.cell_timeout,
                   help="seconds per cell and per exercise's checks (default: %(default)g)")
    p.add_argument("--total-timeout", type=float, default=Limits.total_timeout,
                   help="seconds per submission, all runs included (default: %(default)g)")
    p.add_argument("--memory-mb", type=int, default=Limits.memory_mb,
                   help="address-space limit of the grading kernel in MB, 0 for none "
                        "(default: %(default)s)")
    p.add_argument("--output-kb", type=int, default=Limits.output_kb,
                   help="printed output kept per cell, in KB (default: %(default)s)")
    p.add_argument("--manifest", help="manifest.json to use (default: next to the assignment)")
    p.add_argument("--hidden-tests", help="a Python file registering extra grader-only checks "
                   "with @hidden_judge (it is loaded only in the grader's process; keep it "
                   "out of the students' copy)")
    p.add_argument("--no-sandbox", action="store_true",
                   help="run kernels WITHOUT the bubblewrap sandbox (only inside a disposable "
                        "container or VM: submitted code can then reach your files)")
    p.add_argument("--keep-notebooks", action="store_true",
                   help="also save each executed notebook under <output>/executed/")
    p.add_argument("--shard", type=shard_arg, metavar="K/N",
                   help="grade only shard K of N (1-based) of the class, for one task of a job "
                        "array (default output: <output>-shards/K); join the shards with "
                        "`course-grade merge OUT SHARD_DIR...`")
    p.add_argument("-q", "--quiet", action="store_true", help="print only the summary")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["merge"]:           # course-grade merge OUT SHARD_DIR...
        return merge_main(argv[1:])
    args = build_parser().parse_args(argv)
    if args.jobs < 1:
        print("error: --jobs must be at least 1", file=sys.stderr)
        return 2
    output = args.output or str(Path("grades") / Path(args.assignment).stem)
    if args.shard and not args.output:
        output = args.shard.default_output(output)
    try:
        limits = Limits(cell_timeout=args.cell_timeout, total_timeout=args.total_timeout,
                        memory_mb=args.memory_mb, output_kb=args.output_kb,
                        sandbox=not args.no_sandbox)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    def quiet_log(message: str) -> None:
        if message.startswith(("Done", "Ignored", "No submissions", "warning")):
            print(message)

    try:
        result = grade_batch(args.assignment, args.submissions, output, jobs=args.jobs,
                             force=args.force, limits=limits, manifest=args.manifest,
                             hidden_tests=args.hidden_tests, keep_notebooks=args.keep_notebooks,
                             log=quiet_log if args.quiet else print, shard=args.shard)
    except (AssignmentError, SandboxUnavailable) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: graded submissions are kept; run again to continue", file=sys.stderr)
        return 130
    return 1 if any(r.status == "grader-error" for r in result.records) else 0


if __name__ == "__main__":
    sys.exit(main())
