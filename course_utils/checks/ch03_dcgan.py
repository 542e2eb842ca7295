"""Checks for notebook 03_dcgan.

Exercises:

* ``gan_d_loss``: the discriminator loss from logits (with one-sided label smoothing);
* ``gan_g_loss``: the generator loss from logits, non-saturating and minimax;
* ``gan_train_step``: one alternating D-then-G update;
* ``gan_debug_generator`` and ``gan_debug_step``: "debug this broken GAN". The broken code is
  in the notebook; these checks test *behaviour* (shapes, ranges, which layers run, which
  weights each update moves), never the text of the answer.

Every check runs on tiny seeded models in well under a second.
"""

from __future__ import annotations

import copy
import inspect
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..losses import discriminator_loss, generator_loss
from ..training import gan_train_step
from .core import exercise, expect

LATENT = 8


# ----------------------------------------------------------------------------- references

class DebugGenerator(nn.Module):
    """The *fixed* generator of the debugging exercise (the notebook's reference).

    Noise (B, latent_dim) -> images (B, 1, 28, 28) in [-1, 1].
    """

    def __init__(self, latent_dim: int = 16, width: int = 8) -> None:
        super().__init__()
        self.latent_dim, self.width = latent_dim, width
        self.project = nn.Linear(latent_dim, 2 * width * 7 * 7, bias=False)   # (B, 2w*49)
        self.bn0 = nn.BatchNorm1d(2 * width * 7 * 7)
        self.up1 = nn.ConvTranspose2d(2 * width, width, 4, 2, 1, bias=False)  # (B, w, 14, 14)
        self.bn1 = nn.BatchNorm2d(width)
        self.up2 = nn.ConvTranspose2d(width, 1, 4, 2, 1)                     # (B, 1, 28, 28)
        self.out = nn.Tanh()

    def forward(self, z: Tensor) -> Tensor:
        h = F.relu(self.bn0(self.project(z)))                                 # (B, 2w*49)
        h = h.view(-1, 2 * self.width, 7, 7)                                  # (B, 2w, 7, 7)
        h = F.relu(self.bn1(self.up1(h)))                                     # (B, w, 14, 14)
        return self.out(self.up2(h))                                          # (B, 1, 28, 28)


def debug_train_step(G: nn.Module, D: nn.Module, opt_g: torch.optim.Optimizer,
                     opt_d: torch.optim.Optimizer, real: Tensor, z: Tensor) -> dict[str, Tensor]:
    """The *fixed* training step of the debugging exercise: :func:`gan_train_step` as is."""
    return gan_train_step(G, D, opt_g, opt_d, real, z)


# ----------------------------------------------------------------------------- tiny models

class _TinyG(nn.Module):
    """Linear generator: (B, 8) -> (B, 1, 28, 28) in [-1, 1]. No BatchNorm, so that any
    correct ordering of the computations gives exactly the same numbers."""

    def __init__(self) -> None:
        super().__init__()
        self.latent_dim = LATENT
        self.fc = nn.Linear(LATENT, 28 * 28)

    def forward(self, z: Tensor) -> Tensor:
        return torch.tanh(self.fc(z)).view(-1, 1, 28, 28)


class _TinyD(nn.Module):
    """Two-layer discriminator: (B, 1, 28, 28) -> logits (B,). No BatchNorm either."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(784, 16), nn.LeakyReLU(0.2),
                                 nn.Linear(16, 1))

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 4 or tuple(x.shape[1:]) != (1, 28, 28):
            raise ValueError(f"the discriminator expects images (B, 1, 28, 28), got "
                             f"{tuple(x.shape)}")
        return self.net(x).flatten()


class _StepSpy:
    """Wraps an optimizer's ``step`` to count calls and run a callback before each."""

    def __init__(self, opt: torch.optim.Optimizer, before: Callable[[], None] | None = None):
        self.calls = 0
        original = opt.step

        def step(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            if before is not None:
                before()
            return original(*args, **kwargs)

        opt.step = step  # type: ignore[method-assign]


def _setup(seed: int) -> tuple[nn.Module, nn.Module, Tensor, Tensor]:
    torch.manual_seed(seed)
    G, D = _TinyG(), _TinyD()
    gen = torch.Generator().manual_seed(seed + 1)
    real = torch.rand(6, 1, 28, 28, generator=gen) * 2 - 1                   # (6, 1, 28, 28)
    z = torch.randn(6, LATENT, generator=gen)                                 # (6, 8)
    return G, D, real, z


def _sgd(module: nn.Module) -> torch.optim.Optimizer:
    # SGD, not Adam: Adam's first step moves each weight by about lr * sign(grad), which would
    # hide a gradient of the wrong size. With SGD every wrong gradient shows.
    return torch.optim.SGD(module.parameters(), lr=0.5)


def _params(module: nn.Module) -> list[Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def _same(a: list[Tensor], b: list[Tensor], atol: float = 1e-5) -> bool:
    return all(torch.allclose(x, y, atol=atol, rtol=1e-4) for x, y in zip(a, b))


def _check_step(fn: Callable[..., Any], **kwargs: Any) -> None:
    """Behaviour of one D-then-G update against the reference, on tiny seeded models."""
    G, D, real, z = _setup(seed=3)
    g0 = _params(G)
    ref_G, ref_D = copy.deepcopy(G), copy.deepcopy(D)
    opt_g, opt_d = _sgd(G), _sgd(D)
    seen: dict[str, Any] = {}

    def before_d_step() -> None:
        if "g_at_d_step" not in seen:
            seen["g_at_d_step"] = _params(G)
            seen["g_grads_at_d_step"] = [None if p.grad is None else p.grad.detach().clone()
                                         for p in G.parameters()]

    def before_g_step() -> None:
        seen.setdefault("d_steps_before_g", spy_d.calls)

    spy_d, spy_g = _StepSpy(opt_d, before_d_step), _StepSpy(opt_g, before_g_step)
    out = fn(G, D, opt_g, opt_d, real.clone(), z.clone(), **kwargs)

    expect(spy_d.calls == 1, f"opt_d.step() should run exactly once per training step; it ran "
                             f"{spy_d.calls} times")
    expect(spy_g.calls == 1, f"opt_g.step() should run exactly once per training step; it ran "
                             f"{spy_g.calls} times")
    expect(seen.get("d_steps_before_g") == 1, "update the discriminator first, then the generator")
    expect(_same(seen["g_at_d_step"], g0), "the generator's weights changed before the "
                                           "discriminator's update")
    leaked = any(g is not None and g.abs().max() > 0 for g in seen["g_grads_at_d_step"])
    expect(not leaked, "the discriminator's loss sent gradients into the generator: when "
                       "opt_d.step() ran, G's parameters had non-zero .grad")
    expect(isinstance(out, dict) and {"d_loss", "g_loss"} <= set(out),
           "return a dict with at least 'd_loss' and 'g_loss'")
    for key in ("d_loss", "g_loss"):
        v = out[key]
        expect(isinstance(v, Tensor) and v.numel() == 1 and torch.isfinite(v).all(),
               f"{key!r} should be a finite scalar tensor")

    # the reference update on copies of the same models
    ref_opt_g, ref_opt_d = _sgd(ref_G), _sgd(ref_D)
    ref_out = gan_train_step(ref_G, ref_D, ref_opt_g, ref_opt_d, real.clone(), z.clone(), **kwargs)

    with torch.no_grad():                      # D(G(z)) under the updated D, before/after G's step
        before = torch.sigmoid(D(_with_params(_TinyG(), g0)(z))).mean()
        after = torch.sigmoid(D(G(z))).mean()
    expect(bool(after > before),
           "after the generator's update, D should rate G(z) as more real than before; the "
           "generator is being pushed the wrong way (or not at all)")
    expect(torch.allclose(out["d_loss"].detach().reshape(()), ref_out["d_loss"], atol=1e-5),
           "the discriminator loss differs from the expected value: is its fake side computed "
           "on G(z), with the right targets?")
    expect(_same(_params(D), _params(ref_D)),
           "the discriminator's update differs from the expected one: check what its real and "
           "fake sides see and which targets they get")
    expect(torch.allclose(out["g_loss"].detach().reshape(()), ref_out["g_loss"], atol=1e-5),
           "the generator loss differs from the expected value: check its target label")
    expect(_same(_params(G), _params(ref_G)),
           "the generator's update differs from the expected one: it should come only from the "
           "generator loss on D's (already updated) view of G(z)")


def _with_params(module: nn.Module, params: list[Tensor]) -> nn.Module:
    with torch.no_grad():
        for p, v in zip(module.parameters(), params):
            p.copy_(v)
    return module


# ----------------------------------------------------------------------------- checks

def _logits(seed: int, n: int = 64, scale: float = 3.0) -> Tensor:
    return torch.randn(n, generator=torch.Generator().manual_seed(seed)) * scale


@exercise("gan_d_loss", points=2, reference=discriminator_loss,
          hint="Binary cross-entropy on logits: real images have target real_label, fakes have "
               "target 0. Work with logits (F.binary_cross_entropy_with_logits or softplus), "
               "never with log(sigmoid(...)), and average each side over its batch.")
def _check_d_loss(fn: Callable[..., Tensor]) -> None:
    real, fake = _logits(0), _logits(1, n=48)
    r0, f0 = real.clone(), fake.clone()
    out = fn(real, fake)
    expect(isinstance(out, Tensor) and out.ndim == 0, "return a scalar tensor (shape ())")
    expect(torch.equal(real, r0) and torch.equal(fake, f0), "do not modify the input logits")
    expected = -F.logsigmoid(real).mean() - F.logsigmoid(-fake).mean()
    expect(torch.allclose(out, expected, atol=1e-5),
           "the value differs from -[mean log D(x) + mean log(1 - D(G(z)))] on random logits")
    smooth = fn(real, fake, real_label=0.9)
    expected_smooth = (-(0.9 * F.logsigmoid(real) + 0.1 * F.logsigmoid(-real)).mean()
                       - F.logsigmoid(-fake).mean())
    expect(torch.allclose(smooth, expected_smooth, atol=1e-5),
           "with real_label=0.9 only the real images' target should become 0.9 "
           "(one-sided smoothing); fakes keep target 0")
    extreme = fn(torch.tensor([60.0, -60.0]), torch.tensor([60.0, -60.0]))
    expect(torch.isfinite(extreme) and abs(float(extreme) - 60.0) < 1e-3,
           "with logits of +-60 the loss should be 60 exactly but yours is "
           f"{float(extreme):.4g}: compute it from the logits, not from sigmoid probabilities")
    leaf_r, leaf_f = real.clone().requires_grad_(), fake.clone().requires_grad_()
    fn(leaf_r, leaf_f).backward()
    expect(leaf_r.grad is not None and leaf_f.grad is not None,
           "the loss must be differentiable with respect to both sets of logits")
    expect(bool((leaf_r.grad < 0).all() and (leaf_f.grad > 0).all()),
           "raising a real image's logit should lower the loss, and raising a fake's should "
           "raise it")


@exercise("gan_g_loss", points=2, reference=generator_loss,
          hint="Non-saturating: -log D(G(z)) = softplus(-logit). Minimax: log(1 - D(G(z))) = "
               "-softplus(logit). Average over the batch and stay in logit space.")
def _check_g_loss(fn: Callable[..., Tensor]) -> None:
    fake = _logits(2)
    f0 = fake.clone()
    ns = fn(fake)
    expect(isinstance(ns, Tensor) and ns.ndim == 0, "return a scalar tensor (shape ())")
    expect(torch.equal(fake, f0), "do not modify the input logits")
    expect(torch.allclose(ns, -F.logsigmoid(fake).mean(), atol=1e-5),
           "the default (non-saturating) loss differs from -mean log D(G(z))")
    expect(torch.allclose(fn(fake, kind="non_saturating"), ns, atol=1e-6),
           "kind='non_saturating' should be the default")
    mm = fn(fake, kind="minimax")
    expect(torch.allclose(mm, F.logsigmoid(-fake).mean(), atol=1e-5),
           "kind='minimax' differs from mean log(1 - D(G(z)))")
    extreme = torch.tensor([-60.0, 60.0])
    expect(abs(float(fn(extreme)) - 30.0) < 1e-3 and abs(float(fn(extreme, kind="minimax")) + 30.0) < 1e-3,
           "with logits of +-60 the losses are not what they should be: compute them from "
           "logits, not from sigmoid probabilities")
    for kind in ("non_saturating", "minimax"):
        leaf = fake.clone().requires_grad_()
        fn(leaf, kind=kind).backward()
        expect(leaf.grad is not None and bool((leaf.grad < 0).all()),
               f"the {kind} loss should decrease as D(G(z)) rises (negative gradient)")


@exercise("gan_train_step", points=3, reference=gan_train_step,
          hint="Generate fake = G(z) once. D step: real -> real_label, fake.detach() -> 0, then "
               "opt_d.zero_grad(), backward, opt_d.step(). G step: generator loss on D(fake) "
               "(not detached), then opt_g.zero_grad(), backward, opt_g.step().")
def _check_train_step(fn: Callable[..., Any]) -> None:
    params = inspect.signature(fn).parameters
    takes_kwargs = any(p.kind is p.VAR_KEYWORD for p in params.values())
    expect(takes_kwargs or ("real_label" in params and "g_loss_kind" in params),
           "keep the signature train_step(G, D, opt_g, opt_d, real, z, real_label=1.0, "
           "g_loss='non_saturating')")
    _check_step(fn)
    _check_step(fn, real_label=0.9)
    _check_step(fn, g_loss_kind="minimax")
    out = _check_out_keys(fn)
    expect({"d_real", "d_fake"} <= set(out), "also return 'd_real' (mean D(x)) and 'd_fake' "
                                             "(mean D(G(z))) as probabilities")


def _check_out_keys(fn: Callable[..., Any]) -> dict[str, Tensor]:
    G, D, real, z = _setup(seed=5)
    out = fn(G, D, _sgd(G), _sgd(D), real, z)
    for key in ("d_real", "d_fake"):
        if key in out:
            v = float(out[key])
            expect(0.0 <= v <= 1.0, f"{key!r} should be a probability in [0, 1], got {v:.3g}")
    return out


@exercise("gan_debug_generator", points=2, reference=DebugGenerator,
          hint="Compare what the class defines with what forward uses, and what the real "
               "images look like (channels, pixel range) with what the last layers produce.")
def _check_debug_generator(cls: type) -> None:
    expect(isinstance(cls, type) and issubclass(cls, nn.Module),
           "pass the fixed generator class itself (a subclass of nn.Module)")
    torch.manual_seed(0)
    G = cls(latent_dim=16, width=8)
    z = torch.randn(8, 16, generator=torch.Generator().manual_seed(1))
    called: set[str] = set()
    leaves = {name: m for name, m in G.named_modules() if name and not list(m.children())}
    hooks = [m.register_forward_hook(lambda mod, i, o, n=name: called.add(n))
             for name, m in leaves.items()]
    try:
        out = G(z)
    finally:
        for h in hooks:
            h.remove()
    expect(isinstance(out, Tensor), "forward must return a tensor")
    expect(out.ndim == 4 and out.shape[0] == 8 and tuple(out.shape[2:]) == (28, 28),
           f"expected images of shape (8, 1, 28, 28), got {tuple(out.shape)}")
    expect(out.shape[1] == 1, f"Fashion-MNIST images have 1 channel; the generator outputs "
                              f"{out.shape[1]}")
    unused = sorted(set(leaves) - called)
    expect(not unused, f"these layers are defined in __init__ but never used in forward: {unused}")
    lo, hi = float(out.detach().min()), float(out.detach().max())
    expect(lo >= -1.0 and hi <= 1.0 and lo < -0.05,
           f"the real images are scaled to [-1, 1], but the generator's outputs cover "
           f"[{lo:.2f}, {hi:.2f}]: check the output activation")
    out.mean().backward()
    missing = [n for n, p in G.named_parameters() if p.grad is None]
    expect(not missing, f"these parameters get no gradient from the output: {missing}")


@exercise("gan_debug_step", points=3, reference=debug_train_step,
          hint="For each line ask: what does D see on its fake side? Which label does the "
               "generator aim for? Which optimizer steps after the generator's backward pass? "
               "Does the discriminator's loss reach G's weights?")
def _check_debug_step(fn: Callable[..., Any]) -> None:
    _check_step(fn)
