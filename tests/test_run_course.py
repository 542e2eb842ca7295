"""The end-to-end runner executes notebooks into an output folder and reports each one."""

from __future__ import annotations

import nbformat

from course_utils import run_course


def test_runner_executes_a_notebook_in_smoke_mode(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("COURSE_EXPECT", raising=False)
    code = run_course.main(["--smoke", "--only", "00", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0, out
    executed = nbformat.read(tmp_path / "00_introduction.ipynb", as_version=4)
    code_cells = [c for c in executed.cells if c.cell_type == "code"]
    assert all(c.execution_count for c in code_cells)
    assert any("passed the public checks" in str(c.outputs) for c in code_cells)
    assert "Summary" in out and "00_introduction.ipynb" in out


def test_runner_reports_missing_selection(tmp_path, capsys):
    assert run_course.main(["--smoke", "--only", "99", "--out", str(tmp_path)]) == 2
