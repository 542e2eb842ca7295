"""Mode switches, device choice, seeding and the set-up report."""

from __future__ import annotations

import pytest
import torch

from course_utils import config


def test_smoke_flag_parsing(monkeypatch):
    for raw, expected in [("1", True), ("true", True), ("0", False), ("", False), ("off", False)]:
        monkeypatch.setenv("COURSE_SMOKE", raw)
        assert config.is_smoke() is expected
        assert config.pick(smoke="s", full="f") == ("s" if expected else "f")
    monkeypatch.setenv("COURSE_SMOKE", "maybe")
    with pytest.raises(ValueError, match="COURSE_SMOKE='maybe'.*use 1"):
        config.is_smoke()


def test_suite_runs_in_smoke_mode():
    assert config.is_smoke(), "conftest.py must turn smoke mode on for the whole suite"


def test_device_choice_and_override(monkeypatch):
    monkeypatch.delenv("COURSE_DEVICE", raising=False)
    auto = config.get_device()
    assert auto.type == ("cuda" if torch.cuda.is_available() else
                         "mps" if config._mps_available() else "cpu")
    assert config.get_device("cpu") == torch.device("cpu")
    monkeypatch.setenv("COURSE_DEVICE", "cpu")
    assert config.get_device() == torch.device("cpu")
    with pytest.raises(ValueError, match="Unknown device 'tpu'"):
        config.get_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA was requested"):
            config.get_device("cuda")


def test_seed_everything_makes_runs_repeat():
    config.seed_everything(3)
    a = (torch.rand(3), torch.randn(2))
    config.seed_everything(3)
    b = (torch.rand(3), torch.randn(2))
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    g1, g2 = config.seed_everything(5), config.seed_everything(5)
    assert torch.equal(torch.rand(4, generator=g1), torch.rand(4, generator=g2))


def test_describe_setup_is_one_line():
    line = config.describe_setup()
    assert "\n" not in line and "mode=SMOKE" in line and "device=" in line


def test_apply_overrides(monkeypatch):
    monkeypatch.setenv("COURSE_SMOKE", "1")
    config.apply_overrides(smoke=None, device=None)
    assert config.is_smoke()
    config.apply_overrides(smoke=False, device="cpu", train=True)
    assert not config.is_smoke() and config.train_from_scratch()
    assert config.get_device() == torch.device("cpu")
    with pytest.raises(ValueError):
        config.apply_overrides(device="quantum")
    monkeypatch.delenv("COURSE_TRAIN")
    monkeypatch.delenv("COURSE_DEVICE")


def test_environment_check_reports_missing_data_with_fix(monkeypatch, tmp_path):
    from course_utils import data
    monkeypatch.setattr(data, "find_local", lambda name="fashion-mnist", root=None: None)
    lines = config.check_environment()
    assert any(l.startswith("ok       torch") for l in lines)
    warning = [l for l in lines if "Fashion-MNIST" in l]
    assert warning and warning[0].startswith("WARNING") and "apt-get install" in warning[0]


def test_environment_check_reports_missing_package(monkeypatch):
    import importlib.util
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "scipy" else real(name, *a))
    lines = config.check_environment()
    assert any(l.startswith("MISSING  scipy") and "pip install scipy" in l for l in lines)
