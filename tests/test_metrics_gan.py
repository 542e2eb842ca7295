"""Sample metrics: class histogram, coverage, KL to uniform, Frechet distance, neighbours."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats
import torch

from course_utils import metrics
from course_utils.models.classifier import FashionClassifier

# ----------------------------------------------------------------------------- histograms

def test_one_class_histogram_has_coverage_one_and_kl_log_k():
    h = metrics.class_histogram(np.full(500, 3), num_classes=10)
    assert h.covered == 1
    assert h.counts[3] == 500 and h.counts.sum() == 500
    assert h.kl_to_uniform == pytest.approx(math.log(10))


def test_uniform_histogram_covers_all_with_zero_kl():
    h = metrics.class_histogram(np.tile(np.arange(10), 30), num_classes=10)
    assert h.covered == 10
    assert h.kl_to_uniform == pytest.approx(0.0, abs=1e-12)


def test_coverage_threshold_and_kl_on_constructed_histogram():
    # 1000 samples: class 0 has 5 (0.5% < 1%), class 1 has 10 (exactly 1%), the rest share 985
    counts = np.array([5, 10, 120, 120, 120, 125, 125, 125, 125, 125])
    labels = np.repeat(np.arange(10), counts)
    np.random.default_rng(0).shuffle(labels)
    h = metrics.class_histogram(torch.from_numpy(labels), num_classes=10)
    assert h.covered == 9
    p = counts / counts.sum()
    assert h.kl_to_uniform == pytest.approx(scipy.stats.entropy(p, np.full(10, 0.1)))
    assert "9/10 classes" in str(h)


def test_histogram_rejects_bad_labels():
    with pytest.raises(ValueError, match=r"\[0, 10\)"):
        metrics.class_histogram(np.array([0, 10]), num_classes=10)
    with pytest.raises(ValueError, match="integers"):
        metrics.class_histogram(np.array([0.5, 1.0]))


# ------------------------------------------------------------------------ Frechet distance

def _closed_form(mu1, s1, mu2, s2):
    """Frechet distance via the symmetric form tr((s1^1/2 s2 s1^1/2)^1/2), a different route."""
    w, v = np.linalg.eigh(s1)
    r1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    m = r1 @ s2 @ r1
    cross = np.sqrt(np.clip(np.linalg.eigvalsh(m), 0, None)).sum()
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * cross)


def _random_cov(rng, d):
    a = rng.normal(size=(d, d))
    return a @ a.T / d + 0.1 * np.eye(d)


def test_identical_sets_have_distance_zero():
    f = np.random.default_rng(0).normal(size=(400, 16))
    assert metrics.frechet_distance(f, f) == pytest.approx(0.0, abs=1e-8)


def test_two_gaussians_match_closed_form_from_stats():
    rng = np.random.default_rng(1)
    d = 8
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    s1, s2 = _random_cov(rng, d), _random_cov(rng, d)
    got = metrics.frechet_distance_from_stats(mu1, s1, mu2, s2)
    assert got == pytest.approx(_closed_form(mu1, s1, mu2, s2), rel=1e-8)


def test_one_dimensional_closed_form():
    # N(m1, a^2) vs N(m2, b^2): (m1 - m2)^2 + (a - b)^2
    got = metrics.frechet_distance_from_stats(np.array([1.0]), np.array([[4.0]]),
                                              np.array([-2.0]), np.array([[9.0]]))
    assert got == pytest.approx(9.0 + 1.0)


def test_samples_from_two_gaussians_approach_the_closed_form():
    rng = np.random.default_rng(2)
    d = 4
    mu1, mu2 = np.zeros(d), np.full(d, 0.5)
    s1, s2 = _random_cov(rng, d), _random_cov(rng, d)
    a = rng.multivariate_normal(mu1, s1, size=20000)
    b = rng.multivariate_normal(mu2, s2, size=20000)
    assert metrics.frechet_distance(a, b) == pytest.approx(_closed_form(mu1, s1, mu2, s2), rel=0.05)


def test_frechet_distance_is_symmetric():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(300, 10)), rng.gamma(2.0, size=(250, 10))
    assert metrics.frechet_distance(a, b) == pytest.approx(metrics.frechet_distance(b, a), rel=1e-7)


def test_dead_units_give_a_finite_distance_close_to_the_live_units_one():
    rng = np.random.default_rng(4)
    a = np.maximum(rng.normal(size=(500, 32)), 0)
    b = np.maximum(rng.normal(0.3, 1.0, size=(500, 32)), 0)
    live = metrics.frechet_distance(a[:, 12:], b[:, 12:])
    a[:, :12] = 0.0  # dead ReLU units: constant zero for every sample, zero covariance rows
    b[:, :12] = 0.0
    with_dead = metrics.frechet_distance(a, b)
    assert np.isfinite(with_dead)
    assert with_dead == pytest.approx(live, abs=1e-3)


def test_too_few_samples_raise_a_clear_error():
    f = np.random.default_rng(5).normal(size=(64, 128))
    with pytest.raises(ValueError, match="too few.*D \\+ 1 = 129"):
        metrics.frechet_distance(f, f)


def test_collinear_features_give_the_closed_form_distance():
    # 6 features that live in a 3-dimensional subspace: both covariances are singular (rank 3),
    # as with collinear units; the result must still be a real number and accurate.
    rng = np.random.default_rng(6)
    basis = rng.normal(size=(3, 6))
    a = rng.normal(size=(400, 3)) @ basis
    b = (rng.normal(size=(400, 3)) * 1.5 + 0.2) @ basis
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    assert np.linalg.matrix_rank(s1) == 3
    got = metrics.frechet_distance_from_stats(mu1, s1, mu2, s2)
    assert isinstance(got, float) and np.isfinite(got)
    assert got == pytest.approx(_closed_form(mu1, s1, mu2, s2), abs=1e-3)
    assert got == pytest.approx(metrics.frechet_distance(a, b), rel=1e-6)


def test_invalid_covariance_is_reported_not_silently_made_real():
    # a "covariance" with a negative variance has an imaginary square root: that is an error in
    # the features, and dropping the imaginary part would hide it
    with pytest.raises(FloatingPointError, match="imaginary part"):
        metrics.frechet_distance_from_stats(np.zeros(2), np.diag([-1.0, 1.0]),
                                            np.zeros(2), np.eye(2))
    with pytest.raises(ValueError, match="shapes do not match"):
        metrics.frechet_distance_from_stats(np.zeros(2), np.eye(2), np.zeros(3), np.eye(3))


# ----------------------------------------------------- classifier-based scores and neighbours

@pytest.fixture(scope="module")
def tiny_classifier():
    torch.manual_seed(0)
    model = FashionClassifier(width=4, feature_dim=8)
    for m in model.modules():          # let BatchNorm's running statistics fit the data range,
        if isinstance(m, torch.nn.BatchNorm2d):   # so that features depend on the input
            m.momentum = None
    with torch.no_grad():
        model(torch.rand(64, 1, 28, 28))
    return model.eval()


def test_classifier_features_reject_minus_one_one_images(tiny_classifier):
    x = torch.rand(4, 1, 28, 28) * 2 - 1
    with pytest.raises(ValueError, match="to_zero_one"):
        metrics.classifier_features(tiny_classifier, x)


def test_score_samples_and_floor_run_on_tiny_inputs(tiny_classifier):
    g = torch.Generator().manual_seed(0)
    real = torch.rand(40, 1, 28, 28, generator=g)
    fake = torch.rand(30, 1, 28, 28, generator=g) * 0.5
    scores = metrics.score_samples(tiny_classifier, fake, real)
    assert scores.frechet > 0 and scores.histogram.counts.sum() == 30
    assert tiny_classifier.training is False
    floor = metrics.real_floor(tiny_classifier, real, real, n=20)
    assert 0 <= floor < scores.frechet


def test_nearest_neighbour_distances_and_memorisation_ratio():
    g = torch.Generator().manual_seed(0)
    train = torch.rand(50, 1, 28, 28, generator=g)
    test = torch.rand(20, 1, 28, 28, generator=g)
    copies = train[:20] + 0.001            # a generator that memorised the training set
    d = metrics.nearest_neighbour_distances(copies, train)
    assert d.shape == (20,) and np.all(d < 0.05)
    brute = torch.cdist(test.flatten(1), train.flatten(1)).min(1).values.numpy()
    np.testing.assert_allclose(metrics.nearest_neighbour_distances(test, train, batch_size=7),
                               brute, rtol=1e-5)
    assert metrics.memorisation_check(copies, train, test).ratio < 0.1
    assert metrics.memorisation_check(test[:10], train, test[10:]).ratio > 0.5
