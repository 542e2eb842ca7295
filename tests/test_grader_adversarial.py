"""The grader's trust boundary (issue 15): D1-D13, one fixture each, graded 0 or refused.

One sandboxed batch grades the kernel cases of ``tests/fixtures/grading/adversarial.py`` next
to one correct classmate; the other cases (symlinks, id collisions, folders, the cache's
signature, missing bubblewrap) need no kernel and run in seconds. With ``CI=true`` the
sandbox is required: a CI machine without bubblewrap fails here instead of skipping.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from course_utils.checks import get_exercise, run_checkers
from course_utils.checks.protocol import Case, pack
from course_utils.grading import cli, judging, sandbox
from course_utils.grading.assignment import Limits, load_assignment
from course_utils.grading.batch import collect_submissions, grade_batch, student_id
from course_utils.grading.records import Record, Task, grader_key, sign, verify

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "grading"
sys.path.insert(0, str(FIXTURES))
import adversarial  # noqa: E402
import cases  # noqa: E402

HAVE_BWRAP = sandbox.bwrap_path() is not None
if not HAVE_BWRAP and os.environ.get("CI") != "true":
    pytest.skip("bubblewrap is not available here (CI=true makes this a failure)",
                allow_module_level=True)

LIMITS = Limits(cell_timeout=10, total_timeout=60, memory_mb=2500, sandbox=True)
SECRET_VAR = "COURSE_GRADER_TEST_SECRET"


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    root = tmp_path_factory.mktemp("adversarial")
    template = cases.build_mini_assignment(root / "assignment")
    out = root / "out"
    target = adversarial.Target(out, "survivor" + secrets.token_hex(8), cases.HIDDEN_TESTS)
    subs = root / "submissions"
    paths = adversarial.write_kernel_cases(subs, template, target)
    (subs / "correct.ipynb").write_bytes(cases.correct(cases.load(template)))
    secret = secrets.token_hex(12)
    os.environ[SECRET_VAR] = secret          # the grader's environment must never leak
    try:
        result = grade_batch(template, subs, out, jobs=2, limits=LIMITS,
                             hidden_tests=cases.HIDDEN_TESTS, log=None)
    finally:
        del os.environ[SECRET_VAR]
    time.sleep(3)                            # give any survivor time to strike
    return SimpleNamespace(result=result, records=result.by_student(), paths=paths, out=out,
                           subs=subs, template=template, target=target, secret=secret)


# case: (record status, exercise statuses allowed, text in the feedback)
EXPECTED = {
    "d1_repatch_inside": ("graded", {"failed"}, "should map to -1, 0 and 1"),
    "d2_module_global": ("graded", {"failed"}, "should map to -1, 0 and 1"),
    "d3_forged_verdict": ("graded", {"failed"}, "not yet"),
    "d4_torch_dispatch": ("graded", {"failed", "error"}, "intro_scale"),
    "d5_survivors": ("graded", {"failed"}, "should map to -1, 0 and 1"),
    "d6_write_output": ("graded", {"failed"}, "should map to -1, 0 and 1"),
    "d7_leak": ("graded", {"error"}, "your code raised RuntimeError"),
    "d11_self_sigkill": ("crashed", {"crashed"}, "killed by SIGKILL"),
    "d12_memory_top_level": ("memory", {"memory"}, "ran out of memory"),
}


def test_every_kernel_case_has_an_expectation():
    assert set(EXPECTED) == set(adversarial.KERNEL_CASES)


def _feedback(batch, case: str) -> str:
    return (batch.out / "feedback" / f"{student_id(case + '.ipynb')}.md").read_text("utf-8")


@pytest.mark.parametrize("case", sorted(EXPECTED))
def test_attack_gets_zero(batch, case):
    status, ex_statuses, text = EXPECTED[case]
    record = batch.records[student_id(f"{case}.ipynb")]
    ex = record.exercises["intro_scale"]
    assert (record.status, record.total, ex.points) == (status, 0, 0), record
    assert ex.status in ex_statuses, record
    assert text in _feedback(batch, case)


def test_the_classmate_is_graded_right_and_untouched(batch):
    """D6: no kernel can reach the output folder; the classmate's record is the grader's."""
    record = batch.records["correct"]
    assert (record.status, record.total) == ("graded", 1), record
    stored = Record.from_json(json.loads((batch.out / "records" / "correct.json").read_text()))
    assert verify(grader_key(batch.out), stored) and stored.total == 1
    assert "forged" not in (batch.out / "feedback" / "correct.md").read_text()
    assert not list(batch.out.glob("pwned-*"))


def test_no_process_outlives_its_kernel(batch):
    """D5: start_new_session children and double-forked daemons die with the sandbox."""
    survivors = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if batch.target.token.encode() in cmdline.read_bytes():
                survivors.append(cmdline.parent.name)
        except OSError:
            pass
    assert survivors == []
    assert (batch.out / "gradebook.csv").read_text().startswith("student,")
    assert json.loads((batch.out / "results.json").read_text())["students"]
    assert not (batch.out / "pwned-d5").exists()


def test_feedback_leaks_nothing_of_the_grader(batch):
    """D7: no hidden-test text, no environment of the grader, no paths or command line."""
    feedback = _feedback(batch, "d7_leak")
    hidden_source = cases.HIDDEN_TESTS.read_text()
    for secret in (batch.secret, "_keeps_float64", hidden_source[:80], str(batch.out),
                   "course-grade-run", str(cases.HIDDEN_TESTS)):
        assert secret not in feedback
    message = batch.records["d7_leak"].exercises["intro_scale"].message
    assert len(message) < 1000


def test_repatching_is_still_reported(batch):
    review = " ".join(batch.records["d2_module_global"].review)
    assert "ch00_introduction.torch" in review        # D2: module globals are restored too


def test_a_forged_record_is_not_trusted(batch):
    """D5: a record written by anyone but the grader (no valid HMAC) is graded again."""
    sid = student_id("d1_repatch_inside.ipynb")
    path = batch.out / "records" / f"{sid}.json"
    data = json.loads(path.read_text())
    data["total"] = 1.0
    data["exercises"]["intro_scale"].update(points=1.0, status="passed")
    path.write_text(json.dumps(data))
    for sub in batch.subs.iterdir():                   # regrade only that one
        if sub.name != "d1_repatch_inside.ipynb":
            sub.rename(batch.out.parent / sub.name)
    again = grade_batch(batch.template, batch.subs, batch.out, limits=LIMITS,
                        hidden_tests=cases.HIDDEN_TESTS, log=None)
    assert again.graded == 1 and again.by_student()[sid].total == 0
    assert verify(grader_key(batch.out), Record.from_json(json.loads(path.read_text())))


# --- no kernel needed ------------------------------------------------------------------------

def test_symlinks_are_refused(tmp_path):
    """D8: a linked notebook (here: to the solution) or a linked folder is never followed."""
    subs = tmp_path / "subs"
    subs.mkdir()
    (subs / "linked.ipynb").symlink_to(cases.INTRO_SOLUTION)
    (subs / "repo").symlink_to(cases.REPO, target_is_directory=True)
    (subs / "dana").mkdir()
    (subs / "dana" / "00_introduction.ipynb").symlink_to(cases.INTRO_SOLUTION)
    result = grade_batch(cases.INTRO_STUDENT, subs, tmp_path / "out", limits=LIMITS, log=None)
    assert len(result.records) == 3
    for record in result.records:
        assert (record.status, record.total) == ("invalid", 0), record
        assert "symbolic link" in " ".join(record.notes)


def test_ids_are_unique_and_stable(tmp_path):
    """D9: carol, Carol and carol-2 are three students, each on the same row every run."""
    names = ["carol.ipynb", "Carol.ipynb", "carol-2.ipynb", "carol.IPYNB", "CAROL-2.ipynb"]
    for name in names:
        (tmp_path / name).write_text("{}")
    (tmp_path / "carol").mkdir()
    (tmp_path / "carol" / "x.ipynb").write_text("{}")
    subs, _ = collect_submissions(tmp_path, "00_introduction.ipynb")
    ids = {s.file: s.student for s in subs}
    assert len(set(ids.values())) == len(names) + 1 and ids["carol.ipynb"] == "carol"
    assert all(i == i.lower() for i in ids.values())
    again, _ = collect_submissions(tmp_path, "00_introduction.ipynb")
    assert {s.file: s.student for s in again} == ids
    # A suffixed id never equals a plain name: plain ids have no '-'.
    for name in ("carol-2.ipynb", "Carol.ipynb"):
        assert "-" in student_id(name) and student_id(name) != student_id(
            student_id(name) + ".ipynb")


def test_ids_keep_a_batch_of_lookalikes_apart(tmp_path):
    subs = tmp_path / "subs"
    subs.mkdir()
    for name in ("carol.ipynb", "Carol.ipynb", "carol-2.ipynb"):
        (subs / name).write_text(f"not json: {name}")
    first = grade_batch(cases.INTRO_STUDENT, subs, tmp_path / "out", limits=LIMITS, log=None)
    assert sorted(r.file for r in first.records) == ["Carol.ipynb", "carol-2.ipynb",
                                                     "carol.ipynb"]
    second = grade_batch(cases.INTRO_STUDENT, subs, tmp_path / "out", limits=LIMITS, log=None)
    assert second.skipped == 3
    assert {r.student: r.file for r in second.records} == {r.student: r.file
                                                           for r in first.records}


def test_several_notebooks_named_like_the_assignment(tmp_path):
    """D13: the refusal says what is wrong (two with the name), not 'none is named'."""
    (tmp_path / "eve" / "old").mkdir(parents=True)
    (tmp_path / "eve" / "00_introduction.ipynb").write_text("{}")
    (tmp_path / "eve" / "old" / "00_introduction.ipynb").write_text("{}")
    subs, _ = collect_submissions(tmp_path, "00_introduction.ipynb")
    assert len(subs) == 1 and subs[0].path is None
    assert "2 notebooks named 00_introduction.ipynb" in subs[0].error
    assert "none is named" not in subs[0].error


def test_identity_model_does_not_beat_pca(monkeypatch):
    """D10: a model whose forward returns its input (encode stashes x, decode replays it)."""
    monkeypatch.setenv("COURSE_SMOKE", "1")

    class Stash(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.zeros(1))
            self.seen = None

        def forward(self, x):
            return x

        def encode(self, x):
            self.seen = x
            return torch.zeros(len(x), 2)

        def decode(self, z):
            return self.seen[: len(z)]

    from course_utils.checks.ch01_autoencoder import try_to_beat_pca
    from course_utils.data import load_dataset

    def train(train_x, time_budget):
        return Stash()
    try_to_beat_pca(train, load_dataset(allow_fallback=True), time_budget=0.0)
    ex = get_exercise("ae_beat_pca")
    result = run_checkers(ex, train, [ex.checker])
    assert result.status == "failed", result.message


def test_refuses_without_bubblewrap_and_writes_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sandbox, "bwrap_path", lambda: None)
    subs = tmp_path / "subs"
    subs.mkdir()
    (subs / "x.ipynb").write_text("{")
    out = tmp_path / "out"
    assert cli.main([str(cases.INTRO_STUDENT), str(subs), "-o", str(out), "-q"]) == 2
    assert "bubblewrap" in capsys.readouterr().err and not out.exists()
    assert cli.main([str(cases.INTRO_STUDENT), str(subs), "-o", str(out), "-q",
                     "--no-sandbox"]) == 0
    printed = capsys.readouterr().out
    assert sandbox.NO_SANDBOX_WARNING in printed


def test_private_folders_must_stay_out_of_the_sandbox(tmp_path):
    from course_utils.grading.assignment import AssignmentError
    pkg_dir = Path(sandbox.__file__).resolve().parents[1]
    with pytest.raises(AssignmentError, match="sandbox shows"):
        grade_batch(cases.INTRO_STUDENT, tmp_path, pkg_dir / "grades-here", limits=LIMITS,
                    log=None)
    assert not (pkg_dir / "grades-here").exists()


def test_record_signature():
    a = load_assignment(cases.INTRO_STUDENT)
    record = Record.start(Task(a, LIMITS, "s", "s.ipynb", "abc"))
    sign(b"k" * 64, record)
    assert verify(b"k" * 64, record) and not verify(b"x" * 64, record)
    record.total = 1.0
    assert not verify(b"k" * 64, record)


def test_judging_treats_probe_data_as_hostile():
    a = load_assignment(cases.INTRO_STUDENT)
    spec = a.exercises[0]
    plan = [[0, False], [5, True]]
    missing = judging.judge_probes(spec, {}, [None, None], plan)
    assert missing["status"] == "no-data"
    garbage = judging.judge_probes(spec, {}, [b"not an npz", b""], plan)
    assert garbage["status"] == "no-data"
    hostile = pack({"shape": "(5, 1, 28, 28)", "value": [[1]], "ends": "x"})
    verdict = judging.judge_probes(spec, {}, [hostile, hostile], plan)
    assert verdict["public"]["status"] == "failed"
    ex = get_exercise("intro_scale")
    good = [pack(_probe_data(ex, Case(seed=s, hidden=h))) for s, h in plan]
    assert judging.judge_probes(spec, {}, good, plan)["public"]["status"] == "passed"


def _probe_data(ex, case):
    from course_utils.checks.protocol import run_probe
    return run_probe(ex.probe, lambda x: x * 2 - 1, case)
