"""Chapter 03's mode-collapse experiment: one planted cause, one change per mitigation, seeds.

The experiment (notebook ``03_dcgan``, section 7) asks which mitigation undoes a collapse,
and answers with numbers that hold across seeds:

1. **A shared start.** Every run starts from the same trained generator (the shipped one) and
   from a discriminator trained *alone* for ``warmup_steps`` against that frozen generator.
   Each seed warms up its own discriminator; arms that keep batch norm in ``D`` share it, and
   the spectral-norm arm warms up its own ``D`` the same way, so no arm starts better placed.
2. **A planted cause.** The game then continues with the generator taking ``g_steps``
   updates for every discriminator update: the generator outruns its critic, best-responds to
   a stale ``D`` and piles its samples onto what that ``D`` currently likes. Goodfellow et al.
   (2014) warn of exactly this among GANs' disadvantages: "G must not be trained too much
   without updating D".
3. **One change per arm.** Each mitigation is the baseline's :class:`GameSettings` with one
   field changed (:func:`one_change` refuses more), so the planted cause stays in place and
   a difference can only come from that change.
4. **Scores.** After ``steps`` game steps, ``n_samples`` samples are scored with the course's
   classifier: classes covered, KL(histogram || uniform) and the Frechet distance.

:class:`CollapseResults` summarises the runs (mean and standard deviation over seeds, and per
arm on how many seeds it beat the baseline, paired by seed) and words its conclusions from
those numbers. :func:`plot_collapse_results` draws them.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from . import metrics
from .losses import discriminator_loss, generator_loss
from .models.dcgan import Discriminator, sample_images
from .training import AdamConfig, fit_gan, gan_train_step

__all__ = ["GameSettings", "one_change", "COLLAPSE_BASELINE", "mitigation_arms",
           "ExperimentSize", "ArmRun", "CollapseResults", "run_collapse_experiment",
           "plot_collapse_results", "METRICS", "arm_descriptions", "describe_arms"]

#: The scores of every run: (attribute of :class:`ArmRun`, label, True if higher is better).
METRICS: tuple[tuple[str, str, bool], ...] = (
    ("covered", "classes covered", True),
    ("kl", "KL to uniform", False),
    ("frechet", "Frechet distance", False),
)


@dataclass(frozen=True)
class GameSettings:
    """How the game continues from the shared start. Each field is one variable.

    Attributes:
        g_steps: generator updates per discriminator update (the planted cause when > 1).
        g_lr, d_lr: the generator's and the discriminator's Adam learning rates.
        lr_scale: multiplies both learning rates (a "lower learning rate" in one knob).
        real_label: D's target on real images; 0.9 is one-sided label smoothing.
        spectral_norm: spectral normalisation in D instead of batch norm.
        weight_decay: L2 weight decay in both players' Adam.
    """

    g_steps: int = 5
    g_lr: float = 2e-4
    d_lr: float = 2e-4
    lr_scale: float = 1.0
    real_label: float = 1.0
    spectral_norm: bool = False
    weight_decay: float = 0.0

    def changes_from(self, other: GameSettings) -> dict[str, tuple[Any, Any]]:
        """``{field: (other's value, this value)}`` for every field that differs."""
        return {f.name: (getattr(other, f.name), getattr(self, f.name))
                for f in dataclasses.fields(self)
                if getattr(self, f.name) != getattr(other, f.name)}

    def optimizer(self, model: nn.Module, lr: float) -> torch.optim.Optimizer:
        """Adam (betas 0.5, 0.999) for one player at ``lr * lr_scale``, with the weight decay."""
        betas = AdamConfig().betas
        return torch.optim.Adam(model.parameters(), lr=lr * self.lr_scale, betas=betas,
                                weight_decay=self.weight_decay)


def one_change(base: GameSettings, **change: Any) -> GameSettings:
    """``base`` with exactly one field changed, to a different value.

    Raises:
        ValueError: for no change, several, an unknown field, or a value equal to the base's:
            an arm that changes two things at once cannot say which one mattered.
    """
    names = {f.name for f in dataclasses.fields(base)}
    unknown = sorted(set(change) - names)
    if unknown:
        raise ValueError(f"GameSettings has no field {unknown}; its fields are {sorted(names)}")
    if len(change) != 1:
        raise ValueError(f"change exactly one variable per arm, got {sorted(change)}: with "
                         "several changes at once the arm cannot say which one mattered")
    arm = dataclasses.replace(base, **change)
    if not arm.changes_from(base):
        raise ValueError(f"{change} is what the baseline already has; change it to a new value")
    return arm


#: The collapsing baseline: 5 generator updates per discriminator update, the recipe's
#: learning rates (2e-4 for both), no label smoothing, batch norm in D.
COLLAPSE_BASELINE = GameSettings()


def mitigation_arms(base: GameSettings = COLLAPSE_BASELINE) -> dict[str, GameSettings]:
    """The chapter's arms: the baseline and one single-variable change each.

    * ``label smoothing``: real target 0.9 (Salimans et al. 2016);
    * ``spectral norm in D``: instead of batch norm (Miyato et al. 2018);
    * ``D learning rate x4``: D's rate four times G's, the ratio of SAGAN (Zhang et al. 2019);
    * ``lower learning rates``: both rates divided by 4 (the source article's first remedy);
    * ``weight decay``: L2 decay 1e-3 in both players (the article's third remedy).
    """
    return {
        "collapsing baseline": base,
        "label smoothing": one_change(base, real_label=0.9),
        "spectral norm in D": one_change(base, spectral_norm=True),
        "D learning rate x4": one_change(base, d_lr=4 * base.g_lr),
        "lower learning rates": one_change(base, lr_scale=base.lr_scale / 4),
        "weight decay": one_change(base, weight_decay=1e-3),
    }


@dataclass(frozen=True)
class ExperimentSize:
    """How big each run is.

    Attributes:
        steps: game steps (discriminator updates) per run, after the warm-up.
        warmup_steps: discriminator-only steps against the frozen start generator.
        batch_size: real images (and fakes) per update.
        n_samples: generated images scored per run (and real test images to compare with).
        seeds: one run of every arm per seed.
    """

    steps: int = 30
    warmup_steps: int = 100
    batch_size: int = 16
    n_samples: int = 1000
    seeds: tuple[int, ...] = (0, 1, 2)


@dataclass(frozen=True)
class ArmRun:
    """One arm at one seed: its scores and what the run cost.

    ``cpu_seconds`` is the process's CPU time for training (all threads), which is less
    sensitive than ``wall_seconds`` to other jobs sharing the machine.
    """

    arm: str
    seed: int
    covered: int
    kl: float
    frechet: float
    d_real: float             # mean D(x) over the run's last steps
    d_fake: float             # mean D(G(z)) over the run's last steps
    cpu_seconds: float
    wall_seconds: float


@dataclass
class CollapseResults:
    """Every run of the experiment, with summaries and conclusions computed from them.

    Attributes:
        runs: one :class:`ArmRun` per arm and seed.
        arms: the settings of each arm, the baseline first.
        start: scores of the start generator (before any game step), same samples.
        warmup: ``{"bn" or "sn": [(d_real, d_fake) per seed]}`` at the end of the warm-up.
        samples: the first 32 samples of each arm at the first seed, in [0, 1].
        histograms: each arm's class fractions (10,) at the first seed.
        size: the experiment's size.
    """

    runs: list[ArmRun]
    arms: dict[str, GameSettings]
    start: metrics.SampleScores
    warmup: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    samples: dict[str, Tensor] = field(default_factory=dict)
    histograms: dict[str, np.ndarray] = field(default_factory=dict)
    size: ExperimentSize = field(default_factory=ExperimentSize)

    @property
    def baseline(self) -> str:
        return next(iter(self.arms))

    def values(self, arm: str, metric: str) -> np.ndarray:
        """One metric of one arm, one value per seed in seed order, shape (n_seeds,)."""
        runs = sorted((r for r in self.runs if r.arm == arm), key=lambda r: r.seed)
        if not runs:
            raise KeyError(f"no runs of arm {arm!r}; arms: {list(self.arms)}")
        return np.array([float(getattr(r, metric)) for r in runs])

    def summary(self) -> dict[str, dict[str, tuple[float, float]]]:
        """``{arm: {metric: (mean, standard deviation over seeds)}}`` (ddof 1)."""
        out = {}
        for arm in self.arms:
            out[arm] = {}
            for metric, _, _ in METRICS:
                v = self.values(arm, metric)
                out[arm][metric] = (float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.)
        return out

    def wins(self, arm: str, metric: str) -> int:
        """On how many seeds ``arm`` scored strictly better than the baseline (same seed)."""
        higher = dict((m, h) for m, _, h in METRICS)[metric]
        diff = self.values(arm, metric) - self.values(self.baseline, metric)
        return int(np.sum(diff > 0 if higher else diff < 0))

    def losses(self, arm: str, metric: str) -> int:
        """On how many seeds ``arm`` scored strictly worse than the baseline (same seed)."""
        higher = dict((m, h) for m, _, h in METRICS)[metric]
        diff = self.values(arm, metric) - self.values(self.baseline, metric)
        return int(np.sum(diff < 0 if higher else diff > 0))

    def verdict(self, arm: str) -> str:
        """``"helped"``: better than the baseline in both KL and Frechet distance on every
        seed; ``"hurt"``: worse in both on every seed; otherwise ``"unclear"``."""
        n = len(self.size.seeds)
        if all(self.wins(arm, m) == n for m in ("kl", "frechet")):
            return "helped"
        if all(self.losses(arm, m) == n for m in ("kl", "frechet")):
            return "hurt"
        return "unclear"

    def helped(self) -> list[str]:
        """The arms that helped on every seed, best mean Frechet distance first."""
        arms = [a for a in list(self.arms)[1:] if self.verdict(a) == "helped"]
        return sorted(arms, key=lambda a: self.values(a, "frechet").mean())

    def best(self) -> str:
        """The arm (baseline excluded) with the lowest mean Frechet distance."""
        return min(list(self.arms)[1:] or list(self.arms),
                   key=lambda a: self.values(a, "frechet").mean())

    def table(self) -> str:
        """A text table: mean +- standard deviation over seeds, and seeds beating the
        baseline (paired by seed) in KL and in Frechet distance."""
        n = len(self.size.seeds)
        head = (f"{'run':<22s} {'classes':>11s} {'KL to uniform':>15s} "
                f"{'Frechet':>14s}  {'better KL':>9s} {'better FD':>9s}")
        lines = [head, "-" * len(head),
                 f"{'start (no game steps)':<22s} {self.start.histogram.covered:>11d} "
                 f"{self.start.histogram.kl_to_uniform:>15.3f} {self.start.frechet:>14.1f}"]
        for arm, s in self.summary().items():
            (c, cs), (k, ks), (f, fs) = s["covered"], s["kl"], s["frechet"]
            better = ("" if arm == self.baseline else
                      f"  {self.wins(arm, 'kl'):>5d}/{n}   {self.wins(arm, 'frechet'):>5d}/{n}")
            lines.append(f"{arm:<22s} {c:>5.1f} +-{cs:>4.1f} {k:>8.3f} +-{ks:>5.3f} "
                         f"{f:>7.1f} +-{fs:>5.1f}{better}")
        return "\n".join(lines)

    def conclusions(self) -> list[str]:
        """One sentence per arm, computed from the runs (never from a remembered run)."""
        n = len(self.size.seeds)
        base = self.summary()[self.baseline]
        out = [f"The collapsing baseline ended at {base['covered'][0]:.1f} classes, KL "
               f"{base['kl'][0]:.3f} and Frechet distance {base['frechet'][0]:.1f} (means over "
               f"{n} seeds), against {self.start.histogram.covered} classes, KL "
               f"{self.start.histogram.kl_to_uniform:.3f} and {self.start.frechet:.1f} at the "
               "start."]
        words = {"helped": "helped: better than the baseline in both KL and Frechet distance "
                           "on every seed",
                 "hurt": "hurt: worse than the baseline in both KL and Frechet distance on "
                         "every seed",
                 "unclear": "did not help clearly: not better in both KL and Frechet distance "
                            "on every seed"}
        for arm in list(self.arms)[1:]:
            out.append(f"{arm}: {words[self.verdict(arm)]} (KL better on "
                       f"{self.wins(arm, 'kl')}/{n} seeds, Frechet better on "
                       f"{self.wins(arm, 'frechet')}/{n}).")
        return out

    def prediction_report(self, prediction: str) -> str:
        """Set a prediction (an arm's name) against what this run measured."""
        n = len(self.size.seeds)
        name = next((a for a in self.arms if a.casefold() == str(prediction).strip().casefold()),
                    None)
        if name is None:
            return f"{prediction!r} is not one of the arms: {list(self.arms)}"
        best = self.best()
        f_mean = self.summary()[name]["frechet"]
        b_mean = self.summary()[best]["frechet"]
        lines = [f"You predicted {name!r}: mean Frechet distance {f_mean[0]:.1f} +- "
                 f"{f_mean[1]:.1f} over {n} seeds."]
        if name != self.baseline:
            lines.append(f"  It beat the baseline on KL on {self.wins(name, 'kl')}/{n} seeds "
                         f"and on Frechet distance on {self.wins(name, 'frechet')}/{n}: "
                         f"{self.verdict(name)}.")
        lines.append(f"Measured nearest the start: {best!r}, mean Frechet distance "
                     f"{b_mean[0]:.1f} +- {b_mean[1]:.1f} (start: {self.start.frechet:.1f}).")
        return "\n".join(lines)


# ----------------------------------------------------------------------------- running it

def _multi_g_step(g_steps: int) -> Callable[..., Mapping[str, Tensor]]:
    """A ``fit_gan`` step giving the generator ``g_steps`` updates (fresh noise each) per
    discriminator update: :func:`gan_train_step`, then ``g_steps - 1`` generator steps."""
    def step(G: nn.Module, D: nn.Module, opt_g: torch.optim.Optimizer,
             opt_d: torch.optim.Optimizer, real: Tensor, z: Tensor, real_label: float = 1.0,
             g_loss_kind: str = "non_saturating") -> Mapping[str, Tensor]:
        out = gan_train_step(G, D, opt_g, opt_d, real, z, real_label=real_label,
                             g_loss_kind=g_loss_kind)
        for _ in range(g_steps - 1):
            loss = generator_loss(D(G(torch.randn_like(z))), kind=g_loss_kind)
            opt_g.zero_grad(set_to_none=True)
            loss.backward()
            opt_g.step()
        return out
    return step


def _d_only_step(G: nn.Module, D: nn.Module, opt_g: torch.optim.Optimizer,
                 opt_d: torch.optim.Optimizer, real: Tensor, z: Tensor, real_label: float = 1.0,
                 g_loss_kind: str = "non_saturating") -> Mapping[str, Tensor]:
    """A ``fit_gan`` step that trains only D, against the frozen generator's samples."""
    with torch.no_grad():
        fake = G(z)                                                    # (B, 1, 28, 28)
    real_logits, fake_logits = D(real), D(fake)                        # (B,), (B,)
    loss = discriminator_loss(real_logits, fake_logits, real_label=real_label)
    opt_d.zero_grad(set_to_none=True)
    loss.backward()
    opt_d.step()
    return {"d_loss": loss.detach(), "g_loss": torch.zeros(()),
            "d_real": torch.sigmoid(real_logits.detach()).mean(),
            "d_fake": torch.sigmoid(fake_logits.detach()).mean()}


def _warm_discriminator(G_start: nn.Module, train_x: Tensor, spectral_norm: bool, seed: int,
                        size: ExperimentSize, device: torch.device) -> tuple[nn.Module,
                                                                               tuple[float, float]]:
    """A fresh discriminator (seeded), trained alone against the frozen ``G_start``."""
    torch.manual_seed(10_000 + seed)
    D = Discriminator(width=getattr(G_start, "width", 32), spectral_norm=spectral_norm)
    G = copy.deepcopy(G_start)
    run = fit_gan(G, D, train_x, max_steps=max(1, size.warmup_steps),
                  batch_size=size.batch_size, step_fn=_d_only_step, log_every=10**9,
                  checkpoint_every=None, device=device, seed=20_000 + seed, progress=False)
    last = run.history.last
    return D, (float(last["d_real"]), float(last["d_fake"]))


def _play(G_start: nn.Module, D_start: nn.Module, settings: GameSettings, train_x: Tensor,
          seed: int, size: ExperimentSize, device: torch.device
          ) -> tuple[nn.Module, dict[str, float]]:
    """Copies of the start pair, trained ``size.steps`` game steps with ``settings``."""
    G, D = copy.deepcopy(G_start).to(device), copy.deepcopy(D_start).to(device)
    run = fit_gan(G, D, train_x, max_steps=size.steps, batch_size=size.batch_size,
                  g_optim=settings.optimizer(G, settings.g_lr),
                  d_optim=settings.optimizer(D, settings.d_lr),
                  real_label=settings.real_label, step_fn=_multi_g_step(settings.g_steps),
                  log_every=max(1, size.steps // 3), checkpoint_every=None, device=device,
                  seed=seed, progress=False)
    tail = run.history.records[-1]
    return G, {"d_real": float(tail["d_real"]), "d_fake": float(tail["d_fake"])}


def run_collapse_experiment(G_start: nn.Module, train_x: Tensor, classifier: nn.Module,
                            real_x: Tensor, arms: Mapping[str, GameSettings] | None = None, *,
                            size: ExperimentSize | None = None,
                            device: str | torch.device | None = None,
                            log: Callable[[str], None] | None = print) -> CollapseResults:
    """Run every arm at every seed from the shared start and score it.

    Args:
        G_start: the trained generator every run starts from (not changed).
        train_x: real training images (N, 1, 28, 28) in [0, 1]; a few thousand are enough.
        classifier: the course's Fashion-MNIST classifier (features and labels).
        real_x: real test images (M, 1, 28, 28) in [0, 1], M >= ``size.n_samples``.
        arms: ``{name: settings}``, the baseline first (default :func:`mitigation_arms`).
            Every other arm must differ from the baseline in exactly one field.
        size: steps, warm-up, batch, samples and seeds (default :class:`ExperimentSize`).
        log: called with one line per finished run (None: silent).

    Returns:
        :class:`CollapseResults`.
    """
    arms = dict(arms or mitigation_arms())
    size = size or ExperimentSize()
    _check_arms(arms, size, real_x)
    dev = torch.device(device) if device is not None else next(G_start.parameters()).device
    G_start = copy.deepcopy(G_start).to(dev).eval()
    real = real_x[:size.n_samples]
    real_features = metrics.classifier_features(classifier, real)
    start_samples = sample_images(G_start, size.n_samples, seed=3)
    results = CollapseResults([], arms, metrics.score_samples(
        classifier, start_samples, real, real_features=real_features), size=size)
    for seed in size.seeds:
        starts = {}
        for sn in sorted({s.spectral_norm for s in arms.values()}):
            starts[sn], dd = _warm_discriminator(G_start, train_x, sn, seed, size, dev)
            results.warmup.setdefault("sn" if sn else "bn", []).append(dd)
        for name, settings in arms.items():
            cpu, wall = time.process_time(), time.perf_counter()
            G, tail = _play(G_start, starts[settings.spectral_norm], settings, train_x, seed,
                            size, dev)
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            fake = sample_images(G, size.n_samples, seed=3)              # (n, 1, 28, 28)
            sc = metrics.score_samples(classifier, fake, real, real_features=real_features)
            results.runs.append(ArmRun(name, seed, sc.histogram.covered,
                                       sc.histogram.kl_to_uniform, sc.frechet, tail["d_real"],
                                       tail["d_fake"], cpu, wall))
            if seed == size.seeds[0]:
                results.samples[name] = fake[:32]
                results.histograms[name] = np.asarray(sc.histogram.fractions, dtype=float)
            if log is not None:
                log(f"seed {seed} | {name:<22s} | {sc.histogram.covered:2d}/10 classes, KL "
                    f"{sc.histogram.kl_to_uniform:.3f}, Frechet {sc.frechet:6.1f} | "
                    f"{cpu:4.1f} s CPU")
    return results


def _check_arms(arms: Mapping[str, GameSettings], size: ExperimentSize, real_x: Tensor) -> None:
    """Every arm but the first differs from it in one field; the sizes make sense."""
    if len(arms) < 1:
        raise ValueError("give at least the baseline arm")
    base_name, base = next(iter(arms.items()))
    for name, settings in list(arms.items())[1:]:
        changed = settings.changes_from(base)
        if len(changed) != 1:
            raise ValueError(f"arm {name!r} differs from {base_name!r} in {sorted(changed)}; "
                             "change exactly one variable per arm (see one_change)")
    if len(size.seeds) < 1 or len(set(size.seeds)) != len(size.seeds):
        raise ValueError(f"give one or more distinct seeds, got {size.seeds}")
    if size.steps < 1 or size.batch_size < 1 or size.n_samples < 2:
        raise ValueError(f"steps and batch_size must be >= 1 and n_samples >= 2, got {size}")
    if len(real_x) < size.n_samples:
        raise ValueError(f"real_x has {len(real_x)} images but n_samples is {size.n_samples}; "
                         "pass more real images or score fewer samples")


# ----------------------------------------------------------------------------- plot

def plot_collapse_results(results: CollapseResults, title: str | None = None) -> Any:
    """One panel per score: each seed as a dot, the mean +- standard deviation as a bar,
    the baseline's mean dashed and the start's value dotted. Returns the figure."""
    import matplotlib.pyplot as plt

    arms = list(results.arms)
    fig, axes = plt.subplots(1, len(METRICS), figsize=(13, 0.45 * len(arms) + 1.6),
                             sharey=True)
    start = {"covered": results.start.histogram.covered,
             "kl": results.start.histogram.kl_to_uniform, "frechet": results.start.frechet}
    for ax, (metric, label, higher) in zip(axes, METRICS, strict=True):
        for i, arm in enumerate(arms):
            v = results.values(arm, metric)
            sd = v.std(ddof=1) if len(v) > 1 else 0.0
            ax.errorbar(v.mean(), i, xerr=sd, fmt="s", color="C0" if i else "C3", capsize=4)
            ax.scatter(v, np.full(len(v), i) + 0.18, s=14, color="gray", zorder=3)
        ax.axvline(results.values(arms[0], metric).mean(), color="C3", ls="--", lw=1,
                   label="baseline mean")
        ax.axvline(start[metric], color="C2", ls=":", lw=1.5, label="start")
        ax.set_xlabel(f"{label} ({'higher' if higher else 'lower'} is better)")
        ax.grid(alpha=0.3, axis="x")
    axes[0].set_yticks(range(len(arms)), arms)
    axes[0].invert_yaxis()
    axes[-1].legend(fontsize=8, loc="best")
    n = len(results.size.seeds)
    fig.suptitle(title or f"Mode-collapse mitigations: mean +- sd over {n} seeds (dots: seeds)")
    fig.tight_layout()
    return fig


def arm_descriptions(arms: Mapping[str, GameSettings]) -> dict[str, str]:
    """``{arm: "what it changes"}``, e.g. ``"real_label: 1.0 -> 0.9"``, for the baseline
    ``"g_steps=5, ..."`` (its settings)."""
    items = list(arms.items())
    base_name, base = items[0]
    out = {base_name: ", ".join(f"{f.name}={getattr(base, f.name)}"
                                for f in dataclasses.fields(base))}
    for name, settings in items[1:]:
        out[name] = "; ".join(f"{k}: {a} -> {b}" for k, (a, b) in
                              settings.changes_from(base).items())
    return out


def describe_arms(arms: Mapping[str, GameSettings] | None = None) -> str:
    """The arms as text, one per line (what the notebook prints before running them)."""
    desc = arm_descriptions(arms or mitigation_arms())
    return "\n".join(f"{name:<22s} {what}" for name, what in desc.items())

