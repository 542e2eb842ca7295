"""The batch grader against the adversarial submissions it must survive.

One batch grades every fixture submission once (2 jobs, short limits), then each test checks
one case's asserted outcome: status, points, a message, and the original file unchanged. The
fixtures are generated from the course's 00_introduction notebooks by
``tests/fixtures/grading/cases.py`` (a small assignment with the same ``intro_scale`` exercise),
plus ``hidden_intro.py``, an example of grader-only hidden tests.
"""

from __future__ import annotations

import ast
import csv
import hashlib
import importlib.util
import json
import os
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from course_utils.checks import get_exercise, run_checkers
from course_utils.checks.core import PUBLIC_CASE, CheckFailure, judge_data, registry
from course_utils.checks.protocol import pack, run_probe, unpack
from course_utils.grading import cli, execution, kernel, reports, sandbox, verdicts
from course_utils.grading.assignment import (
    Assignment,
    AssignmentError,
    ExerciseSpec,
    Limits,
    load_assignment,
)
from course_utils.grading.batch import collect_submissions, grade_batch, student_id
from course_utils.grading.pool import run_pool
from course_utils.grading.records import Record, Task
from course_utils.grading.submission import (
    Match,
    SubmissionUnreadable,
    match_exercises,
    read_submission,
    scan_source,
)

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location(
    "grading_cases", REPO / "tests" / "fixtures" / "grading" / "cases.py")
cases = importlib.util.module_from_spec(_spec)
sys.modules["grading_cases"] = cases
_spec.loader.exec_module(cases)

# Short limits keep the suite fast; memory 2500 MB is ~1 GB above what a kernel with torch uses.
# The sandbox is on wherever bubblewrap works, and always in CI (which installs it).
SANDBOX = sandbox.bwrap_path() is not None or os.environ.get("CI") == "true"
LIMITS = Limits(cell_timeout=10, total_timeout=60, memory_mb=2500, sandbox=SANDBOX)
SOLUTION_LINE = "x * 2.0 - 1.0"   # the reference answer; never allowed in feedback


def _fingerprint(path: Path) -> tuple[str, int, int]:
    st = path.stat()
    return hashlib.sha256(path.read_bytes()).hexdigest(), st.st_mtime_ns, st.st_size


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    root = tmp_path_factory.mktemp("grading")
    template = cases.build_mini_assignment(root / "assignment")
    old = cases.build_mini_assignment(root / "old_edition", old=True)
    subs = root / "submissions"
    paths = cases.write_cases(subs, template, old, names=list(EXPECTED))
    before = {p.name: _fingerprint(p) for p in subs.iterdir()}
    out = root / "out"
    result = grade_batch(template, subs, out, jobs=2, limits=LIMITS,
                         hidden_tests=cases.HIDDEN_TESTS, log=None)
    ids = {name: student_id(path.name) for name, path in paths.items()}
    return SimpleNamespace(result=result, records=result.by_student(), paths=paths, ids=ids,
                           before=before, out=out, subs=subs, template=template)


# case: (status, total, exercise status, text that must appear in the message or notes, flags)
EXPECTED = {
    "correct": ("graded", 1, "passed", "passed the public checks and the grader's hidden", set()),
    "trains_a_model": ("graded", 1, "passed", "passed the public checks", set()),
    "hidden_fail": ("graded", 0, "failed-hidden", "not the grader's hidden tests", set()),
    "invalid_json": ("invalid", 0, "not-graded", "not valid JSON", set()),
    "truncated": ("invalid", 0, "not-graded", "truncated", set()),
    "schema_errors": ("recovered", 1, "passed", "does not follow the notebook format", set()),
    "duplicated_and_deleted_cells": ("graded", 1, "passed", "the grader used the last one", set()),
    "deleted_exercise": ("incomplete", 0, "missing", "no cell for exercise intro_scale", set()),
    "edited_checks": ("graded", 0, "failed", "used the assignment's versions", set()),
    "changed_points": ("graded", 1, "passed", "'points' metadata", set()),
    "code_to_markdown": ("incomplete", 0, "missing", "is a markdown cell", set()),
    "fake_outputs": ("graded", 0, "not-done", "not done", set()),
    "redefined_check": ("graded", 0, "failed", "should map to -1, 0 and 1", {"review"}),
    "eq_always_true": ("graded", 0, "failed", "should map to -1, 0 and 1", set()),
    "infinite_loop": ("timeout", 0, "timeout", "time limit of 10 s per cell", set()),
    "kernel_crash": ("crashed", 0, "crashed", "exited with code 3", {"review"}),
    "memory_exhaustion": ("memory", 0, "memory", "ran out of memory", set()),
    "output_flood": ("graded", 1, "passed", "the rest was discarded", set()),
    "input_call": ("graded", 0, "error", "input() cannot be answered", set()),
    "wrong_kernel": ("graded", 1, "passed", "kernel 'ir'", set()),
    "renamed_file": ("graded", 1, "passed", "passed the public checks", set()),
    "reference_used": ("graded", 1, "passed", "reference implementation", {"reference-used"}),
    "monkeypatch_torch": ("graded", 0, "failed", "should map to -1, 0 and 1", {"review"}),
    "older_template": ("outdated", 0, "missing", "different (older?) version", set()),
}


# Builders graded only by the benchmark or covered faster elsewhere in this file: not_done and
# wrong (the real intro notebook test, the in-process tests), metadata_stripped (schema_errors
# also strips the metadata), reference_hidden_call (test_reference_object_and_hidden_call).
NOT_IN_BATCH = {"not_done", "wrong", "metadata_stripped", "reference_hidden_call"}


def test_every_case_has_an_expectation():
    assert set(EXPECTED) | NOT_IN_BATCH == set(cases.CASES) | {"older_template"}


@pytest.mark.parametrize("case", sorted(EXPECTED))
def test_case_outcome(batch, case):
    status, total, ex_status, text, flags = EXPECTED[case]
    record = batch.records[batch.ids[case]]
    ex = record.exercises["intro_scale"]
    feedback = (batch.out / "feedback" / f"{batch.ids[case]}.md").read_text(encoding="utf-8")
    assert record.status == status, record
    assert record.total == total and ex.points == total, record
    assert ex.status == ex_status, record
    assert text in feedback, feedback                    # the student sees why
    assert flags <= set(record.flags), record
    if not flags:
        assert not record.flags, record
    # The original file is untouched, and the feedback never shows the answer.
    name = batch.paths[case].name
    assert _fingerprint(batch.paths[case]) == batch.before[name]
    assert SOLUTION_LINE not in feedback


def test_originals_untouched_and_folder_unchanged(batch):
    assert {p.name: _fingerprint(p) for p in batch.subs.iterdir()} == batch.before


def test_one_row_per_submission_and_consistent_gradebook(batch):
    rows = list(csv.DictReader((batch.out / "gradebook.csv").open(encoding="utf-8")))
    assert [r["student"] for r in rows] == sorted(batch.ids.values())
    assert list(rows[0]) == ["student", "intro_scale", "total", "status", "flags", "file"]
    for row in rows:
        rec = batch.records[row["student"]]
        assert float(row["total"]) == rec.total and row["status"] == rec.status
    results = json.loads((batch.out / "results.json").read_text(encoding="utf-8"))
    assert results["max_total"] == 1 and len(results["students"]) == len(rows)
    assert all((batch.out / "records" / f"{r['student']}.json").is_file() for r in rows)


def test_renamed_file_keeps_its_name(batch):
    record = batch.records[student_id(cases.FILE_NAMES["renamed_file"])]
    assert record.student.startswith("copy_of_00_mini_alice_smith_final-")
    assert record.file == cases.FILE_NAMES["renamed_file"]


def test_hidden_test_details_stay_with_the_instructor(batch):
    record = batch.records["hidden_fail"]
    assert "float64" in record.exercises["intro_scale"].detail
    feedback = (batch.out / "feedback" / "hidden_fail.md").read_text(encoding="utf-8")
    assert "float64" not in feedback and "Hint:" in feedback


def test_points_come_from_the_manifest(batch):
    record = batch.records["changed_points"]
    assert record.max_total == 1 and record.exercises["intro_scale"].max_points == 1


def test_flood_is_capped(batch):
    size = (batch.out / "records" / "output_flood.json").stat().st_size
    assert size < 50_000
    assert "MB more than the 64 KB" in " ".join(batch.records["output_flood"].notes)


def test_crash_and_timeout_are_retried_with_the_stub(batch):
    for case in ("infinite_loop", "kernel_crash"):
        assert batch.records[case].attempts == 2


def test_tampering_is_undone_and_reported(batch):
    review = " ".join(batch.records["monkeypatch_torch"].review)
    assert "torch.allclose" in review and "torch.equal" in review
    assert "redefines check()" in " ".join(batch.records["redefined_check"].review)
    # A clean run reports nothing.
    assert batch.records["correct"].review == []


def test_rerun_skips_graded_submissions(batch):
    before = (batch.out / "gradebook.csv").read_text(encoding="utf-8")
    again = grade_batch(batch.template, batch.subs, batch.out, jobs=2, limits=LIMITS,
                        hidden_tests=cases.HIDDEN_TESTS, log=None)
    assert again.graded == 0 and again.skipped == len(batch.paths)
    assert (batch.out / "gradebook.csv").read_text(encoding="utf-8") == before


# --- re-runs, --force and the command line, on submissions that need no kernel ----------------

def test_rerun_regrades_changed_files_and_force(tmp_path):
    subs = tmp_path / "subs"
    subs.mkdir()
    (subs / "a.ipynb").write_text("not json")
    (subs / "b.ipynb").write_text("[1, 2]")
    out = tmp_path / "out"
    template = cases.INTRO_STUDENT
    first = grade_batch(template, subs, out, limits=LIMITS, log=None)
    assert (first.graded, first.skipped) == (2, 0)
    assert {r.status for r in first.records} == {"invalid"}
    assert "JSON list, not a notebook" in " ".join(first.by_student()["b"].notes)
    second = grade_batch(template, subs, out, limits=LIMITS, log=None)
    assert (second.graded, second.skipped) == (0, 2)
    (subs / "b.ipynb").write_text("{}")
    third = grade_batch(template, subs, out, limits=LIMITS, log=None)
    assert (third.graded, third.skipped) == (1, 1)
    assert "no list of cells" in " ".join(third.by_student()["b"].notes)
    forced = grade_batch(template, subs, out, limits=LIMITS, force=True, log=None)
    assert (forced.graded, forced.skipped) == (2, 0)
    assert not list(out.rglob("*.tmp"))                  # atomic writes leave no debris


def test_cli_as_module(tmp_path):
    import subprocess
    subs = tmp_path / "subs"
    subs.mkdir()
    (subs / "x.ipynb").write_text("{")
    proc = subprocess.run([sys.executable, "-m", "course_utils.grading",
                           str(cases.INTRO_STUDENT), str(subs), "-o", str(tmp_path / "g"), "-q"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "Done" in proc.stdout
    rows = (tmp_path / "g" / "gradebook.csv").read_text().splitlines()
    assert rows[1].startswith("x,0,0,invalid")


def test_cli_reports_bad_arguments(tmp_path, capsys):
    assert cli.main([str(tmp_path / "nope.ipynb"), str(tmp_path)]) == 2
    assert "not found" in capsys.readouterr().err
    solution = REPO / "notebooks" / "solutions" / "00_introduction.ipynb"
    assert cli.main([str(solution), str(tmp_path)]) == 2
    assert "contains solutions" in capsys.readouterr().err


def test_entry_point_is_declared():
    tomllib = pytest.importorskip("tomllib")              # Python >= 3.11
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    module, func = scripts["course-grade"].split(":")
    assert getattr(importlib.import_module(module), func) is cli.main


# --- the real intro notebook -------------------------------------------------------------------

def test_real_intro_notebook(tmp_path):
    protected = [cases.INTRO_STUDENT, cases.INTRO_STUDENT.parent / "manifest.json"]
    before = [_fingerprint(p) for p in protected]
    nb = cases.load(cases.INTRO_STUDENT)
    subs = tmp_path / "subs"
    subs.mkdir()
    (subs / "ada.ipynb").write_bytes(cases.correct(nb))
    (subs / "bob.ipynb").write_bytes(cases.not_done(nb))
    result = grade_batch(cases.INTRO_STUDENT, subs, tmp_path / "out", jobs=2, log=None,
                         limits=Limits(cell_timeout=60, total_timeout=120, memory_mb=4096))
    ada, bob = result.by_student()["ada"], result.by_student()["bob"]
    assert (ada.status, ada.total, ada.review) == ("graded", 1, [])
    assert (bob.status, bob.total) == ("graded", 0)
    assert bob.exercises["intro_scale"].status == "not-done"
    assert [_fingerprint(p) for p in protected] == before


# --- units: reading, matching, ids, the in-kernel helpers --------------------------------------

@pytest.mark.parametrize("data, text", [
    (b"", "empty"), (b"\xff\xfe\x00garbage", "not UTF-8"), (b'{"cells": [', "truncated"),
    (b"{'a': 1}", "not valid JSON"), (b"[]", "JSON list"), (b'{"nbformat": 4}', "no list of cells"),
])
def test_unreadable_files_say_why(data, text):
    with pytest.raises(SubmissionUnreadable, match=text.replace("(", r"\(")):
        read_submission(data)


def test_size_limit():
    with pytest.raises(SubmissionUnreadable, match="Clear Outputs"):
        read_submission(b"{}" + b" " * 2048, max_bytes=1024)


def test_match_by_position_when_metadata_and_names_are_gone():
    a = load_assignment(cases.INTRO_STUDENT)
    nb = cases.load(cases.INTRO_STUDENT)
    cell = cases.exercise_cell(nb)
    cell["metadata"] = {}
    cell["source"] = "def scale(x):\n    return x\n"
    m = match_exercises(read_submission(cases.dump(nb)), a)
    assert m.matches["intro_scale"].how == "position"
    assert "at its position" in " ".join(m.notes) and m.recovered


def test_collect_submissions_layouts(tmp_path):
    (tmp_path / "Ada Lovelace.ipynb").write_text("{}")
    (tmp_path / "ada_lovelace.IPYNB").write_text("{}")
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / ".hidden.ipynb").write_text("{}")
    (tmp_path / "bob").mkdir()
    (tmp_path / "bob" / "00_introduction.ipynb").write_text("{}")
    (tmp_path / "bob" / "scratch.ipynb").write_text("{}")
    (tmp_path / "bob" / ".ipynb_checkpoints").mkdir()
    (tmp_path / "bob" / ".ipynb_checkpoints" / "00_introduction-checkpoint.ipynb").write_text("{}")
    (tmp_path / "cy").mkdir()
    (tmp_path / "cy" / "one.ipynb").write_text("{}")
    (tmp_path / "cy" / "two.ipynb").write_text("{}")
    subs, ignored = collect_submissions(tmp_path, "00_introduction.ipynb")
    got = {s.student: (s.path.name if s.path else None, bool(s.error)) for s in subs}
    assert got == {student_id("Ada Lovelace.ipynb"): ("Ada Lovelace.ipynb", False),
                   student_id("ada_lovelace.IPYNB"): ("ada_lovelace.IPYNB", False),
                   student_id("bob/"): ("00_introduction.ipynb", False),
                   student_id("cy/"): (None, True)}
    assert len(got) == 4
    assert ignored == ["notes.txt"]


@pytest.mark.parametrize("name, readable", [
    ("alice.ipynb", "alice"), ("=cmd|' /C calc'!A0.ipynb", "cmd_c_calc_a0-"),
    ("../../etc/passwd.ipynb", "etc_passwd-"), ("Zoë Müller.ipynb", "zoë_müller-"),
    ("..ipynb", "student-"), ("bob/", "bob-"),
])
def test_student_ids_are_safe(name, readable):
    sid = student_id(name)
    assert sid.startswith(readable) and sid == sid.lower()
    assert sid == readable or len(sid) == len(readable) + 10
    assert "/" not in sid and not sid.startswith((".", "=", "-"))


def test_gradebook_neutralises_formulas():
    a = load_assignment(cases.INTRO_STUDENT)
    record = Record.failed(Task(a, LIMITS, "s", "=HYPERLINK()", ""), "x")
    assert ",'=HYPERLINK()" in reports.gradebook_csv([record], a)


def test_static_scan():
    spec = load_assignment(cases.INTRO_STUDENT).exercises[0]
    ref, review = scan_source(
        "import sys\nfrom course_utils.data import to_minus_one_one\n"
        "torch.allclose = None\ndef check(i, o):\n    return o\n", spec)
    assert ref and any("sys" in r for r in review) and any("check" in r for r in review)
    assert scan_source("def scale_to_pm1(x):\n    return x * 2 - 1\n", spec) == ([], [])


def test_assignment_rejects_a_stale_manifest(tmp_path):
    nb = cases.load(cases.INTRO_STUDENT)
    nb["cells"][0]["source"] = "# edited by hand"
    (tmp_path / "00_introduction.ipynb").write_bytes(cases.dump(nb))
    (tmp_path / "manifest.json").write_bytes((REPO / "notebooks" / "manifest.json").read_bytes())
    with pytest.raises(AssignmentError, match="regenerate"):
        load_assignment(tmp_path / "00_introduction.ipynb")


def _liar_scale(x):
    class Liar(torch.Tensor):
        def __eq__(self, other):
            return True
        __hash__ = torch.Tensor.__hash__

        @classmethod
        def __torch_function__(cls, func, types, args=(), kwargs=None):
            if func in (torch.allclose, torch.equal):
                return True
            return super().__torch_function__(func, types, args, kwargs or {})
    return torch.zeros_like(x).as_subclass(Liar)


def test_lying_tensor_fools_neither_the_check_nor_the_grader():
    ex = get_exercise("intro_scale")
    # The probe only records the returned values; the judge compares plain arrays, so a
    # lying __eq__ / __torch_function__ never takes part in the comparison.
    assert run_checkers(ex, _liar_scale, [ex.checker]).status == "failed"
    data = kernel._limited(lambda: run_probe(ex.probe, _liar_scale, PUBLIC_CASE), 5.0, set(), [],
                           ex.exercise_id)
    with pytest.raises(CheckFailure):
        judge_data(ex, unpack(pack(data)), PUBLIC_CASE)
    assert _liar_scale(torch.zeros(1)) == 42          # __eq__ says yes to anything


def test_alarm_stops_a_hanging_check():
    ex = get_exercise("intro_scale")

    def hang(x):
        while True:
            pass
    data = kernel._limited(lambda: run_probe(ex.probe, hang, PUBLIC_CASE), 0.3, set(), [],
                           ex.exercise_id)
    assert data["status"] == "timeout"


def test_every_exercise_has_a_probe_so_no_verdict_comes_from_the_kernel():
    missing = [ex_id for ex_id, ex in registry().items() if ex.probe is None or ex.judge is None]
    assert not missing, f"exercises checked without a probe/judge split: {missing}"


def test_snapshot_restores_patched_functions():
    original = torch.allclose
    snap = kernel._take_snapshot()
    try:
        torch.allclose = lambda *a, **k: True
        changed = kernel._restore_snapshot(snap)
    finally:
        torch.allclose = original
    assert torch.allclose is original and "torch.allclose" in changed
    assert kernel._restore_snapshot(snap) == []


def test_capture_binds_a_placeholder_for_a_missing_name():
    ns: dict = {}
    kernel.kernel_capture("intro_scale", "scale_to_pm1", ["scale_to_pm1"], ns)
    with pytest.raises(NotImplementedError):
        ns["scale_to_pm1"](torch.zeros(1))
    assert kernel._KSTATE["captured"]["intro_scale"]["defined"] is False


def _judge_probe_file(probe_dir, ex_id: str = "intro_scale") -> str:
    """Judge the kernel's probe data for the public case here, as the grader does: a status."""
    ex = get_exercise(ex_id)
    data = unpack((probe_dir / f"{ex_id}-0.npz").read_bytes())
    return run_checkers(ex, None, [lambda _: judge_data(ex, data, PUBLIC_CASE)]).status


def test_kernel_side_grades_the_state_right_after_the_exercise_cell(tmp_path):
    """A function calling its own name must not be rescued by check() rebinding that name."""
    ns: dict = {"torch": torch}
    exec("def scale_to_pm1(x):\n    return scale_to_pm1(x)\n", ns)   # recursion, never ends
    kernel.kernel_prelude()
    kernel.kernel_capture("intro_scale", "scale_to_pm1", ["scale_to_pm1"], ns)
    ns["scale_to_pm1"] = get_exercise("intro_scale").reference       # what check() would do
    path, probes = tmp_path / "verdicts.json", tmp_path / "probes"
    kernel.kernel_finish(str(path), "n0nce", ["intro_scale"], 5.0,
                         plan={"intro_scale": [[0, False]]}, probe_dir=str(probes))
    out = json.loads(path.read_text())
    assert out["nonce"] == "n0nce" and out["complete"] and out["tampered"] == []
    assert out["exercises"]["intro_scale"]["status"] == "probed"
    data = unpack((probes / "intro_scale-0.npz").read_bytes())
    assert data["__status__"] == "error" and "RecursionError" in data["error"]
    assert _judge_probe_file(probes) == "error"
    assert ns["scale_to_pm1"] is get_exercise("intro_scale").reference  # namespace restored


def _finish_in_process(tmp_path, source: str) -> tuple[dict, str]:
    """Run the kernel side on ``source``; its report and the verdict judged from its data."""
    ns: dict = {"torch": torch}
    exec(source, ns)
    kernel.kernel_prelude()
    kernel.kernel_capture("intro_scale", "scale_to_pm1", ["scale_to_pm1"], ns)
    path, probes = tmp_path / "verdicts.json", tmp_path / "probes"
    kernel.kernel_finish(str(path), "n", ["intro_scale"], 5.0,
                         plan={"intro_scale": [[0, False]]}, probe_dir=str(probes))
    return json.loads(path.read_text())["exercises"]["intro_scale"], _judge_probe_file(probes)


def test_reference_object_and_hidden_call(tmp_path):
    returned, status = _finish_in_process(
        tmp_path, "import course_utils.data as d\nscale_to_pm1 = d.to_minus_one_one\n")
    assert status == "passed"
    assert "reference object itself" in returned["reference"]
    hidden_call, _ = _finish_in_process(
        tmp_path, "import importlib\n"
        "def scale_to_pm1(x):\n"
        "    mod = importlib.import_module('course_utils.data')\n"
        "    return getattr(mod, 'to_minus_' + 'one_one')(x)\n")
    assert "calls the reference implementation" in hidden_call["reference"]
    own, status = _finish_in_process(tmp_path, "def scale_to_pm1(x):\n    return x * 2 - 1\n")
    assert status == "passed" and own["reference"] == ""


def _two_exercise_assignment():
    import nbformat
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(src) for src in (
        "import math", "def fa(x):\n    raise NotImplementedError('a')", "fa = check('a', fa)",
        "def fb(x):\n    raise NotImplementedError('b')", "fb = check('b', fb)", "fa(1)")]
    specs = (ExerciseSpec("a", 1.0, 1, ("fa",), "fa", nb.cells[1].source),
             ExerciseSpec("b", 1.0, 3, ("fb",), "fb", nb.cells[3].source))
    return Assignment("t.ipynb", "", nbformat.writes(nb), specs, (), "v")


def test_retries_find_the_exercise_that_crashes(monkeypatch):
    # Graded cells: prelude, import, a, capture a, check a, b, capture b, check b, fa(1), final.
    # fa(1) (cell 8) crashes while exercise a is active: b is suspected first (the last exercise
    # before the crash), found innocent when the crash stays, and a is blamed.
    a = _two_exercise_assignment()
    calls = []

    def fake_attempt(assignment, sources, limits, deadline, disabled, keep_notebook=False):
        calls.append(sorted(disabled))
        if "a" in disabled:
            return execution.Attempt({"complete": True, "exercises": {}})
        return execution.Attempt(None, failure="crash", failure_cell=8, exit_code=-11)
    monkeypatch.setattr(verdicts, "run_attempt", fake_attempt)
    record = Record("s", "s.ipynb", "")
    final, disabled = verdicts.run_with_retries(a, {"a": "", "b": ""}, LIMITS, 1e12, record, False)
    assert calls == [[], ["b"], ["a"]]
    assert list(disabled) == ["a"] and disabled["a"][0] == "crashed"
    assert "SIGSEGV" in disabled["a"][1] and final.verdicts["complete"]

    # A hang during the final checks names its exercise exactly.
    calls.clear()

    def hang_in_final(assignment, sources, limits, deadline, disabled, keep_notebook=False):
        calls.append(sorted(disabled))
        if "b" in disabled:
            return execution.Attempt({"complete": True, "exercises": {}})
        return execution.Attempt({"current": "b", "complete": False}, failure="timeout",
                              failure_cell=9)
    monkeypatch.setattr(verdicts, "run_attempt", hang_in_final)
    _, disabled = verdicts.run_with_retries(a, {"a": "", "b": ""}, LIMITS, 1e12, record, False)
    assert calls == [[], ["b"]] and disabled["b"][0] == "timeout"


# --- the layout: kernel-side code, records, the worker pool ------------------------------------

def _imports(tree: ast.AST) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """(module, relative level) of the import statements under ``tree``: those at module
    level (including inside ``if``/``try`` blocks), and those inside functions."""
    top: list[tuple[str, int]] = []
    inner: list[tuple[str, int]] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            found = inner if in_function else top
            if isinstance(child, ast.Import):
                found += [(al.name, 0) for al in child.names]
            elif isinstance(child, ast.ImportFrom):
                found.append((child.module or "", child.level))
            visit(child, in_function or isinstance(child, (ast.FunctionDef,
                                                           ast.AsyncFunctionDef)))
    visit(tree, False)
    return top, inner


def _is_stdlib(module: str, level: int) -> bool:
    return level == 0 and module.split(".")[0] in sys.stdlib_module_names


def test_kernel_side_module_imports_only_the_standard_library():
    """kernel.py is imported inside the student's kernel: at its top level only the standard
    library; the course's checks only inside the functions that need them."""
    top, inner = _imports(ast.parse(Path(kernel.__file__).read_text(encoding="utf-8")))
    assert top and inner, "the AST walk found no imports"
    for module, level in top:
        assert _is_stdlib(module, level), (
            f"kernel.py imports {'.' * level}{module} at its top level: only the standard "
            "library may be imported there; import it inside the function that needs it")
    for module, level in inner:
        assert _is_stdlib(module, level) or (level == 2 and module.split(".")[0] == "checks"), (
            f"kernel.py imports {'.' * level}{module}: only the standard library and "
            "course_utils.checks may be imported in the kernel-side code")
    # The check can fail: a third-party or a grader-module import is caught.
    top, inner = _imports(ast.parse("import nbformat\ntry:\n    from . import execution\n"
                                    "except ImportError:\n    pass\n"
                                    "def f():\n    import torch\n"))
    assert top == [("nbformat", 0), ("", 1)] and inner == [("torch", 0)]
    assert not any(_is_stdlib(m, lvl) for m, lvl in top + inner)


def test_graded_notebook_calls_the_kernel_side_module():
    a = _two_exercise_assignment()
    nb, roles = execution.build_graded_notebook(a, {"a": "fa = 1", "b": None}, "v.json", "n", 1.0)
    calls = [c.source for c, (role, _) in zip(nb.cells, roles, strict=True) if role != "template"
             and role != "exercise"]
    assert calls and all("'course_utils.grading.kernel'" in src for src in calls)
    assert nb.cells[roles.index(("exercise", "a"))].source == "fa = 1"
    assert nb.cells[roles.index(("exercise", "b"))].source == a.exercises[1].stub


def test_record_json_round_trip():
    a = load_assignment(cases.INTRO_STUDENT)
    record = Record.start(Task(a, LIMITS, "s", "s.ipynb", "abc"))
    record.notebook, record.dropped_output, record.key = "{}", 5, {"k": 1}
    data = json.loads(json.dumps(record.to_json()))
    assert "notebook" not in data and "dropped_output" not in data
    assert list(data)[:3] == ["student", "file", "sha256"] and data["key"] == {"k": 1}
    again = Record.from_json(data)
    assert again.exercises["intro_scale"].max_points == 1 and again.sha256 == "abc"
    for broken in ([], {"student": "s"}, {**data, "surprise": 1}):
        with pytest.raises(ValueError, match="not a grading record"):
            Record.from_json(broken)


class _KillsTheWorker:
    """Unpickling this in a worker process exits it at once, like a crash of the worker."""

    def __reduce__(self):
        return os._exit, (7,)


def _pool_tasks(*special: Task) -> list[Task]:
    """``special`` and three unreadable submissions, which a worker grades without a kernel."""
    a = load_assignment(cases.INTRO_STUDENT)
    return [*special, *(Task(a, LIMITS, f"ok{i}", f"ok{i}.ipynb", "", error="unreadable")
                        for i in range(3))]


def test_pool_replaces_a_worker_that_died():
    """A worker that dies costs only its own submission; a fresh worker grades the rest."""
    a = load_assignment(cases.INTRO_STUDENT)
    got: list[Record] = []
    run_pool(_pool_tasks(Task(a, LIMITS, "crash", "crash.ipynb", "", _KillsTheWorker())),
             jobs=1, hard_limit=600, on_done=got.append)
    by = {r.student: r for r in got}
    assert list(by) == ["crash", "ok0", "ok1", "ok2"]
    assert by["crash"].status == "grader-error", by["crash"]
    assert "the grading worker died" in by["crash"].review[0]
    assert all(by[f"ok{i}"].status == "invalid" and by[f"ok{i}"].notes == ["unreadable"]
               for i in range(3))


def test_pool_kills_a_worker_that_overruns():
    a = load_assignment(cases.INTRO_STUDENT)
    slow = Task(a, LIMITS, "slow", "slow.ipynb", "", cases.correct(cases.load(cases.INTRO_STUDENT)))
    got: list[Record] = []
    # 2 s is far too little to start a worker and a kernel: the grading of "slow" overruns.
    run_pool([slow], jobs=1, hard_limit=2, on_done=got.append)
    assert len(got) == 1 and got[0].status == "grader-error"
    assert "overran the hard limit of 2 s and was killed" in got[0].review[0]


def test_kernel_writes_probe_data_and_decides_nothing(tmp_path):
    """With a plan, the final cell only writes each case's probe data; the grader judges."""
    from course_utils.checks.protocol import unpack
    ns: dict = {"torch": torch}
    exec("def scale_to_pm1(x):\n    return x * 2\n", ns)                # wrong
    kernel.kernel_prelude()
    kernel.kernel_capture("intro_scale", "scale_to_pm1", ["scale_to_pm1"], ns)
    path, probes = tmp_path / "progress.json", tmp_path / "probes"
    kernel.kernel_finish(str(path), "n", ["intro_scale"], 5.0, (),
                         {"intro_scale": [[0, False], [7, True]]}, str(probes))
    report = json.loads(path.read_text())["exercises"]["intro_scale"]
    assert report["status"] == "probed" and "public" not in report
    files = sorted(p.name for p in probes.iterdir())
    assert files == ["intro_scale-0.npz", "intro_scale-1.npz"]
    data = unpack((probes / "intro_scale-0.npz").read_bytes())
    assert data["ends"].tolist() == [0.0, 1.0, 2.0]


def test_a_checked_verdict_not_judged_by_the_grader_is_never_trusted():
    """A kernel-written "passed" counts only through the grader's judges (a probe plan)."""
    spec = ExerciseSpec("intro_scale", 1.0, 0, ("scale_to_pm1",), "scale_to_pm1", "")
    forged = {"status": "checked", "public": {"status": "passed", "message": "ok"},
              "hidden": None, "n_hidden": 0, "reference": ""}
    res = verdicts.exercise_verdict(spec, forged, Match("def f(): ...", "id", 0), "", LIMITS)
    assert res.points == 0 and res.status != "passed"
