"""Grading throughput: submissions per minute for a class of generated submissions.

Builds a class (default 50) of submissions for ``notebooks/00_introduction.ipynb`` - a mix of
correct, partial, broken and hostile ones, made by the same builders as the grader's test suite
(``tests/fixtures/grading/cases.py``) - grades it with ``course-grade``'s engine, and prints the
wall time, the throughput and the outcome counts. Then it grades the class a second time to
show that a re-run skips everything already graded.

    nice -n 10 .venv/bin/python benchmarks/bench_grader.py            # 50 submissions, 2 jobs
    .venv/bin/python benchmarks/bench_grader.py --students 20 --jobs 4

Throughput depends on the machine's load: the load average is printed next to the figure.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from course_utils.grading.assignment import Limits  # noqa: E402
from course_utils.grading.batch import grade_batch  # noqa: E402

_spec = importlib.util.spec_from_file_location(
    "grading_cases", REPO / "tests" / "fixtures" / "grading" / "cases.py")
cases = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(cases)  # type: ignore[union-attr]

# The class mix for 50 students; scaled for other class sizes.
MIX = {
    "correct": ["correct"] * 20,
    "partial": ["not_done"] * 5 + ["wrong"] * 5,
    "broken": ["invalid_json"] * 3 + ["truncated"] * 3 + ["code_to_markdown"] * 2
              + ["schema_errors"] * 2,
    "hostile": ["infinite_loop"] * 2 + ["kernel_crash"] * 2 + ["memory_exhaustion"] * 2
               + ["output_flood"] * 2 + ["redefined_check", "eq_always_true"],
}


def build_class(folder: Path, students: int) -> Counter:
    """Write ``students`` submissions into ``folder``; return how many of each kind."""
    nb = cases.load(cases.INTRO_STUDENT)
    plan = [(group, case) for group, items in MIX.items() for case in items]
    kinds: Counter = Counter()
    for i in range(students):
        group, case = plan[i % len(plan)]
        (folder / f"student{i:03d}.ipynb").write_bytes(cases.CASES[case](nb))
        kinds[group] += 1
    return kinds


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--students", type=int, default=50)
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--cell-timeout", type=float, default=30.0)
    p.add_argument("--total-timeout", type=float, default=240.0)
    p.add_argument("--no-sandbox", action="store_true",
                   help="grade without the bubblewrap sandbox, to measure what it costs")
    args = p.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="bench-grader-"))
    try:
        subs = work / "submissions"
        subs.mkdir()
        kinds = build_class(subs, args.students)
        limits = Limits(cell_timeout=args.cell_timeout, total_timeout=args.total_timeout,
                        sandbox=not args.no_sandbox)
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        print(f"class: {args.students} submissions of 00_introduction "
              f"({', '.join(f'{n} {k}' for k, n in kinds.items())}); jobs={args.jobs}, "
              f"sandbox {'off' if args.no_sandbox else 'on'}, "
              f"{os.cpu_count()} CPU cores, load average {load:.1f} at start")
        start = time.perf_counter()
        result = grade_batch(cases.INTRO_STUDENT, subs, work / "out", jobs=args.jobs,
                             limits=limits, log=None)
        wall = time.perf_counter() - start
        statuses = Counter(r.status for r in result.records)
        ran = [r.seconds for r in result.records if r.attempts > 0]
        print(f"graded {len(result.records)} in {wall:.1f} s: "
              f"{len(result.records) / wall * 60:.1f} submissions per minute")
        print("statuses: " + ", ".join(f"{n} {s}" for s, n in sorted(statuses.items())))
        if ran:
            print(f"{len(ran)} submissions ran a kernel: {sum(ran) / len(ran):.1f} s each on "
                  f"average (max {max(ran):.1f} s, timeouts and retries included)")
        start = time.perf_counter()
        again = grade_batch(cases.INTRO_STUDENT, subs, work / "out", jobs=args.jobs,
                            limits=limits, log=None)
        print(f"re-run: {again.skipped} skipped, {again.graded} regraded in "
              f"{time.perf_counter() - start:.1f} s")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
