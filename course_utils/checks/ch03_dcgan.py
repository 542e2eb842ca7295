"""Checks for notebook 03_dcgan: the judges (the probes are in :mod:`.ch03_probes`).

Exercises:

* ``gan_d_loss``: the discriminator loss from logits (with one-sided label smoothing);
* ``gan_g_loss``: the generator loss from logits, non-saturating and minimax;
* ``gan_train_step``: one alternating D-then-G update;
* ``gan_debug_generator`` and ``gan_debug_step``: "debug this broken GAN". The broken code is
  in the notebook; these checks test *behaviour* (shapes, ranges, which layers run, which
  weights each update moves), never the text of the answer.

Each judge rebuilds the probe's inputs from the case and computes the reference itself. The
loss judges compare the recorded values with the reference's on the case's logits and, when
they differ, recognise the usual slips (a factor of 2, a sum, a swapped side, a sigmoid too
many) and say which. The step judges live in :mod:`.ch03_steps`. The generator judge loads the
recorded weights into the fixed architecture, :class:`DebugGenerator`, and recomputes the
outputs the learner's generator produced. The grader's hidden judges check the same
properties on the extra runs the probes record at hidden cases (other sizes, labels, kinds).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..losses import discriminator_loss, generator_loss
from ..training import gan_train_step
from .ch03_probes import (
    G_KINDS,
    GEN_ARGS,
    GEN_BATCH,
    KIND_ARG,
    LossRun,
    d_loss_runs,
    g_loss_runs,
    generator_inputs,
    loss_logits,
    one_thread,
    probe_d_loss,
    probe_debug_generator,
    probe_debug_step,
    probe_g_loss,
    probe_train_step,
    step_runs,
)
from .ch03_steps import (
    GRAD_MISMATCH,
    LOSS_DEVICE,
    STEP_DEVICE,
    close,
    d_loss_slip,
    device_failure,
    g_loss_slip,
    grads_agree,
    judge_call,
    judge_signature,
    judge_steps,
    recorded_grads,
    reference_grads,
)
from .core import exercise, expect, hidden_judge
from .probe_data import as_array, describe, is_numeric, record, records, values
from .protocol import Case, sanitise

_DATA = "the check's data is incomplete or malformed; run the check again from the notebook"

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


# ----------------------------------------------------------------------------- shared

def _np(t: Tensor) -> np.ndarray:
    """A tensor's values as a float64 NumPy array."""
    return t.detach().numpy().astype(np.float64)


# ----------------------------------------------------------------------------- gan_d_loss

def _judge_d_loss_record(rec: object, case: Case, run: LossRun) -> None:
    """One run: values with and without smoothing, extreme logits, gradients, device."""
    expect(isinstance(rec, dict), _DATA)
    real, fake = loss_logits(case, run)
    got = judge_call(rec.get("plain"), (real, fake), "the discriminator loss")
    if not close(got, float(discriminator_loss(real, fake))):
        expect(False, d_loss_slip(got, real, fake, 1.0) or
               "the value differs from L_D on random logits: check each side's target and "
               "that each side is averaged over its own batch")
    label = run.label
    smooth = judge_call(rec.get("smooth"), (real, fake), "the discriminator loss")
    if not close(smooth, float(discriminator_loss(real, fake, real_label=label))):
        expect(not close(smooth, got), f"with real_label={label} the loss did not change: "
                                        "real_label is the real images' target")
        expect(False, d_loss_slip(smooth, real, fake, label) or
               f"with real_label={label} the value differs from L_D with that target for the "
               "real images (and 0 for the fakes)")
    extreme_rec = record(rec, "extreme")
    extreme, a = values(extreme_rec), run.extreme
    expect(extreme is not None and extreme.size == 1 and bool(np.isfinite(extreme).all())
           and abs(float(extreme.reshape(-1)[0]) - a) < 1e-3,
           f"with logits of +-{a:.0f} the loss should be {a:.0f} but yours is "
           f"{_shown(extreme, extreme_rec)}: compute it from the logits, not from sigmoid "
           "probabilities (section 2)")
    g_real, g_fake = recorded_grads(rec, (real, fake), "the loss must be differentiable with "
                                                        "respect to both sets of logits")
    expect(bool((g_real < 0).all() and (g_fake > 0).all()),
           "raising a real image's logit should lower the loss, and raising a fake's should "
           "raise it")
    expect(grads_agree([g_real, g_fake], reference_grads(discriminator_loss, (real, fake))),
           GRAD_MISMATCH)
    device_failure(rec.get("device"), LOSS_DEVICE)


def _shown(value: np.ndarray | None, rec: dict[str, Any]) -> str:
    """A recorded value for a message: the number, or what was returned instead."""
    if value is not None and value.size == 1:
        return f"{float(value.reshape(-1)[0]):.4g}"
    return describe(rec)


@exercise("gan_d_loss", points=2, reference=discriminator_loss, probe=probe_d_loss,
          hint="Each side is a binary cross-entropy against its own target; the soft-target "
               "formula in section 2 shows where the real images' target enters. Stay in "
               "logit space (section 2 says why probabilities break), average each side over "
               "its own batch, and build any target on the logits' device.")
@one_thread
def _judge_d_loss(data: dict[str, Any], case: Case) -> None:
    main, _ = d_loss_runs(case)
    for rec, run in zip(records(data, "main", len(main)), main, strict=True):
        _judge_d_loss_record(rec, case, run)


@hidden_judge("gan_d_loss")
@one_thread
def _hidden_d_loss(data: dict[str, Any], case: Case) -> None:
    _, extra = d_loss_runs(case)
    for rec, run in zip(records(data, "extra", len(extra)), extra, strict=True):
        _judge_d_loss_record(rec, case, run)


# ----------------------------------------------------------------------------- gan_g_loss

def _judge_g_extreme(rec: dict[str, Any], a: float) -> None:
    """Both kinds at logits +-a: close to a/2 and -a/2, as only logit-space formulas give."""
    recs = records(rec, "extreme", 2)
    got = [values(r) for r in recs]
    ok = all(v is not None and v.size == 1 and bool(np.isfinite(v).all()) for v in got)
    expect(ok and abs(float(got[0].reshape(-1)[0]) - a / 2) < 1e-3
           and abs(float(got[1].reshape(-1)[0]) + a / 2) < 1e-3,
           f"with logits of +-{a:.0f} the losses are not what they should be: compute them "
           "from logits, not from sigmoid probabilities")


def _judge_g_loss_record(rec: object, case: Case, run: LossRun) -> None:
    """One run: each kind's value, the default kind, extreme logits, gradients, device and
    the refusal of an unknown kind."""
    expect(isinstance(rec, dict), _DATA)
    fake, _ = loss_logits(case, run)
    for kind, call in zip(G_KINDS, records(rec, "kinds", len(G_KINDS)), strict=True):
        got = judge_call(call, (fake,), f"the {kind} loss")
        if not close(got, float(generator_loss(fake, kind=kind))):
            expect(False, g_loss_slip(got, fake, kind) or
                   f"the {kind} loss differs from its definition in section 2 on random logits")
    default = judge_call(rec.get("default"), (fake,), "the generator loss")
    expect(close(default, float(generator_loss(fake))),
           "without a kind argument the loss should be the non-saturating one (the default)")
    _judge_g_extreme(rec, run.extreme)
    grads = rec.get("grads")
    expect(isinstance(grads, list) and len(grads) == len(G_KINDS), _DATA)
    devices = rec.get("device")
    expect(isinstance(devices, list) and len(devices) == len(G_KINDS), _DATA)
    for kind, grad_rec, device in zip(G_KINDS, grads, devices, strict=True):
        message = f"the {kind} loss should decrease as D(G(z)) rises (negative gradient)"
        (grad,) = recorded_grads({"grads": grad_rec}, (fake,), message)
        expect(bool((grad < 0).all()), message)
        want = reference_grads(lambda f, k=kind: generator_loss(f, kind=k), (fake,))
        expect(grads_agree([grad], want), GRAD_MISMATCH)
        device_failure(device, LOSS_DEVICE)
    typo = rec.get("typo")
    expect(typo is None or isinstance(typo, dict), _DATA)
    expect(typo is not None, "kind='minmax' (a typo) was accepted silently: raise an error for "
                             "an unknown kind, or a typo trains the wrong loss without a word")


@exercise("gan_g_loss", points=2, reference=generator_loss, probe=probe_g_loss,
          hint="Reread 'Minimax or non-saturating?': what does each form make the generator "
               "push up or down? Write each through section 2's stable identities instead of "
               "through probabilities, average over the batch, and refuse an unknown kind.")
@one_thread
def _judge_g_loss(data: dict[str, Any], case: Case) -> None:
    main, _ = g_loss_runs(case)
    for rec, run in zip(records(data, "main", len(main)), main, strict=True):
        _judge_g_loss_record(rec, case, run)


@hidden_judge("gan_g_loss")
@one_thread
def _hidden_g_loss(data: dict[str, Any], case: Case) -> None:
    _, extra = g_loss_runs(case)
    for rec, run in zip(records(data, "extra", len(extra)), extra, strict=True):
        _judge_g_loss_record(rec, case, run)


# ----------------------------------------------------------------------------- gan_train_step

SIGNATURE = (f"keep the signature train_step(G, D, opt_g, opt_d, real, z, real_label=1.0, "
             f"{KIND_ARG}='non_saturating')")
TRAIN_KEYS = ("d_loss", "g_loss", "d_real", "d_fake")
DEBUG_KEYS = ("d_loss", "g_loss")
DEBUG_SIGNATURE = "keep the signature train_step(G, D, opt_g, opt_d, real, z)"


@exercise("gan_train_step", points=3, reference=gan_train_step, probe=probe_train_step,
          hint="Reread section 4, then follow one step with a pencil: which loss updates "
               "which network, which optimizer holds which weights, where the discriminator's "
               "loss must stop, what .grad still holds from the previous backward pass, and "
               "on which device each new tensor is made.")
@one_thread
def _judge_train_step(data: dict[str, Any], case: Case) -> None:
    judge_signature(data, {"real_label": 1.0, KIND_ARG: "non_saturating"}, SIGNATURE)
    main, _ = step_runs(case, with_options=True)
    judge_steps(data, case, main, "main", TRAIN_KEYS, SIGNATURE)
    device_failure(data.get("device"), STEP_DEVICE)


@hidden_judge("gan_train_step")
@one_thread
def _hidden_train_step(data: dict[str, Any], case: Case) -> None:
    _, extra = step_runs(case, with_options=True)
    judge_steps(data, case, extra, "extra", TRAIN_KEYS, SIGNATURE)


# ----------------------------------------------------------------------------- debugging

GENERATOR_REVEAL = (
    "The generator had three planted bugs:\n"
    "  (1) its last layer made 3 channels for 1-channel images;\n"
    "  (2) its sigmoid output covered [0, 1] while the real images are scaled to [-1, 1] "
    "(tanh matches them);\n"
    "  (3) bn1 was built in __init__ but never called in forward.\n"
    "  The source article's Keras generator (its section 5.2) also ends in 3 channels for "
    "28x28x1 images, and its discriminator builds layers it never calls.")

STEP_REVEAL = (
    "The step had four planted bugs:\n"
    "  (1) the discriminator's fake side saw uniform noise, not G(z): D learned to reject "
    "noise, which tells G nothing;\n"
    "  (2) the generator aimed at the label 0, 'fake', so it learned to look fake;\n"
    "  (3) the generator's backward pass was followed by opt_d.step(): G never moved, and D "
    "took a step towards calling fakes real;\n"
    "  (4) the labels were made on the CPU, which fails once models and data are on a GPU.\n"
    "  Once D sees G(z), the zero_grad calls at the top of the broken step make the detach "
    "essential: without it backward() fails with 'Trying to backward through the graph a "
    "second time' (or, with G(z) computed twice, the discriminator's loss is added to the "
    "generator's gradient). Bugs (1) and (2) are in the source article's training loop too "
    "(its section 5.2).")


GEN_LAYERS = ("your generator's layers do not match the notebook's architecture: fix the "
              "planted bugs in the layers the class defines, without adding, removing or "
              "resizing any other layer")
GEN_OUTPUT = ("with your generator's own weights, the notebook's architecture (each layer the "
              "class defines, applied in the order of the broken forward) computes other "
              "images than yours: change only what the planted bugs need")
GEN_EVAL = ("in evaluation mode (after G.eval()) your generator's images differ from those "
            "the notebook's architecture computes with your weights: the batch norms should "
            "use their running statistics there")


def _judge_generator_output(data: dict[str, Any]) -> np.ndarray:
    """Shape, channels, layers used, output range and gradients of the training-mode call."""
    out_rec = record(data, "out")
    expect(out_rec.get("type") == "Tensor", "forward must return a tensor")
    out = values(out_rec)
    expect(out is not None and out.ndim == 4 and out.shape[0] == GEN_BATCH
           and out.shape[2:] == (28, 28),
           f"expected images of shape ({GEN_BATCH}, 1, 28, 28), got {describe(out_rec)}")
    expect(out.shape[1] == 1, f"Fashion-MNIST images have 1 channel; the generator outputs "
                              f"{out.shape[1]}")
    leaves, called = data.get("leaves"), data.get("called")
    expect(isinstance(leaves, list) and isinstance(called, list)
           and all(isinstance(n, str) for n in leaves + called), _DATA)
    unused = [sanitise(n, 40) for n in sorted(set(leaves) - set(called))][:10]
    expect(not unused, f"these layers are defined in __init__ but never used in forward: {unused}")
    lo, hi = float(out.min()), float(out.max())
    expect(lo >= -1.0 and hi <= 1.0 and lo < -0.05,
           f"the real images are scaled to [-1, 1], but the generator's outputs cover "
           f"[{lo:.2f}, {hi:.2f}]: check the output activation")
    missing = data.get("no_grad")
    expect(isinstance(missing, list) and all(isinstance(n, str) for n in missing),
           "the output is cut off from the generator's parameters: keep forward in torch "
           "operations (no .detach(), numpy or torch.no_grad())")
    expect(not missing, f"these parameters get no gradient from the output: "
                        f"{[sanitise(n, 40) for n in missing][:10]}")
    return out


def _reference_generator(state: object) -> DebugGenerator:
    """The fixed architecture holding the recorded weights (matched by name, else by order)."""
    expect(state is not None, GEN_LAYERS)
    expect(isinstance(state, list) and all(
        isinstance(e, list) and len(e) == 2 and isinstance(e[0], str) and is_numeric(e[1])
        for e in state), _DATA)
    with torch.random.fork_rng(devices=[]):
        ref = DebugGenerator(**GEN_ARGS)
    targets = [t for t in ref.state_dict().values() if t.is_floating_point()]
    names = [n for n, t in ref.state_dict().items() if t.is_floating_point()]
    by_name = {n: a for n, a in state}
    if len(by_name) == len(state) and set(by_name) == set(names):
        arrays = [by_name[n] for n in names]
    else:
        expect(len(state) == len(targets), GEN_LAYERS)
        arrays = [a for _, a in state]
    expect(all(a.shape == t.shape for a, t in zip(arrays, targets, strict=True)), GEN_LAYERS)
    with torch.no_grad():
        for a, t in zip(arrays, targets, strict=True):
            t.copy_(torch.from_numpy(as_array(a)))
    return ref


def _judge_generator_function(data: dict[str, Any], case: Case, out: np.ndarray) -> None:
    """The recorded outputs against the fixed architecture run with the recorded weights."""
    ref = _reference_generator(data.get("state"))
    z, z_eval = generator_inputs(case)
    with torch.no_grad():
        want_eval = _np(ref.eval()(z_eval))
        want = _np(ref.train()(z))
    expect(bool(np.allclose(out, want, atol=1e-5, rtol=1e-4)), GEN_OUTPUT)
    eval_rec = record(data, "out_eval")
    expect(eval_rec.get("raised") is not True,
           f"in evaluation mode (after G.eval()) your generator raised "
           f"{sanitise(str(eval_rec.get('type')), 60)}")
    got = values(eval_rec)
    expect(got is not None and got.shape == want_eval.shape
           and bool(np.allclose(got, want_eval, atol=1e-5, rtol=1e-4)), GEN_EVAL)


@exercise("gan_debug_generator", points=2, reference=DebugGenerator, reveal=GENERATOR_REVEAL,
          probe=probe_debug_generator,
          hint="Compare what the class defines with what forward uses, and what the real "
               "images look like (channels, pixel range) with what the last layers produce.")
@one_thread
def _judge_debug_generator(data: dict[str, Any], case: Case) -> None:
    expect(data.get("is_module_class") is True,
           "pass the fixed generator class itself (a subclass of nn.Module)")
    out = _judge_generator_output(data)
    _judge_generator_function(data, case, out)


@exercise("gan_debug_step", points=3, reference=debug_train_step, reveal=STEP_REVEAL,
          probe=probe_debug_step,
          hint="Follow the step as section 4 describes it and compare: what each network "
               "sees, which target each loss aims for, which weights each update moves, what "
               ".grad holds when each optimizer steps, and where each new tensor lives.")
@one_thread
def _judge_debug_step(data: dict[str, Any], case: Case) -> None:
    main, _ = step_runs(case, with_options=False)
    judge_steps(data, case, main, "main", DEBUG_KEYS, DEBUG_SIGNATURE)
    device_failure(data.get("device"), STEP_DEVICE)


@hidden_judge("gan_debug_step")
@one_thread
def _hidden_debug_step(data: dict[str, Any], case: Case) -> None:
    _, extra = step_runs(case, with_options=False)
    judge_steps(data, case, extra, "extra", DEBUG_KEYS, DEBUG_SIGNATURE)


# ----------------------------------------------------------- predict, then run: mitigation (sec. 7)
# Appended block: the "predict, then run" question before section 7's mode-collapse experiment.
# The learner's rule gets the experiment's arms ({name: what it changes}) and names one it
# expects to help (beat the baseline on every seed). Judged against the principle the experiment
# is built on, not against one run's numbers: only a change that lets D keep pace with the
# greedy G (D's rate up) or slows the whole game (both rates down) acts on the planted cause.

PREDICT_MITIGATION_ANSWER = "D learning rate x4"
PREDICT_MITIGATION_ACCEPTED = ("D learning rate x4", "lower learning rates")


def predict_mitigation_reference(arms: dict[str, str]) -> str:
    """The arm that acts on the planted cause: the generator takes five updates per
    discriminator update, and only a faster discriminator lets D keep up without removing
    those extra generator updates."""
    return PREDICT_MITIGATION_ANSWER


def _mitigation_menu(case: Any) -> dict[str, str]:
    """The notebook's arms ``{name: what it changes}``, in an order drawn from ``case``."""
    from ..experiments import arm_descriptions, mitigation_arms

    menu = arm_descriptions(mitigation_arms())
    order = torch.randperm(len(menu), generator=case.generator(3)).tolist()
    names = list(menu)
    return {names[i]: menu[names[i]] for i in order}


def _probe_predict_mitigation(fn: Any, case: Any) -> dict:
    """Call the learner's rule on a copy of the menu; record what it returned, as data."""
    expect(callable(fn), "predict_mitigation should be a function of the dict of arms")
    menu = _mitigation_menu(case)
    given = dict(menu)
    out = fn(given)
    return {"is_str": isinstance(out, str),
            "answer": str(out)[:200] if isinstance(out, str) else None,
            "type": type(out).__name__, "menu_changed": given != menu}


@exercise("gan_predict_mitigation", points=1, reference=predict_mitigation_reference,
          probe=_probe_predict_mitigation,
          hint="Name the planted cause first: which player gets ahead of the other, and by what "
               "means. Then ask which single change lets the other player keep up while "
               "leaving that cause in place, rather than softening a symptom. Answer with one "
               "of the names (keys) of the dict you are given.",
          reveal="The planted cause is a generator that takes five updates per discriminator "
                 "update, so it keeps chasing a stale critic. Giving D four times G's learning "
                 "rate (the ratio Zhang et al. 2019 used in SAGAN) is the change aimed at that "
                 "cause: it lets D move further per update while G keeps its five. Lower rates "
                 "(also accepted) slow both players, which delays the damage rather than "
                 "removing its cause; label smoothing and weight decay act on neither player's "
                 "speed; spectral norm restrains a discriminator that was already too slow. "
                 "Whether the arm you named beat the baseline on every seed is what the table "
                 "says: with three short runs, sound reasoning can still lose to noise.")
def _judge_predict_mitigation(data: dict, case: Any) -> None:
    menu = _mitigation_menu(case)
    changed = data.get("menu_changed")
    expect(isinstance(changed, bool) and not changed,
           "predict_mitigation changed the dict of arms it was given; read it, do not edit it")
    expect(data.get("is_str") is True and isinstance(data.get("answer"), str),
           f"return the name of one arm as a string, not {str(data.get('type'))[:40]}")
    answer = data["answer"].strip()
    by_name = {name.casefold(): name for name in menu}
    descriptions = {what.casefold() for what in menu.values()}
    expect(answer.casefold() not in descriptions,
           "you returned what an arm changes; return its name (a key of the dict) instead")
    expect(answer.casefold() in by_name,
           f"{answer[:60]!r} is not one of the arms; the names are {sorted(menu)}")
    expect(by_name[answer.casefold()] in PREDICT_MITIGATION_ACCEPTED,
           f"you predicted {by_name[answer.casefold()]!r}. Does that change act on the planted "
           "cause, or on a symptom? (This check grades the reasoning; the table shows what "
           "these seeds measured.)")
