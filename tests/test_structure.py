"""Package-wide structure rules for ``course_utils``, checked on the source with ``ast``.

* no module over :data:`MAX_MODULE_LINES` lines;
* no function or method over :data:`MAX_FUNCTION_LINES` lines (from its ``def`` to its last line);
* no import cycle among ``course_utils`` modules, in the graph of *top-level* imports: those that
  run when a module is imported (module and class bodies, including ``if``/``try`` blocks there).
  Imports under ``if TYPE_CHECKING:`` never run and are not edges;
* nor a cycle that goes through imports *inside functions*: such an import avoids the error at
  import time, but the two modules still depend on each other, which is the tangle this rule
  is about (``config`` and ``data`` once did that).

Each failure lists every offender, so one run shows all that needs splitting.
"""

from __future__ import annotations

import ast
import sys
from functools import cache
from pathlib import Path

import pytest

PACKAGE = "course_utils"
ROOT = Path(__file__).resolve().parents[1]
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 80


def module_name(path: Path) -> str:
    """``course_utils/checks/core.py`` -> ``course_utils.checks.core`` (``__init__`` -> package)."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@cache
def modules() -> dict[str, Path]:
    """Every module of the package, by dotted name."""
    return {module_name(p): p for p in sorted((ROOT / PACKAGE).rglob("*.py"))}


@cache
def tree(name: str) -> ast.Module:
    path = modules()[name]
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _is_type_checking(test: ast.expr) -> bool:
    """``TYPE_CHECKING`` or ``typing.TYPE_CHECKING``."""
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def top_level_imports(body: list[ast.stmt], in_functions: bool = False
                      ) -> list[ast.Import | ast.ImportFrom]:
    """Import statements that run at import time: not under TYPE_CHECKING, and not in
    functions unless ``in_functions``."""
    found: list[ast.Import | ast.ImportFrom] = []
    for node in body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            if in_functions or isinstance(node, ast.ClassDef):
                found += top_level_imports(node.body, in_functions)
        elif isinstance(node, ast.If):
            if not _is_type_checking(node.test):
                found += top_level_imports(node.body, in_functions)
            found += top_level_imports(node.orelse, in_functions)
        else:                       # try/except/finally, with, for, while, match: all run
            blocks = [getattr(node, f, []) for f in ("body", "orelse", "finalbody")]
            blocks += [h.body for h in getattr(node, "handlers", [])]
            blocks += [c.body for c in getattr(node, "cases", [])]
            for block in blocks:
                found += top_level_imports(block, in_functions)
    return found


def _known(dotted: str) -> str | None:
    """The module that importing ``dotted`` loads last: itself, or its longest known prefix."""
    while dotted:
        if dotted in modules():
            return dotted
        dotted = dotted.rpartition(".")[0]
    return None


def imported_modules(name: str, in_functions: bool = False) -> set[str]:
    """The package modules that ``name`` imports at top level (and in functions, if asked)."""
    is_package = modules()[name].name == "__init__.py"
    package = name if is_package else name.rpartition(".")[0]
    targets: set[str] = set()
    for node in top_level_imports(tree(name).body, in_functions):
        if isinstance(node, ast.Import):
            bases = [alias.name for alias in node.names]
            targets |= {t for t in map(_known, bases) if t}
            continue
        if node.level:
            anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
            base = f"{anchor}.{node.module}" if node.module else anchor
        else:
            base = node.module or ""
        if not (base == PACKAGE or base.startswith(PACKAGE + ".")):
            continue
        for alias in node.names:        # `from pkg import submodule` imports the submodule
            target = _known(f"{base}.{alias.name}") if alias.name != "*" else _known(base)
            if target:
                targets.add(target)
    targets.discard(name)
    return targets


def import_cycles(in_functions: bool = False) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan's algorithm)."""
    graph = {name: sorted(imported_modules(name, in_functions)) for name in modules()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return cycles


def functions(name: str) -> list[tuple[str, int, int]]:
    """``(qualified name, first line, length in lines)`` of every function and method."""
    found = []

    def walk(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                qual = f"{prefix}{child.name}"
                found.append((qual, child.lineno, child.end_lineno - child.lineno + 1))
                walk(child, qual + ".")
            elif isinstance(child, ast.ClassDef):
                walk(child, f"{prefix}{child.name}.")
            else:
                walk(child, prefix)

    walk(tree(name), "")
    return found


# ----------------------------------------------------------------------------- the rules

def test_the_package_is_found():
    assert f"{PACKAGE}.config" in modules() and PACKAGE in modules()


def test_no_module_is_over_the_line_limit():
    too_long = [f"{modules()[m].relative_to(ROOT)}: {n} lines" for m in modules()
                if (n := len(modules()[m].read_text(encoding="utf-8").splitlines()))
                > MAX_MODULE_LINES]
    assert not too_long, (f"modules over {MAX_MODULE_LINES} lines (split them by topic):\n  "
                          + "\n  ".join(too_long))


def test_no_function_is_over_the_line_limit():
    too_long = [f"{modules()[m].relative_to(ROOT)}:{line} {qual}: {n} lines"
                for m in modules() for qual, line, n in functions(m) if n > MAX_FUNCTION_LINES]
    assert not too_long, (f"functions over {MAX_FUNCTION_LINES} lines (extract helpers):\n  "
                          + "\n  ".join(too_long))


def test_no_import_cycle_among_package_modules():
    cycles = import_cycles()
    assert not cycles, ("top-level import cycles (move the shared part into a module both can "
                        "import):\n  " + "\n  ".join(" <-> ".join(c) for c in cycles))


def test_no_import_cycle_through_function_level_imports():
    cycles = import_cycles(in_functions=True)
    assert not cycles, ("modules that import each other, through imports inside functions "
                        "(move the shared part into a module both can import):\n  "
                        + "\n  ".join(" <-> ".join(c) for c in cycles))


# ----------------------------------------------------------------------------- the checker itself

def _parse(source: str) -> list[ast.Import | ast.ImportFrom]:
    return top_level_imports(ast.parse(source).body)


def test_top_level_imports_skip_functions_and_type_checking():
    found = _parse(
        "import a\n"
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    import b\nelse:\n    import c\n"
        "try:\n    import d\nexcept ImportError:\n    import e\n"
        "def f():\n    import g\n"
        "class K:\n    import h\n    def m(self):\n        import i\n")
    names = [alias.name for node in found for alias in node.names]
    assert names == ["a", "TYPE_CHECKING", "c", "d", "e", "h"]
    lazy = top_level_imports(ast.parse("def f():\n    import g\n"
                                       "    if TYPE_CHECKING:\n        import b\n").body, True)
    assert [alias.name for node in lazy for alias in node.names] == ["g"]


def test_import_resolution_follows_relative_and_submodule_imports():
    # real modules of the package, so the resolution is checked against the files on disk
    assert f"{PACKAGE}.config" in imported_modules(f"{PACKAGE}.data")
    assert f"{PACKAGE}.checks.core" in imported_modules(f"{PACKAGE}.checks")


def test_cycle_finder_reports_a_cycle(monkeypatch):
    fake = {"p.a": {"p.b"}, "p.b": {"p.c"}, "p.c": {"p.a"}, "p.d": {"p.a"}}
    monkeypatch.setattr(sys.modules[__name__], "modules", lambda: dict.fromkeys(fake, Path()))
    monkeypatch.setattr(sys.modules[__name__], "imported_modules", lambda name, lazy: fake[name])
    assert import_cycles() == [["p.a", "p.b", "p.c"]]


@pytest.mark.parametrize("source,expected", [("def f():\n    pass\n", [("f", 1, 2)]),
                                             ("class K:\n    def m(self):\n        x = 1\n"
                                              "        return x\n", [("K.m", 2, 3)])])
def test_function_lengths_are_measured_from_def_to_last_line(monkeypatch, source, expected):
    monkeypatch.setattr(sys.modules[__name__], "tree", lambda name: ast.parse(source))
    assert functions("any") == expected
