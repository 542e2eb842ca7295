"""Nothing in the repository may point a reader at a document outside it.

A reader who meets, in a docstring, a notebook or the README, a reference to a planning
document that does not ship with the repository (by its file name, or as a numbered section
of it) or a relative path into a folder outside the checkout cannot follow it. Targets and
conventions must be stated where they are needed (e.g. ``benchmarks/README.md``). This test
scans every file git tracks, plus new files not yet added
(``git ls-files --others --exclude-standard``), for the patterns in ``FORBIDDEN``.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Written in pieces so that this file does not match itself.
FORBIDDEN = re.compile("|".join([
    r"COURSE" + r"_DESIGN",                   # the planning document, by name
    r"\.\./" + r"shared\b",                   # a path into the folder that held it
    r"design" + r"\s+section",                # a numbered section of that document
    r"design" + r"\s+doc(ument)?\b",          # the document by description
]), re.IGNORECASE)

BINARY_SUFFIXES = {".pt", ".png", ".jpg", ".jpeg", ".gz", ".npz", ".npy", ".pkl", ".ico",
                   ".woff", ".woff2", ".ttf", ".pdf", ".zip"}


def _repository_files() -> list[Path]:
    try:
        out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard",
                              "-z"], cwd=ROOT, capture_output=True, check=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout: cannot list the repository's files")
    files = [ROOT / name for name in out.split("\0") if name]
    return [f for f in files if f.is_file() and f.suffix.lower() not in BINARY_SUFFIXES]


def find_external_references(paths: list[Path]) -> list[str]:
    """``"path:line: text"`` for every line that cites a document outside the repository."""
    hits = []
    for path in paths:
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        for number, line in enumerate(text.splitlines(), 1):
            if FORBIDDEN.search(line):
                hits.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()[:120]}")
    return hits


def test_the_pattern_catches_what_it_should(tmp_path: Path) -> None:
    bad = ["Target (COURSE" + "_DESIGN.md section 8): 30% below PCA",
           "see ../" + "shared/reference/article.md",
           "as the design" + " section 4 says", "per the design" + " doc"]
    good = ["the training loop is shared by all chapters", "designed for sections of 10 min",
            "Target: at least 30% below PCA (benchmarks/README.md)"]
    assert all(FORBIDDEN.search(s) for s in bad)
    assert not any(FORBIDDEN.search(s) for s in good)


def test_no_file_refers_to_a_document_outside_the_repository() -> None:
    files = [f for f in _repository_files() if f.resolve() != Path(__file__).resolve()]
    assert files, "no repository files found"
    hits = find_external_references(files)
    assert not hits, ("these lines cite documents outside the repository; state what the "
                      "reader needs in place instead:\n" + "\n".join(hits))
