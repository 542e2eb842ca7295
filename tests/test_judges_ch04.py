"""Chapter 04's judges decide on probe data alone, and treat it as hostile.

* data recorded from the reference passes the judges, at the public case and at hidden cases
  with seeds as large as the grader draws, and survives ``pack``/``unpack`` unchanged;
* the same data with any one recorded number changed fails (the public judge for the public
  inputs, the hidden judges for the extra sizes);
* data recorded at one case fails at another (the judge rebuilds the inputs itself);
* malformed data fails with a message (CheckFailure), never crashes a judge;
* the public case probes the public inputs only: the extra sizes are probed at hidden cases.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import torch
from judge_mutations import pick

from course_utils.checks import get_exercise
from course_utils.checks.core import PUBLIC_CASE, TEST_HIDDEN_CASES, CheckFailure, judge_data
from course_utils.checks.protocol import Case, pack, run_probe, unpack

EXERCISES = ("eval_frechet", "eval_class_coverage", "eval_iwae")
HIDDEN = Case(seed=3_141_592_653_589_793_238 % 2 ** 62, hidden=True)   # a grader-sized seed
HIDDEN_CASES = (*TEST_HIDDEN_CASES, HIDDEN, Case(seed=2 ** 62 - 1, hidden=True))

Path = tuple[Any, ...]


def _probe(ex_id: str, case: Case) -> dict[str, Any]:
    """The reference's probe data at ``case``, as the grader reads it back."""
    ex = get_exercise(ex_id)
    return unpack(pack(run_probe(ex.probe, ex.reference, case)))


def _same(a: Any, b: Any) -> bool:
    """Structural equality of probe data (arrays, or tensors as the codec stores them, by
    dtype, shape and values)."""
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return isinstance(b, list) and len(a) == len(b) and all(map(_same, a, b))
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu().numpy()
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and a.dtype == b.dtype and a.shape == b.shape \
            and np.array_equal(a, b, equal_nan=True)
    return type(a) is type(b) and a == b


def _numbers(value: Any, path: Path = ()) -> Iterator[Path]:
    """Paths to every recorded number: a float ``value`` of a number record, or the first
    element of a recorded array."""
    if isinstance(value, dict):
        for key, v in value.items():
            if key == "value" and isinstance(v, float):
                yield (*path, key)
            else:
                yield from _numbers(v, (*path, key))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _numbers(v, (*path, i))
    elif isinstance(value, np.ndarray) and value.size and value.dtype.kind == "f":
        yield path


def _forged(data: dict[str, Any], path: Path) -> dict[str, Any]:
    """A copy of ``data`` with the number at ``path`` moved by 5% (at least 0.05)."""
    data = unpack(pack(data))                                       # a deep copy
    *parents, last = path
    holder = data
    for key in parents:
        holder = holder[key]
    if isinstance(holder[last], np.ndarray):
        flat = holder[last].reshape(-1)
        flat[0] += max(0.05, 0.05 * abs(float(flat[0])))
    else:
        holder[last] += max(0.05, 0.05 * abs(holder[last]))
    return data


def _cases_with_paths() -> list[Any]:
    params = []
    for ex_id in EXERCISES:
        data = _probe(ex_id, HIDDEN)
        for path in _numbers(data):
            params.append(pytest.param(ex_id, path, id=f"{ex_id}:{'.'.join(map(str, path))}"))
    return params


@pytest.fixture(scope="module")
def hidden_data() -> dict[str, dict[str, Any]]:
    return {ex_id: _probe(ex_id, HIDDEN) for ex_id in EXERCISES}


@pytest.mark.parametrize("case", [PUBLIC_CASE, *HIDDEN_CASES], ids=lambda c: str(c.seed))
@pytest.mark.parametrize("ex_id", EXERCISES)
def test_reference_data_passes_and_survives_the_codec(ex_id: str, case: Case) -> None:
    ex = get_exercise(ex_id)
    raw = run_probe(ex.probe, ex.reference, case)
    data = unpack(pack(raw))
    assert _same(raw, data)
    judge_data(ex, data, case, hidden=case.hidden)
    assert ("extra" in data) == case.hidden          # extra sizes only at hidden cases


@pytest.mark.parametrize("ex_id, path", _cases_with_paths())
def test_one_changed_number_fails(ex_id: str, path: Path,
                                  hidden_data: dict[str, dict[str, Any]]) -> None:
    ex = get_exercise(ex_id)
    forged = _forged(hidden_data[ex_id], path)
    with pytest.raises(CheckFailure):
        judge_data(ex, forged, HIDDEN, hidden=True)
    if path[0] == "extra":                           # only the hidden judges look there
        judge_data(ex, forged, HIDDEN, hidden=False)


def test_every_exercise_has_numbers_to_forge(hidden_data: dict[str, dict[str, Any]]) -> None:
    for ex_id, data in hidden_data.items():
        paths = list(_numbers(data))
        assert {p[0] for p in paths} == {"main", "extra"}, ex_id


@pytest.mark.parametrize("ex_id", EXERCISES)
def test_data_of_another_case_fails(ex_id: str, hidden_data: dict[str, dict[str, Any]]) -> None:
    """The judge rebuilds the inputs from the case it is given, not from the data."""
    ex = get_exercise(ex_id)
    with pytest.raises(CheckFailure):              # one hidden case's data at another
        judge_data(ex, hidden_data[ex_id], TEST_HIDDEN_CASES[0], hidden=True)
    with pytest.raises(CheckFailure):              # public data judged at a hidden case
        judge_data(ex, _probe(ex_id, PUBLIC_CASE), TEST_HIDDEN_CASES[0], hidden=False)


MUTATIONS = pick("empty", "arrays_as_text", "arrays_of_text", "arrays_flattened",
                 "arrays_of_nan", "floats_as_text", "numbers_as_nan", "bools_flipped",
                 "huge_shapes", "leaves_as_none", "lists_emptied", "dicts_as_lists",
                 "records_as_numbers")


@pytest.mark.parametrize("mutation", sorted(MUTATIONS))
@pytest.mark.parametrize("ex_id", EXERCISES)
def test_malformed_data_fails_with_a_message(ex_id: str, mutation: str,
                                             hidden_data: dict[str, dict[str, Any]]) -> None:
    if (ex_id, mutation) == ("eval_iwae", "bools_flipped"):
        pytest.skip("eval_iwae's only booleans are requires_grad, which it does not judge")
    data = hidden_data[ex_id]
    forged = MUTATIONS[mutation](data)
    if pack(forged) == pack(data):
        pytest.skip(f"{mutation} leaves the data of {ex_id} unchanged")
    with pytest.raises(CheckFailure):                   # public and hidden judges
        judge_data(get_exercise(ex_id), forged, HIDDEN, hidden=True)
