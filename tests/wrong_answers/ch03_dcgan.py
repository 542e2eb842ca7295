"""Wrong and right-but-unusual answers to chapter 03's exercises.

* ``gan_d_loss``: ``discriminator_loss(real_logits, fake_logits, real_label=1.0)``, the BCE of
  real logits against ``real_label`` plus the BCE of fake logits against 0, each averaged.
* ``gan_g_loss``: ``generator_loss(fake_logits, kind="non_saturating")``: softplus(-l) averaged
  (non-saturating) or -softplus(l) averaged (minimax); an unknown kind is an error.
* ``gan_train_step``: ``train_step(G, D, opt_g, opt_d, real, z, real_label=1.0,
  g_loss_kind="non_saturating")``: one D step on real and detached G(z), then one G step
  through the updated D; returns detached 0-dim tensors d_loss, g_loss, d_real, d_fake.
* ``gan_debug_generator`` / ``gan_debug_step``: the fixed versions of the notebook's broken
  generator and training step (no options; the step returns d_loss and g_loss).

Most wrong training steps come from :func:`make_step`, the right step with ONE mistake
switched on; each entry's comment says which mistake it models.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from course_utils.checks.ch03_dcgan import DebugGenerator
from course_utils.losses import discriminator_loss, generator_loss

Factory = Callable[[], Any]
bce = F.binary_cross_entropy_with_logits


# ----------------------------------------------------------------------------- gan_d_loss

def _d_sigmoid_then_logits(r: Tensor, f: Tensor, real_label: float = 1.0) -> Tensor:
    """Turns the logits into probabilities, then calls the *_with_logits loss on them."""
    r, f = torch.sigmoid(r), torch.sigmoid(f)
    return bce(r, torch.full_like(r, real_label)) + bce(f, torch.zeros_like(f))


def _d_log_of_sigmoid(r: Tensor, f: Tensor, real_label: float = 1.0) -> Tensor:
    """Writes the formula with probabilities: log(sigmoid) overflows for confident logits."""
    dr, df = torch.sigmoid(r), torch.sigmoid(f)
    return (-(real_label * torch.log(dr) + (1 - real_label) * torch.log(1 - dr)).mean()
            - torch.log(1 - df).mean())


def _d_bce_on_probabilities(r: Tensor, f: Tensor, real_label: float = 1.0) -> Tensor:
    """F.binary_cross_entropy on sigmoid outputs: clamps log(0) at -100 instead of being exact."""
    dr, df = torch.sigmoid(r), torch.sigmoid(f)
    return (F.binary_cross_entropy(dr, torch.full_like(dr, real_label))
            + F.binary_cross_entropy(df, torch.zeros_like(df)))


def _d_concatenated(r: Tensor, f: Tensor, real_label: float = 1.0) -> Tensor:
    """One BCE over both batches together: the factor-of-2 slip (mean over B + B')."""
    logits = torch.cat([r, f])
    targets = torch.cat([torch.full_like(r, real_label), torch.zeros_like(f)])
    return bce(logits, targets)


def _d_cpu_targets(r: Tensor, f: Tensor, real_label: float = 1.0) -> Tensor:
    """Targets built with torch.ones(n) / torch.zeros(n): on the CPU whatever the logits' device."""
    return bce(r, torch.ones(len(r)) * real_label) + bce(f, torch.zeros(len(f)))


def _d_in_place(r: Tensor, f: Tensor, real_label: float = 1.0) -> Tensor:
    """Flips the fake logits in place to reuse the 'real' formula: changes D's output tensor."""
    return bce(r, torch.full_like(r, real_label)) + bce(f.neg_(), torch.ones_like(f))


def _d(real_target: Callable[[float], float] = lambda y: y, fake_target: Callable[[float], float]
       = lambda y: 0.0, scale_real: bool = False, combine: Callable[[Tensor, Tensor], Tensor]
       = lambda a, b: a + b, reduction: str = "mean") -> Factory:
    """A D loss with one knob turned: targets, how real_label enters, how sides combine."""
    def loss(r: Tensor, f: Tensor, real_label: float = 1.0) -> Tensor:
        tr = 1.0 if scale_real else real_target(real_label)
        lr = bce(r, torch.full_like(r, tr), reduction=reduction)
        lf = bce(f, torch.full_like(f, fake_target(real_label)), reduction=reduction)
        return combine(real_label * lr if scale_real else lr, lf)
    return lambda: loss


WRONG_D: list[tuple[str, Factory]] = [
    ("sigmoid_then_bce_with_logits", lambda: _d_sigmoid_then_logits),
    ("log_of_sigmoid", lambda: _d_log_of_sigmoid),
    ("bce_on_probabilities", lambda: _d_bce_on_probabilities),
    # two-sided label smoothing: the fakes' target becomes 1 - real_label (0.1)
    ("two_sided_smoothing", _d(fake_target=lambda y: 1 - y)),
    # real and fake sides swapped
    ("sides_swapped", lambda: lambda r, f, real_label=1.0: discriminator_loss(f, r, real_label)),
    # real_label accepted but never used
    ("ignores_real_label", lambda: lambda r, f, real_label=1.0: discriminator_loss(r, f)),
    # real_label used as a weight on the real side's loss, not as its target
    ("smoothing_scales_the_loss", _d(scale_real=True)),
    # real images' target set to 1 - real_label (0.1): smoothing read backwards
    ("real_target_one_minus_label", _d(real_target=lambda y: 1 - y)),
    ("one_bce_over_concatenation", lambda: _d_concatenated),
    # the two sides averaged, (L_real + L_fake) / 2
    ("sides_averaged", _d(combine=lambda a, b: (a + b) / 2)),
    ("summed_not_averaged", _d(reduction="sum")),
    # returns V itself (what D maximises) instead of the loss it minimises
    ("wrong_sign", _d(combine=lambda a, b: -(a + b))),
    ("targets_on_cpu", lambda: _d_cpu_targets),
    ("modifies_logits_in_place", lambda: _d_in_place),
    # .item() 'to get the number': a float, cut off from autograd
    ("returns_python_float",
     lambda: lambda r, f, real_label=1.0: discriminator_loss(r, f, real_label).item()),
]


def _d_weighted_single_call(r: Tensor, f: Tensor, real_label: float = 1.0) -> Tensor:
    """ONE BCE call, made right with per-example weights 1/B and 1/B' and a sum."""
    logits = torch.cat([r, f])
    targets = torch.cat([torch.full_like(r, real_label), torch.zeros_like(f)])
    weights = torch.cat([torch.full_like(r, 1 / len(r)), torch.full_like(f, 1 / len(f))])
    return bce(logits, targets, weight=weights, reduction="sum")


RIGHT_D: list[tuple[str, Factory]] = [
    ("bce_module", lambda: lambda r, f, real_label=1.0: nn.BCEWithLogitsLoss()(
        r, real_label * torch.ones_like(r)) + nn.BCEWithLogitsLoss()(f, torch.zeros_like(f))),
    ("softplus_by_hand", lambda: lambda r, f, real_label=1.0: (
        real_label * F.softplus(-r) + (1 - real_label) * F.softplus(r)).mean()
        + F.softplus(f).mean()),
    ("logsigmoid_by_hand", lambda: lambda r, f, real_label=1.0: -(
        real_label * F.logsigmoid(r) + (1 - real_label) * F.logsigmoid(-r)).mean()
        - F.logsigmoid(-f).mean()),
    ("weighted_single_bce_call", lambda: _d_weighted_single_call),
    ("targets_with_device_argument", lambda: lambda r, f, real_label=1.0: bce(
        r, torch.full((len(r),), real_label, device=r.device))
        + bce(f, torch.zeros(len(f), device=f.device))),
]


# ----------------------------------------------------------------------------- gan_g_loss

def _g(ns: Callable[[Tensor], Tensor], mm: Callable[[Tensor], Tensor],
       strict: bool = True) -> Factory:
    """A G loss from two per-example formulas; ``strict`` raises on an unknown kind."""
    def loss(f: Tensor, kind: str = "non_saturating") -> Tensor:
        if kind == "minimax":
            return mm(f).mean()
        if kind == "non_saturating" or not strict:
            return ns(f).mean()
        raise ValueError(f"unknown kind {kind!r}")
    return lambda: loss


def _ns(f: Tensor) -> Tensor:
    return F.softplus(-f)


def _mm(f: Tensor) -> Tensor:
    return -F.softplus(f)


WRONG_G: list[tuple[str, Factory]] = [
    # probabilities where logits are expected
    ("sigmoid_then_softplus", _g(lambda f: _ns(torch.sigmoid(f)), lambda f: _mm(torch.sigmoid(f)))),
    ("log_of_sigmoid", _g(lambda f: -torch.log(torch.sigmoid(f)),
                          lambda f: torch.log(1 - torch.sigmoid(f)))),
    # the minimax loss where the non-saturating one is asked (kind ignored)
    ("always_minimax", _g(_mm, _mm)),
    ("always_non_saturating", _g(_ns, _ns)),
    ("kinds_swapped", _g(_mm, _ns)),
    ("wrong_sign", _g(lambda f: -_ns(f), lambda f: -_mm(f))),
    ("summed_not_averaged", lambda: lambda f, kind="non_saturating": (
        _ns(f) if kind == "non_saturating" else _mm(f)).sum()),
    # BCE towards the 'fake' label 0: trains G to make D call its fakes fake
    ("towards_fake_label", _g(lambda f: bce(f, torch.zeros_like(f), reduction="none"), _mm)),
    # minimax written as log D(G(z)) instead of log(1 - D(G(z)))
    ("minimax_as_log_d", _g(_ns, lambda f: -_ns(f))),
    # minimax written as -log(1 - D(G(z))): the discriminator's fake-side loss
    ("minimax_sign_flipped", _g(_ns, lambda f: -_mm(f))),
    ("unknown_kind_accepted", _g(_ns, _mm, strict=False)),
    # .item() 'to get the number': a float, cut off from autograd
    ("returns_python_float", lambda: lambda f, kind="non_saturating": generator_loss(
        f.detach(), kind).item()),
    # target of ones built on the CPU
    ("targets_on_cpu", _g(lambda f: bce(f, torch.ones(len(f)), reduction="none"), _mm)),
    # flips the logits in place to reuse one formula: changes D's output tensor
    ("modifies_logits_in_place", _g(lambda f: F.softplus(f.neg_()), _mm)),
]

RIGHT_G: list[tuple[str, Factory]] = [
    ("bce_with_logits_both", _g(lambda f: bce(f, torch.ones_like(f), reduction="none"),
                                lambda f: -bce(f, torch.zeros_like(f), reduction="none"))),
    ("logsigmoid_both", _g(lambda f: -F.logsigmoid(f), lambda f: F.logsigmoid(-f))),
    ("dict_dispatch_key_error", lambda: lambda f, kind="non_saturating": {
        "non_saturating": lambda: F.softplus(-f).mean(),
        "minimax": lambda: -F.softplus(f).mean()}[kind]()),
    ("bce_module", lambda: lambda f, kind="non_saturating": nn.BCEWithLogitsLoss()(
        f, torch.ones_like(f)) if kind == "non_saturating" else -nn.BCEWithLogitsLoss()(
        f, torch.zeros_like(f)) if kind == "minimax" else (_ for _ in ()).throw(
        ValueError(kind))),
]


# ----------------------------------------------------------------------------- training steps

def make_step(*, zero_d: bool = True, zero_g: bool = True, zero_at_top: bool = False,
              detach: bool = True, refresh_fake: bool = False, retain_graph: bool = False,
              g_optimizer: str = "g", d_on_noise: bool = False, g_target_zero: bool = False,
              two_sided: bool = False, cpu_labels: bool = False, g_first: bool = False,
              honour_kind: bool = True, honour_label: bool = True, sigmoid_first: bool = False,
              detach_outputs: bool = True, floats: bool = False, stale_d: bool = False,
              logit_means: bool = False, swap_players: bool = False,
              real_fake_swapped: bool = False) -> Callable[..., dict[str, Any]]:
    """The right training step with the mistakes named by the keyword arguments."""
    def targets(like: Tensor, value: float) -> Tensor:
        return torch.full((len(like),), value) if cpu_labels else torch.full_like(like, value)

    def loss_d(real_logits: Tensor, fake_logits: Tensor, label: float) -> Tensor:
        if sigmoid_first:
            real_logits, fake_logits = torch.sigmoid(real_logits), torch.sigmoid(fake_logits)
        if real_fake_swapped:
            real_logits, fake_logits = fake_logits, real_logits
        fake_target = 0.1 if two_sided else 0.0
        return (bce(real_logits, targets(real_logits, label))
                + bce(fake_logits, targets(fake_logits, fake_target)))

    def loss_g(logits: Tensor, kind: str) -> Tensor:
        if sigmoid_first:
            logits = torch.sigmoid(logits)
        if g_target_zero:
            return bce(logits, targets(logits, 0.0))
        if kind == "non_saturating":
            return bce(logits, targets(logits, 1.0))
        return generator_loss(logits, kind)

    def step(G: nn.Module, D: nn.Module, opt_g: torch.optim.Optimizer,
             opt_d: torch.optim.Optimizer, real: Tensor, z: Tensor, real_label: float = 1.0,
             g_loss_kind: str = "non_saturating") -> dict[str, Any]:
        label = real_label if honour_label else 1.0
        kind = g_loss_kind if honour_kind else "minimax"
        if zero_at_top:
            if zero_d:
                opt_d.zero_grad()
            if zero_g:
                opt_g.zero_grad()
        fake = G(z)
        early_g_logits = D(fake) if stale_d else None
        out: dict[str, Any] = {}

        def d_block() -> None:
            seen = torch.rand_like(real) * 2 - 1 if d_on_noise else (
                fake.detach() if detach else fake)
            real_logits, fake_logits = D(real), D(seen)
            d_loss = loss_d(real_logits, fake_logits, label)
            if swap_players:
                d_loss = loss_g(fake_logits, kind)
            if zero_d and not zero_at_top:
                opt_d.zero_grad()
            d_loss.backward(retain_graph=retain_graph)
            opt_d.step()
            mean = (lambda t: t.mean()) if logit_means else (lambda t: torch.sigmoid(t).mean())
            out.update(d_loss=d_loss, d_real=mean(real_logits), d_fake=mean(fake_logits))

        def g_block() -> None:
            logits = early_g_logits if stale_d else D(G(z) if refresh_fake else fake)
            g_loss = loss_g(logits, kind)
            if swap_players:
                g_loss = loss_d(D(real), logits, label)
            if zero_g and not zero_at_top:
                opt_g.zero_grad()
            g_loss.backward()
            (opt_d if g_optimizer == "d" else opt_g).step()
            out["g_loss"] = g_loss

        for block in ((g_block, d_block) if g_first else (d_block, g_block)):
            block()
        if floats:
            return {k: v.detach().item() for k, v in out.items()}
        return {k: v.detach() if detach_outputs else v for k, v in out.items()}
    return step


def _wrong_steps(without_options: bool) -> list[tuple[str, Factory]]:
    def f(**mistakes: Any) -> Factory:
        if not without_options:
            return lambda: make_step(**mistakes)

        def factory() -> Callable[..., dict[str, Any]]:
            inner = make_step(**mistakes)
            return lambda G, D, opt_g, opt_d, real, z: inner(G, D, opt_g, opt_d, real, z)
        return factory

    return [
        ("missing_opt_d_zero_grad", f(zero_d=False)),
        ("missing_opt_g_zero_grad", f(zero_g=False)),
        ("missing_both_zero_grads", f(zero_d=False, zero_g=False)),
        # D's fake side on G(z) without detach, in the taught order: backward twice
        ("no_detach", f(detach=False)),
        # ...with retain_graph=True to silence that error: D's loss still reaches G's .grad
        ("no_detach_retain_graph", f(detach=False, retain_graph=True)),
        # zero_grad of both at the top and no detach, G(z) recomputed for G's step
        ("no_detach_zero_grads_at_top", f(detach=False, zero_at_top=True, refresh_fake=True)),
        # the generator's backward pass followed by opt_d.step()
        ("opt_d_steps_for_the_generator", f(g_optimizer="d")),
        ("g_trained_towards_label_0", f(g_target_zero=True)),
        ("d_trained_on_raw_noise", f(d_on_noise=True)),
        # labels made with torch.full((n,), v): on the CPU whatever the data's device
        ("labels_on_cpu", f(cpu_labels=True)),
        # two-sided label smoothing in the step: the fakes get target 0.1
        ("two_sided_labels", f(two_sided=True)),
        ("g_step_before_d_step", f(g_first=True)),
        # G's logits computed before D's update, used after it
        ("g_loss_on_stale_d", f(stale_d=True)),
        ("sigmoid_then_bce_with_logits", f(sigmoid_first=True)),
        # D's targets swapped: real images -> 0, G(z) -> 1
        ("d_targets_swapped", f(real_fake_swapped=True)),
        # each player minimises the other's loss
        ("players_swapped", f(swap_players=True)),
    ]


WRONG_TRAIN_STEP: list[tuple[str, Factory]] = _wrong_steps(without_options=False) + [
    # the minimax loss whatever g_loss_kind asks for
    ("always_minimax", lambda: make_step(honour_kind=False)),
    ("ignores_real_label", lambda: make_step(honour_label=False)),
    ("returns_undetached_losses", lambda: make_step(detach_outputs=False)),
    ("returns_python_floats", lambda: make_step(floats=True)),
    ("d_real_as_mean_logit", lambda: make_step(logit_means=True)),
]

WRONG_DEBUG_STEP: list[tuple[str, Factory]] = _wrong_steps(without_options=True)


def _step_module_zero_grad(G: nn.Module, D: nn.Module, opt_g: Any, opt_d: Any, real: Tensor,
                           z: Tensor, real_label: float = 1.0,
                           g_loss_kind: str = "non_saturating") -> dict[str, Tensor]:
    """Module.zero_grad(set_to_none=False), nn.BCEWithLogitsLoss, one D call on both batches."""
    criterion = nn.BCEWithLogitsLoss()
    fake = G(z)
    logits = D(torch.cat([real, fake.detach()]))
    real_logits, fake_logits = logits[:len(real)], logits[len(real):]
    d_loss = (criterion(real_logits, torch.full_like(real_logits, real_label))
              + criterion(fake_logits, torch.zeros_like(fake_logits)))
    D.zero_grad(set_to_none=False)
    d_loss.backward()
    opt_d.step()
    g_loss = generator_loss(D(fake), kind=g_loss_kind)
    G.zero_grad(set_to_none=False)
    g_loss.backward()
    opt_g.step()
    return {"d_loss": d_loss.detach(), "g_loss": g_loss.detach(),
            "d_real": torch.sigmoid(real_logits).mean().detach(),
            "d_fake": torch.sigmoid(fake_logits).mean().detach()}


def _step_frozen(G: nn.Module, D: nn.Module, opt_g: Any, opt_d: Any, real: Tensor, z: Tensor,
                 **options: Any) -> dict[str, Tensor]:
    """**kwargs signature; fakes for D made under no_grad; D frozen during G's step."""
    with torch.no_grad():
        fake_for_d = G(z)
    real_logits, fake_logits = D(real), D(fake_for_d)
    d_loss = discriminator_loss(real_logits, fake_logits, options.get("real_label", 1.0))
    opt_d.zero_grad(set_to_none=False)
    d_loss.backward()
    opt_d.step()
    D.requires_grad_(False)
    try:
        g_loss = generator_loss(D(G(z)), options.get("g_loss_kind", "non_saturating"))
        opt_g.zero_grad()
        g_loss.backward()
        opt_g.step()
    finally:
        D.requires_grad_(True)
    with torch.no_grad():
        return {"d_loss": d_loss.detach(), "g_loss": g_loss.detach(),
                "d_real": torch.sigmoid(real_logits).mean(),
                "d_fake": torch.sigmoid(fake_logits).mean()}


RIGHT_TRAIN_STEP: list[tuple[str, Factory]] = [
    ("module_zero_grad_bce_module_one_d_call", lambda: _step_module_zero_grad),
    ("no_grad_fakes_and_frozen_d", lambda: _step_frozen),
    # both zero_grad calls at the top of the step, with the detach: also right
    ("zero_grads_at_top", lambda: make_step(zero_at_top=True)),
]

RIGHT_DEBUG_STEP: list[tuple[str, Factory]] = [
    ("zero_grads_at_top", lambda: lambda G, D, opt_g, opt_d, real, z: make_step(
        zero_at_top=True)(G, D, opt_g, opt_d, real, z)),
    ("no_grad_fakes_and_frozen_d", lambda: lambda G, D, opt_g, opt_d, real, z: _step_frozen(
        G, D, opt_g, opt_d, real, z)),
    ("bce_module_one_d_call", lambda: lambda G, D, opt_g, opt_d, real, z: _step_module_zero_grad(
        G, D, opt_g, opt_d, real, z)),
]


# ----------------------------------------------------------------------------- debug generator

class _ThreeChannels(DebugGenerator):
    """Planted bug kept: 3 output channels for 1-channel images."""

    def __init__(self, latent_dim: int = 16, width: int = 8) -> None:
        super().__init__(latent_dim, width)
        self.up2 = nn.ConvTranspose2d(width, 3, 4, 2, 1)


class _SigmoidOut(DebugGenerator):
    """Planted bug kept: a sigmoid output, [0, 1], for data in [-1, 1]."""

    def __init__(self, latent_dim: int = 16, width: int = 8) -> None:
        super().__init__(latent_dim, width)
        self.out = nn.Sigmoid()


class _UnusedBN(DebugGenerator):
    """Planted bug kept: bn1 is built but never called."""

    def forward(self, z: Tensor) -> Tensor:
        h = F.relu(self.bn0(self.project(z))).view(-1, 2 * self.width, 7, 7)
        return self.out(self.up2(F.relu(self.up1(h))))


class _NoOutputActivation(DebugGenerator):
    """Removes the sigmoid and calls nothing instead: unbounded outputs, self.out unused."""

    def forward(self, z: Tensor) -> Tensor:
        h = F.relu(self.bn0(self.project(z))).view(-1, 2 * self.width, 7, 7)
        return self.up2(F.relu(self.bn1(self.up1(h))))


class _TanhRescaled(DebugGenerator):
    """tanh, then mapped to [0, 1] 'like images': the data are in [-1, 1]."""

    def forward(self, z: Tensor) -> Tensor:
        return (super().forward(z) + 1) / 2


class _ReluOut(DebugGenerator):
    """A ReLU output layer: no negative pixels, while the data go down to -1."""

    def __init__(self, latent_dim: int = 16, width: int = 8) -> None:
        super().__init__(latent_dim, width)
        self.out = nn.ReLU()


WRONG_DEBUG_GENERATOR: list[tuple[str, Factory]] = [
    ("three_channels", lambda: _ThreeChannels),
    ("sigmoid_output", lambda: _SigmoidOut),
    ("bn1_never_called", lambda: _UnusedBN),
    ("no_output_activation", lambda: _NoOutputActivation),
    ("tanh_rescaled_to_0_1", lambda: _TanhRescaled),
    ("relu_output", lambda: _ReluOut),
]


class _FunctionalTanh(DebugGenerator):
    """Drops the ``out`` layer and applies torch.tanh in forward: right."""

    def __init__(self, latent_dim: int = 16, width: int = 8) -> None:
        super().__init__(latent_dim, width)
        del self.out

    def forward(self, z: Tensor) -> Tensor:
        h = F.relu(self.bn0(self.project(z))).view(-1, 2 * self.width, 7, 7)
        return torch.tanh(self.up2(F.relu(self.bn1(self.up1(h)))))


class _Sequential(nn.Module):
    """The same network as one nn.Sequential with its own layer names: right."""

    def __init__(self, latent_dim: int = 16, width: int = 8) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.net = nn.Sequential(
            nn.Linear(latent_dim, 2 * width * 49, bias=False), nn.BatchNorm1d(2 * width * 49),
            nn.ReLU(), nn.Unflatten(1, (2 * width, 7, 7)),
            nn.ConvTranspose2d(2 * width, width, 4, 2, 1, bias=False), nn.BatchNorm2d(width),
            nn.ReLU(), nn.ConvTranspose2d(width, 1, 4, 2, 1), nn.Tanh())

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z)


RIGHT_DEBUG_GENERATOR: list[tuple[str, Factory]] = [
    ("functional_tanh", lambda: _FunctionalTanh),
    ("sequential_rewrite", lambda: _Sequential),
]


# ----------------------------------------------------------------------------- registry

WRONG: dict[str, list[tuple[str, Factory]]] = {
    "gan_d_loss": WRONG_D,
    "gan_g_loss": WRONG_G,
    "gan_train_step": WRONG_TRAIN_STEP,
    "gan_debug_generator": WRONG_DEBUG_GENERATOR,
    "gan_debug_step": WRONG_DEBUG_STEP,
}

RIGHT: dict[str, list[tuple[str, Factory]]] = {
    "gan_d_loss": RIGHT_D,
    "gan_g_loss": RIGHT_G,
    "gan_train_step": RIGHT_TRAIN_STEP,
    "gan_debug_generator": RIGHT_DEBUG_GENERATOR,
    "gan_debug_step": RIGHT_DEBUG_STEP,
}


class _StubGenerator(nn.Module):
    """The student version of the fixed generator: its body raises NotImplementedError."""

    def __init__(self, latent_dim: int = 16, width: int = 8) -> None:
        raise NotImplementedError("gan_debug_generator")


STUB: dict[str, Factory] = {"gan_debug_generator": lambda: _StubGenerator}
