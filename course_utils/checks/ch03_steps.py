"""Judge side of chapter 03's training-step exercises (``gan_train_step``, ``gan_debug_step``),
and the helpers and slip diagnoses the loss judges share.

A training step is judged by what it *did* to two tiny seeded models (recorded by the probes
in :mod:`.ch03_probes`), never by its text. For each run the judge rebuilds the same models,
junk gradients and batches from the case and runs its own reference update,
:func:`expected_step`, twice on them; then, step by step, it compares the recorded data with
that reference:

* the spies: each optimizer stepped once, the discriminator first; when ``opt_d.step()`` ran
  the generator's weights were still those before the step, and its ``.grad`` still what a
  right previous step leaves there (the junk, before the first step) or cleared: anything else
  means the discriminator's loss reached the generator;
* the returned values (detached 0-dim tensors) against the reference's losses, naming the
  usual slip when the discriminator loss differs;
* both models' weights after the step against the reference's, to a tolerance: a missing
  ``zero_grad``, a missing ``detach``, a wrong target, the wrong optimizer or the wrong inputs
  all move some weight differently;
* what the run on the "meta" device raised: a tensor created on the CPU fails there exactly
  as it would on CUDA or MPS.

The loss judges share the helpers of the "loss records" section (a recorded call, its value,
its gradients) and the slips each loss judge names.

The tiny models have no BatchNorm, so every correct ordering of the computations (one or two
forward passes of G, one or two BCE calls, ``zero_grad`` with or without ``set_to_none``)
gives the same numbers.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..losses import discriminator_loss, generator_loss
from .ch03_probes import STEP_LR, StepRun, accepts, step_setup
from .core import expect
from .probe_data import as_array, describe, flag, is_numeric, record, records, same, values
from .protocol import sanitise

ATOL, RTOL = 1e-5, 1e-4          # weights and values after a step (float32 round-off)
_DATA = "the check's data is incomplete or malformed; run the check again from the notebook"


def expected_step(G: nn.Module, D: nn.Module, opt_g: torch.optim.Optimizer,
                  opt_d: torch.optim.Optimizer, real: Tensor, z: Tensor,
                  real_label: float = 1.0, kind: str = "non_saturating") -> dict[str, Tensor]:
    """The checks' own reference update (D on real and detached G(z), then G through D)."""
    fake = G(z)                                                               # (B, 1, 28, 28)
    real_logits, fake_logits = D(real), D(fake.detach())                      # (B,), (B,)
    d_loss = discriminator_loss(real_logits, fake_logits, real_label=real_label)
    opt_d.zero_grad()
    d_loss.backward()
    opt_d.step()
    g_loss = generator_loss(D(fake), kind=kind)
    opt_g.zero_grad()
    g_loss.backward()
    opt_g.step()
    return {"d_loss": d_loss.detach(), "g_loss": g_loss.detach(),
            "d_real": torch.sigmoid(real_logits.detach()).mean(),
            "d_fake": torch.sigmoid(fake_logits.detach()).mean()}


# ----------------------------------------------------------------------------- D-loss slips

def close(a: float, b: float) -> bool:
    """Equal up to float32 round-off on values of order 1 to 100."""
    return math.isclose(a, b, rel_tol=1e-4, abs_tol=1e-5)


def _bce(logits: Tensor, target: float) -> Tensor:
    """Per-example soft-target BCE on logits (the ground truth of the D-loss diagnoses)."""
    return target * F.softplus(-logits) + (1 - target) * F.softplus(logits)   # (n,)


def d_loss_slip(value: float, real: Tensor, fake: Tensor, label: float) -> str:
    """Name the usual slip that gives ``value`` instead of L_D, or return ''."""
    r, f = real.detach(), fake.detach()
    lr, lf = float(_bce(r, label).mean()), float(_bce(f, 0.0).mean())
    pooled = float(torch.cat([_bce(r, label), _bce(f, 0.0)]).mean())
    probs = (float(_bce(torch.sigmoid(r), label).mean())
             + float(_bce(torch.sigmoid(f), 0.0).mean()))
    slips = [
        ((lr + lf) / 2, "your loss is exactly half of L_D. One BCE over the real and fake "
                        "logits together (or the mean of the two sides) averages over both "
                        "batches at once; L_D adds the average of each side, each over its own "
                        "batch"),
        (pooled, "your loss is one average over the real and fake logits pooled together, "
                 "which weights each side by its batch size (and halves L_D when the sizes "
                 "are equal); L_D adds the average of each side, each over its own batch"),
        (float(_bce(r, 1.0).mean()) + lf,
         f"the loss is the one for real_label=1 although real_label={label}: real_label is "
         "the real images' target"),
        (len(r) * lr + len(f) * lf, "your loss is summed over the examples: average each side "
                                    "over its batch, so that the loss does not grow with B"),
        (-(lr + lf), "your loss has the wrong sign: the discriminator MINIMISES the "
                     "cross-entropy (it maximises V)"),
        (float(_bce(f, label).mean()) + float(_bce(r, 0.0).mean()),
         "the real and fake sides are swapped: which images should D call real?"),
        (probs, "a sigmoid is applied to the logits before a loss that expects logits (it "
                "applies the sigmoid itself), so D's probabilities are squashed twice"),
        (label * float(_bce(r, 1.0).mean()) + lf,
         "real_label multiplies the real side's loss; it should be the real side's TARGET "
         "(the y of the soft-target cross-entropy)"),
        (lr + float(_bce(f, 1 - label if label < 1 else 0.1).mean()),
         "the fakes' target moved away from 0 too: smoothing is one-sided, only the real "
         "images' target becomes real_label (section 2 says why)"),
    ]
    for candidate, message in slips:
        if close(value, candidate):
            return message
    return ""


def device_failure(rec: object, what: str) -> None:
    """Fail when a run on the "meta" device raised PyTorch's device-mismatch error."""
    if rec is None:
        return
    expect(isinstance(rec, dict), _DATA)
    text = str(rec.get("message", ""))
    if rec.get("error") == "RuntimeError" and "device" in text and "item()" not in text:
        expect(False, f"{what} (PyTorch said: {sanitise(text, 120)})")


# ----------------------------------------------------------------------------- loss records

def _float64(t: Tensor) -> np.ndarray:
    """A tensor's values as a float64 NumPy array."""
    return t.detach().numpy().astype(np.float64)


def judge_scalar(rec: dict[str, Any], what: str) -> float:
    """A recorded loss value: a finite scalar tensor still attached to the logits."""
    expect(rec.get("type") == "Tensor",
           f"{what} should return a tensor, not {sanitise(str(rec.get('type')), 60)} "
           "(.item() or float() would cut it off from autograd)")
    value = values(rec)
    expect(value is not None and value.shape == (),
           f"{what} should return a scalar tensor (shape ()), got shape {describe(rec)}: "
           "average over the batch")
    expect(flag(rec, "requires_grad"), f"{what} is cut off from the logits: compute it with "
                                       "torch operations on them (no .detach(), numpy or "
                                       "torch.no_grad())")
    expect(bool(np.isfinite(value)), f"{what} returned NaN or infinity on moderate logits")
    return float(value)


def judge_call(rec: object, logits: tuple[Tensor, ...], what: str) -> float:
    """One recorded call of a loss: its inputs unchanged, then its value (see above)."""
    expect(isinstance(rec, dict), _DATA)
    after = rec.get("after")
    expect(isinstance(after, list) and len(after) == len(logits)
           and all(same(as_array(a), _float64(t)) for a, t in zip(after, logits, strict=True)),
           "the loss changed its input logits in place: compute new tensors instead")
    return judge_scalar(record(rec, "out"), what)


def reference_grads(loss: Any, logits: tuple[Tensor, ...]) -> list[np.ndarray]:
    """The gradients of the reference ``loss(*logits)`` with respect to each input."""
    leaves = [t.clone().requires_grad_() for t in logits]
    loss(*leaves).backward()
    return [_float64(leaf.grad) for leaf in leaves]


def recorded_grads(rec: dict[str, Any], logits: tuple[Tensor, ...], message: str
                   ) -> list[np.ndarray]:
    """The recorded gradients ``rec["grads"]``, one per set of logits; else ``message``."""
    grads = rec.get("grads")
    expect(isinstance(grads, list) and len(grads) == len(logits)
           and all(is_numeric(g) and g.shape == t.shape for g, t in zip(grads, logits,
                                                                        strict=True)), message)
    return [as_array(g) for g in grads]


def grads_agree(got: list[np.ndarray], want: list[np.ndarray]) -> bool:
    """Recorded gradients equal to the reference's up to float32 round-off."""
    return all(bool(np.allclose(g, w, rtol=1e-4, atol=1e-6)) for g, w in zip(got, want,
                                                                             strict=True))


GRAD_MISMATCH = ("the gradients with respect to the logits are not those of the loss's own "
                 "value: compute the whole loss with differentiable torch operations on the "
                 "logits")
LOSS_DEVICE = ("with logits on a GPU this loss fails: it builds a tensor on the CPU that then "
               "meets the GPU's logits. Create targets on the logits' device")


def g_loss_slip(value: float, fake: Tensor, kind: str) -> str:
    """Name the usual slip that gives ``value`` instead of the ``kind`` loss, or return ''."""
    f = fake.detach()
    ns, mm = float(F.softplus(-f).mean()), float(-F.softplus(f).mean())
    want, other = (ns, mm) if kind == "non_saturating" else (mm, ns)
    sig = torch.sigmoid(f)
    slips = [
        (other, f"kind={kind!r} gives the other loss: check which form each kind names"),
        (-want, "the loss has the wrong sign: which way should it move as D(G(z)) rises?"),
        (len(f) * want, "the loss is summed over the batch: average it"),
        (float(F.softplus(-sig).mean()) if kind == "non_saturating"
         else float(-F.softplus(sig).mean()),
         "a sigmoid is applied to the logits before a loss that expects logits"),
        (-ns, "this is log D(G(z)), the quantity the generator wants LARGE: minimising it "
              "makes D call the fakes fake"),
        (-mm, "this is -log(1 - D(G(z))), the discriminator's view of the fakes: minimising "
              "it makes D call the fakes fake"),
    ]
    for candidate, message in slips:
        if close(value, candidate):
            return message
    return ""


# ----------------------------------------------------------------------------- step data

_GRAPH_ERRORS = {
    "backward_twice":
        "backward() ran twice through the same G(z) graph: the discriminator's backward pass "
        "went through the generator and freed its graph. Which tensor should the "
        "discriminator's fake side see, so that its loss stops at G(z)?",
    "inplace":
        "a backward pass used weights that an optimizer step had already changed in place: "
        "compute each loss after the update it depends on (reread section 4's order)",
}
STEP_DEVICE = ("with the models and images on a GPU this step fails, because it creates a "
               "tensor on the CPU that then meets the GPU's logits. Create every new tensor on "
               "the device of the data it meets")


def _arrays(rec: dict[str, Any], key: str, like: list[Tensor],
            optional: bool = False) -> list[np.ndarray | None]:
    """``rec[key]``: one array per tensor of ``like``, each of its shape (None entries
    allowed when ``optional``); else a failure."""
    value = rec.get(key)
    expect(isinstance(value, list) and len(value) == len(like), _DATA)
    out = []
    for v, t in zip(value, like, strict=True):
        if v is None and optional:
            out.append(None)
            continue
        expect(is_numeric(v) and tuple(v.shape) == tuple(t.shape), _DATA)
        out.append(as_array(v))
    return out


def _np(tensors: list[Tensor]) -> list[np.ndarray]:
    """Tensors' values as float64 NumPy arrays."""
    return [t.detach().double().numpy() for t in tensors]


def _same(a: list[np.ndarray | None], b: list[np.ndarray]) -> bool:
    """Recorded weights ``a`` equal to the reference's ``b`` up to float32 round-off."""
    if any(x is None for x in a):
        return False
    return bool(np.allclose(np.concatenate([x.ravel() for x in a]),
                            np.concatenate([y.ravel() for y in b]), atol=ATOL, rtol=RTOL))


def _leaked(at_d: list[np.ndarray | None], before: list[np.ndarray]) -> bool:
    """Whether G's .grad when opt_d stepped is neither what it was before the step, nor
    cleared (None or zeros)."""
    return any(g is not None and bool(np.any(g != 0))
               and not np.allclose(g, b, atol=1e-6, rtol=RTOL)
               for g, b in zip(at_d, before, strict=True))


def _judge_outputs(out: object, keys: tuple[str, ...]) -> dict[str, Any]:
    """The returned dict: the keys, each a detached finite 0-dim tensor. Returns the records."""
    expect(isinstance(out, dict), _DATA)
    names = out.get("keys")
    expect(out.get("type") == "dict" and isinstance(names, list)
           and set(keys) <= {n for n in names if isinstance(n, str)},
           f"return a dict with the keys {list(keys)}")
    recs = out.get("values")
    expect(isinstance(recs, dict), _DATA)
    for key in keys:
        rec = record(recs, key)
        expect(rec.get("type") == "Tensor",
               f"{key!r} should be a 0-dim tensor, not {sanitise(str(rec.get('type')), 60)}: "
               ".item() or float() would make the CPU wait for the GPU at every step")
        v = values(rec)
        expect(v is not None and v.size == 1,
               f"{key!r} should be a scalar, got shape {describe(rec)}")
        expect(not flag(rec, "requires_grad"), f"{key!r} still carries its autograd graph: "
               "return it detached, or every logged value keeps a graph alive")
        expect(bool(np.isfinite(v).all()), f"{key!r} is NaN or infinite")
    return recs


def _scalar(recs: dict[str, Any], key: str) -> float:
    """A returned value (already checked by :func:`_judge_outputs`) as a float."""
    v = values(recs.get(key))
    expect(v is not None and v.size == 1 and bool(np.isfinite(v).all()),
           f"{key!r} should be a finite 0-dim tensor")
    return float(v.reshape(()))


# ----------------------------------------------------------------------------- one step

def _judge_spies(step: dict[str, Any], g_before: list[Tensor], grads_before: list[Tensor],
                 when: str) -> None:
    """How often and in which order the optimizers stepped, and what G held at D's step."""
    d_calls, g_calls = step.get("d_calls"), step.get("g_calls")
    expect(type(d_calls) is int and type(g_calls) is int, _DATA)
    expect(d_calls == 1 and g_calls == 1,
           f"{when}opt_d.step() ran {d_calls} time(s) and opt_g.step() {g_calls} "
           "time(s); each should run once per training step. Which optimizer holds which "
           "network's weights?")
    order = step.get("d_steps_before_g")
    expect(type(order) is int and order == 1, f"{when}update the discriminator first, then "
                                              "the generator against the updated discriminator")
    expect(_same(_arrays(step, "g_at_d", g_before), _np(g_before)),
           f"{when}the generator's weights changed before the discriminator's update")
    at_d = _arrays(step, "g_grads_at_d", g_before, optional=True)
    expect(not _leaked(at_d, _np(grads_before)),
           f"{when}the discriminator's loss sent gradients into the generator: when "
           "opt_d.step() ran, G's .grad had changed. The discriminator's loss should "
           "stop at G(z) (reread the detach paragraph of section 4)")


def _run_with(module: nn.Module, weights: list[Any], x: Tensor) -> Tensor:
    """``module(x)`` computed with ``weights`` (tensors or arrays) in place of its own."""
    names = [name for name, _ in module.named_parameters()]
    tensors = [torch.as_tensor(w, dtype=torch.float32) for w in weights]
    return torch.func.functional_call(module, dict(zip(names, tensors, strict=True)), (x,))


def _compare(step: dict[str, Any], recs: dict[str, Any], want: dict[str, Tensor],
             models: tuple[nn.Module, nn.Module, list[Tensor]], z: Tensor, when: str,
             d_view: tuple[Tensor, Tensor, float]) -> None:
    """The returned values and both models' weights against the reference step's
    (``models``: the reference G and D after the step, and G's weights before it)."""
    G, D, g_before = models
    d_value = _scalar(recs, "d_loss")
    if not close(d_value, float(want["d_loss"])):
        expect(False, when + (d_loss_slip(d_value, *d_view) or
                              "the discriminator loss differs from the expected value: what "
                              "does D see on its fake side, and which targets do the two sides "
                              "get?"))
    d_params = list(D.parameters())
    expect(_same(_arrays(step, "d_after", d_params), _np(d_params)),
           f"{when}the discriminator's loss is right but its update is not: did gradients "
           "left in D's .grad by an earlier backward pass get added to this step's?")
    g_params = list(G.parameters())
    g_after = _arrays(step, "g_after", g_params)
    with torch.no_grad():                  # D(G(z)) under the updated D, before/after G's step
        after, before = _run_with(G, g_after, z), _run_with(G, g_before, z)
        rose = bool(torch.sigmoid(D(after)).mean() > torch.sigmoid(D(before)).mean())
    expect(rose, f"{when}after the generator's update, D rates G(z) as less real than before: "
                 "the generator is being pushed the wrong way (or not at all)")
    g_ok = bool(np.isclose(_scalar(recs, "g_loss"), float(want["g_loss"]), atol=1e-5))
    expect(g_ok, f"{when}the generator loss differs from the expected value: which target does "
                 "the generator aim for, which kind of loss was asked for, and is it computed "
                 "on the discriminator's updated view of G(z)?")
    expect(_same(g_after, _np(g_params)),
           f"{when}the generator's loss is right but its update is not: G's gradients should "
           "come from this step's generator loss only (what else could be sitting in .grad?)")
    for key in ("d_real", "d_fake"):
        if key in recs:
            v = values(recs[key])
            expect(v is not None and v.size == 1
                   and bool(np.isclose(float(v.reshape(())), float(want[key]), atol=1e-5)),
                   f"{when}{key!r} should be the batch mean of D's probability of 'real' "
                   "(not a logit), from the discriminator step")


def _judge_step(step: object, ref: tuple[nn.Module, nn.Module, Any, Any],
                grads_before: list[Tensor], batch: tuple[Tensor, Tensor], run: StepRun,
                keys: tuple[str, ...], when: str) -> None:
    """One recorded step against the reference step on the judge's models (which it runs)."""
    expect(isinstance(step, dict), _DATA)
    graph = step.get("graph_error")
    if graph is not None:
        expect(False, when + _GRAPH_ERRORS.get(str(graph), _DATA))
    G, D, opt_g, opt_d = ref
    real, z = batch
    g_before = [p.detach().clone() for p in G.parameters()]
    with torch.no_grad():                  # the logits D's loss should see, for diagnoses
        logits = (D(real), D(G(z)))
    want = expected_step(G, D, opt_g, opt_d, real, z, *run.options)
    _judge_spies(step, g_before, grads_before, when)
    recs = _judge_outputs(step.get("out"), keys)
    _compare(step, recs, want, (G, D, g_before), z, when, (*logits, run.options[0]))


def judge_step_run(rec: object, case: Any, run: StepRun, keys: tuple[str, ...]) -> None:
    """Two recorded steps in a row against two reference steps on the same seeded models."""
    expect(isinstance(rec, dict) and isinstance(rec.get("steps"), list), _DATA)
    G, D, junk_g, _, batches = step_setup(case, run)
    ref = (G, D, torch.optim.SGD(G.parameters(), lr=STEP_LR),
           torch.optim.SGD(D.parameters(), lr=STEP_LR))
    steps, grads_before = rec["steps"], junk_g
    for t, batch in enumerate(batches):
        expect(len(steps) > t, _DATA)
        _judge_step(steps[t], ref, grads_before, batch, run, keys,
                    "on a second step in a row, " if t else "")
        grads_before = [torch.zeros_like(p) if p.grad is None else p.grad.detach().clone()
                        for p in G.parameters()]


def judge_steps(data: dict[str, Any], case: Any, runs: list[StepRun], key: str,
                keys: tuple[str, ...], signature_message: str) -> None:
    """The recorded runs ``data[key]`` against ``runs``; a run the probe skipped because the
    step does not take its keyword arguments fails with ``signature_message``."""
    recs = records(data, key, len(runs))
    for rec, run in zip(recs, runs, strict=True):
        expect(rec.get("skipped") is not True, signature_message)
        judge_step_run(rec, case, run, keys)


def judge_signature(data: dict[str, Any], options: dict[str, Any], message: str) -> None:
    """The step must take ``options`` as keyword arguments (or ``**kwargs``)."""
    signature = record(data, "signature")
    names = signature.get("names")
    expect(names is None or isinstance(names, list), _DATA)
    expect(accepts(signature, options), message)
