"""The course runner: executed notebooks hold every figure JupyterLab would show, the final
count of each progress bar and the saved widget state; the run shows its progress, keeps the
kernel's own messages in a log, and writes HTML pages and an index.

Figures are checked against a reference: the same notebook run by plain nbclient under
matplotlib's inline backend, which is what JupyterLab uses. The fast tests use a small fixture
notebook that draws figures in every way the chapters do; the slow one runs every chapter.

The built course is also read in headless Chromium (``tests/html_browser.py``, marker
``browser``): ``index.html`` lists every chapter with status ok, and each chapter page it links
to shows every figure loaded and no error, except in cells tagged ``raises-exception``.
"""

from __future__ import annotations

import ast
import contextlib
import importlib
import inspect
import io
import os
import pkgutil
import re
import shutil
from pathlib import Path

import nbformat
import pytest
from html_browser import assert_course_reads_well, course_problems, read_course, require_chromium
from nbclient import NotebookClient
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

import course_utils
from course_utils import run_course
from course_utils.run_course.execute import INLINE_BACKEND
from course_utils.run_course.images import images_per_cell
from course_utils.run_course.progress import last_progress_line

REPO = Path(__file__).resolve().parents[1]
SOLUTIONS = sorted((REPO / "notebooks" / "solutions").glob("[0-9][0-9]_*.ipynb"))

FIXTURE_CELLS = [
    "import matplotlib.pyplot as plt\nplt.plot([1, 2, 3])\nplt.show()",
    "fig, ax = plt.subplots()\nax.plot([3, 1])\nfig",                 # shown twice in Lab
    "fig, ax = plt.subplots()\nax.plot([0, 1]);",
    "from course_utils.plots import image_grid\nimport numpy as np\n"
    "image_grid(np.zeros((4, 1, 8, 8)), title='zeros');",
    "import ipywidgets as w\nfrom IPython.display import display\nout = w.Output()\n"
    "with out:\n    f2, a2 = plt.subplots()\n    a2.plot([1, 0])\n    display(f2)\n"
    "    plt.close(f2)\nw.VBox([w.IntSlider(3), out])",
    "from course_utils import config\nimport time\n"
    "for _ in config.progress_bar()(range(25), desc='fixture loop'):\n    time.sleep(0.02)",
    "import os\nimport course_utils.pretrained as pre\n"
    "open(os.path.join(os.path.dirname(pre.__file__), 'classifier.pt'), 'rb').close()\n"
    "os.write(2, b'kernel-stderr-marker\\n')\nprint('no figure here')",
    "import warnings\nwarnings.warn('a warning on stderr, not an error')",
    "raise ValueError('raised on purpose')",                            # tagged raises-exception
]
RAISES_CELL = len(FIXTURE_CELLS) - 1        # index in FIXTURE_CELLS of the cell meant to raise


def write_fixture(folder: Path) -> Path:
    """A two-figure-per-way notebook: pyplot, returned Figure, course plots, a widget; then a
    warning and a cell tagged ``raises-exception`` that raises on purpose."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "01_fixture.ipynb"
    cells = [new_markdown_cell("# Runner fixture")] + [new_code_cell(s) for s in FIXTURE_CELLS]
    cells[1 + RAISES_CELL].metadata["tags"] = ["raises-exception"]
    nbformat.write(new_notebook(cells=cells), path)
    return path


def reference_images(path: Path, backend: str = INLINE_BACKEND) -> list[int]:
    """Figures per code cell when ``path`` runs in a plain kernel with ``backend`` (smoke mode)."""
    nb = nbformat.read(path, as_version=4)
    env = dict(os.environ, COURSE_SMOKE="1", MPLBACKEND=backend)
    env.pop("COURSE_EXPECT", None)
    NotebookClient(nb, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute(env=env)
    return images_per_cell(nb)


@pytest.fixture(scope="module")
def fixture_run(tmp_path_factory):
    """Run the fixture notebook through the runner once; keep its output and the paths."""
    root = tmp_path_factory.mktemp("runner")
    src = write_fixture(root / "src")
    out = root / "build"
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = run_course.main([str(src), "--smoke", "--out", str(out)])
    return {"code": code, "src": src, "out": out, "stdout": stdout.getvalue(),
            "stderr": stderr.getvalue()}


def test_fixture_run_succeeds_and_summarises(fixture_run):
    out = fixture_run["stdout"]
    assert fixture_run["code"] == 0, out + fixture_run["stderr"]
    assert re.search(r"Summary: 1 notebook\(s\) in \d+ s", out), out
    assert re.search(r"ok +\d+ s +01_fixture\.ipynb +6 figures", out), out
    assert "shipped checkpoint loaded: classifier.pt" in out


def test_progress_shows_cell_k_of_n_and_elapsed_time(fixture_run):
    err = fixture_run["stderr"]
    assert "01_fixture.ipynb" in err and re.search(r"\[00:0\d\]", err), err
    for k in range(1, len(FIXTURE_CELLS) + 1):
        assert f"cell {k}/{len(FIXTURE_CELLS)}" in err, err


def test_kernel_messages_go_to_the_log_not_the_display(fixture_run):
    log = fixture_run["out"] / "logs" / "01_fixture.kernel.log"
    assert "kernel-stderr-marker" in log.read_text()
    shown = fixture_run["stdout"] + fixture_run["stderr"]
    assert "kernel-stderr-marker" not in shown
    assert "without encryption" not in shown and "[IPKernelApp]" not in shown


def test_figures_match_what_jupyterlab_shows(fixture_run):
    executed = nbformat.read(fixture_run["out"] / "01_fixture.ipynb", as_version=4)
    got = images_per_cell(executed)
    assert got == reference_images(fixture_run["src"])
    assert got[:5] == [1, 2, 1, 1, 1]            # the returned Figure shows twice, as in Lab


def test_reference_catches_a_runner_without_figures(fixture_run):
    """The comparison can fail: under the Agg backend (the old runner) no figure is stored."""
    assert sum(reference_images(fixture_run["src"], backend="Agg")) < 6


def test_progress_bars_keep_their_final_count(fixture_run):
    executed = nbformat.read(fixture_run["out"] / "01_fixture.ipynb", as_version=4)
    loop = executed.cells[6]
    text = "".join(o.get("text", "") for o in loop.outputs if o.output_type == "stream")
    assert "fixture loop: 100%" in text and "25/25" in text, text
    assert "\r" not in text
    assert not any("widget-view" in str(o.get("data", {})) for o in loop.outputs)


def test_html_pages_embed_figures_and_index_links_them(fixture_run):
    out = fixture_run["out"]
    page = (out / "01_fixture.html").read_text()
    # every figure once as an image, the widget's one in its static copy
    assert page.count('src="data:image/png;base64,') == 6
    assert page.count('class="course-widget-static"') == 1
    assert "application/vnd.jupyter.widget-state+json" in page     # for the live sliders
    index = (out / "index.html").read_text()
    assert 'href="01_fixture.html"' in index and 'href="01_fixture.ipynb"' in index
    assert "Runner fixture" in index and ">ok<" in index


@pytest.mark.browser
def test_built_course_reads_well_in_chromium(fixture_run):
    """index.html, opened in headless Chromium, lists the fixture with status ok; its page,
    reached by the index's link, shows its 6 figures loaded and no error but the expected one."""
    visit = assert_course_reads_well(fixture_run["out"], require_chromium(), ["01_fixture.ipynb"],
                                     figures={"01_fixture.ipynb": 6})
    page = visit.pages["01_fixture.ipynb"]
    tagged = 1 + RAISES_CELL                      # the page counts the Markdown title cell too
    assert page.raising_cells == [tagged] and [e.cell for e in page.errors] == [tagged]
    assert "ValueError" in page.errors[0].text and page.images == 6


@pytest.mark.browser
def test_browser_check_catches_a_broken_course(fixture_run, tmp_path):
    """The check can fail: in a copy of the build, an image that cannot load, the raising cell's
    tag taken off and the chapter marked as failed in the index are each reported."""
    out = shutil.copytree(fixture_run["out"], tmp_path / "build")
    page = out / "01_fixture.html"
    text = page.read_text(encoding="utf-8")
    text = text.replace('src="data:image/png;base64,', 'src="data:image/png;base64,AAAA', 1)
    page.write_text(text.replace("celltag_raises-exception", "celltag_other"), encoding="utf-8")
    index = out / "index.html"
    index.write_text(index.read_text(encoding="utf-8").replace(
        '<td class="ok">ok</td>', '<td class="error">error</td>'), encoding="utf-8")
    problems = course_problems(read_course(out, require_chromium()), ["01_fixture.ipynb"])
    assert any("an image did not load (cell 1:" in p for p in problems), problems
    assert any("shows an error output: ValueError: raised on purpose" in p
               for p in problems), problems
    assert any("01_fixture.ipynb has status 'error'" in p for p in problems), problems
    assert len(problems) == 3, problems


def test_runner_reports_missing_selection(tmp_path, capsys):
    assert run_course.main(["--smoke", "--only", "99", "--out", str(tmp_path)]) == 2
    assert run_course.main([str(tmp_path / "nope.ipynb"), "--out", str(tmp_path)]) == 2
    assert "not a notebook file" in capsys.readouterr().err


def test_failing_notebook_shows_error_and_kernel_log(tmp_path, capsys):
    src = tmp_path / "src" / "09_broken.ipynb"
    src.parent.mkdir()
    nbformat.write(new_notebook(cells=[new_code_cell("print('before')"),
                                       new_code_cell("raise RuntimeError('deliberate')")]), src)
    assert run_course.main([str(src), "--smoke", "--no-html", "--out", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "RuntimeError: deliberate" in out and "kernel log" in out and "FAILED" in out
    executed = nbformat.read(tmp_path / "09_broken.ipynb", as_version=4)
    assert executed.cells[1].outputs[0].output_type == "error"


def test_last_progress_line_reads_tqdm_text():
    text = "epoch 1\nfit:  50%|#####     | 5/10 [00:05<00:05, 1.00step/s]\rfit:  60%|######"
    assert last_progress_line(text + "    | 6/10 [00:06<00:04]") == \
        "fit:  60%|######    | 6/10 [00:06<00:04]"
    assert last_progress_line("loss 0.25 after 3 steps\n") is None


def test_images_per_cell_counts_widget_contents_once():
    png = {"output_type": "display_data", "data": {"image/png": "x", "image/svg+xml": "y"}}
    view = {"output_type": "display_data",
            "data": {"application/vnd.jupyter.widget-view+json": {"model_id": "box"}}}
    states = {"box": {"children": ["IPY_MODEL_out", "IPY_MODEL_out"]},
              "out": {"outputs": [png, png]}}
    nb = {"cells": [{"cell_type": "code", "outputs": [png, view]},
                    {"cell_type": "markdown"}, {"cell_type": "code", "outputs": []}],
          "metadata": {"widgets": {"application/vnd.jupyter.widget-state+json": {
              "state": {k: {"state": v} for k, v in states.items()}}}}}
    assert images_per_cell(nb) == [3, 0]


# ------------------------------------------------------------------ every chapter (slow)

def figure_functions() -> set[str]:
    """Names of the public course_utils functions, in its plot modules, that return a Figure."""
    names = set()
    for info in pkgutil.iter_modules(course_utils.__path__):
        if "plot" in info.name:
            module = importlib.import_module(f"course_utils.{info.name}")
            names |= {name for name, f in inspect.getmembers(module, inspect.isfunction)
                      if not name.startswith("_")
                      and "Figure" in str(inspect.signature(f).return_annotation)}
    return names


PLOT_FUNCTIONS = figure_functions()
PYPLOT_DRAWING = {"plot", "imshow", "scatter", "bar", "hist", "subplots", "figure", "show"}


def draws_figure(source: str) -> bool:
    """Whether a cell calls a course plot function or pyplot outside any def or class."""
    try:
        tree = ast.parse(source)
    except SyntaxError:                     # IPython magics: not a figure cell in this course
        return False
    body = [s for s in tree.body if not isinstance(s, (ast.FunctionDef, ast.ClassDef))]
    for node in (n for stmt in body for n in ast.walk(stmt) if isinstance(n, ast.Call)):
        func = node.func
        if isinstance(func, ast.Name) and func.id in PLOT_FUNCTIONS:
            return True
        if isinstance(func, ast.Attribute) and (
                (isinstance(func.value, ast.Name) and func.value.id == "plt"
                 and func.attr in PYPLOT_DRAWING) or func.attr in PLOT_FUNCTIONS):
            return True
    return False


def test_draws_figure_recognises_figure_cells():
    assert draws_figure("image_grid(x);")
    assert draws_figure("fig = plots.loss_curves(h)")
    assert draws_figure("plt.subplots(1, 2)")
    assert not draws_figure("def show(x):\n    return image_grid(x)")
    assert not draws_figure("print(image_grid)")


@pytest.fixture(scope="module")
def course_build(tmp_path_factory):
    """Every chapter run once through the runner in smoke mode, from a copy taken first, so
    that the runner and the reference run the same text even if a notebook is being edited."""
    root = tmp_path_factory.mktemp("course")
    (root / "src").mkdir()
    copies = [shutil.copy(src, root / "src" / src.name) for src in SOLUTIONS]
    out = root / "build"
    code = run_course.main(["--smoke", "--out", str(out), *map(str, copies)])
    return code, out, root / "src"


@pytest.mark.slow
@pytest.mark.parametrize("src", SOLUTIONS, ids=[p.stem for p in SOLUTIONS])
def test_every_chapter_has_the_figures_jupyterlab_shows(course_build, src):
    code, out, copies = course_build
    src = copies / src.name
    executed = nbformat.read(out / src.name, as_version=4)
    errors = [o for c in executed.cells if c.cell_type == "code"
              and "raises-exception" not in c.metadata.get("tags", [])
              for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors, f"{src.name} failed in the runner: {errors[0].get('evalue')}"
    got = images_per_cell(executed)
    code_cells = [c for c in executed.cells if c.cell_type == "code"]
    blank = [i for i, (cell, n) in enumerate(zip(code_cells, got, strict=True))
             if draws_figure(cell.source) and n == 0]
    assert not blank, f"{src.name}: code cells {blank} draw a figure but store no image"
    assert got == reference_images(src), f"{src.name}: figures per code cell differ from Lab"
    assert (out / f"{src.stem}.html").is_file() and src.name in (out / "index.html").read_text()


@pytest.mark.slow
@pytest.mark.browser
def test_every_chapter_reads_well_in_chromium(course_build):
    """The built course (the same build as above) in headless Chromium: every chapter in the
    index with status ok, and each page shows the figures its notebook holds, all loaded, and
    no error but in cells tagged raises-exception."""
    _, out, _ = course_build
    figures = {src.name: sum(images_per_cell(nbformat.read(out / src.name, as_version=4)))
               for src in SOLUTIONS}
    assert_course_reads_well(out, require_chromium(), [src.name for src in SOLUTIONS], figures)


def test_progress_switch_picks_plain_text_tqdm(monkeypatch):
    import tqdm.auto
    import tqdm.std

    from course_utils import config

    monkeypatch.setenv("COURSE_PROGRESS", "text")
    assert config.progress_bar() is tqdm.std.tqdm
    monkeypatch.setenv("COURSE_PROGRESS", "auto")
    assert config.progress_bar() is tqdm.auto.tqdm
    monkeypatch.setenv("COURSE_PROGRESS", "widgets")
    with pytest.raises(config.ConfigError, match="COURSE_PROGRESS"):
        config.progress_bar()
