"""The score-function and reparameterisation estimators are unbiased; their variances differ."""

from __future__ import annotations

import pytest
import torch

from course_utils.gradient_estimators import (
    METHODS,
    compare_estimators,
    per_sample_gradients,
)


def _square(z: torch.Tensor) -> torch.Tensor:
    return z.pow(2).sum(dim=1)                       # E[f] = |mu|^2 + sum sigma^2


MU, LOGVAR = torch.tensor([1.5, -0.5, 0.2]), torch.log(torch.tensor([0.5, 1.0, 2.0]))


def test_every_estimator_is_unbiased():
    for s in compare_estimators(_square, MU, LOGVAR, n=40_000, seed=1):
        assert s.mean == pytest.approx(2 * MU[0].item(), abs=5 * s.stderr), s.method


def test_reparameterisation_has_the_smallest_variance_and_a_baseline_helps():
    std = {s.method: s.std for s in compare_estimators(_square, MU, LOGVAR, n=20_000)}
    assert std["reparameterisation"] < std["score function + baseline"] < std["score function"]


def test_a_constant_added_to_f_only_hurts_the_score_function():
    plain = {s.method: s.std for s in compare_estimators(_square, MU, LOGVAR, n=5000)}
    shifted = {s.method: s.std for s in compare_estimators(lambda z: _square(z) - 200.0, MU,
                                                           LOGVAR, n=5000)}
    assert shifted["reparameterisation"] == pytest.approx(plain["reparameterisation"])
    assert shifted["score function"] > 10 * plain["score function"]


def test_per_sample_shapes_and_errors():
    g = per_sample_gradients(_square, MU, LOGVAR, 7, METHODS[0], torch.Generator().manual_seed(0))
    assert g.shape == (7, 3)
    with pytest.raises(ValueError, match="method"):
        per_sample_gradients(_square, MU, LOGVAR, 7, "finite differences")
    with pytest.raises(ValueError, match="shape"):
        per_sample_gradients(_square, MU[None], LOGVAR[None], 7, METHODS[0])
