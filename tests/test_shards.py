"""Grading one class in shards (``--shard K/N``) and merging them (``course-grade merge``).

The central test grades a small class once in one run and once as 3 shards through the command
line, merges the shards, and compares: the same gradebook, the same records, results and
feedback except for timing fields. The class uses the cheap fixture assignment of
``tests/fixtures/grading/cases.py``: two submissions run a kernel (a right and a wrong answer,
in two shards), the others are unreadable files that are graded without one. Copies of the
shard folders, each damaged in one way, check that the merge refuses what it must. The Slurm
and Kubernetes examples in ``docs/examples/`` are run with stand-ins for ``sbatch`` and
``course-grade``.
"""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from course_utils.grading import cli
from course_utils.grading.assignment import Limits
from course_utils.grading.batch import SubmissionFile, grade_batch
from course_utils.grading.records import Record, grader_key, sign
from course_utils.grading.shards import MergeError, Shard, merge_shards, shard_of

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "docs" / "examples"
if "grading_cases" in sys.modules:                   # loaded by tests/test_grader.py
    cases = sys.modules["grading_cases"]
else:
    _spec = importlib.util.spec_from_file_location(
        "grading_cases", REPO / "tests" / "fixtures" / "grading" / "cases.py")
    cases = importlib.util.module_from_spec(_spec)
    sys.modules["grading_cases"] = cases
    _spec.loader.exec_module(cases)

LIMITS = Limits(cell_timeout=10.0, total_timeout=60.0, memory_mb=2500)
LIMIT_ARGS = ["--cell-timeout", "10", "--total-timeout", "60", "--memory-mb", "2500"]
# Differ between any two runs: the timing, and the signature (over the timing, with the key of
# the output folder).
VARYING = ("seconds", "graded_at", "signature")
SHARDS = 3


# --- which shard a submission belongs to ---------------------------------------------------------

def test_shards_cover_every_name_exactly_once():
    names = [f"student_{i:03d}.ipynb" for i in range(300)] + ["Zoë (final).ipynb", "ada", "Ada"]
    for count in range(1, 6):
        shards = [Shard(k, count) for k in range(1, count + 1)]
        for name in names:
            sub = SubmissionFile("x", None, name)
            assert sum(s.owns(sub) for s in shards) == 1
        sizes = [sum(shard_of(n, count) == k for n in names) for k in range(1, count + 1)]
        assert min(sizes) > len(names) / count / 2, sizes          # roughly even


def test_the_split_is_sha256_of_the_name_not_pythons_hash():
    # Python's hash() of a str changes between processes; the split must not.
    for name in ("alice.ipynb", "bob", "Copy of 00 (Ann).ipynb"):
        digest = int(hashlib.sha256(name.encode()).hexdigest()[:16], 16)
        assert shard_of(name, 7) == digest % 7 + 1


def test_take_uses_the_folder_entry_and_ignores_the_listing_order(tmp_path):
    subs = [SubmissionFile(f"s{i}", None, f"s{i}.ipynb") for i in range(20)]
    subs += [SubmissionFile("hal", None, "hal/work/00_mini.ipynb"),
             SubmissionFile("ivy", None, "ivy/", "two notebooks")]
    shard = Shard(2, 3)
    forward = {s.student for s in shard.take(subs, tmp_path / "a")}
    backward = {s.student for s in shard.take(list(reversed(subs)), tmp_path / "b")}
    assert forward == backward
    assert ("hal" in forward) == (shard_of("hal", 3) == 2)
    assert ("ivy" in forward) == (shard_of("ivy", 3) == 2)
    info = json.loads((tmp_path / "a" / "shard.json").read_text())
    assert (info["index"], info["count"], info["class"]["submissions"]) == (2, 3, 22)
    assert sorted(info["students"]) == sorted(forward)


@pytest.mark.parametrize("text, message", [
    ("0/3", "numbered 1 to N"), ("4/3", "numbered 1 to N"), ("1/0", "numbered 1 to N"),
    ("3", "not K/N"), ("a/b", "not K/N"), ("-1/3", "not K/N")])
def test_bad_shard_arguments_say_why(text, message, capsys):
    with pytest.raises(ValueError, match=message):
        Shard.parse(text)
    with pytest.raises(SystemExit) as exit_:
        cli.main(["a.ipynb", "subs", f"--shard={text}"])
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


# --- 3 shards merged equal one run ---------------------------------------------------------------

def _write_class(folder: Path, template: Path) -> None:
    """Two kernel-graded submissions in two shards, and unreadable files (graded without a
    kernel, so cheap) around them, in both layouts."""
    nb = cases.load(template)
    folder.mkdir(parents=True)
    files = {"ada.ipynb": cases.correct(nb), "bob.ipynb": cases.wrong(nb),
             "Bob.ipynb": cases.invalid_json(nb),            # bob.ipynb in another shard
             "cy.ipynb": cases.truncated(nb), "fay.ipynb": b"[1, 2]\n",
             "hal/00_mini.ipynb": b"{", "ivy/a.ipynb": b"{}", "ivy/b.ipynb": b"{}",
             "notes.txt": b"not a notebook\n"}
    for name, data in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    assert shard_of("ada.ipynb", SHARDS) != shard_of("bob.ipynb", SHARDS)


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    root = tmp_path_factory.mktemp("shards")
    template = cases.build_mini_assignment(root / "assignment")
    subs = root / "submissions"
    _write_class(subs, template)
    common = ["--hidden-tests", str(cases.HIDDEN_TESTS), "-j", "2", "-q", *LIMIT_ARGS]
    started = time.monotonic()
    assert cli.main([str(template), str(subs), "-o", str(root / "full"), *common]) == 0
    one_run = time.monotonic() - started
    started = time.monotonic()
    shard_dirs = [root / "shards" / str(k) for k in range(1, SHARDS + 1)]
    for k, out in enumerate(shard_dirs, start=1):
        assert cli.main([str(template), str(subs), "-o", str(out), "--shard", f"{k}/{SHARDS}",
                         *common]) == 0
    assert cli.main(["merge", str(root / "merged"), *map(str, shard_dirs)]) == 0
    sharded = time.monotonic() - started
    print(f"\none run: {one_run:.1f} s; {SHARDS} sequential shards + merge: {sharded:.1f} s")
    return SimpleNamespace(root=root, full=root / "full", merged=root / "merged",
                           shard_dirs=shard_dirs, template=template, subs=subs)


def _records(folder: Path) -> dict[str, dict]:
    out = {}
    for path in sorted((folder / "records").glob("*.json")):
        data = json.loads(path.read_text())
        out[path.name] = {k: v for k, v in data.items() if k not in VARYING}
    return out


def _without_timing(text: str) -> str:
    return re.sub(r"graded \S+ \(", "graded <time> (", text)


def test_merged_shards_equal_one_run(graded):
    full, merged = graded.full, graded.merged
    assert (merged / "gradebook.csv").read_text() == (full / "gradebook.csv").read_text()
    assert _records(merged) == _records(full)
    assert len(_records(full)) == 7
    results = [json.loads((d / "results.json").read_text()) for d in (full, merged)]
    for r in results:
        r.pop("generated_at")
        for student in r["students"]:
            for k in VARYING:
                student.pop(k)
    assert results[0] == results[1]
    fb_full = sorted(p.name for p in (full / "feedback").iterdir())
    assert fb_full == sorted(p.name for p in (merged / "feedback").iterdir())
    for name in fb_full:
        assert (_without_timing((merged / "feedback" / name).read_text())
                == _without_timing((full / "feedback" / name).read_text()))


def test_outcomes_are_real_grades(graded):
    with (graded.merged / "gradebook.csv").open(newline="") as fh:
        by_file = {row["file"]: row for row in csv.DictReader(fh)}
    outcome = {f: (row["total"], row["status"]) for f, row in by_file.items()}
    assert outcome["ada.ipynb"] == ("1", "graded")
    assert outcome["bob.ipynb"] == ("0", "graded")             # the wrong answer
    assert outcome["ivy/"] == ("0", "invalid")                 # two notebooks, none named
    assert outcome["Bob.ipynb"] == ("0", "invalid")
    assert by_file["Bob.ipynb"]["student"] != by_file["bob.ipynb"]["student"]
    results = json.loads((graded.merged / "results.json").read_text())
    assert results["ignored_files"] == ["notes.txt"]


def test_each_shard_graded_only_its_part(graded):
    seen: list[str] = []
    for k, folder in enumerate(graded.shard_dirs, start=1):
        info = json.loads((folder / "shard.json").read_text())
        rows = (folder / "gradebook.csv").read_text().splitlines()[1:]
        students = [r.split(",")[0] for r in rows]
        assert info["shard"] == f"{k}/{SHARDS}" and sorted(info["students"]) == sorted(students)
        assert students, f"shard {k} is empty"
        seen += students
    assert len(seen) == len(set(seen))                                 # no overlap
    assert sorted(f"{s}.json" for s in seen) == sorted(_records(graded.full))   # all covered


# --- what the merge refuses -------------------------------------------------------------------

def _edit_json(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def _tamper(kind: str, dirs: list[Path]) -> list[Path]:
    """Damage copies of the shard folders in one way; return the folders to merge."""
    one, two = dirs[0], dirs[1]
    if kind == "missing":
        return dirs[:2]
    if kind == "repeated":
        return [one, *dirs]
    if kind == "other_version":
        _edit_json(two / "results.json", lambda d: d.update(template_version="0123abcd"))
    elif kind == "other_limits":
        _edit_json(two / "results.json", lambda d: d["limits"].update(cell_timeout=99.0))
    elif kind == "other_count":
        _edit_json(two / "shard.json", lambda d: d.update(count=4))
    elif kind == "folder_changed":
        _edit_json(two / "shard.json", lambda d: d["class"].update(submissions=8))
    elif kind == "incomplete":
        _edit_json(two / "results.json", lambda d: d["students"].pop())
    elif kind == "overlap":
        first = json.loads((one / "results.json").read_text())["students"][0]
        _edit_json(two / "results.json", lambda d: d["students"].append(first))
        _edit_json(two / "shard.json", lambda d: d["students"].append(first["student"]))
    elif kind == "record_settings":      # signed by the shard's grader, other settings
        def other_settings(d: dict) -> None:
            record = Record.from_json(d["students"][0])
            record.key = {**record.key, "template_version": "0123abcd"}
            sign(grader_key(two), record)
            d["students"][0] = record.to_json()
        _edit_json(two / "results.json", other_settings)
    elif kind == "forged":
        _edit_json(two / "results.json", lambda d: d["students"][0].update(total=1.0))
    elif kind == "no_key":
        (two / ".course-grade-key").unlink()
    elif kind == "damaged":
        _edit_json(two / "shard.json", lambda d: d.update(index=0))
    elif kind == "not_a_shard":
        (two / "shard.json").unlink()
    elif kind == "unfinished":
        (two / "results.json").unlink()
    return dirs


REFUSALS = {
    "missing": "missing shard(s) 3/3", "repeated": "given twice",
    "other_version": "different template_version", "other_limits": "different limits",
    "other_count": "different numbers of shards", "folder_changed": "different submissions",
    "incomplete": "is incomplete", "overlap": "graded by both",
    "record_settings": "graded with other settings", "forged": "was not signed",
    "no_key": "cannot be verified", "damaged": "is damaged",
    "not_a_shard": "not graded with --shard",
    "unfinished": "did not finish",
}


@pytest.mark.parametrize("kind", REFUSALS)
def test_merge_refuses(graded, tmp_path, kind):
    dirs = [tmp_path / str(k) for k in range(1, SHARDS + 1)]
    for src, dst in zip(graded.shard_dirs, dirs, strict=True):
        shutil.copytree(src, dst)
    with pytest.raises(MergeError, match=re.escape(REFUSALS[kind])):
        merge_shards(tmp_path / "merged", _tamper(kind, dirs))
    assert not (tmp_path / "merged").exists()


def test_the_merged_folder_is_a_cache_for_later_runs(graded, tmp_path):
    # A re-run into the merged folder skips what a re-run into the single run's folder skips:
    # everything but files that could not be read at all (ivy/, never cached).
    skipped = {}
    for name, folder in (("one run", graded.full), ("merged", graded.merged)):
        again = tmp_path / name
        shutil.copytree(folder, again)
        result = grade_batch(graded.template, graded.subs, again, jobs=2, limits=LIMITS,
                             hidden_tests=cases.HIDDEN_TESTS, log=None)
        skipped[name] = (result.graded, result.skipped)
        assert (again / "gradebook.csv").read_text() == (graded.full / "gradebook.csv").read_text()
    assert skipped["merged"] == skipped["one run"] == (1, 6)


def test_merge_output_folder_rules(graded, tmp_path, capsys):
    taken = tmp_path / "taken"
    (taken / "other.txt").parent.mkdir()
    (taken / "other.txt").write_text("x")
    args = ["merge", str(taken), *map(str, graded.shard_dirs)]
    assert cli.main(args) == 2 and "is not empty" in capsys.readouterr().err
    assert cli.main([*args, "--force"]) == 0
    assert (taken / "gradebook.csv").read_text() == (graded.merged / "gradebook.csv").read_text()
    inside = graded.shard_dirs[0] / "merged"
    assert cli.main(["merge", str(inside), *map(str, graded.shard_dirs)]) == 2
    assert "outside the shard folder" in capsys.readouterr().err


# --- the cluster examples -------------------------------------------------------------------

def _stub(bin_dir: Path, name: str, log: Path, reply: str = "") -> None:
    """A stand-in command that appends its arguments (one line) to ``log``."""
    bin_dir.mkdir(exist_ok=True)
    path = bin_dir / name
    path.write_text(f'#!/usr/bin/env bash\necho "{name} $*" >> "{log}"\n'
                    + (f'echo "{reply}"\n' if reply else ""))
    path.chmod(0o755)


def _bash(script: str | Path, *args: str, env: dict[str, str], cwd: Path,
          inline: bool = False) -> None:
    cmd = ["bash", "-c", str(script), "example"] if inline else ["bash", str(script), *args]
    proc = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _shards_in(log: Path) -> list[str]:
    return re.findall(r"--shard (\S+)", log.read_text())


def test_slurm_example(tmp_path):
    script = EXAMPLES / "grade-slurm.sh"
    subprocess.run(["bash", "-n", str(script)], check=True)
    log = tmp_path / "calls.log"
    _stub(tmp_path / "bin", "sbatch", log, reply="4242")
    _stub(tmp_path / "bin", "course-grade", log)
    env = {**os.environ, "PATH": f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}",
           "SHARDS": "3", "OUTPUT": "out/g"}
    _bash(script, "submit", env=env, cwd=tmp_path)
    array, merge = log.read_text().splitlines()
    assert "--array=1-3" in array and array.endswith(" grade")
    assert "--dependency=afterany:4242" in merge and merge.endswith(" merge")
    for k in range(1, 4):                                    # what Slurm runs for each task
        _bash(script, "grade", env={**env, "SLURM_ARRAY_TASK_ID": str(k)}, cwd=tmp_path)
    _bash(script, "merge", env=env, cwd=tmp_path)
    calls = log.read_text().splitlines()[2:]
    assert _shards_in(log) == ["1/3", "2/3", "3/3"]
    assert [re.search(r"-o (\S+)", c)[1] for c in calls[:3]] == [f"out/g-shards/{k}"
                                                                  for k in (1, 2, 3)]
    assert calls[3] == "course-grade merge out/g out/g-shards/1 out/g-shards/2 out/g-shards/3 " \
                       "--force"


def test_kubernetes_example(tmp_path):
    yaml = pytest.importorskip("yaml")
    docs = list(yaml.safe_load_all((EXAMPLES / "grade-k8s-job.yaml").read_text()))
    jobs = {d["metadata"]["labels"]["step"]: d for d in docs if d["kind"] == "Job"}
    grade, merge = jobs["grade"], jobs["merge"]
    spec = grade["spec"]
    container = spec["template"]["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert spec["completionMode"] == "Indexed"
    assert spec["completions"] == spec["parallelism"] == int(env["SHARDS"])
    merge_container = merge["spec"]["template"]["spec"]["containers"][0]
    merge_env = {e["name"]: e["value"] for e in merge_container["env"]}
    assert (merge_env["SHARDS"], merge_env["OUTPUT"]) == (env["SHARDS"], env["OUTPUT"])
    log = tmp_path / "calls.log"
    _stub(tmp_path / "bin", "course-grade", log)
    path = f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}"
    for index in range(spec["completions"]):                 # what each pod runs
        _bash(container["args"][0], env={**os.environ, **env, "PATH": path,
                                         "JOB_COMPLETION_INDEX": str(index)},
              cwd=tmp_path, inline=True)
    _bash(merge_container["args"][0], env={**os.environ, **merge_env, "PATH": path},
          cwd=tmp_path, inline=True)
    assert _shards_in(log) == ["1/3", "2/3", "3/3"]
    out = env["OUTPUT"]
    assert log.read_text().splitlines()[-1] == (
        f"course-grade merge {out} {out}-shards/1 {out}-shards/2 {out}-shards/3 --force")
