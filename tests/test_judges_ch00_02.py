"""The judges of chapters 00-02 treat probe data as hostile: malformed data fails with a
message (CheckFailure) and never crashes a judge, whatever was forged in the kernel."""

from __future__ import annotations

from typing import Any

import pytest
from judge_mutations import pick

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


MUTATIONS = pick("arrays_as_text", "arrays_of_text", "arrays_flattened", "arrays_of_nan",
                 "numbers_as_text", "leaves_as_none", "lists_emptied", "dicts_as_lists")


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
