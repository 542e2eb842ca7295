"""Hints teach, they never tell: no hint contains its exercise's solution code.

The forbidden fragments are derived from the solution notebooks themselves: every
non-trivial line between ``### BEGIN SOLUTION`` and ``### END SOLUTION`` and every
distinctive expression in it (a call with arguments, an arithmetic expression), compared
without spaces or comments (see :func:`course_utils.grading.generate.solution_fragments`).
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from course_utils.checks import registry
from course_utils.grading.generate import normalise, solution_fragments

SOLUTIONS = Path(__file__).resolve().parents[1] / "notebooks" / "solutions"


def _fragments() -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for path in sorted(SOLUTIONS.glob("*.ipynb")):
        out.update(solution_fragments(nbformat.read(path, as_version=4)))
    return out


FRAGMENTS = _fragments()


def test_fragments_are_found_for_every_notebook_exercise() -> None:
    assert FRAGMENTS, "no solution regions found in notebooks/solutions"
    for ex_id, fragments in FRAGMENTS.items():
        assert fragments, f"{ex_id}: its solution yields no fragment to forbid"


@pytest.mark.parametrize("ex_id", sorted(FRAGMENTS))
def test_hint_does_not_contain_solution_code(ex_id: str) -> None:
    exercises = registry()
    assert ex_id in exercises, f"{ex_id} is in a solution notebook but has no registered check"
    hint = normalise(exercises[ex_id].hint.replace("\n", " "))
    shown = sorted(f for f in FRAGMENTS[ex_id] if f in hint)
    assert not shown, (f"the hint of {ex_id} gives the answer away ({shown}): point at the "
                       "concept, the property that failed, or the section to reread instead")


@pytest.mark.parametrize("ex_id", sorted(FRAGMENTS))
def test_hint_does_not_contain_any_exercises_solution(ex_id: str) -> None:
    """A hint must not show another exercise's answer either (e.g. the KL inside the ELBO)."""
    hint = normalise(registry()[ex_id].hint.replace("\n", " "))
    shown = sorted(f"{other}: {f}" for other, fragments in FRAGMENTS.items()
                   for f in fragments if f in hint)
    assert not shown, f"the hint of {ex_id} shows solution code: {shown}"


@pytest.mark.parametrize("hint, fragment", [
    ("Use ConvAutoencoder(code_size=2) and fit", "ConvAutoencoder(code_size=2)"),
    ("try  return x*2.0 - 1.0  # maybe", "x*2-1"),
])
def test_the_comparison_ignores_spacing_comments_and_float_spelling(hint: str,
                                                                    fragment: str) -> None:
    assert normalise(fragment) in normalise(hint)
