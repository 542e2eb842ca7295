"""Chapter 03's probe/judge pairs: the probes return plain data only, the judges pass the
reference's data at the public and hidden cases, and fail (with a message, never a crash)
on data that was forged or malformed, or recorded for another case."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import torch
from judge_mutations import pick

from course_utils.checks import get_exercise
from course_utils.checks.core import PUBLIC_CASE, TEST_HIDDEN_CASES, CheckFailure, judge_data
from course_utils.checks.protocol import STATUS_KEY, Case, pack, run_probe, unpack

EXERCISES = ["gan_d_loss", "gan_g_loss", "gan_train_step", "gan_debug_generator",
             "gan_debug_step"]
CASES = [PUBLIC_CASE, *TEST_HIDDEN_CASES]
# Inputs of the judge's reference rather than results: the generator's weights are loaded
# into the fixed architecture, which recomputes the outputs (tested separately below).
NOT_RESULTS = {"gan_debug_generator": ("state",)}


def _probe(ex_id: str, case: Case) -> dict[str, Any]:
    ex = get_exercise(ex_id)
    return run_probe(ex.probe, ex.reference, case)


@pytest.fixture(scope="module")
def recorded() -> dict[tuple[str, int], dict[str, Any]]:
    """The reference's data, through pack/unpack as the grader carries it, per case."""
    return {(ex_id, case.seed): unpack(pack(_probe(ex_id, case)))
            for ex_id in EXERCISES for case in CASES}


# ----------------------------------------------------------------------------- plain data

def _plain(value: Any, path: str = "data") -> Iterator[str]:
    """Paths in ``value`` holding something other than plain data."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return
    if type(value) in (list, tuple):
        for i, v in enumerate(value):
            yield from _plain(v, f"{path}[{i}]")
    elif type(value) is dict:
        for k, v in value.items():
            if not isinstance(k, str):
                yield f"{path} (key {k!r})"
            yield from _plain(v, f"{path}.{k}")
    elif type(value) is torch.Tensor or (type(value) is np.ndarray and value.dtype != object):
        return
    else:
        yield f"{path} ({type(value).__name__})"


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"seed{c.seed}")
@pytest.mark.parametrize("ex_id", EXERCISES)
def test_probe_returns_plain_data_that_survives_pack(ex_id: str, case: Case) -> None:
    data = _probe(ex_id, case)
    assert STATUS_KEY not in data, data
    assert not list(_plain(data))
    again = unpack(pack(data))
    assert set(again) == set(data)
    assert pack(unpack(pack(again))) == pack(again)          # a fixed point of the codec


@pytest.mark.parametrize("ex_id", EXERCISES)
def test_probe_leaves_the_global_random_stream_alone(ex_id: str) -> None:
    torch.manual_seed(123)
    before = torch.get_rng_state()
    _probe(ex_id, TEST_HIDDEN_CASES[0])
    assert torch.equal(torch.get_rng_state(), before)


@pytest.mark.parametrize("ex_id", ["gan_d_loss", "gan_g_loss", "gan_train_step",
                                   "gan_debug_step"])
def test_only_hidden_cases_record_the_extra_runs(
        ex_id: str, recorded: dict[tuple[str, int], dict[str, Any]]) -> None:
    assert recorded[(ex_id, PUBLIC_CASE.seed)]["extra"] == []
    assert len(recorded[(ex_id, TEST_HIDDEN_CASES[0].seed)]["extra"]) >= 1


# ----------------------------------------------------------------------------- reference data

@pytest.mark.parametrize("case", CASES, ids=lambda c: f"seed{c.seed}")
@pytest.mark.parametrize("ex_id", EXERCISES)
def test_reference_data_passes(ex_id: str, case: Case,
                               recorded: dict[tuple[str, int], dict[str, Any]]) -> None:
    judge_data(get_exercise(ex_id), recorded[(ex_id, case.seed)], case, hidden=case.hidden)


@pytest.mark.parametrize("ex_id", EXERCISES)
def test_empty_data_fails(ex_id: str) -> None:
    with pytest.raises(CheckFailure):
        judge_data(get_exercise(ex_id), {}, PUBLIC_CASE)


@pytest.mark.parametrize("ex_id", EXERCISES)
def test_data_of_another_case_fails(ex_id: str,
                                    recorded: dict[tuple[str, int], dict[str, Any]]) -> None:
    """Data recorded at the public case fails at a hidden case (other inputs, other models)."""
    with pytest.raises(CheckFailure):
        judge_data(get_exercise(ex_id), recorded[(ex_id, PUBLIC_CASE.seed)],
                   TEST_HIDDEN_CASES[0])


# ----------------------------------------------------------------------------- forged data

def _numbers(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Paths to every number (not bool) and every non-empty numeric array in ``value``."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _numbers(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _numbers(v, (*path, i))
    elif isinstance(value, np.ndarray) and value.size and value.dtype.kind in "iuf":
        yield path
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        yield path


def _changed(data: dict[str, Any], path: tuple[Any, ...]) -> dict[str, Any]:
    """``data`` with one number at ``path`` raised by 1 (for an array: its middle element)."""
    forged = copy.deepcopy(data)
    *parents, last = path
    holder = forged
    for key in parents:
        holder = holder[key]
    value = holder[last]
    if isinstance(value, np.ndarray):
        value = value.astype(np.float64) if value.dtype.kind in "iu" else value.copy()
        value.flat[value.size // 2] += 1.0
        holder[last] = value
    else:
        holder[last] = value + 1
    return forged


def _forgeries(ex_id: str, data: dict[str, Any]) -> list[tuple[Any, ...]]:
    skip = NOT_RESULTS.get(ex_id, ())
    return [p for p in _numbers(data) if not (p and p[0] in skip)]


@pytest.mark.parametrize("ex_id", EXERCISES)
def test_one_number_changed_fails(ex_id: str,
                                  recorded: dict[tuple[str, int], dict[str, Any]]) -> None:
    """Each number of the reference's data, raised by 1 on its own, makes the judge fail:
    every recorded result is compared with the judge's own reference."""
    data = recorded[(ex_id, PUBLIC_CASE.seed)]
    paths = _forgeries(ex_id, data)
    assert len(paths) >= 5
    passed = []
    for path in paths:
        try:
            judge_data(get_exercise(ex_id), _changed(data, path), PUBLIC_CASE)
        except CheckFailure:
            continue
        passed.append(path)
    assert not passed, f"forged data passed the judge of {ex_id}: {passed}"


@pytest.mark.parametrize("ex_id", ["gan_d_loss", "gan_g_loss", "gan_train_step",
                                   "gan_debug_step"])
def test_one_number_changed_in_an_extra_run_fails_the_hidden_judges(
        ex_id: str, recorded: dict[tuple[str, int], dict[str, Any]]) -> None:
    case = TEST_HIDDEN_CASES[0]
    data = recorded[(ex_id, case.seed)]
    paths = [p for p in _numbers(data["extra"][-1], ("extra", len(data["extra"]) - 1))]
    for path in paths[:: max(1, len(paths) // 12)]:           # a sample: every run is slow
        with pytest.raises(CheckFailure):
            judge_data(get_exercise(ex_id), _changed(data, path), case, hidden=True)


def test_forged_generator_weights_do_not_match_the_recorded_images(
        recorded: dict[tuple[str, int], dict[str, Any]]) -> None:
    """The weights are recorded with the images they produced: the judge recomputes the
    images from the weights, so changing a weight that matters fails."""
    data = recorded[("gan_debug_generator", PUBLIC_CASE.seed)]
    names = [name for name, _ in data["state"]]
    for name in ("up2.bias", "project.weight", "bn1.running_mean"):
        with pytest.raises(CheckFailure):
            judge_data(get_exercise("gan_debug_generator"),
                       _changed(data, ("state", names.index(name), 1)), PUBLIC_CASE)


def test_forged_spy_records_fail(recorded: dict[tuple[str, int], dict[str, Any]]) -> None:
    """What the spies saw is compared with the reference step too: a step that "leaked" D's
    loss into G's .grad, or stepped an optimizer twice, fails."""
    ex = get_exercise("gan_train_step")
    data = recorded[("gan_train_step", PUBLIC_CASE.seed)]
    for path, forge in [
        (("main", 0, "steps", 1, "g_grads_at_d", 0), lambda g: g * 1.5),
        (("main", 0, "steps", 0, "g_grads_at_d", 1), lambda g: g + 0.01),
        (("main", 1, "steps", 0, "d_calls"), lambda n: 2),
        (("main", 1, "steps", 1, "out", "values", "d_loss", "requires_grad"), lambda f: True),
        (("main", 0, "steps", 1, "graph_error"), lambda e: "backward_twice"),
    ]:
        forged = copy.deepcopy(data)
        holder = forged
        for key in path[:-1]:
            holder = holder[key]
        holder[path[-1]] = forge(holder[path[-1]])
        with pytest.raises(CheckFailure):
            judge_data(ex, forged, PUBLIC_CASE)


# ----------------------------------------------------------------------------- malformed data

MUTATIONS = pick("arrays_as_text", "arrays_of_text", "arrays_flattened", "arrays_of_nan",
                 "numbers_as_text", "leaves_as_none", "lists_emptied", "dicts_as_lists",
                 "strings_as_lists")


@pytest.mark.parametrize("mutation", sorted(MUTATIONS))
@pytest.mark.parametrize("ex_id", EXERCISES)
def test_malformed_data_fails_with_a_message(
        ex_id: str, mutation: str, recorded: dict[tuple[str, int], dict[str, Any]]) -> None:
    case = TEST_HIDDEN_CASES[0]
    data = recorded[(ex_id, case.seed)]
    forged = MUTATIONS[mutation](data)
    if pack(forged) == pack(data):
        pytest.skip(f"{mutation} leaves the data of {ex_id} unchanged")
    with pytest.raises(CheckFailure):                   # public and hidden judges
        judge_data(get_exercise(ex_id), forged, case, hidden=True)
