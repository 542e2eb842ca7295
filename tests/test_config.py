"""course_utils.config: switch parsing, one rule for unknown values, device choice, seeding."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch

from course_utils import config

ON, OFF = ["1", "true", "YES", " on "], ["0", "false", "No", "off", ""]
READERS = {"COURSE_SMOKE": config.is_smoke, "COURSE_TRAIN": config.train_from_scratch,
           "COURSE_WIDGETS": config.widgets_mode, "COURSE_EXPECT": config.expected_verdict,
           "COURSE_DEVICE": config.get_device}


@pytest.mark.parametrize("name,reader", [("COURSE_SMOKE", config.is_smoke),
                                         ("COURSE_TRAIN", config.train_from_scratch)])
def test_on_off_switches_accept_the_usual_spellings(monkeypatch, name, reader):
    for raw in ON:
        monkeypatch.setenv(name, raw)
        assert reader() is True, raw
    for raw in OFF:
        monkeypatch.setenv(name, raw)
        assert reader() is False, raw
    monkeypatch.delenv(name)
    assert reader() is False                                  # unset means off


def test_pick_follows_smoke_mode(monkeypatch):
    monkeypatch.setenv("COURSE_SMOKE", "1")
    assert config.pick(smoke="s", full="f") == "s"
    monkeypatch.setenv("COURSE_SMOKE", "0")
    assert config.pick(smoke="s", full="f") == "f"


def test_widgets_mode(monkeypatch):
    monkeypatch.delenv("COURSE_WIDGETS", raising=False)
    assert config.widgets_mode() == "auto"
    for raw, mode in [("auto", "auto"), ("", "auto"), ("1", "on"), ("on", "on"), ("0", "off"),
                      ("false", "off")]:
        monkeypatch.setenv("COURSE_WIDGETS", raw)
        assert config.widgets_mode() == mode, raw


def test_expected_verdict(monkeypatch):
    monkeypatch.delenv("COURSE_EXPECT", raising=False)
    assert config.expected_verdict() is None
    for raw, verdict in [("solved", "solved"), ("Unsolved ", "unsolved"), ("", None)]:
        monkeypatch.setenv("COURSE_EXPECT", raw)
        assert config.expected_verdict() == verdict


@pytest.mark.parametrize("name,bad,accepted", [
    ("COURSE_SMOKE", "maybe", ["1/true/yes/on", "0/false/no/off"]),
    ("COURSE_TRAIN", "2", ["1/true/yes/on", "0/false/no/off"]),
    ("COURSE_WIDGETS", "sometimes", ["1/true/yes/on", "0/false/no/off", "auto"]),
    ("COURSE_EXPECT", "passed", ["solved", "unsolved"]),
    ("COURSE_DEVICE", "tpu", ["auto", "cpu", "cuda", "mps"]),
    ("COURSE_DEVICE", "cuda:first", ["cuda:N"]),
])
def test_unknown_values_raise_naming_variable_value_and_accepted_values(monkeypatch, name, bad,
                                                                        accepted):
    monkeypatch.setenv(name, bad)
    with pytest.raises(config.ConfigError) as info:
        READERS[name]()
    message = str(info.value)
    assert f"{name}={bad!r}" in message
    assert all(a in message for a in accepted), message
    assert isinstance(info.value, ValueError)                 # callers may catch ValueError


def test_device_auto_choice_and_override(monkeypatch):
    monkeypatch.delenv("COURSE_DEVICE", raising=False)
    expected = ("cuda" if torch.cuda.is_available() else
                "mps" if config._mps_available() else "cpu")
    assert config.get_device().type == expected
    monkeypatch.setenv("COURSE_DEVICE", "auto")
    assert config.get_device().type == expected
    monkeypatch.setenv("COURSE_DEVICE", " CPU ")
    assert config.get_device() == torch.device("cpu")
    monkeypatch.setenv("COURSE_DEVICE", "tpu")                 # the argument wins over the env
    assert config.get_device("cpu") == torch.device("cpu")
    with pytest.raises(config.ConfigError, match="Unknown device 'quantum'.*cpu, cuda"):
        config.get_device("quantum")


def test_unavailable_accelerators_are_refused_with_the_fix(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(config, "_mps_available", lambda: False)
    monkeypatch.delenv("COURSE_DEVICE", raising=False)
    assert config.get_device() == torch.device("cpu")
    with pytest.raises(ValueError, match="CUDA was requested.*COURSE_DEVICE=cpu"):
        config.get_device("cuda:0")
    monkeypatch.setenv("COURSE_DEVICE", "mps")
    with pytest.raises(ValueError, match="MPS was requested.*COURSE_DEVICE=cpu"):
        config.get_device()


def test_data_and_cache_directories(monkeypatch, tmp_path):
    monkeypatch.delenv("COURSE_DATA_DIR", raising=False)
    assert config.data_dir() is None
    monkeypatch.setenv("COURSE_DATA_DIR", str(tmp_path / "d"))
    assert config.data_dir() == tmp_path / "d"
    monkeypatch.setenv("COURSE_CACHE_DIR", "~/my_cache")
    assert config.cache_dir() == Path.home() / "my_cache"
    monkeypatch.delenv("COURSE_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert config.cache_dir() == tmp_path / "xdg" / "course_utils"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert config.cache_dir() == Path.home() / ".cache" / "course_utils"


def test_seed_everything_makes_every_generator_repeat():
    def draw():
        return random.random(), np.random.rand(3), torch.rand(3), torch.randn(2)

    config.seed_everything(3)
    a = draw()
    config.seed_everything(3)
    b = draw()
    assert a[0] == b[0] and np.array_equal(a[1], b[1])
    assert torch.equal(a[2], b[2]) and torch.equal(a[3], b[3])
    config.seed_everything(4)
    c = draw()
    assert a[0] != c[0] and not torch.equal(a[2], c[2])       # the seed matters
    g1, g2 = config.seed_everything(5), config.seed_everything(5)
    assert torch.equal(torch.rand(4, generator=g1), torch.rand(4, generator=g2))
    config.seed_everything(2**40)                             # NumPy needs a 32-bit seed


def test_describe_setup_is_one_line_naming_mode_and_device(monkeypatch):
    monkeypatch.setenv("COURSE_SMOKE", "1")
    line = config.describe_setup(torch.device("cpu"))
    assert "\n" not in line and "mode=SMOKE" in line and "device=cpu" in line
    monkeypatch.setenv("COURSE_SMOKE", "0")
    assert "mode=full" in config.describe_setup(torch.device("cpu"))


def test_apply_overrides_writes_the_switches(monkeypatch):
    for name in ("COURSE_SMOKE", "COURSE_DEVICE", "COURSE_TRAIN"):
        monkeypatch.setenv(name, "")                          # monkeypatch restores them after
    monkeypatch.setenv("COURSE_SMOKE", "1")
    config.apply_overrides(smoke=None, device=None, train=None)
    assert config.is_smoke() and not config.train_from_scratch()
    config.apply_overrides(smoke=False, device="cpu", train=True)
    assert not config.is_smoke() and config.train_from_scratch()
    assert config.get_device() == torch.device("cpu")
    with pytest.raises(config.ConfigError, match="quantum"):
        config.apply_overrides(device="quantum")
    assert config.get_device() == torch.device("cpu")         # a bad override changes nothing
