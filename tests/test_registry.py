"""The exercise registry imports every chapter module and fails loudly when one does not import."""

from __future__ import annotations

import importlib
import types

import pytest

from course_utils.checks import core


@pytest.fixture()
def fresh_registry(monkeypatch):
    """Make the next registry() call import the chapter modules again (restored afterwards)."""
    monkeypatch.setattr(core, "_loaded", False)
    return monkeypatch


def test_every_chapter_module_imports_and_registers():
    exercises = core.registry()
    for module in core.CHAPTER_MODULES:
        name = f"course_utils.checks.{module}"
        importlib.import_module(name)              # each listed module really exists
    owners = {(ex.judge or ex.checker).__module__ for ex in exercises.values()}
    assert "course_utils.checks.ch00_introduction" in owners


def test_a_missing_chapter_module_is_an_error_naming_it(fresh_registry):
    fresh_registry.setattr(core, "CHAPTER_MODULES", core.CHAPTER_MODULES + ("ch99_missing",))
    with pytest.raises(ImportError, match=r"course_utils\.checks\.ch99_missing.*CHAPTER_MODULES"):
        core.registry()
    assert core._loaded is False                   # the next call tries again


def test_an_error_inside_a_chapter_module_is_not_swallowed(fresh_registry):
    def broken_import(name):
        if name.endswith("ch00_introduction"):
            # what a chapter module whose own dependency is missing raises
            raise ModuleNotFoundError("No module named 'scipy'", name="scipy")
        return importlib.import_module(name)

    fresh_registry.setattr(core, "importlib", types.SimpleNamespace(import_module=broken_import))
    with pytest.raises(ImportError, match="ch00_introduction.*No module named 'scipy'") as info:
        core.registry()
    assert isinstance(info.value.__cause__, ModuleNotFoundError)
