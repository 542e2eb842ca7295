"""The student notebooks in real JupyterLab, driven by a headless Chromium.

nbval executes each notebook's kernel but never renders anything, so it cannot see what a learner
sees: a widget showing "Error displaying widget", a mermaid diagram left as source, a figure that
never appears. This module starts ``jupyter lab`` on 127.0.0.1 (free port, random token, smoke
mode) in a temporary copy of the student notebooks and drives the system Chromium through
Playwright's sync API. For every student notebook it runs "Run All Cells" and checks that

* every code cell got an execution count and the kernel went back to idle;
* no cell shows an error: an ``error`` output, a traceback or ``SomethingError:`` line on stderr
  (in the cell or inside a widget's output area), or a check that did not pass ("[!!]"; the
  kernel also runs with ``COURSE_EXPECT=unsolved``, which turns such a check into an error).
  The "not done yet" of each unfinished exercise is expected, and must be shown;
* every figure in the outputs is visible (its image loaded) and every widget rendered, with no
  "Error displaying widget" / "model not found" text anywhere;

and that the introduction's mermaid diagram renders as an SVG, and that dragging a slider of the
VAE latent explorer changes the decoded image (``COURSE_WIDGETS=1`` makes ``course_utils.widgets``
show its sliders in smoke mode, where it otherwise draws a static figure).

Each notebook is opened once, in its own browser context and workspace; everything the tests
assert on is recorded during that visit (:class:`NotebookVisit`), then its kernel is shut down.
Screenshots and logs go to ``artifacts/browser/``; the run reports that folder and the time each
notebook took.

Needs Chromium (Debian: ``apt-get install chromium``, or set ``COURSE_CHROMIUM`` to a Chromium or
Chrome binary) and Playwright for Python (``pip install playwright``; never ``playwright
install``: the test uses the system browser). When one is missing the tests are skipped, or fail
when ``CI=true``.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat
import pytest
from html_browser import require_chromium

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = REPO / "notebooks"
ARTIFACTS = REPO / "artifacts" / "browser"
STUDENT_NOTEBOOKS = sorted(p.name for p in NOTEBOOK_DIR.glob("*.ipynb"))
INTRO = "00_introduction.ipynb"
VAE = "02_vae.ipynb"

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
                 "--disable-dev-shm-usage"]   # containers often have a tiny /dev/shm
VIEWPORT = {"width": 1280, "height": 900}
SERVER_START_TIMEOUT_S = 120    # jupyter lab answering /api/status
NOTEBOOK_OPEN_TIMEOUT_S = 120   # JupyterLab loaded, notebook widget and kernel session there
RUN_ALL_TIMEOUT_S = 420         # one notebook, "Run All Cells", smoke mode (normally 10-60 s)
SETTLE_TIMEOUT_S = 30           # images loaded and widgets rendered after the run
SLIDER_TIMEOUT_S = 30           # decoded image redrawn after a slider move

# An error line as Python prints it: "ValueError: ...", "RuntimeError", "KeyError: 'x'".
# "UserWarning: ..." on stderr is not an error.
ERROR_LINE = re.compile(r"^\s*(?:[\w.]+\.)?\w*(?:Error|Exception|Exit|Interrupt)\b(?::|$)", re.M)
TRACEBACK = "Traceback (most recent call last)"
WIDGET_ERRORS = ("Error displaying widget", "model not found")
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"


# --------------------------------------------------------------------------------------------
# Requirements: skip (or fail under CI=true) with a reason that says how to install them
# --------------------------------------------------------------------------------------------

# The discovery and the skip are shared with tests/test_run_course.py, which reads the built
# course (build/index.html and the chapter pages) in Chromium: see tests/html_browser.py.

@pytest.fixture(scope="module")
def chromium() -> str:
    """Path of the browser; skips the module (fails it under CI=true) when something is missing."""
    return require_chromium()


# --------------------------------------------------------------------------------------------
# The JupyterLab server
# --------------------------------------------------------------------------------------------

@dataclass
class LabServer:
    """A running ``jupyter lab``: where it listens, its token, its notebook folder and log."""

    url: str
    token: str
    root: Path
    log: Path
    proc: subprocess.Popen

    def api(self, method: str, path: str, timeout: float = 10.0) -> Any:
        """Call the Jupyter server REST API; returns the decoded JSON body (or None)."""
        req = urllib.request.Request(f"{self.url}{path}", method=method,
                                     headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            body = resp.read()
        return json.loads(body) if body else None

    def log_tail(self, n: int = 40) -> str:
        lines = self.log.read_text(errors="replace").splitlines() if self.log.exists() else []
        return "\n".join(lines[-n:]) or "(empty)"

    def shutdown_kernels(self) -> None:
        """Delete every session, shutting its kernel down (frees memory between notebooks)."""
        try:
            for session in self.api("GET", "/api/sessions"):
                self.api("DELETE", f"/api/sessions/{session['id']}")
        except (OSError, ValueError):
            pass


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _write_lab_settings(settings_dir: Path) -> None:
    """User settings for a quiet, fully rendered JupyterLab (no news pop-up, no windowing)."""
    settings = {
        # Render every cell, so outputs far down the notebook are in the DOM and screenshots.
        "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
        "@jupyterlab/apputils-extension/notification.jupyterlab-settings":
            {"fetchNews": "false", "checkForUpdates": False},
    }
    for rel, value in settings.items():
        path = settings_dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(value))


def _server_env(base: Path, token: str) -> dict[str, str]:
    env = dict(os.environ)
    # The kernel must use the inline backend (pytest's conftest sets MPLBACKEND=Agg, which
    # would hide every figure), and no test-only switch may leak into it.
    for var in ("MPLBACKEND", "COURSE_TRAIN", "COURSE_EXPECT", "JUPYTER_TOKEN"):
        env.pop(var, None)
    env.update({
        "COURSE_SMOKE": "1",
        # A check that reports anything but "not done" raises, so it shows as an error output.
        "COURSE_EXPECT": "unsolved",
        # course_utils.widgets shows a static figure instead of its sliders in smoke mode
        # (nothing would see them); a browser does, so force the interactive widgets on.
        "COURSE_WIDGETS": "1",
        "JUPYTER_TOKEN": token,   # in the environment, not on the command line (ps)
        # Keep the developer's own Jupyter/IPython configuration and kernels out of the test.
        "JUPYTER_CONFIG_DIR": str(base / "jupyter-config"),
        "JUPYTER_DATA_DIR": str(base / "jupyter-data"),
        "JUPYTER_RUNTIME_DIR": str(base / "jupyter-runtime"),
        "IPYTHONDIR": str(base / "ipython"),
        "PYTHONUNBUFFERED": "1",
    })
    return env


def _wait_until_ready(server: LabServer) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            pytest.fail(f"jupyter lab exited with code {server.proc.returncode} while starting; "
                        f"its log ({server.log}):\n{server.log_tail()}", pytrace=False)
        try:
            server.api("GET", "/api/status", timeout=2)
            return
        except (OSError, ValueError):
            time.sleep(0.3)
    pytest.fail(f"jupyter lab did not answer on {server.url} within {SERVER_START_TIMEOUT_S} s; "
                f"its log ({server.log}):\n{server.log_tail()}", pytrace=False)


def _stop_server(server: LabServer) -> None:
    """Shut the server down politely (kernels included), then by signal if it does not stop."""
    proc = server.proc
    if proc.poll() is None:
        try:
            server.api("POST", "/api/shutdown", timeout=5)
        except (OSError, ValueError):
            pass
        try:
            proc.wait(timeout=20)
            return
        except subprocess.TimeoutExpired:
            pass
    for sig, wait_s in ((signal.SIGTERM, 10), (getattr(signal, "SIGKILL", signal.SIGTERM), 10)):
        if proc.poll() is not None:
            return
        try:   # the server leads its own process group (start_new_session=True)
            os.killpg(proc.pid, sig) if hasattr(os, "killpg") else proc.send_signal(sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait_s)
        except subprocess.TimeoutExpired:
            continue


@pytest.fixture(scope="module")
def lab(chromium: str, tmp_path_factory: pytest.TempPathFactory,
        artifacts: Path) -> Iterator[LabServer]:
    """``jupyter lab`` serving a temporary copy of the student notebooks; always shut down.

    Its log is copied to the artifacts folder at the end.
    """
    base = tmp_path_factory.mktemp("jupyterlab")
    root = base / "notebooks"
    root.mkdir()
    for name in STUDENT_NOTEBOOKS:
        shutil.copy2(NOTEBOOK_DIR / name, root / name)
    _write_lab_settings(base / "user-settings")
    port, token = _free_port(), secrets.token_hex(24)
    cmd = [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ip=127.0.0.1",
           f"--port={port}", "--ServerApp.port_retries=0", f"--ServerApp.root_dir={root}",
           f"--LabApp.user_settings_dir={base / 'user-settings'}",
           f"--LabApp.workspaces_dir={base / 'workspaces'}",
           "--LabApp.expose_app_in_browser=True"]   # window.jupyterapp, to run commands
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")
    log_path = base / "server.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(cmd, cwd=root, env=_server_env(base, token), stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    server = LabServer(f"http://127.0.0.1:{port}", token, root, log_path, proc)
    try:
        _wait_until_ready(server)
        yield server
    finally:
        _stop_server(server)
        shutil.copyfile(log_path, artifacts / "jupyter-server.log")


# --------------------------------------------------------------------------------------------
# The browser
# --------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def browser(chromium: str) -> Iterator[Any]:
    """One headless Chromium for the whole module (Playwright sync API)."""
    from playwright.sync_api import sync_playwright

    pw = sync_playwright().start()
    try:
        b = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()
    finally:
        pw.stop()


@pytest.fixture(scope="module")
def artifacts() -> Path:
    """A fresh ``artifacts/browser/`` folder for this run's screenshots and logs."""
    shutil.rmtree(ARTIFACTS, ignore_errors=True)
    ARTIFACTS.mkdir(parents=True)
    return ARTIFACTS


def _report(request: pytest.FixtureRequest, line: str) -> None:
    """Write ``line`` to the terminal even when output is captured (no ``-s`` needed)."""
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is not None and capture is not None:
        with capture.global_and_fixture_disabled():
            reporter.write_line("\n" + line)
    else:
        print(line)


# JavaScript run in the page. ``window.__course`` holds the notebook panel under test.
JS_FIND_NOTEBOOK = """(name) => {
  const app = window.jupyterapp;
  if (!app || !app.shell) return false;
  for (const w of app.shell.widgets('main')) {
    if (w.context && w.context.path === name && w.content && w.sessionContext) {
      window.__course = {panel: w, run: null};
      return true;
    }
  }
  return false;
}"""

JS_START_RUN_ALL = """async (timeoutMs) => {
  const app = window.jupyterapp, panel = window.__course.panel;
  const ready = Promise.all([panel.context.ready, panel.sessionContext.ready]);
  const late = new Promise(resolve => setTimeout(() => resolve('late'), timeoutMs));
  if (await Promise.race([ready, late]) === 'late') {
    const dialog = document.querySelector('.jp-Dialog');
    throw new Error('the notebook or its kernel session was not ready after ' + timeoutMs +
                    ' ms' + (dialog ? '; a dialog is open: ' + dialog.innerText : ''));
  }
  if (!panel.sessionContext.session || !panel.sessionContext.session.kernel) {
    throw new Error('the notebook has no kernel');
  }
  app.shell.activateById(panel.id);
  window.__course.run = {done: false, error: null};
  app.commands.execute('notebook:run-all-cells').then(
    () => { window.__course.run.done = true; },
    (e) => { window.__course.run.done = true; window.__course.run.error = String(e); });
  return true;
}"""

JS_RUN_FINISHED = """() => {
  const c = window.__course, session = c.panel.sessionContext.session;
  // After a cell tagged raises-exception fails, 'Run All' settles at once while the kernel
  // goes on with the queued cells (idle for a moment between them): wait for all of them.
  const code = c.panel.content.widgets.filter(w => w.model.type === 'code');
  const demo = code.some(w => (w.model.getMetadata('tags') || []).includes('raises-exception'));
  const pending = demo && code.some(w => w.model.executionCount === null);
  return c.run.done && !pending && !!session && !!session.kernel &&
         session.kernel.status === 'idle';
}"""

JS_KERNEL_IDLE = """() => {
  const session = window.__course.panel.sessionContext.session;
  return !!session && !!session.kernel && session.kernel.status === 'idle';
}"""

# The cell's own output elements, one per output in the cell model, in order; outputs shown
# inside a widget (e.g. an ipywidgets Output) are not counted. Every script below starts with it.
JS_TOP_OUTPUTS = """
const topOutputs = (cellNode) => [...cellNode.querySelectorAll('.jp-OutputArea-output')]
    .filter(o => !o.parentElement.closest('.jupyter-widgets'));
const isWidgetView = (out) => !!out.data && !!out.data['application/vnd.jupyter.widget-view+json'];
const widgetShown = (el) => !!el.querySelector('.jupyter-widgets:not(.widget-error)') &&
    !/Error displaying widget|model not found/.test(el.textContent);
"""

# Every output image loaded, every widget view rendered (or failed visibly).
JS_SETTLED = """() => {""" + JS_TOP_OUTPUTS + """
  const panel = window.__course.panel, node = panel.content.node;
  if ([...node.querySelectorAll('.jp-OutputArea-output img')].some(i => !i.complete)) return false;
  for (const cell of panel.content.widgets) {
    if (cell.model.type !== 'code') continue;
    const outs = cell.model.outputs.toJSON(), els = topOutputs(cell.node);
    for (let j = 0; j < outs.length; j++) {
      if (isWidgetView(outs[j]) && els[j] && !widgetShown(els[j]) &&
          !/Error displaying widget|model not found/.test(els[j].textContent)) return false;
    }
  }
  return true;
}"""

JS_CELL_REPORT = """() => {""" + JS_TOP_OUTPUTS + """
  const panel = window.__course.panel, report = [];
  panel.content.widgets.forEach((cell, i) => {
    const m = cell.model, r = {index: i, type: m.type, source: m.sharedModel.getSource()};
    if (m.type === 'code') {
      r.execution_count = m.executionCount;
      r.tags = m.getMetadata('tags') || [];
      r.outputs = m.outputs.toJSON();
      const area = cell.node.querySelector('.jp-Cell-outputArea') || cell.node;
      r.output_text = area.innerText;
      r.widget_stderr = [...area.querySelectorAll(
          '.jupyter-widgets .jp-RenderedText[data-mime-type="application/vnd.jupyter.stderr"]')]
          .map(e => e.textContent);
      r.broken_images = [...area.querySelectorAll('img')]
          .filter(img => img.complete && img.naturalWidth === 0).length;
      r.shown = topOutputs(cell.node).map(el => ({
          widget: widgetShown(el),
          images: [...el.querySelectorAll('img')].map(
              img => ({complete: img.complete, width: img.naturalWidth})),
          text: el.innerText}));
    }
    report.push(r);
  });
  return report;
}"""

JS_MERMAID = """() => {
  const node = window.__course.panel.content.node;
  return [...node.querySelectorAll('.jp-RenderedMermaid')].map(m => {
    const img = m.querySelector('img'), svg = m.querySelector('svg');
    let svgText = '';
    if (img && img.src.startsWith('data:image/svg+xml')) {
      const data = img.src.slice(img.src.indexOf(',') + 1);
      svgText = img.src.includes(';base64,') ? atob(data) : decodeURIComponent(data);
    } else if (svg) {
      svgText = svg.outerHTML;
    }
    const details = m.querySelector('details > pre');
    return {svg: svgText, warning: m.classList.contains('jp-mod-warning'),
            error: details ? details.textContent.trim() : '',
            loaded: img ? (img.complete && img.naturalWidth > 0) : !!svg,
            text: m.innerText};
  });
}"""


# --------------------------------------------------------------------------------------------
# One visit of one notebook: open, run all, record everything the tests assert on
# --------------------------------------------------------------------------------------------

@dataclass
class NotebookVisit:
    """What the browser saw in one notebook; the tests only read this."""

    name: str
    setup_error: str = ""                     # opening or running failed outright
    cells: list[dict[str, Any]] = field(default_factory=list)
    panel_text: str = ""
    run_seconds: float = 0.0                  # "Run All Cells" until the kernel is idle
    total_seconds: float = 0.0                # the whole visit: open, run, checks, close
    screenshot: Path | None = None
    console_errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)   # JupyterLab dialogs left open
    mermaid: list[dict[str, Any]] = field(default_factory=list)
    mermaid_screenshots: list[Path] = field(default_factory=list)
    explorer: dict[str, Any] = field(default_factory=dict)


def _stem(name: str) -> str:
    return Path(name).stem


def _screenshot_whole_notebook(page: Any, path: Path, max_px: int = 12000) -> None:
    """Grow the viewport to the notebook's height so one screenshot shows every cell.

    A notebook taller than ``max_px`` (Chromium cannot capture much more than 16k pixels) is
    captured in several overlapping parts: ``NN_name.png``, ``NN_name_part2.png``, ...
    """
    height = page.evaluate("""() => {
      const node = window.__course.panel.content.node;
      const s = node.querySelector('.jp-WindowedPanel-outer') || node;   // the scroller
      window.__course.scroller = s;
      return s.scrollHeight + s.getBoundingClientRect().top + 40;
    }""")
    # Where the last cell ends, in scroller coordinates (the blank "scroll past end" is not shown).
    js_content_end = """() => {
      const s = window.__course.scroller, cells = s.querySelectorAll('.jp-Cell');
      const last = cells.length ? cells[cells.length - 1] : s;
      return last.getBoundingClientRect().bottom - s.getBoundingClientRect().top + s.scrollTop;
    }"""
    page.set_viewport_size({"width": VIEWPORT["width"],
                            "height": int(min(max(height, VIEWPORT["height"]), max_px))})
    try:
        y, part = 0, 1
        while part <= 6:
            top, visible = page.evaluate(
                "(y) => { const s = window.__course.scroller; s.scrollTop = y; "
                "return [s.scrollTop, s.clientHeight]; }", y)
            page.wait_for_timeout(300)
            page.screenshot(path=str(path if part == 1 else
                                     path.with_name(f"{path.stem}_part{part}.png")))
            if top + visible >= page.evaluate(js_content_end) - 1:
                break
            y, part = top + visible - 60, part + 1
    finally:
        page.set_viewport_size(VIEWPORT)


# For each <img>/<canvas>: "WxH:hash" of the decoded pixels of its central region (the middle
# half of its width and height), "" while it is not loaded. The centre is the decoded picture of
# a matplotlib figure; a changed title or axis label around it does not count as a redraw.
JS_PIXEL_DIGESTS = """async (elements) => {
  const out = [];
  for (const el of elements) {
    const w = el.naturalWidth ?? el.width, h = el.naturalHeight ?? el.height;
    if (!w || !h || (el.tagName === 'IMG' && !el.complete)) { out.push(''); continue; }
    const c = document.createElement('canvas');
    c.width = w; c.height = h;
    const ctx = c.getContext('2d');
    ctx.drawImage(el, 0, 0);
    const x0 = Math.floor(w / 4), y0 = Math.floor(h / 4);
    const px = ctx.getImageData(x0, y0, Math.max(1, Math.ceil(w / 2)),
                                Math.max(1, Math.ceil(h / 2))).data;
    let hash = 2166136261;                       // FNV-1a over the RGBA bytes
    for (let i = 0; i < px.length; i++) { hash ^= px[i]; hash = Math.imul(hash, 16777619); }
    out.push(w + 'x' + h + ':' + (hash >>> 0).toString(16));
  }
  return out;
}"""


def _explore_latent_sliders(page: Any, out_dir: Path) -> dict[str, Any]:
    """Find the latent explorer in the open notebook, move a slider, compare the decoded image.

    The explorer is the first code cell (preferring one whose source mentions "explor") whose
    output holds an ipywidgets slider and an image. The first slider's handle is dragged with the
    mouse to the far side of its track (90% or 10%), as a learner would; the decoded pixels of the
    explorer's images are compared before and after, so a layout shift alone never counts as a
    redraw, nor does a changed title around the picture (see ``JS_PIXEL_DIGESTS``). Screenshots
    of the explorer before and after go to ``out_dir``.
    """
    from playwright.sync_api import Error as PlaywrightError

    found = page.evaluate("""() => {
      const panel = window.__course.panel, out = [];
      panel.content.widgets.forEach((cell, i) => {
        if (cell.model.type !== 'code') return;
        const area = cell.node.querySelector('.jp-Cell-outputArea');
        if (!area) return;
        const sliders = area.querySelectorAll('.jupyter-widgets.widget-slider');
        const images = area.querySelectorAll('.jupyter-widgets img, .jupyter-widgets canvas');
        if (sliders.length && images.length) {
          out.push({index: i, sliders: sliders.length, images: images.length,
                    source: cell.model.sharedModel.getSource()});
        }
      });
      return out;
    }""")
    if not found:
        return {"error": "no code cell output holds both an ipywidgets slider and an image"}
    preferred = [c for c in found if "explor" in c["source"].lower()]
    cell = (preferred or found)[0]
    area = page.locator(".jp-Notebook .jp-Cell").nth(cell["index"]).locator(".jp-Cell-outputArea")
    images = area.locator(".jupyter-widgets img, .jupyter-widgets canvas")
    slider = area.locator(".jupyter-widgets.widget-slider").first
    result: dict[str, Any] = {"cell": cell, "changed": False}

    def snap() -> list[str]:
        """A digest of the decoded pixels of each image (independent of layout shifts)."""
        try:
            return images.evaluate_all(JS_PIXEL_DIGESTS)
        except PlaywrightError:   # an image was being replaced: look again next time
            return []

    area.scroll_into_view_if_needed()
    before = snap()
    if not before or not all(before):
        result["error"] = f"the explorer's images could not be read: {before}"
        return result
    (out_dir / "latent_explorer_before.png").write_bytes(area.screenshot())
    readout_before = slider.locator(".widget-readout").first.inner_text() \
        if slider.locator(".widget-readout").count() else ""
    handle = slider.locator(".noUi-handle").first
    track = slider.locator(".noUi-target, .slider-container").first
    hbox, tbox = handle.bounding_box(), track.bounding_box()
    if not hbox or not tbox:
        result["error"] = "the slider has no visible handle/track to drag"
        return result
    page.mouse.move(hbox["x"] + hbox["width"] / 2, hbox["y"] + hbox["height"] / 2)
    page.mouse.down()
    handle_x = hbox["x"] + hbox["width"] / 2
    target = 0.9 if handle_x < tbox["x"] + tbox["width"] / 2 else 0.1
    page.mouse.move(tbox["x"] + target * tbox["width"], hbox["y"] + hbox["height"] / 2, steps=8)
    page.mouse.up()
    result["slider_readout"] = [readout_before, slider.locator(".widget-readout").first.inner_text()
                                if slider.locator(".widget-readout").count() else ""]
    deadline = time.monotonic() + SLIDER_TIMEOUT_S
    after = before
    while time.monotonic() < deadline:
        page.wait_for_timeout(500)
        after = snap()
        if page.evaluate(JS_KERNEL_IDLE) and after and all(after) and after != before:
            result["changed"] = True
            break
    page.wait_for_timeout(300)
    (out_dir / "latent_explorer_after.png").write_bytes(area.screenshot())
    result["digests_before_after"] = [before, after]
    result["output_text_after"] = area.inner_text()
    result["stderr_after"] = area.locator(
        '.jp-RenderedText[data-mime-type="application/vnd.jupyter.stderr"]').all_inner_texts()
    return result


JS_STATE = """() => {
  const session = window.__course.panel.sessionContext.session;
  const dialogs = [...document.querySelectorAll('.jp-Dialog')].map(d => d.innerText.trim());
  return 'kernel ' + (session && session.kernel ? session.kernel.status : 'gone') +
         (dialogs.length ? '; dialog: ' + dialogs.join(' | ') : '');
}"""


def _visit(browser: Any, lab: LabServer, name: str, out_dir: Path) -> NotebookVisit:
    """Open ``name`` in JupyterLab, run all cells, and record what the page shows."""
    from playwright.sync_api import Error as PlaywrightError

    visit = NotebookVisit(name)
    visit_start = time.monotonic()
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    page.on("console", lambda m: visit.console_errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: visit.console_errors.append(f"uncaught: {e}"))
    try:
        page.goto(f"{lab.url}/lab/workspaces/test-{_stem(name)}/tree/{name}?token={lab.token}",
                  timeout=NOTEBOOK_OPEN_TIMEOUT_S * 1000)
        page.wait_for_function(JS_FIND_NOTEBOOK, arg=name, timeout=NOTEBOOK_OPEN_TIMEOUT_S * 1000)
        start = time.monotonic()
        page.evaluate(JS_START_RUN_ALL, NOTEBOOK_OPEN_TIMEOUT_S * 1000)
        try:
            page.wait_for_function(JS_RUN_FINISHED, timeout=RUN_ALL_TIMEOUT_S * 1000, polling=250)
            finished = True
        except PlaywrightError:
            finished = False
            visit.setup_error = (f"'Run All Cells' did not finish within {RUN_ALL_TIMEOUT_S} s "
                                 f"({page.evaluate(JS_STATE)})")
        visit.run_seconds = time.monotonic() - start
        if finished:
            try:
                page.wait_for_function(JS_SETTLED, timeout=SETTLE_TIMEOUT_S * 1000, polling=250)
            except PlaywrightError:
                pass   # the per-cell report names the image or widget that did not appear
            run_error = page.evaluate("() => window.__course.run.error")
            if run_error:
                visit.setup_error = (f"'Run All Cells' failed: {run_error} "
                                     f"({page.evaluate(JS_STATE)})")
        visit.cells = page.evaluate(JS_CELL_REPORT)
        visit.dialogs = page.evaluate(
            "() => [...document.querySelectorAll('.jp-Dialog')].map(d => d.innerText.trim())")
        visit.panel_text = page.evaluate("() => window.__course.panel.node.innerText")
        visit.screenshot = out_dir / f"{_stem(name)}.png"
        _screenshot_whole_notebook(page, visit.screenshot)
        if name == INTRO:
            try:   # mermaid renders asynchronously; the test compares the counts
                page.wait_for_function("(n) => document.querySelectorAll("
                                       "'.jp-RenderedMermaid').length >= n",
                                       arg=len(_mermaid_blocks(name)), timeout=30_000)
            except PlaywrightError:
                pass
            visit.mermaid = page.evaluate(JS_MERMAID)
            for k, loc in enumerate(page.locator(".jp-RenderedMermaid").all()):
                path = out_dir / f"{_stem(name)}_mermaid_{k}.png"
                loc.screenshot(path=str(path))
                visit.mermaid_screenshots.append(path)
        if name == VAE and finished:
            try:
                visit.explorer = _explore_latent_sliders(page, out_dir)
            except PlaywrightError as exc:
                visit.explorer = {"error": f"driving the explorer failed: {exc}"}
    except PlaywrightError as exc:
        visit.setup_error = visit.setup_error or f"{type(exc).__name__}: {exc}"
        try:
            page.screenshot(path=str(out_dir / f"{_stem(name)}_failure.png"))
        except PlaywrightError:
            pass
    finally:
        (out_dir / f"{_stem(name)}_console.txt").write_text("\n".join(visit.console_errors))
        try:
            context.close()
        except PlaywrightError:
            pass
        lab.shutdown_kernels()
        visit.total_seconds = time.monotonic() - visit_start
    return visit


@pytest.fixture(scope="module")
def visits(request: pytest.FixtureRequest, browser: Any, lab: LabServer,
           artifacts: Path) -> Iterator[Any]:
    """``visits(name)``: the (cached) :class:`NotebookVisit` of one student notebook.

    At the end it reports the time each notebook took and where the screenshots are.
    """
    cache: dict[str, NotebookVisit] = {}
    start = time.monotonic()

    def get(name: str) -> NotebookVisit:
        if name not in cache:
            cache[name] = _visit(browser, lab, name, artifacts)
        return cache[name]

    yield get
    times = ", ".join(f"{_stem(v.name)} {v.total_seconds:.0f} s (run all {v.run_seconds:.0f} s)"
                      for v in cache.values())
    summary = (f"browser test: {len(cache)} notebook(s) in {time.monotonic() - start:.0f} s "
               f"[{times}]; screenshots and logs in {artifacts}")
    (artifacts / "summary.txt").write_text(summary + "\n")
    _report(request, summary)


# --------------------------------------------------------------------------------------------
# Judging a visit
# --------------------------------------------------------------------------------------------

def _excerpt(text: str, lines: int = 4, width: int = 110, tail: bool = False) -> str:
    """At most ``lines`` lines of ``text`` (the last ones if ``tail``), for failure messages."""
    all_lines = [ln for ln in ANSI.sub("", text).strip().splitlines() if ln.strip()]
    picked = all_lines[-lines:] if tail else all_lines[:lines]
    cut = len(all_lines) > lines
    body = "\n      | ".join(ln[:width] for ln in picked)
    return ("... " if cut and tail else "") + body + (" ..." if cut and not tail else "")


def _stream_text(output: dict[str, Any]) -> str:
    text = output.get("text", "")
    return "".join(text) if isinstance(text, list) else str(text)


def _is_error_text(text: str) -> bool:
    return TRACEBACK in text or bool(ERROR_LINE.search(text))


def _cell_problems(cell: dict[str, Any]) -> list[str]:
    """Everything wrong with one executed code cell, as readable strings."""
    problems = []
    if cell.get("execution_count") in (None, 0):
        problems.append("was not executed (no execution count): 'Run All' stopped before it")
    outputs, shown = cell.get("outputs", []), cell.get("shown", [])
    if len(shown) != len(outputs):
        problems.append(f"{len(outputs)} output(s) in the notebook but {len(shown)} on the page")
    for k, out in enumerate(outputs):
        kind = out.get("output_type")
        data = out.get("data", {}) or {}
        el = shown[k] if k < len(shown) else {"widget": False, "images": [], "text": ""}
        if kind == "error" and "raises-exception" in cell.get("tags", []):
            continue                      # a cell that demonstrates an error (nbval's tag)
        if kind == "error":
            problems.append(f"raised {out.get('ename')}: {out.get('evalue')}\n      | "
                            + _excerpt("\n".join(out.get("traceback", [])), 6, tail=True))
        elif kind == "stream" and out.get("name") == "stderr" and _is_error_text(_stream_text(out)):
            problems.append("printed an error on stderr:\n      | "
                            + _excerpt(_stream_text(out), 6, tail=True))
        elif kind == "stream":
            problems += [f"a check did not pass: {line.strip()}"
                         for line in _stream_text(out).splitlines() if line.startswith("[!!]")]
        elif WIDGET_MIME in data:
            if not el["widget"]:
                problems.append("a widget is not displayed; the page shows: "
                                + (_excerpt(el["text"], 2) or "nothing"))
        elif {"image/png", "image/jpeg"} & set(data):
            if not any(img["complete"] and img["width"] > 0 for img in el["images"]):
                problems.append("a figure is not displayed (its image is missing or broken)")
    if cell.get("broken_images"):
        problems.append(f"{cell['broken_images']} image(s) on the page failed to load")
    for text in cell.get("widget_stderr", []):
        if _is_error_text(text):
            problems.append("a widget's output area shows an error:\n      | "
                            + _excerpt(text, 6, tail=True))
    for marker in WIDGET_ERRORS:
        if marker in cell.get("output_text", ""):
            problems.append(f"shows {marker!r}")
    return problems


def _exercise_ids(name: str) -> list[str]:
    nb = nbformat.read(NOTEBOOK_DIR / name, as_version=4)
    return [str(c.metadata["exercise_id"]) for c in nb.cells if "exercise_id" in c.metadata]


def _where(visit: NotebookVisit) -> str:
    return f"(screenshots: {ARTIFACTS}; notebook: {visit.screenshot or 'none'})"


# --------------------------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", STUDENT_NOTEBOOKS)
def test_student_notebook_runs_clean_in_jupyterlab(visits: Any, name: str,
                                                   record_property: Any) -> None:
    """Run All Cells: no error anywhere, figures and widgets shown, exercises say not done yet."""
    visit = visits(name)
    record_property("screenshots", str(ARTIFACTS))
    record_property("run_all_seconds", round(visit.run_seconds, 1))
    code_cells = [c for c in visit.cells if c["type"] == "code"]
    assert code_cells or not visit.setup_error, f"{name}: {visit.setup_error} {_where(visit)}"
    assert code_cells, f"{name}: the page shows no code cells {_where(visit)}"
    report = [f"  {visit.setup_error}"] if visit.setup_error else []
    report += [f"  a dialog is open: {_excerpt(d, 3)}" for d in visit.dialogs]
    for cell in code_cells:
        problems = _cell_problems(cell)
        if problems:
            report.append(f"  cell {cell['index']} [{cell.get('execution_count')}]: "
                          + _excerpt(cell["source"], 3).replace("\n      | ", " / ")
                          + "".join(f"\n    - {p}" for p in problems))
    for marker in WIDGET_ERRORS:
        if marker in visit.panel_text and not any(marker in c.get("output_text", "")
                                                  for c in code_cells):
            report.append(f"  the notebook page shows {marker!r}")
    shown = "\n".join(c.get("output_text", "") for c in code_cells)
    for exercise_id in _exercise_ids(name):
        if f"{exercise_id}: not done yet" not in shown:
            report.append(f"  exercise {exercise_id!r}: its check's 'not done yet' is not shown")
    assert not report, (f"{name}: {len(report)} problem(s) after Run All Cells "
                        f"({visit.run_seconds:.0f} s) {_where(visit)}\n" + "\n".join(report))


def _mermaid_blocks(name: str) -> list[str]:
    """The text of every ```mermaid block in the markdown cells of a notebook."""
    nb = nbformat.read(NOTEBOOK_DIR / name, as_version=4)
    return [block for c in nb.cells if c.cell_type == "markdown"
            for block in re.findall(r"```mermaid\s*\n(.*?)```", c.source, re.S)]


@pytest.mark.skipif(INTRO not in STUDENT_NOTEBOOKS, reason=f"{INTRO} not present")
def test_introduction_mermaid_diagram_renders_as_svg(visits: Any) -> None:
    """Every ```mermaid block of the introduction becomes an SVG picture, not an error."""
    blocks = _mermaid_blocks(INTRO)
    assert blocks, f"{INTRO} has no ```mermaid block in a markdown cell"
    visit = visits(INTRO)
    assert not visit.setup_error, f"{INTRO}: {visit.setup_error} {_where(visit)}"
    assert len(visit.mermaid) == len(blocks), (
        f"{INTRO}: {len(blocks)} mermaid block(s) in the markdown but {len(visit.mermaid)} "
        f"rendered diagram(s) on the page {_where(visit)}")
    for k, (block, diagram) in enumerate(zip(blocks, visit.mermaid, strict=True)):
        svg = diagram["svg"]
        assert not diagram["warning"], (
            f"mermaid diagram {k} did not render (JupyterLab shows its source and the error "
            f"{diagram['error'][:300]!r}) {_where(visit)}")
        assert "<svg" in svg, f"mermaid diagram {k} is not an SVG: {diagram['text'][:300]}"
        assert "Syntax error" not in svg, f"mermaid diagram {k} is mermaid's syntax-error picture"
        assert diagram["loaded"], f"mermaid diagram {k}: the SVG image did not load"
        # The first word of every node label (`ID["label ..."]`) is drawn in the picture.
        words = {label.split()[0] for label in re.findall(r'\w\["([^"]+)"\]', block)}
        missing = sorted(w for w in words if w not in svg)
        assert not missing, f"mermaid diagram {k}: node labels {missing} are not in the SVG"


@pytest.mark.skipif(VAE not in STUDENT_NOTEBOOKS, reason="02_vae notebook not present yet")
def test_vae_latent_explorer_slider_redraws_decoded_image(visits: Any,
                                                          record_property: Any) -> None:
    """The latent explorer renders, and dragging a slider changes the decoded image."""
    visit = visits(VAE)
    assert not visit.setup_error, f"{VAE}: {visit.setup_error} {_where(visit)}"
    explorer = visit.explorer
    record_property("explorer", json.dumps({k: v for k, v in explorer.items() if k != "cell"}))
    assert "error" not in explorer, f"{VAE}: {explorer['error']} {_where(visit)}"
    cell = explorer["cell"]
    problems = []
    if not explorer["changed"]:
        problems.append(
            f"moving the first slider (readout before/after: {explorer.get('slider_readout')}) "
            f"did not change the decoded image within {SLIDER_TIMEOUT_S} s")
    problems += ["it shows an error after the slider moved:\n      | " + _excerpt(t, 6, tail=True)
                 for t in explorer.get("stderr_after", []) if _is_error_text(t)]
    problems += [f"it shows {m!r} after the slider moved" for m in WIDGET_ERRORS
                 if m in explorer.get("output_text_after", "")]
    assert not problems, (
        f"{VAE}: latent explorer (cell {cell['index']}: {_excerpt(cell['source'], 2)}):\n  - "
        + "\n  - ".join(problems)
        + f"\n  see latent_explorer_before.png / latent_explorer_after.png in {ARTIFACTS}")
