"""Kernel side of chapter 03's checks: the probes, and the inputs both halves rebuild.

Each probe calls the learner's object on inputs built from a :class:`~.protocol.Case`, inside
a forked random state (the notebook's own stream is untouched), and records what came out as
plain data; the judges in :mod:`.ch03_dcgan` and :mod:`.ch03_steps` rebuild the same inputs,
compute the reference and decide.

* the losses: values on seeded logits (each call on fresh copies, so that the inputs after
  the call can be compared), the gradients with respect to the logits, the values at extreme
  logits, and what a call on the "meta" device raised;
* the training steps: two steps in a row on two tiny seeded models, the first with junk
  already sitting in every ``.grad``. Spies on both optimizers record how often each stepped,
  in which order, and the generator's weights and ``.grad`` when ``opt_d.step()`` ran; after
  each step both models' weights and the returned values are recorded. A run on the "meta"
  device records what it raised (a label built on the CPU fails there as on a GPU);
* the debug generator: which leaf modules forward runs, its output in training and in
  evaluation mode, which parameters get a gradient, and its weights (``state_dict``), which
  the judge loads into the fixed architecture to recompute the outputs.

Cases that are ``hidden`` record extra runs (other sizes, labels and kinds) for the grader's
hidden judges; the public check does not spend time on them.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from .probe_data import case_seed, grad_array, tensor_record
from .protocol import Case, sanitise

LATENT = 8
KIND_ARG = "g_loss_kind"        # the training step's keyword for the generator loss's kind
G_KINDS = ("non_saturating", "minimax")
STEP_KEYS = ("d_loss", "g_loss", "d_real", "d_fake")
STEP_LR = 0.5                   # SGD (not Adam): every wrong gradient shows in the weights
GEN_ARGS = {"latent_dim": 16, "width": 8}
GEN_BATCH, GEN_EVAL_BATCH = 8, 5
MAX_STATE_VALUES = 1_000_000    # a generator with more weights than this is not recorded
GRAPH_ERRORS = {"backward_twice": "backward through the graph a second time",
                "inplace": "modified by an inplace operation"}


# ----------------------------------------------------------------------------- tiny models

class TinyG(nn.Module):
    """Linear generator: (B, 8) -> (B, 1, 28, 28) in [-1, 1]."""

    def __init__(self) -> None:
        super().__init__()
        self.latent_dim = LATENT
        self.fc = nn.Linear(LATENT, 28 * 28)

    def forward(self, z: Tensor) -> Tensor:
        return torch.tanh(self.fc(z)).view(-1, 1, 28, 28)                    # (B, 1, 28, 28)


class TinyD(nn.Module):
    """Two-layer discriminator: (B, 1, 28, 28) -> logits (B,)."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(784, 16), nn.LeakyReLU(0.2),
                                 nn.Linear(16, 1))

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 4 or tuple(x.shape[1:]) != (1, 28, 28):
            raise ValueError(f"the discriminator expects images (B, 1, 28, 28), got "
                             f"{tuple(x.shape)}: it should see real images and G(z)")
        return self.net(x).flatten()                                          # (B,)


@contextlib.contextmanager
def one_thread_block() -> Iterator[None]:
    """Run PyTorch on one thread: on tensors this small, waking a second thread costs far more
    than the work (milliseconds per operation on a busy machine, instead of microseconds)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Run a block with PyTorch's CPU random stream seeded, leaving the notebook's random
    streams (PyTorch's CPU stream, NumPy's and Python's) as they were. Lighter than
    ``training.preserve_rng``, which also seeds and restores every accelerator's stream."""
    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(seed)
            yield
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)


def one_thread(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Decorator: run a probe or a judge under :func:`one_thread_block`."""
    @functools.wraps(fn)
    def run(*args: Any) -> Any:
        with one_thread_block():
            return fn(*args)
    return run


# ----------------------------------------------------------------------------- inputs

def _smooth_label(case: Case, offset: int, public: float) -> float:
    """``public`` for the public case; for a hidden case a label drawn in [0.75, 0.95]."""
    if not case.hidden:
        return public
    return round(0.75 + 0.2 * float(torch.rand(1, generator=case.generator(offset))), 2)


def _extreme(case: Case, offset: int) -> float:
    """The size of the extreme logits: 60 for the public case, 40 to 80 for a hidden one."""
    if not case.hidden:
        return 60.0
    return float(torch.randint(40, 81, (1,), generator=case.generator(offset)))


@dataclass(frozen=True)
class LossRun:
    """One set of logits for a loss probe: sizes, the smoothed label, extreme logits."""

    offset: int
    n_real: int               # the number of fake logits, for the generator loss
    n_fake: int
    label: float
    extreme: float


def d_loss_runs(case: Case) -> tuple[list[LossRun], list[LossRun]]:
    """The discriminator-loss runs of a case: (public judge's, hidden judges')."""
    def run(i: int, n_real: int, n_fake: int, label: float) -> LossRun:
        return LossRun(100 + 10 * i, n_real, n_fake, _smooth_label(case, 100 + 10 * i, label),
                       _extreme(case, 101 + 10 * i))
    extra = [run(1, 7, 3, 0.8), run(2, 1, 5, 0.95)] if case.hidden else []
    return [run(0, 32, 32, 0.9)], extra


def g_loss_runs(case: Case) -> tuple[list[LossRun], list[LossRun]]:
    """The generator-loss runs of a case: (public judge's, hidden judges')."""
    def run(i: int, n: int) -> LossRun:
        return LossRun(200 + 10 * i, n, 0, 1.0, _extreme(case, 201 + 10 * i))
    return [run(0, 64)], ([run(1, 1), run(2, 9)] if case.hidden else [])


def loss_logits(case: Case, run: LossRun) -> tuple[Tensor, Tensor]:
    """Seeded logits (n_real,) and (n_fake,), like a discriminator's outputs."""
    gen = case.generator(run.offset + 5)
    return torch.randn(run.n_real, generator=gen) * 3, torch.randn(run.n_fake, generator=gen) * 3


@dataclass(frozen=True)
class StepRun:
    """One two-step run of a training step: its models' seed, batch size and options."""

    offset: int
    batch: int
    kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def options(self) -> tuple[float, str]:
        """(real_label, kind) as the reference step takes them."""
        return (float(self.kwargs.get("real_label", 1.0)),
                str(self.kwargs.get(KIND_ARG, "non_saturating")))


def step_runs(case: Case, with_options: bool) -> tuple[list[StepRun], list[StepRun]]:
    """The runs of a case: (public judge's, hidden judges'). ``with_options``: the step
    takes ``real_label`` and ``g_loss_kind`` (``gan_train_step``; not ``gan_debug_step``)."""
    if not with_options:
        return [StepRun(0, 6)], ([StepRun(1, 5)] if case.hidden else [])
    main = [StepRun(0, 6), StepRun(1, 6, {"real_label": _smooth_label(case, 301, 0.9),
                                          KIND_ARG: "minimax"})]
    extra = [StepRun(2, 3, {"real_label": _smooth_label(case, 302, 0.8)}),
             StepRun(3, 9, {KIND_ARG: "minimax"})] if case.hidden else []
    return main, extra


def step_setup(case: Case, run: StepRun) -> tuple[TinyG, TinyD, list[Tensor], list[Tensor],
                                                  list[tuple[Tensor, Tensor]]]:
    """Seeded models, the junk .grad of each (G's, D's) and two batches (real, z)."""
    with seeded(case_seed(case, 300 + run.offset)):
        G, D = TinyG(), TinyD()
    gen = case.generator(310 + run.offset)
    junk_g = [torch.randn(p.shape, generator=gen) for p in G.parameters()]
    junk_d = [torch.randn(p.shape, generator=gen) for p in D.parameters()]
    batches = [(torch.rand(run.batch, 1, 28, 28, generator=gen) * 2 - 1,   # (B, 1, 28, 28)
                torch.randn(run.batch, LATENT, generator=gen))             # (B, 8)
               for _ in range(2)]
    return G, D, junk_g, junk_d, batches


def generator_inputs(case: Case) -> tuple[Tensor, Tensor]:
    """Noise for the debug generator: (8, 16) in training mode, (5, 16) in evaluation mode."""
    gen = case.generator(400)
    return (torch.randn(GEN_BATCH, GEN_ARGS["latent_dim"], generator=gen),
            torch.randn(GEN_EVAL_BATCH, GEN_ARGS["latent_dim"], generator=gen))


# ----------------------------------------------------------------------------- losses

def raised(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> dict[str, str] | None:
    """What ``fn(*args, **kwargs)`` raised (its type and first line), or None."""
    try:
        fn(*args, **kwargs)
    except Exception as exc:  # recorded for the judge, which decides what it means
        lines = str(exc).strip().splitlines()
        return {"error": type(exc).__name__[:60], "message": sanitise(lines[0] if lines else "",
                                                                      200)}
    return None


def _loss_call(fn: Callable[..., Any], logits: tuple[Tensor, ...],
               **kwargs: Any) -> dict[str, Any]:
    """Call the loss on fresh non-leaf copies of ``logits`` (like a discriminator's outputs);
    record its output and the inputs after the call."""
    inputs = [t.clone().requires_grad_() * 1.0 for t in logits]
    out = fn(*inputs, **kwargs)
    return {"out": tensor_record(out), "after": [t.detach().clone() for t in inputs]}


def _loss_grads(fn: Callable[..., Any], logits: tuple[Tensor, ...],
                **kwargs: Any) -> list[Tensor | None] | None:
    """The gradients of the loss with respect to each set of logits (None: no backward)."""
    leaves = [t.clone().requires_grad_() for t in logits]
    out = fn(*(leaf * 1.0 for leaf in leaves), **kwargs)
    if not (isinstance(out, Tensor) and out.numel() == 1 and out.requires_grad):
        return None
    out.backward()
    return [grad_array(leaf) for leaf in leaves]


def _d_loss_record(fn: Callable[..., Any], case: Case, run: LossRun) -> dict[str, Any]:
    """Calls without and with smoothing, at extreme logits, for gradients, on "meta"."""
    real, fake = loss_logits(case, run)
    extreme = torch.tensor([run.extreme, -run.extreme])
    return {"plain": _loss_call(fn, (real, fake)),
            "smooth": _loss_call(fn, (real, fake), real_label=run.label),
            "extreme": tensor_record(fn(extreme, extreme.clone())),
            "grads": _loss_grads(fn, (real, fake)),
            "device": raised(fn, real.to("meta"), fake.to("meta"), real_label=run.label)}


@one_thread
def probe_d_loss(fn: Callable[..., Any], case: Case) -> dict[str, Any]:
    """Record the discriminator loss on the case's logits (see the module docstring)."""
    main, extra = d_loss_runs(case)
    with seeded(case_seed(case, 1)):
        return {"main": [_d_loss_record(fn, case, run) for run in main],
                "extra": [_d_loss_record(fn, case, run) for run in extra]}


def _g_loss_record(fn: Callable[..., Any], case: Case, run: LossRun) -> dict[str, Any]:
    """Calls of each kind and of the default, at extreme logits, for gradients, on "meta",
    and with a misspelt kind."""
    fake, _ = loss_logits(case, run)
    extreme = torch.tensor([-run.extreme, run.extreme])
    return {"kinds": [_loss_call(fn, (fake,), kind=kind) for kind in G_KINDS],
            "default": _loss_call(fn, (fake,)),
            "extreme": [tensor_record(fn(extreme.clone())),
                        tensor_record(fn(extreme.clone(), kind="minimax"))],
            "grads": [_loss_grads(fn, (fake,), kind=kind) for kind in G_KINDS],
            "device": [raised(fn, fake.to("meta"), kind=kind) for kind in G_KINDS],
            "typo": raised(fn, fake.clone(), kind="minmax")}


@one_thread
def probe_g_loss(fn: Callable[..., Any], case: Case) -> dict[str, Any]:
    """Record the generator loss of both kinds on the case's logits."""
    main, extra = g_loss_runs(case)
    with seeded(case_seed(case, 2)):
        return {"main": [_g_loss_record(fn, case, run) for run in main],
                "extra": [_g_loss_record(fn, case, run) for run in extra]}


# ----------------------------------------------------------------------------- training steps

def _params(module: nn.Module) -> list[Tensor]:
    """Copies of the module's parameters."""
    return [p.detach().clone() for p in module.parameters()]


def _grads(module: nn.Module) -> list[Tensor | None]:
    """Copies of the module's .grad fields (None where there is none)."""
    return [None if p.grad is None else p.grad.detach().clone() for p in module.parameters()]


def _spy(opt: torch.optim.Optimizer, before: Callable[[], None]) -> list[int]:
    """Count ``opt.step()`` calls (in the returned one-item list) and run ``before`` ahead of
    each; ``del opt.step`` removes the spy."""
    calls = [0]
    original = opt.step

    def step(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        before()
        return original(*args, **kwargs)

    opt.step = step  # type: ignore[method-assign]
    return calls


def _out_record(out: object) -> dict[str, Any]:
    """What the step returned: its type, its string keys and the checked values."""
    if not isinstance(out, dict):
        return {"type": type(out).__name__[:60], "keys": None, "values": {}}
    return {"type": "dict", "keys": [k[:40] for k in out if isinstance(k, str)][:20],
            "values": {k: tensor_record(out[k]) for k in STEP_KEYS if k in out}}


def _probe_one_step(fn: Callable[..., Any], models: tuple[nn.Module, nn.Module],
                    opts: tuple[torch.optim.Optimizer, torch.optim.Optimizer],
                    batch: tuple[Tensor, Tensor], kwargs: dict[str, Any]) -> dict[str, Any]:
    """One call of the learner's step with spies on both optimizers."""
    G, D = models
    opt_g, opt_d = opts
    seen: dict[str, Any] = {}

    def before_d() -> None:
        seen.setdefault("g_at_d", _params(G))
        seen.setdefault("g_grads_at_d", _grads(G))

    def before_g() -> None:
        seen.setdefault("d_steps_before_g", d_calls[0])

    d_calls, g_calls = _spy(opt_d, before_d), _spy(opt_g, before_g)
    try:
        out = fn(G, D, opt_g, opt_d, batch[0].clone(), batch[1].clone(), **kwargs)
    except RuntimeError as exc:
        for key, needle in GRAPH_ERRORS.items():
            if needle in str(exc):
                return {"graph_error": key}
        raise
    finally:
        del opt_d.step, opt_g.step
    return {"graph_error": None, "d_calls": d_calls[0], "g_calls": g_calls[0],
            "d_steps_before_g": seen.get("d_steps_before_g"), "g_at_d": seen.get("g_at_d"),
            "g_grads_at_d": seen.get("g_grads_at_d"), "out": _out_record(out),
            "g_after": _params(G), "d_after": _params(D)}


def signature_record(fn: Callable[..., Any]) -> dict[str, Any]:
    """The names of the step's parameters and whether it takes ``**kwargs``."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return {"names": None, "var_keyword": False}
    return {"names": [str(n)[:40] for n in params][:30],
            "var_keyword": any(p.kind is p.VAR_KEYWORD for p in params.values())}


def accepts(signature: dict[str, Any], kwargs: dict[str, Any]) -> bool:
    """Whether a step with this signature record takes these keyword arguments."""
    names = signature.get("names")
    return signature.get("var_keyword") is True or not isinstance(names, list) or \
        all(k in names for k in kwargs)


def _probe_step_run(fn: Callable[..., Any], case: Case, run: StepRun,
                    signature: dict[str, Any]) -> dict[str, Any]:
    """Two steps in a row on the run's seeded models (the first with junk in every .grad)."""
    if not accepts(signature, run.kwargs):
        return {"skipped": True, "steps": []}   # the judge reports the signature
    G, D, junk_g, junk_d, batches = step_setup(case, run)
    for module, junk in ((G, junk_g), (D, junk_d)):
        for p, j in zip(module.parameters(), junk, strict=True):
            p.grad = j.clone()
    opts = (torch.optim.SGD(G.parameters(), lr=STEP_LR),
            torch.optim.SGD(D.parameters(), lr=STEP_LR))
    steps = []
    for batch in batches:
        steps.append(_probe_one_step(fn, (G, D), opts, batch, run.kwargs))
        if steps[-1]["graph_error"]:
            break
    return {"skipped": False, "steps": steps}


def _probe_step_device(fn: Callable[..., Any]) -> dict[str, str] | None:
    """Run the step with models and data on the "meta" device; record what it raised."""
    G, D = TinyG().to("meta"), TinyD().to("meta")
    real = torch.empty(4, 1, 28, 28, device="meta")                           # (4, 1, 28, 28)
    z = torch.empty(4, LATENT, device="meta")                                 # (4, 8)
    return raised(fn, G, D, torch.optim.SGD(G.parameters(), lr=STEP_LR),
                  torch.optim.SGD(D.parameters(), lr=STEP_LR), real, z)


def _probe_step(fn: Callable[..., Any], case: Case, with_options: bool) -> dict[str, Any]:
    """The runs of a case, the run on "meta" and (with options) the step's signature."""
    main, extra = step_runs(case, with_options)
    signature = signature_record(fn) if with_options else {"names": None, "var_keyword": False}
    with seeded(case_seed(case, 3)):
        data = {"main": [_probe_step_run(fn, case, run, signature) for run in main],
                "device": _probe_step_device(fn),
                "extra": [_probe_step_run(fn, case, run, signature) for run in extra]}
    return {"signature": signature, **data} if with_options else data


@one_thread
def probe_train_step(fn: Callable[..., Any], case: Case) -> dict[str, Any]:
    """Record two steps in a row for each run of ``gan_train_step``, and a run on "meta"."""
    return _probe_step(fn, case, with_options=True)


@one_thread
def probe_debug_step(fn: Callable[..., Any], case: Case) -> dict[str, Any]:
    """Record two steps in a row for each run of ``gan_debug_step``, and a run on "meta"."""
    return _probe_step(fn, case, with_options=False)


# ----------------------------------------------------------------------------- debug generator

def _float_state(module: nn.Module) -> list[list[Any]] | None:
    """The floating-point entries of ``module.state_dict()`` as [name, values] pairs, in
    order; None when there are more than :data:`MAX_STATE_VALUES` values."""
    entries = [(name, t) for name, t in module.state_dict().items() if t.is_floating_point()]
    if sum(t.numel() for _, t in entries) > MAX_STATE_VALUES:
        return None
    return [[str(name)[:80], t.detach().cpu().float().clone()] for name, t in entries]


def _forward_watched(G: nn.Module, z: Tensor) -> tuple[object, list[str], list[str]]:
    """``G(z)``, the names of G's leaf modules and of those that ran."""
    called: set[str] = set()
    leaves = {name: m for name, m in G.named_modules() if name and not list(m.children())}
    hooks = [m.register_forward_hook(lambda mod, i, o, n=name: called.add(n))
             for name, m in leaves.items()]
    try:
        out = G(z)
    finally:
        for h in hooks:
            h.remove()
    return out, sorted(leaves)[:200], sorted(called)[:200]


@one_thread
def probe_debug_generator(cls: object, case: Case) -> dict[str, Any]:
    """Build the learner's generator, run it in training mode (watching which layers run)
    and in evaluation mode, and record its outputs, gradients and weights."""
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        return {"is_module_class": False}
    z, z_eval = generator_inputs(case)
    with seeded(case_seed(case, 4)):
        G = cls(**GEN_ARGS)
        G.train()
        out, leaves, called = _forward_watched(G, z)
        data: dict[str, Any] = {"is_module_class": True, "leaves": leaves, "called": called,
                                "out": tensor_record(out, torch.float32), "no_grad": None,
                                "state": _float_state(G)}
        if isinstance(out, Tensor) and out.is_floating_point() and out.requires_grad:
            out.mean().backward()
            data["no_grad"] = [n[:80] for n, p in G.named_parameters() if p.grad is None][:50]
        G.eval()
        try:
            with torch.no_grad():
                data["out_eval"] = tensor_record(G(z_eval), torch.float32)
        except Exception as exc:  # reported by the judge after the checks that come first
            data["out_eval"] = {"type": type(exc).__name__[:60], "raised": True}
    return data
