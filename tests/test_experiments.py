"""Tests of course_utils.experiments (chapter 03's mode-collapse experiment), on tiny settings."""

from __future__ import annotations

import dataclasses

import matplotlib
import numpy as np
import pytest
import torch

from course_utils import experiments as ex
from course_utils.metrics import ClassHistogram, SampleScores
from course_utils.models.classifier import FashionClassifier
from course_utils.models.dcgan import Generator

matplotlib.use("Agg")


# ----------------------------------------------------------------------------- one change

def test_every_default_arm_changes_exactly_one_field_of_the_baseline() -> None:
    arms = ex.mitigation_arms()
    names = list(arms)
    assert names[0] == "collapsing baseline" and arms[names[0]] == ex.COLLAPSE_BASELINE
    for name in names[1:]:
        assert len(arms[name].changes_from(ex.COLLAPSE_BASELINE)) == 1, name
    # the planted cause is kept by every arm
    assert all(s.g_steps == ex.COLLAPSE_BASELINE.g_steps > 1 for s in arms.values())


def test_learning_rate_balance_arm_uses_sagans_four_to_one_ratio() -> None:
    arm = ex.mitigation_arms()["D learning rate x4"]
    assert arm.d_lr == pytest.approx(4 * arm.g_lr)


@pytest.mark.parametrize("change", [{}, {"g_lr": 1e-4, "d_lr": 4e-4}, {"real_label": 1.0},
                                    {"no_such_field": 1}])
def test_one_change_refuses_zero_several_unchanged_or_unknown(change: dict) -> None:
    with pytest.raises(ValueError):
        ex.one_change(ex.COLLAPSE_BASELINE, **change)


def test_optimizer_applies_scale_and_weight_decay() -> None:
    s = dataclasses.replace(ex.COLLAPSE_BASELINE, lr_scale=0.25, weight_decay=1e-3)
    opt = s.optimizer(torch.nn.Linear(2, 2), 2e-4)
    group = opt.param_groups[0]
    assert group["lr"] == pytest.approx(5e-5) and group["weight_decay"] == 1e-3
    assert group["betas"] == (0.5, 0.999)


def test_describe_arms_names_the_one_change() -> None:
    desc = ex.arm_descriptions(ex.mitigation_arms())
    assert desc["label smoothing"] == "real_label: 1.0 -> 0.9"
    assert "g_steps=5" in desc["collapsing baseline"]


# ----------------------------------------------------------------------------- summaries

def _results(values: dict[str, list[tuple[int, float, float]]]) -> ex.CollapseResults:
    """Results with given (covered, kl, frechet) per seed, for the summary logic."""
    base = ex.COLLAPSE_BASELINE
    arms = {"collapsing baseline": base, "a": ex.one_change(base, real_label=0.9),
            "b": ex.one_change(base, weight_decay=1e-3), "c": ex.one_change(base, g_steps=1)}
    runs = [ex.ArmRun(arm, seed, c, k, f, 0.5, 0.5, 1.0, 1.0)
            for arm, rows in values.items() for seed, (c, k, f) in enumerate(rows)]
    hist = ClassHistogram(np.ones(10), np.full(10, 0.1), 10, 0.0, 0.01)
    return ex.CollapseResults(runs, arms, SampleScores(50.0, hist, 100),
                              size=ex.ExperimentSize(seeds=(0, 1, 2)))


def test_verdicts_are_paired_by_seed_and_need_every_seed() -> None:
    res = _results({
        "collapsing baseline": [(6, 0.8, 200.0), (8, 0.4, 120.0), (7, 0.6, 150.0)],
        # better on every seed in KL and Frechet, although its worst seed is worse than the
        # baseline's best seed: pairing by seed is what counts
        "a": [(9, 0.7, 190.0), (9, 0.3, 110.0), (9, 0.5, 140.0)],
        "b": [(5, 0.9, 210.0), (7, 0.5, 130.0), (6, 0.7, 160.0)],       # worse on every seed
        "c": [(9, 0.1, 60.0), (6, 0.6, 125.0), (9, 0.2, 70.0)],         # better on 2 of 3
    })
    assert res.verdict("a") == "helped" and res.verdict("b") == "hurt"
    assert res.verdict("c") == "unclear"
    assert res.wins("c", "kl") == 2 and res.losses("c", "frechet") == 1
    assert res.helped() == ["a"]
    mean, sd = res.summary()["collapsing baseline"]["kl"]
    assert mean == pytest.approx(0.6) and sd == pytest.approx(0.2)
    text = res.table()
    assert "3/3" in text and "0.600 +-" in text
    sentences = res.conclusions()
    assert len(sentences) == 4
    assert sentences[1].startswith("a: helped") and sentences[2].startswith("b: hurt")
    assert "2/3" in sentences[3]


def test_plot_has_one_panel_per_score() -> None:
    res = _results({name: [(6, 0.8, 200.0), (8, 0.4, 120.0), (7, 0.6, 150.0)]
                    for name in ("collapsing baseline", "a", "b", "c")})
    fig = ex.plot_collapse_results(res)
    assert len(fig.axes) == len(ex.METRICS)


# ----------------------------------------------------------------------------- a real run

def test_tiny_experiment_runs_every_arm_at_every_seed_and_leaves_the_start_alone() -> None:
    torch.manual_seed(0)
    G = Generator(latent_dim=8, width=4)
    before = {k: v.clone() for k, v in G.state_dict().items()}
    classifier = FashionClassifier(width=4, feature_dim=16).eval()
    gen = torch.Generator().manual_seed(0)
    train_x = torch.rand(64, 1, 28, 28, generator=gen)
    real_x = torch.rand(40, 1, 28, 28, generator=gen)
    arms = ex.mitigation_arms()
    size = ex.ExperimentSize(steps=2, warmup_steps=1, batch_size=8, n_samples=32, seeds=(0, 1, 2))
    lines: list[str] = []
    res = ex.run_collapse_experiment(G, train_x, classifier, real_x, arms, size=size,
                                     device="cpu", log=lines.append)
    assert len(res.runs) == len(arms) * 3 and len(lines) == len(res.runs)
    assert {(r.arm, r.seed) for r in res.runs} == {(a, s) for a in arms for s in (0, 1, 2)}
    assert set(res.warmup) == {"bn", "sn"} and len(res.warmup["sn"]) == 3
    assert all(tuple(res.samples[a].shape) == (32, 1, 28, 28) for a in arms)
    assert all(np.isfinite(r.frechet) and 0 <= r.covered <= 10 for r in res.runs)
    for k, v in G.state_dict().items():
        assert torch.equal(v, before[k]), f"the start generator's {k} changed"
    assert len(res.table().splitlines()) == len(arms) + 3


def test_same_seed_gives_the_same_run() -> None:
    torch.manual_seed(0)
    G = Generator(latent_dim=8, width=4)
    classifier = FashionClassifier(width=4, feature_dim=16).eval()
    gen = torch.Generator().manual_seed(1)
    train_x = torch.rand(64, 1, 28, 28, generator=gen)
    real_x = torch.rand(40, 1, 28, 28, generator=gen)
    arms = dict(list(ex.mitigation_arms().items())[:2])
    size = ex.ExperimentSize(steps=2, warmup_steps=1, batch_size=8, n_samples=32, seeds=(5,))
    a, b = (ex.run_collapse_experiment(G, train_x, classifier, real_x, arms, size=size,
                                       device="cpu", log=None) for _ in range(2))
    assert [(r.kl, r.frechet) for r in a.runs] == [(r.kl, r.frechet) for r in b.runs]


def test_arms_changing_two_things_or_too_few_real_images_are_refused() -> None:
    G = Generator(latent_dim=8, width=4)
    classifier = FashionClassifier(width=4, feature_dim=16).eval()
    x = torch.rand(16, 1, 28, 28)
    bad = {"collapsing baseline": ex.COLLAPSE_BASELINE,
           "balance": dataclasses.replace(ex.COLLAPSE_BASELINE, g_steps=1, d_lr=8e-4)}
    with pytest.raises(ValueError, match="exactly one variable"):
        ex.run_collapse_experiment(G, x, classifier, x, bad, size=ex.ExperimentSize(n_samples=8))
    with pytest.raises(ValueError, match="n_samples"):
        ex.run_collapse_experiment(G, x, classifier, x, size=ex.ExperimentSize(n_samples=100))

