"""The judges of chapters 00-02 treat probe data as hostile: malformed data fails with a
message (CheckFailure) and never crashes a judge, whatever was forged in the kernel."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from course_utils.checks import get_exercise
from course_utils.checks.core import PUBLIC_CASE, TEST_HIDDEN_CASES, CheckFailure, judge_data
from course_utils.checks.protocol import pack, run_probe, unpack
from tests.wrong_answers.ch01_autoencoder import REFERENCE as CH01_REFERENCE

EXERCISES = ["intro_scale", "ae_encoder_decoder", "ae_reconstruction_loss", "ae_beat_pca",
             "vae_reparameterize", "vae_kl", "vae_elbo", "vae_predict_beta"]


def _right_answer(ex_id: str) -> Any:
    if ex_id == "ae_beat_pca":
        return CH01_REFERENCE["ae_beat_pca"]()         # a model that beats PCA, already run
    return get_exercise(ex_id).reference


def _map(value: Any, leaf: Callable[[Any], Any]) -> Any:
    """``value`` with ``leaf`` applied to every leaf (non-dict, non-list) value."""
    if isinstance(value, dict):
        return {k: _map(v, leaf) for k, v in value.items()}
    if isinstance(value, list):
        return [_map(v, leaf) for v in value]
    return leaf(value)


MUTATIONS: dict[str, Callable[[Any], Any]] = {
    "arrays_as_text": lambda d: _map(d, lambda v: "x" if isinstance(v, np.ndarray) else v),
    "arrays_of_text": lambda d: _map(d, lambda v: np.array(["a"] * v.size).reshape(v.shape)
                                     if isinstance(v, np.ndarray) else v),
    "arrays_flattened": lambda d: _map(d, lambda v: v.reshape(-1)[:1]
                                       if isinstance(v, np.ndarray) else v),
    "arrays_of_nan": lambda d: _map(d, lambda v: np.full(v.shape, np.nan)
                                    if isinstance(v, np.ndarray) else v),
    "numbers_as_text": lambda d: _map(d, lambda v: "1" if isinstance(v, (int, float)) else v),
    "leaves_as_none": lambda d: _map(d, lambda v: None),
    "lists_emptied": lambda d: {k: [] if isinstance(v, list) else v for k, v in d.items()},
    "dicts_as_lists": lambda d: {k: [v] if isinstance(v, dict) else v for k, v in d.items()},
}


@pytest.fixture(scope="module")
def probe_data() -> dict[str, dict[str, Any]]:
    out = {}
    for ex_id in EXERCISES:
        ex = get_exercise(ex_id)
        out[ex_id] = unpack(pack(run_probe(ex.probe, _right_answer(ex_id), PUBLIC_CASE)))
    return out


@pytest.mark.parametrize("ex_id", EXERCISES)
def test_real_data_passes_and_empty_data_fails(ex_id: str,
                                               probe_data: dict[str, dict[str, Any]]) -> None:
    ex = get_exercise(ex_id)
    judge_data(ex, probe_data[ex_id], PUBLIC_CASE)
    with pytest.raises(CheckFailure):
        judge_data(ex, {}, PUBLIC_CASE)


@pytest.mark.parametrize("mutation", sorted(MUTATIONS))
@pytest.mark.parametrize("ex_id", EXERCISES)
def test_malformed_data_fails_with_a_message(ex_id: str, mutation: str,
                                             probe_data: dict[str, dict[str, Any]]) -> None:
    data = probe_data[ex_id]
    forged = MUTATIONS[mutation](data)
    if pack(forged) == pack(data):
        pytest.skip(f"{mutation} leaves the data of {ex_id} unchanged")
    with pytest.raises(CheckFailure):                   # public and hidden judges
        judge_data(get_exercise(ex_id), forged, PUBLIC_CASE, hidden=True)


@pytest.mark.parametrize("ex_id", EXERCISES)
def test_data_of_another_case_fails(ex_id: str, probe_data: dict[str, dict[str, Any]]) -> None:
    """Data recorded at the public case does not pass a hidden case (other inputs), except
    for properties that do not depend on the inputs."""
    if ex_id in {"ae_encoder_decoder"}:
        pytest.skip("judged on properties of the learner's modules, not on input values")
    with pytest.raises(CheckFailure):
        judge_data(get_exercise(ex_id), probe_data[ex_id], TEST_HIDDEN_CASES[0])
