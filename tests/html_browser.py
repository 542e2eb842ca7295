"""Read the executed course (``build/``) in headless Chromium, as a reader would.

``python -m course_utils.run_course`` writes ``index.html`` (one row per chapter: status, time,
figures, a link to the chapter's HTML page) and one standalone page per chapter. This module
opens ``index.html`` through a ``file://`` URL, follows each chapter's link and records what the
page shows (:func:`read_course`); :func:`course_problems` turns that into a list of problems and
:func:`assert_course_reads_well` does both and fails with the list. A page has a problem when

* an ``<img>`` did not load (``naturalWidth`` is 0): the pages embed their figures as data, so
  every image must load offline;
* it shows a different number of figures (images in output areas) than expected: the count the
  caller gives, else the chapter's "figures" column in the index;
* a cell shows an error output: nbconvert's lab template renders an ``error`` output as a
  ``.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]``, exactly like a
  stderr stream, so such an area counts as an error when its text holds a traceback or a
  ``SomethingError:`` line (a ``UserWarning`` or a progress bar on stderr does not). Cells
  tagged ``raises-exception`` (the template adds the class ``celltag_raises-exception`` to the
  cell) are meant to raise: their error is expected, and missing it is a problem;
* a widget or a mermaid diagram shows its error ("Error displaying widget", ``jp-mod-warning``).

The index has a problem when it does not list exactly the expected chapters, in order, or a
chapter's status is not "ok" or it has no HTML link. Requests other than ``file:`` and
``data:`` are blocked, so the result does not depend on the network: the pages' scripts from
CDNs (the ipywidgets renderer, MathJax, mermaid) do not run, as for a reader offline.

It also holds the Chromium discovery shared with ``tests/test_browser.py``
(:func:`chromium_path`, :func:`require_chromium`): the system browser (``COURSE_CHROMIUM`` or
``chromium`` on PATH, never ``playwright install``); the tests skip without it, or fail when
``CI=true``.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
                 "--disable-dev-shm-usage"]   # containers often have a tiny /dev/shm
VIEWPORT = {"width": 1280, "height": 900}
PAGE_TIMEOUT_S = 60       # one page loaded (file://, every script from a CDN blocked)
IMAGES_TIMEOUT_S = 20     # every <img> of a loaded page complete (loaded or failed)

# An error line as Python prints it: "ValueError: ...", "RuntimeError", "KeyError: 'x'".
# "UserWarning: ..." on stderr is not an error. (The same rule as tests/test_browser.py.)
ERROR_LINE = re.compile(r"^\s*(?:[\w.]+\.)?\w*(?:Error|Exception|Exit|Interrupt)\b(?::|$)", re.M)
TRACEBACK = "Traceback (most recent call last)"
WIDGET_ERRORS = ["Error displaying widget", "model not found"]
RAISES_TAG = "raises-exception"


# --------------------------------------------------------------------------------------------
# Requirements: the system Chromium and Playwright; skip (or fail under CI=true) without them
# --------------------------------------------------------------------------------------------

def chromium_path() -> str | None:
    """The Chromium binary: ``COURSE_CHROMIUM`` if set, else ``chromium`` on PATH."""
    override = os.environ.get("COURSE_CHROMIUM", "").strip()
    if override:
        return override if os.access(override, os.X_OK) else None
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return None


def missing_requirements() -> list[str]:
    """What the browser tests need and do not find, each with how to install it."""
    missing = []
    if importlib.util.find_spec("playwright") is None:
        missing.append("Playwright for Python is not installed "
                       "(`pip install playwright`; do not run `playwright install`, "
                       "the test drives the system Chromium)")
    if chromium_path() is None:
        where = (f"COURSE_CHROMIUM={os.environ['COURSE_CHROMIUM']} is not an executable"
                 if os.environ.get("COURSE_CHROMIUM", "").strip()
                 else "Chromium was not found on PATH")
        missing.append(f"{where} (Debian/Ubuntu: `apt-get install chromium`; or set "
                       "COURSE_CHROMIUM to a Chromium/Chrome binary)")
    return missing


def in_ci() -> bool:
    """Whether ``CI`` says this is a CI run (``true``, ``1`` or ``yes``)."""
    return os.environ.get("CI", "").strip().lower() in {"true", "1", "yes"}


def require_chromium() -> str:
    """Path of the browser; skips the calling test (fails it under ``CI=true``) when Chromium
    or Playwright is missing."""
    missing = missing_requirements()
    if missing:
        if in_ci():
            pytest.fail("CI=true, so the browser test must run, but it needs: "
                        + "; ".join(missing), pytrace=False)
        pytest.skip("browser test needs: " + "; ".join(missing))
    path = chromium_path()
    assert path is not None
    return path


# --------------------------------------------------------------------------------------------
# What the browser saw
# --------------------------------------------------------------------------------------------

@dataclass
class IndexRow:
    """One chapter row of ``index.html``."""

    name: str                   # the notebook, from the row's notebook link (NN_name.ipynb)
    status: str                 # "ok", "error", "timeout"
    figures: int | None         # the "figures" column, None if not a number
    url: str | None             # absolute file:// URL of the chapter's HTML page, if linked


@dataclass
class ShownError:
    """An output area of a chapter page that shows an error."""

    cell: int                   # index of the cell in the notebook (markdown cells count)
    prompt: str                 # "In [12]:"
    text: str                   # what the area shows
    expected: bool              # the cell is tagged raises-exception


@dataclass
class PageVisit:
    """What one chapter page showed."""

    url: str
    load_error: str = ""        # why the page did not load, if it did not
    cells: int = 0              # notebook cells on the page
    images: int = 0             # every <img>
    figures: int = 0            # <img> inside output areas
    broken: list[str] = field(default_factory=list)     # images that did not load
    errors: list[ShownError] = field(default_factory=list)
    raising_cells: list[int] = field(default_factory=list)   # cells tagged raises-exception
    widget_errors: list[str] = field(default_factory=list)   # e.g. "Error displaying widget"
    mermaid_warnings: int = 0   # diagrams shown as source with a parse error


@dataclass
class CourseVisit:
    """``index.html`` and every chapter page it links to."""

    index: str
    rows: list[IndexRow]
    pages: dict[str, PageVisit]   # by notebook name, for the rows with an HTML link


JS_INDEX = """() => {
  const heads = [...document.querySelectorAll('thead th')].map(th => th.innerText.trim());
  const col = (name) => heads.indexOf(name);
  return [...document.querySelectorAll('tbody tr')].map(tr => {
    const tds = [...tr.querySelectorAll('td')], links = [...tr.querySelectorAll('a[href]')];
    const nb = links.find(a => a.getAttribute('href').endsWith('.ipynb'));
    const page = links.find(a => a.getAttribute('href').endsWith('.html'));
    const text = (name) => col(name) >= 0 && tds[col(name)] ? tds[col(name)].innerText : '';
    return {name: nb ? decodeURIComponent(nb.getAttribute('href')) : text('chapter').trim(),
            status: text('status').trim().split('\\n')[0].trim(),
            figures: text('figures').trim(), url: page ? page.href : null};
  });
}"""

JS_PAGE = """(widgetErrors) => {
  const cells = [...document.querySelectorAll('.jp-Notebook-cell')];
  const cellOf = (el) => cells.indexOf(el.closest('.jp-Notebook-cell'));
  const prompt = (i) => {
    const p = i >= 0 ? cells[i].querySelector('.jp-InputPrompt') : null;
    return p ? p.innerText.trim() : '';
  };
  const tagged = (i) => i >= 0 && cells[i].classList.contains('celltag_raises-exception');
  const areas = [...document.querySelectorAll('.jp-OutputArea')];
  const outputText = areas.map(a => a.innerText).join('\\n');
  return {
    cells: cells.length,
    images: [...document.images].map(img => ({
      cell: cellOf(img), output: !!img.closest('.jp-OutputArea'), alt: img.alt || '',
      src: (img.getAttribute('src') || '').slice(0, 48),
      loaded: img.complete && img.naturalWidth > 0})),
    stderr: [...document.querySelectorAll(
        '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]')].map(el => {
      const i = cellOf(el);
      return {cell: i, prompt: prompt(i), tagged: tagged(i), text: el.innerText};
    }),
    raising: cells.map((c, i) => tagged(i) ? i : -1).filter(i => i >= 0),
    widgetErrors: widgetErrors.filter(s => outputText.includes(s)),
    mermaidWarnings: document.querySelectorAll('.jp-RenderedMermaid.jp-mod-warning, '
                                               + '.jp-Mermaid.jp-mod-warning').length,
  };
}"""

JS_IMAGES_COMPLETE = "() => [...document.images].every(img => img.complete)"


def shows_error(text: str) -> bool:
    """Whether an stderr-typed output area's text is an error (a traceback or an error line),
    not a warning or a progress bar."""
    return TRACEBACK in text or ERROR_LINE.search(text) is not None


def _offline(route: Any) -> None:
    """Let ``file:`` and ``data:`` requests through; block everything else (CDN scripts)."""
    if route.request.url.startswith(("file:", "data:")):
        route.continue_()
    else:
        route.abort()


def _visit(page: Any, url: str) -> PageVisit:
    """Open one chapter page and record what it shows."""
    from playwright.sync_api import Error as PlaywrightError

    visit = PageVisit(url=url)
    try:
        page.goto(url, wait_until="load", timeout=PAGE_TIMEOUT_S * 1000)
    except PlaywrightError as exc:
        visit.load_error = str(exc).splitlines()[0]
        return visit
    try:
        page.wait_for_function(JS_IMAGES_COMPLETE, timeout=IMAGES_TIMEOUT_S * 1000)
    except PlaywrightError:
        pass                      # the images still incomplete are reported as not loaded
    seen = page.evaluate(JS_PAGE, WIDGET_ERRORS)
    visit.cells = seen["cells"]
    visit.images = len(seen["images"])
    visit.figures = sum(img["output"] for img in seen["images"])
    visit.broken = [f"cell {img['cell']}: <img alt={img['alt']!r} src={img['src']!r}...>"
                    for img in seen["images"] if not img["loaded"]]
    visit.errors = [ShownError(a["cell"], " ".join(a["prompt"].split()), a["text"], a["tagged"])
                    for a in seen["stderr"] if shows_error(a["text"])]
    visit.raising_cells = seen["raising"]
    visit.widget_errors = seen["widgetErrors"]
    visit.mermaid_warnings = seen["mermaidWarnings"]
    return visit


def _figures(text: str) -> int | None:
    return int(text) if text.isdigit() else None


def read_course(out: Path, chromium: str) -> CourseVisit:
    """Open ``out/index.html`` in headless Chromium, then each chapter page it links to.

    Raises:
        FileNotFoundError: if ``out`` has no ``index.html``.
    """
    from playwright.sync_api import sync_playwright

    index = Path(out) / "index.html"
    if not index.is_file():
        raise FileNotFoundError(f"no index.html in {out}")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS,
                                     headless=True)
        try:
            context = browser.new_context(viewport=VIEWPORT)
            context.route("**/*", _offline)
            page = context.new_page()
            page.goto(index.as_uri(), wait_until="load", timeout=PAGE_TIMEOUT_S * 1000)
            rows = [IndexRow(r["name"], r["status"], _figures(r["figures"]), r["url"])
                    for r in page.evaluate(JS_INDEX)]
            pages = {row.name: _visit(page, row.url) for row in rows if row.url}
        finally:
            browser.close()
    return CourseVisit(index=index.as_uri(), rows=rows, pages=pages)


# --------------------------------------------------------------------------------------------
# What is wrong with it
# --------------------------------------------------------------------------------------------

def _first_error_line(text: str) -> str:
    """The line that names the error (``ValueError: ...``), else the text's last line."""
    lines = [line for line in text.splitlines() if line.strip()]
    named = [line for line in lines if ERROR_LINE.match(line)]
    return (named or lines or [""])[-1].strip()[:200]


def index_problems(visit: CourseVisit, chapters: Sequence[str]) -> list[str]:
    """The index lists exactly ``chapters`` in order, each with status ok and an HTML link."""
    problems = []
    names = [row.name for row in visit.rows]
    if names != list(chapters):
        problems.append(f"index.html lists the chapters {names}, expected {list(chapters)}")
    for row in visit.rows:
        if row.status != "ok":
            problems.append(f"index.html: {row.name} has status {row.status!r}, not 'ok'")
        if not row.url:
            problems.append(f"index.html: {row.name} has no link to its HTML page")
    return problems


def page_problems(name: str, page: PageVisit, figures: int | None) -> list[str]:
    """What is wrong with one chapter page; ``figures`` is the expected count, if known."""
    if page.load_error:
        return [f"{name}: the page {page.url} did not load: {page.load_error}"]
    problems = [f"{name}: an image did not load ({where})" for where in page.broken]
    if page.cells == 0:
        problems.append(f"{name}: the page shows no notebook cells")
    if figures is not None and page.figures != figures:
        problems.append(f"{name}: the page shows {page.figures} figure(s) in its outputs, "
                        f"expected {figures}")
    problems += [f"{name}: cell {e.cell} ({e.prompt or 'no prompt'}) shows an error output: "
                 f"{_first_error_line(e.text)}" for e in page.errors if not e.expected]
    shown = {e.cell for e in page.errors if e.expected}
    problems += [f"{name}: cell {i} is tagged {RAISES_TAG} but shows no error"
                 for i in page.raising_cells if i not in shown]
    problems += [f"{name}: an output shows {text!r}" for text in page.widget_errors]
    if page.mermaid_warnings:
        problems.append(f"{name}: {page.mermaid_warnings} mermaid diagram(s) show an error")
    return problems


def course_problems(visit: CourseVisit, chapters: Sequence[str],
                    figures: Mapping[str, int] | None = None) -> list[str]:
    """Every problem of the index and of the chapter pages, one line each.

    ``figures`` gives the expected figure count of some chapters (by notebook name); the
    others are expected to show the count in the index's "figures" column.
    """
    problems = index_problems(visit, chapters)
    expected = {row.name: row.figures for row in visit.rows}
    expected.update(figures or {})
    for name, page in visit.pages.items():
        problems += page_problems(name, page, expected.get(name))
    return problems


def assert_course_reads_well(out: Path, chromium: str, chapters: Sequence[str],
                             figures: Mapping[str, int] | None = None) -> CourseVisit:
    """:func:`read_course`, then fail with every :func:`course_problems` line, if any."""
    visit = read_course(out, chromium)
    problems = course_problems(visit, chapters, figures)
    assert not problems, (f"the course in {out} does not read well in Chromium "
                          f"({len(problems)} problem(s)):\n  " + "\n  ".join(problems))
    return visit
