"""course_utils.doctor: the set-up check reports each problem with its fix and never raises."""

from __future__ import annotations

import importlib.util

import pytest

from course_utils import data, doctor


@pytest.fixture()
def lines_with(monkeypatch):
    """Run check_environment with the data found (or not) and given switches."""
    def run(found=True, **env):
        where = "/somewhere/fashion-mnist" if found else None
        monkeypatch.setattr(data, "find_local", lambda name="fashion-mnist", root=None: where)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        return doctor.check_environment()
    return run


def test_a_healthy_setup_reports_every_item_ok(lines_with):
    lines = lines_with(COURSE_DEVICE="cpu", COURSE_SMOKE="1")
    assert [line.split()[1] for line in lines[:len(doctor.REQUIRED)]] == \
        [dist for dist, _ in doctor.REQUIRED.values()]
    assert not [line for line in lines if line.startswith(("MISSING", "WARNING"))], lines
    assert "ok       Fashion-MNIST  found in /somewhere/fashion-mnist" in lines
    assert "ok       device         cpu" in lines
    assert any(line.startswith("ok       mode           smoke") for line in lines)


def test_missing_data_is_a_warning_with_the_fix(lines_with):
    warning = [line for line in lines_with(found=False) if "Fashion-MNIST" in line]
    assert len(warning) == 1
    assert warning[0].startswith("WARNING")
    assert "apt-get install dataset-fashion-mnist" in warning[0]


def test_missing_package_is_reported_with_the_install_command(monkeypatch, lines_with):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "scipy" else real(name, *a))
    lines = lines_with()
    assert [line for line in lines if line.startswith("MISSING")] == [
        "MISSING  scipy         needed for matrix square root in the Frechet distance. "
        "Fix: pip install scipy"]


def test_bad_switches_become_warnings_not_crashes(lines_with):
    lines = lines_with(COURSE_DEVICE="tpu", COURSE_SMOKE="maybe")
    warnings = [line for line in lines if line.startswith("WARNING")]
    assert len(warnings) == 2
    assert "COURSE_DEVICE='tpu'" in warnings[0] and "COURSE_SMOKE='maybe'" in warnings[1]
