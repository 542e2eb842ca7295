"""Turn the executed notebooks into a course one can read without Jupyter.

Each executed notebook becomes a standalone HTML page (nbconvert's JupyterLab look, figures
embedded as data, widget state saved so that sliders render statically where ipywidgets can),
and ``index.html`` lists the chapters with their status, time and links.
"""

from __future__ import annotations

import datetime as dt
import html
import logging
from collections.abc import Sequence
from pathlib import Path

import nbformat

from .execute import NotebookResult
from .images import WIDGET_VIEW, widget_figures, widget_states


def chapter_title(nb: nbformat.NotebookNode, fallback: str) -> str:
    """The notebook's first Markdown heading, without its ``#`` marks (else ``fallback``)."""
    for cell in nb.cells:
        if cell.cell_type != "markdown":
            continue
        for line in cell.source.splitlines():
            if line.lstrip().startswith("#"):
                return line.lstrip().lstrip("#").strip() or fallback
    return fallback


# nbconvert's JupyterLab page, plus a static copy of the figures inside each widget (the latent
# explorers), so that a reader without the ipywidgets renderer (offline) still sees them.
_TEMPLATE = """{%- extends 'index.html.j2' -%}
{#- nbconvert's lab block, with the static copy inside the output area -#}
{%- block data_widget_view scoped %}
{%- set div_id = uuid4() %}
{%- set datatype = (output.data | filter_data_type)[0] %}
<div id="{{ div_id }}" class="jupyter-widgets jp-OutputArea-output {{ extra_class }}">
<script type="text/javascript">
var element = document.getElementById('{{ div_id }}');
</script>
<script type="{{ datatype }}">
{{ output.data[datatype] | json_dumps | escape_html_script }}
</script>
{%- set figures = output.metadata.get('course_widget_figures', []) %}
{%- if figures %}
<details class="course-widget-static" open>
<summary style="font: 0.85em sans-serif; color: #555">The widget as it was when the notebook
ran (a static copy; the live sliders need the ipywidgets renderer, which this page loads from
the internet)</summary>
{%- for mime, data in figures %}
<img src="data:{{ mime }};base64,{{ data }}" alt="figure shown by the widget">
{%- endfor %}
</details>
{%- endif %}
</div>
{%- endblock data_widget_view %}
"""
_STATIC_TYPES = ("image/png", "image/jpeg")


def _attach_widget_figures(nb: nbformat.NotebookNode) -> None:
    """Copy the figures each widget shows into its output's metadata, for :data:`_TEMPLATE`."""
    states = widget_states(nb)
    for cell in nb.cells:
        for output in cell.get("outputs", []) if cell.cell_type == "code" else []:
            view = output.get("data", {}).get(WIDGET_VIEW)
            if not view:
                continue
            figures = [(mime, fig["data"][mime])
                       for fig in widget_figures(view.get("model_id", ""), states)
                       for mime in _STATIC_TYPES if mime in fig["data"]][:12]
            if figures:
                output.setdefault("metadata", {})["course_widget_figures"] = figures


def export_html(executed: Path, dest: Path, source_dir: Path) -> None:
    """Write ``executed`` (an executed notebook) as a standalone HTML page ``dest``.

    ``source_dir`` is where the notebook came from, so that images its Markdown links to are
    found and embedded.
    """
    from jinja2 import DictLoader
    from nbconvert import HTMLExporter

    nb = nbformat.read(executed, as_version=4)
    _attach_widget_figures(nb)
    quiet = logging.getLogger("course_utils.run_course.nbconvert")
    quiet.setLevel(logging.ERROR)           # not "alternative text is missing" for each figure
    exporter = HTMLExporter(template_name="lab", embed_images=True, log=quiet,
                            extra_loaders=[DictLoader({"course.html.j2": _TEMPLATE})],
                            template_file="course.html.j2")
    resources = {"metadata": {"name": chapter_title(nb, executed.stem),
                              "path": str(source_dir)}}
    body, _ = exporter.from_notebook_node(nb, resources=resources)
    tmp = dest.with_name(dest.name + ".tmp")
    tmp.write_text(body, encoding="utf-8")
    tmp.replace(dest)


def format_seconds(seconds: float) -> str:
    """``42 s``, ``5 min 06 s`` or ``1 h 02 min``."""
    s = round(seconds)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 60em; margin: 2em auto; padding: 0 1em;
       color: #222; }}
table {{ border-collapse: collapse; width: 100%; }}
th, td {{ text-align: left; padding: .45em .8em; border-bottom: 1px solid #ddd; }}
td.num {{ text-align: right; white-space: nowrap; }}
.ok {{ color: #1a7f37; }} .error, .timeout {{ color: #cf222e; font-weight: bold; }}
.note {{ color: #555; font-size: .9em; }}
</style>
</head>
<body>
<h1>{title}</h1>
<p>{intro}</p>
<table>
<thead><tr><th>chapter</th><th>status</th><th class="num">time</th>
<th class="num">figures</th><th>read</th></tr></thead>
<tbody>
{rows}
</tbody>
</table>
<p class="note">{footer}</p>
</body>
</html>
"""

_ROW = """<tr><td><b>{title}</b><br><span class="note">{name}{note}</span></td>
<td class="{status}">{status}{message}</td><td class="num">{time}</td>
<td class="num">{figures}</td><td>{html_link} &middot; <a href="{ipynb}">notebook</a></td></tr>"""


def _row(result: NotebookResult, out: Path) -> str:
    nb = nbformat.read(result.executed, as_version=4)
    esc = html.escape
    note = result.checkpoint_note()
    html_link = (f'<a href="{esc(result.html.relative_to(out).as_posix())}">HTML</a>'
                 if result.html else "no HTML")
    return _ROW.format(
        title=esc(chapter_title(nb, result.executed.stem)), name=esc(result.name),
        note=f"<br>{esc(note)}" if note else "", status=esc(result.status),
        message=f"<br><span class=\"note\">{esc(result.message)}</span>" if result.message
        else "", time=esc(format_seconds(result.seconds)), figures=sum(result.figures),
        html_link=html_link, ipynb=esc(result.executed.relative_to(out).as_posix()))


def write_index(out: Path, results: Sequence[NotebookResult], *, mode: str, setup: str,
                total_seconds: float) -> Path:
    """Write ``out/index.html``: one row per chapter, with status, time, figures and links."""
    failed = sum(r.status != "ok" for r in results)
    intro = (f"{len(results)} chapter(s), run in {html.escape(mode)} in "
             f"{format_seconds(total_seconds)}"
             + (f"; <b class=\"error\">{failed} failed</b>" if failed else "") + ".")
    footer = (f"Made by <code>python -m course_utils.run_course</code> on "
              f"{dt.datetime.now().strftime('%Y-%m-%d %H:%M')}. {html.escape(setup)}. "
              "Figures are embedded in each page. Interactive sliders are drawn from the saved "
              "widget state by the ipywidgets renderer, which the page loads from a CDN; a "
              "static copy of each widget's figure is shown for reading offline. Open the "
              "notebooks in JupyterLab to run them.")
    page = _PAGE.format(title="Deep generative models: the executed course", intro=intro,
                        rows="\n".join(_row(r, out) for r in results), footer=footer)
    index = out / "index.html"
    index.write_text(page, encoding="utf-8")
    return index
