"""The probe/judge data protocol: only plain data crosses, and nothing is ever unpickled."""

from __future__ import annotations

import io
import pickle

import numpy as np
import pytest
import torch

from course_utils.checks import core
from course_utils.checks.core import CheckFailure
from course_utils.checks.protocol import (
    ERROR,
    FAILED,
    NOT_DONE,
    STATUS_KEY,
    Case,
    ProbeDataError,
    pack,
    run_probe,
    sanitise,
    unpack,
)


def test_round_trip_keeps_values_shapes_and_dtypes():
    data = {"value": 1.5, "n": 3, "ok": True, "name": "x", "none": None,
            "nested": {"list": [1, 2.0, "a"], "inf": float("inf")},
            "tensor": torch.arange(6, dtype=torch.float32).reshape(2, 3),
            "grad": np.ones((4,), dtype=np.float64), "scalar": np.float32(2.5)}
    out = unpack(pack(data))
    assert out["value"] == 1.5 and out["n"] == 3 and out["ok"] is True and out["none"] is None
    assert out["nested"]["list"] == [1, 2.0, "a"] and out["nested"]["inf"] == float("inf")
    assert out["tensor"].dtype == np.float32 and out["tensor"].shape == (2, 3)
    np.testing.assert_array_equal(out["tensor"], np.arange(6).reshape(2, 3))
    assert out["grad"].dtype == np.float64 and out["scalar"] == 2.5


def test_a_tensor_that_requires_grad_is_detached():
    t = torch.ones(3, requires_grad=True) * 2
    assert unpack(pack({"t": t}))["t"].tolist() == [2.0, 2.0, 2.0]


@pytest.mark.parametrize("bad", [object(), {1: 2}, np.array([object()], dtype=object),
                                 lambda: 0, {"s": {1, 2}}])
def test_anything_but_plain_data_is_refused(bad):
    with pytest.raises(ProbeDataError):
        pack({"x": bad})


class _Liar:
    def __eq__(self, other):          # a lying object must not survive the trip
        return True


def test_objects_with_lying_eq_cannot_cross():
    with pytest.raises(ProbeDataError):
        pack({"x": _Liar()})


def test_a_pickle_payload_is_never_unpickled(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    buffer = io.BytesIO()
    np.savez(buffer, __json__=np.frombuffer(b'{"x": {"__array__": "a0"}}', dtype=np.uint8),
             a0=np.array([Evil()], dtype=object))
    with pytest.raises(ProbeDataError):
        unpack(buffer.getvalue())
    assert not marker.exists()
    with pytest.raises(ProbeDataError):
        unpack(pickle.dumps({"x": 1}))


def test_run_probe_statuses():
    def stub(obj, case):
        raise NotImplementedError("ex")

    def structural(obj, case):
        raise CheckFailure("return a pair")

    def crash(obj, case):
        return obj(case)

    def boom(case):
        raise ValueError("bad value in /home/grader/secret/tests.py")

    assert run_probe(stub, None, Case())[STATUS_KEY] == NOT_DONE
    assert run_probe(structural, None, Case()) == {STATUS_KEY: FAILED, "message": "return a pair"}
    out = run_probe(crash, boom, Case())
    assert out[STATUS_KEY] == ERROR and out["error"] == "ValueError"
    assert "/home/grader" not in out["message"] and "<path>" in out["message"]
    assert run_probe(lambda obj, case: {"v": obj}, 3, Case())["v"] == 3
    with pytest.raises(ProbeDataError):
        run_probe(lambda obj, case: [obj], 3, Case())


def test_case_generators_are_deterministic_and_independent():
    a, b = Case(seed=5), Case(seed=5)
    assert torch.equal(torch.rand(3, generator=a.generator()),
                       torch.rand(3, generator=b.generator()))
    assert not torch.equal(torch.rand(3, generator=a.generator(0)),
                           torch.rand(3, generator=a.generator(1)))


def test_sanitise_caps_and_strips_control_characters():
    text = sanitise("x\x1b[31m" + "y" * 1000)
    assert len(text) <= 300 and "\x1b" not in text and text.endswith("...")


# ------------------------------------------------------------------ probe/judge in core


@pytest.fixture
def toy_exercise(monkeypatch):
    """A probe/judge exercise 'double x', registered in a scratch registry."""
    monkeypatch.setattr(core, "_REGISTRY", {})
    monkeypatch.setattr(core, "_loaded", True)

    def probe(fn, case):
        x = torch.rand(5, generator=case.generator())
        return {"out": fn(x)}

    @core.exercise("toy_double", points=1, hint="think about it", reference=lambda x: 2 * x,
                   probe=probe)
    def judge(data, case):
        x = torch.rand(5, generator=case.generator())
        out = data.get("out")
        core.expect(isinstance(out, np.ndarray) and out.shape == (5,), "return 5 numbers")
        core.expect(np.allclose(out, 2 * x.numpy()), "not twice the input")

    return core.get_exercise("toy_double")


def test_probe_judge_verdicts(toy_exercise):
    ex = toy_exercise
    status = lambda obj: core.run_checkers(ex, obj, [ex.checker, *ex.hidden]).status  # noqa: E731
    assert status(lambda x: x * 2) == "passed"
    assert status(lambda x: x + x) == "passed"
    assert status(lambda x: x * 3) == "failed"
    assert status(lambda x: x[:2] * 2) == "failed"
    assert status(lambda x: (_ for _ in ()).throw(NotImplementedError)) == "not done"
    result = core.run_checkers(ex, lambda x: x.nope(), [ex.checker])
    assert result.status == "error" and "AttributeError" in result.message


def test_a_judge_sees_only_data_and_a_lying_object_cannot_cross(toy_exercise):
    ex = toy_exercise

    result = core.run_checkers(ex, lambda x: _Liar(), [ex.checker])
    assert result.status == "error"            # refused by the codec, never judged as a pass
    # Hidden cases use other inputs: an answer that memorised the public case fails them.
    public_x = torch.rand(5, generator=core.PUBLIC_CASE.generator())
    memorised = lambda x: 2 * public_x  # noqa: E731
    assert core.run_checkers(ex, memorised, [ex.checker]).status == "passed"
    assert core.run_checkers(ex, memorised, [ex.checker, *ex.hidden]).status == "failed"


def test_judge_data_rejects_malformed_probe_data(toy_exercise):
    ex = toy_exercise
    with pytest.raises(core.CheckFailure):
        core.judge_data(ex, {"out": "not an array"}, core.PUBLIC_CASE)
    with pytest.raises(core.JudgeError):
        core.judge_data(ex, {"__status__": "bogus"}, core.PUBLIC_CASE)
