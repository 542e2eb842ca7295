"""pyproject.toml and environment.yml must list the same packages and lower bounds."""

from __future__ import annotations

import re
from pathlib import Path

import tomllib

REPO = Path(__file__).resolve().parents[1]
CONDA_NAMES = {"pytorch": "torch"}   # conda package name -> PyPI name


def _split(req: str) -> tuple[str, str]:
    m = re.match(r"^\s*([A-Za-z0-9_.\-]+)\s*(.*)$", req)
    assert m, req
    return m.group(1).lower().replace("_", "-"), m.group(2).replace(" ", "")


def pyproject_requirements() -> dict[str, str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    reqs = project["dependencies"] + project["optional-dependencies"]["test"]
    return dict(_split(r) for r in reqs)


def conda_requirements() -> dict[str, str]:
    deps, in_deps = {}, False
    for line in (REPO / "environment.yml").read_text().splitlines():
        if line.startswith("dependencies:"):
            in_deps = True
            continue
        m = re.match(r"^  - ([^\s#:]+)\s*$", line)
        if in_deps and m:
            name, spec = _split(m.group(1))
            if name not in {"python", "pip"}:
                deps[CONDA_NAMES.get(name, name)] = spec
    return deps


def test_environment_yml_matches_pyproject():
    py, conda = pyproject_requirements(), conda_requirements()
    assert py == conda, (f"only in pyproject: {sorted(set(py.items()) - set(conda.items()))}; "
                         f"only in environment.yml: {sorted(set(conda.items()) - set(py.items()))}")


def test_python_versions_agree():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["requires-python"] == ">=3.10"
    assert "python>=3.10" in (REPO / "environment.yml").read_text()
