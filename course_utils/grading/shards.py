"""Grade one class on several machines: ``--shard K/N``, then ``course-grade merge``.

The work is spread by a scheduler that already exists (a Slurm job array, a Kubernetes
Indexed Job, or a plain loop); this module only decides which submissions each shard grades
and joins the shards' outputs::

    course-grade notebooks/00_introduction.ipynb submissions/ --shard 1/3 -o shards/1
    course-grade notebooks/00_introduction.ipynb submissions/ --shard 2/3 -o shards/2
    course-grade notebooks/00_introduction.ipynb submissions/ --shard 3/3 -o shards/3
    course-grade merge grades/00_introduction shards/1 shards/2 shards/3

Shards are numbered 1 to N (as in ``pytest-split``, Playwright and Jest). A submission belongs
to shard ``sha256(name) mod N + 1``, where ``name`` is its entry in the submissions folder
(``alice.ipynb``, or ``alice`` for a student's folder). So the shards never overlap, together
they cover the class, and the split depends neither on the order in which a file system lists
the folder nor on the other files in it. Every shard still reads the whole folder, so student
ids (``-2`` suffixes for names that differ only in case) are the same as in one big run.

Each shard writes the usual output folder plus ``shard.json``: which shard it is, the students
it took, and a digest of the whole class it saw. :func:`merge_shards` refuses shards graded
with another assignment version, grader version, limits or hidden tests, shards that saw a
different submissions folder, or records that their shard's grader did not sign (see
``records.grader_key``), and reports missing, repeated or incomplete shards and students graded
twice. The merged folder is the one a single ``course-grade`` run would have written:
``gradebook.csv``, ``results.json``, ``feedback/``, ``records/`` (and ``executed/`` when the
shards kept notebooks). Its records are signed with its own key, so they also work as the cache
of later runs into that folder.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import TYPE_CHECKING, Any

from .assignment import GRADER_VERSION, Assignment, ExerciseSpec, Limits
from .records import KEY_FILE, Record, grader_key, sign, verify
from .reports import feedback_markdown, gradebook_csv, record_json, results_json, write_atomic

if TYPE_CHECKING:
    from .batch import SubmissionFile

SHARD_FILE = "shard.json"
SHARD_FORMAT = 1
# results.json fields that every shard of one class must share (graded the same way).
SETTINGS_FIELDS = ("assignment", "template_version", "grader_version", "limits",
                   "hidden_tests", "exercises", "max_total")


class MergeError(ValueError):
    """The shard outputs cannot be merged; the message names the folder and the fix."""


def entry_name(file: str) -> str:
    """The submission's entry in the submissions folder: ``alice.ipynb``, or ``alice`` for a
    student's folder (``file`` as the gradebook's ``file`` column holds it)."""
    parts = PurePath(file).parts
    return parts[0] if parts else file


def shard_of(name: str, count: int) -> int:
    """The shard (1..count) of the folder entry ``name``: a stable hash, not Python's hash()."""
    text = unicodedata.normalize("NFC", name).encode("utf-8")
    return int.from_bytes(hashlib.sha256(text).digest()[:8], "big") % count + 1


def class_digest(subs: Iterable[SubmissionFile]) -> str:
    """A digest of the whole class as one shard saw it: every (student id, file) pair."""
    pairs = sorted((s.student, s.file) for s in subs)
    return hashlib.sha256(json.dumps(pairs, ensure_ascii=False).encode()).hexdigest()


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` of ``count`` (1-based, as ``--shard 2/3`` writes it)."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if self.count < 1 or not 1 <= self.index <= self.count:
            raise ValueError(
                f"shard {self.index}/{self.count} does not exist: shards are numbered 1 to N "
                "(for a 0-based index such as Kubernetes' JOB_COMPLETION_INDEX, pass "
                "$((JOB_COMPLETION_INDEX + 1))/N)")

    @classmethod
    def parse(cls, text: str) -> Shard:
        """``"2/3"`` -> ``Shard(2, 3)``; ValueError with the fix for anything else."""
        index, sep, count = text.strip().partition("/")
        if not sep or not index.strip().isdigit() or not count.strip().isdigit():
            raise ValueError(f"--shard {text!r} is not K/N with whole numbers, e.g. --shard 2/3")
        return cls(int(index), int(count))

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def owns(self, sub: SubmissionFile) -> bool:
        """Whether this shard grades ``sub``."""
        return shard_of(entry_name(sub.file), self.count) == self.index

    def take(self, subs: list[SubmissionFile], out: Path) -> list[SubmissionFile]:
        """This shard's part of the class ``subs``; records it in ``out/shard.json``."""
        mine = [s for s in subs if self.owns(s)]
        write_atomic(out / SHARD_FILE, json.dumps({
            "format": SHARD_FORMAT, "shard": str(self), "index": self.index, "count": self.count,
            "split": "sha256(name of the entry in the submissions folder) mod count + 1",
            "class": {"submissions": len(subs), "digest": class_digest(subs)},
            "students": [s.student for s in mine]}, indent=1, ensure_ascii=False) + "\n")
        return mine

    def default_output(self, base: str) -> str:
        """Where a shard writes without ``-o``: ``<base>-shards/<K>``."""
        return str(Path(base + "-shards") / str(self.index))


def shard_arg(text: str) -> Shard:
    """argparse ``type=`` for ``--shard K/N``."""
    try:
        return Shard.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


# --- merging -----------------------------------------------------------------------------------

@dataclass
class ShardOutput:
    """One shard's output folder, as read back for merging."""

    path: Path
    info: dict[str, Any]            # shard.json
    results: dict[str, Any]         # results.json

    @property
    def shard(self) -> Shard:
        return Shard(self.info["index"], self.info["count"])

    def name(self) -> str:
        return f"shard {self.shard} ({self.path})"


def _read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise MergeError(f"{path.parent} has no {path.name}: {what}") from None
    except (OSError, ValueError) as exc:
        raise MergeError(f"{path} cannot be read ({exc}); grade that shard again") from None
    if not isinstance(data, dict):
        raise MergeError(f"{path} is not a JSON object; grade that shard again")
    return data


def load_shard_output(folder: str | Path) -> ShardOutput:
    """Read ``shard.json`` and ``results.json`` of a folder written by ``--shard K/N``."""
    path = Path(folder).resolve()
    if not path.is_dir():
        raise MergeError(f"shard folder {path} not found")
    info = _read_json(path / SHARD_FILE, "it was not graded with --shard K/N (or the run "
                      "stopped before collecting the submissions)")
    if info.get("format") != SHARD_FORMAT:
        raise MergeError(f"{path / SHARD_FILE} has format {info.get('format')!r}, this grader "
                         f"reads format {SHARD_FORMAT}; merge with the grader that made it")
    try:
        Shard(info["index"], info["count"])
        if not isinstance(info["students"], list) or not {"submissions", "digest"} <= set(
                info["class"]):
            raise ValueError("no list of students or no class digest")
    except (KeyError, TypeError, ValueError) as exc:
        raise MergeError(f"{path / SHARD_FILE} is damaged ({exc}); grade that shard again") \
            from None
    results = _read_json(path / "results.json", "the shard's grading did not finish; run "
                         "its course-grade command again (graded submissions are kept)")
    return ShardOutput(path, info, results)


def _check_same_settings(shards: Sequence[ShardOutput]) -> None:
    """All shards graded the same assignment, the same way, from the same class."""
    first = shards[0]
    for other in shards[1:]:
        for name in SETTINGS_FIELDS:
            if other.results.get(name) != first.results.get(name):
                raise MergeError(
                    f"{other.name()} was graded with a different {name} than {first.name()}: "
                    f"{other.results.get(name)!r} != {first.results.get(name)!r}. Grade every "
                    "shard with the same notebook, manifest, hidden tests, limits and grader.")
        if other.info["count"] != first.info["count"]:
            raise MergeError(f"{other.name()} and {first.name()} split the class into different "
                             "numbers of shards; use one N for all shards.")
        if other.info["class"] != first.info["class"]:
            raise MergeError(
                f"{other.name()} saw a different submissions folder than {first.name()} "
                f"({other.info['class']['submissions']} vs {first.info['class']['submissions']}"
                " submissions, or other names): the folder changed between the shards' runs. "
                "Grade all shards from the same, complete folder.")
    if first.results.get("grader_version") != GRADER_VERSION:
        raise MergeError(f"the shards were graded by grader version "
                         f"{first.results.get('grader_version')!r}, this is {GRADER_VERSION!r}; "
                         "merge with the course_utils version that graded them")


def _check_coverage(shards: Sequence[ShardOutput]) -> None:
    """Every shard 1..N exactly once, each complete, no student in two shards."""
    count = shards[0].info["count"]
    seen: dict[int, ShardOutput] = {}
    for s in shards:
        if s.shard.index in seen:
            raise MergeError(f"shard {s.shard} was given twice: {seen[s.shard.index].path} and "
                             f"{s.path}; pass each shard's folder once")
        seen[s.shard.index] = s
    missing = [f"{k}/{count}" for k in range(1, count + 1) if k not in seen]
    if missing:
        raise MergeError(f"missing shard(s) {', '.join(missing)}: grade them with "
                         f"--shard K/{count} and pass their output folders too")
    owner: dict[str, ShardOutput] = {}
    for s in shards:
        graded = [r.get("student") for r in s.results.get("students", [])]
        if sorted(graded) != sorted(s.info["students"]):
            lost = sorted(set(s.info["students"]) - set(graded))
            raise MergeError(f"{s.name()} is incomplete: {len(graded)} of "
                             f"{len(s.info['students'])} submissions graded (not: "
                             f"{', '.join(lost[:5]) or '?'}); run its course-grade command "
                             "again to finish it (graded submissions are kept)")
        for student in graded:
            if student in owner:
                raise MergeError(f"student {student!r} was graded by both {owner[student].name()}"
                                 f" and {s.name()}; the shard folders overlap")
            owner[student] = s
    expected = shards[0].info["class"]["submissions"]
    if len(owner) != expected:
        raise MergeError(f"the shards graded {len(owner)} submissions but the class has "
                         f"{expected}; grade the missing ones again")


def assignment_from_results(results: dict[str, Any]) -> Assignment:
    """An :class:`Assignment` holding what the reports need, rebuilt from ``results.json``.

    Only the fields the gradebook, ``results.json`` and the feedback read are filled in; it
    cannot grade anything.
    """
    exercises = tuple(ExerciseSpec(id=e["id"], points=e["points"], cell=-1, names=(),
                                   target="", stub="", hint=e.get("hint", ""))
                      for e in results["exercises"])
    return Assignment(name=results["assignment"], template_path=results.get("template", ""),
                      template_json="", exercises=exercises, protected=(),
                      version=results["template_version"],
                      hidden_tests="(hidden tests)" if results.get("hidden_tests") else None)


def _shard_records(s: ShardOutput) -> list[Record]:
    """The shard's records, each checked to be signed by the shard's grader (not edited since)
    and graded with the shard's settings."""
    if not (s.path / KEY_FILE).is_file():
        raise MergeError(f"{s.name()} has no {KEY_FILE}, so its records cannot be verified; "
                         "grade that shard again")
    try:
        secret = grader_key(s.path)
    except ValueError as exc:
        raise MergeError(str(exc)) from None
    key = {k: s.results[k] for k in ("template_version", "grader_version", "limits")}
    records = []
    for data in s.results.get("students", []):
        try:
            record = Record.from_json(data)
        except ValueError as exc:
            raise MergeError(f"{s.path / 'results.json'} holds a damaged record ({exc}); "
                             "grade that shard again with --force") from None
        if Path(record.student).name != record.student or record.student.startswith("."):
            raise MergeError(f"{s.name()} holds a record with the student id "
                             f"{record.student!r}, which is not a file name; grade that shard "
                             "again with --force")
        if not verify(secret, record):
            raise MergeError(f"the record of {record.student} in {s.name()} was not signed by "
                             "that shard's grader (edited, or copied from elsewhere); grade "
                             "that shard again with --force")
        if record.key != key:
            raise MergeError(f"{record.student} in {s.name()} was graded with other settings "
                             "than its shard; grade that shard again with --force")
        records.append(record)
    return records


def _prepare_output(out: Path, shards: Sequence[ShardOutput], force: bool) -> None:
    for s in shards:
        if out == s.path or s.path in out.parents or out in s.path.parents:
            raise MergeError(f"the merged folder {out} must be outside the shard folder "
                             f"{s.path}; choose another OUT")
    if out.exists() and not out.is_dir():
        raise MergeError(f"{out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise MergeError(f"{out} is not empty; merge into a new folder, or pass --force to "
                         "overwrite the files a merge writes there")


def merge_shards(out: str | Path, shard_dirs: Sequence[str | Path], *,
                 force: bool = False) -> list[Record]:
    """Join the outputs of ``--shard K/N`` runs into ``out``; returns the merged records."""
    if not shard_dirs:
        raise MergeError("give the output folders of the shards to merge")
    shards = sorted((load_shard_output(d) for d in shard_dirs), key=lambda s: s.shard.index)
    _check_same_settings(shards)
    _check_coverage(shards)
    out = Path(out).resolve()
    _prepare_output(out, shards, force)
    records_by_shard = [_shard_records(s) for s in shards]     # all verified before writing
    a = assignment_from_results(shards[0].results)
    limits = Limits(**shards[0].results["limits"])
    secret = grader_key(out)      # the merged folder signs its records: a cache for later runs
    records: list[Record] = []
    ignored: set[str] = set()
    for s, shard_records in zip(shards, records_by_shard, strict=True):
        ignored.update(s.results.get("ignored_files", []))
        for record in shard_records:
            sign(secret, record)
            records.append(record)
            write_atomic(out / "records" / f"{record.student}.json", record_json(record))
            feedback = s.path / "feedback" / f"{record.student}.md"
            write_atomic(out / "feedback" / feedback.name,
                         feedback.read_text(encoding="utf-8") if feedback.is_file()
                         else feedback_markdown(record, a))
            executed = s.path / "executed" / f"{record.student}.ipynb"
            if executed.is_file():
                write_atomic(out / "executed" / executed.name,
                             executed.read_text(encoding="utf-8"))
    records.sort(key=lambda r: r.student)
    write_atomic(out / "gradebook.csv", gradebook_csv(records, a))
    write_atomic(out / "results.json", results_json(a, limits, records, sorted(ignored)))
    return records


def merge_main(argv: list[str]) -> int:
    """``course-grade merge OUT SHARD_DIR...``: 0 on success, 2 when the shards do not fit."""
    p = argparse.ArgumentParser(
        prog="course-grade merge",
        description="Join the output folders of `course-grade ... --shard K/N` runs into one "
                    "gradebook.csv, results.json, feedback/ and records/.",
        epilog="Example: course-grade merge grades/00_introduction "
               "grades/00_introduction-shards/*")
    p.add_argument("output", help="the merged output folder (new or empty)")
    p.add_argument("shards", nargs="+", help="the shards' output folders, one per shard")
    p.add_argument("--force", action="store_true",
                   help="write into a non-empty output folder (files it merges are replaced)")
    args = p.parse_args(argv)
    try:
        records = merge_shards(args.output, args.shards, force=args.force)
    except MergeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"Merged {len(args.shards)} shard(s), {len(records)} submission(s): "
          f"{Path(args.output) / 'gradebook.csv'}")
    return 1 if any(r.status == "grader-error" for r in records) else 0
