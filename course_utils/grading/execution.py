"""Execution: build the graded notebook and run it once in a fresh kernel under limits.

The graded notebook is the template with the submitted exercise sources in place of its
exercise cells, plus the cells that call :mod:`course_utils.grading.kernel` (a prelude, a
capture cell after each exercise, and a final cell that runs the checks). It runs in a fresh
kernel process, in a temporary working directory, in smoke mode on the CPU, with a per-cell
time limit, a total time limit and a memory limit (``RLIMIT_AS``, applied to the kernel process
before it starts). :func:`run_attempt` never raises for bad submitted code: what went wrong is
described by the :class:`Attempt` it returns.
"""

from __future__ import annotations

import importlib.util
import json
import os
import secrets
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import nbformat
from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient
from nbclient.exceptions import CellTimeoutError, DeadKernelError

from . import kernel as kernel_side
from .assignment import REPO_DIR, Assignment, Limits

# Resource limits need the POSIX ``resource`` module (the kernel process imports it).
_HAS_RLIMITS = importlib.util.find_spec("resource") is not None

# Run in a small Python process that sets the limits and then becomes the kernel (execv).
_LIMITS_CODE = r"""
import os, resource, sys
mem, cpu, fsize = (int(v) for v in sys.argv[1:4])
def limit(which, soft, hard):
    old_soft, old_hard = resource.getrlimit(which)
    if old_hard != resource.RLIM_INFINITY:
        soft, hard = min(soft, old_hard), min(hard, old_hard)
    resource.setrlimit(which, (soft, hard))
if mem > 0:
    limit(resource.RLIMIT_AS, mem, mem)
if cpu > 0:
    limit(resource.RLIMIT_CPU, cpu, cpu + 10)
if fsize > 0:
    limit(resource.RLIMIT_FSIZE, fsize, fsize)
limit(resource.RLIMIT_CORE, 0, 0)
os.execv(sys.argv[4], sys.argv[4:])
"""


class LimitedKernelManager(AsyncKernelManager):
    """An AsyncKernelManager whose kernel is this Python, started under resource limits.

    ``grading_limits`` is set on a subclass per run, see :func:`limited_kernel_manager`.
    """

    grading_limits = Limits()

    def format_kernel_cmd(self, extra_arguments: list[str] | None = None) -> list[str]:
        kernel = [sys.executable, "-m", "ipykernel_launcher", "-f",
                  os.path.realpath(self.connection_file), *(extra_arguments or [])]
        if not _HAS_RLIMITS:
            return kernel
        limits = self.grading_limits
        mem = int(limits.memory_mb) * 2**20
        cpu = int(limits.total_timeout * 2 + 60)
        fsize = int(limits.file_size_mb) * 2**20
        return [sys.executable, "-c", _LIMITS_CODE, str(mem), str(cpu), str(fsize), *kernel]


def limited_kernel_manager(limits: Limits) -> type[LimitedKernelManager]:
    """A :class:`LimitedKernelManager` class that applies ``limits`` (nbclient wants a class)."""
    return type("LimitedKernelManager", (LimitedKernelManager,), {"grading_limits": limits})


class CappedClient(NotebookClient):
    """Keeps at most ``cap`` characters of stream output per cell and no rich output."""

    cap = 64 * 1024
    keep_rich = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.kept: dict[int, int] = {}
        self.dropped = 0

    def output(self, outs: Any, msg: dict[str, Any], display_id: Any, cell_index: int) -> Any:
        kind = msg["msg_type"]
        if kind == "stream":
            text = msg["content"].get("text", "")
            room = self.cap - self.kept.get(cell_index, 0)
            if room <= 0:
                self.dropped += len(text)
                return None
            if len(text) > room:
                self.dropped += len(text) - room
                msg = {**msg, "content": {**msg["content"], "text": text[:room]}}
                text = text[:room]
            self.kept[cell_index] = self.kept.get(cell_index, 0) + len(text)
        elif kind in ("display_data", "execute_result", "update_display_data"):
            if not self.keep_rich:
                return None
        elif kind == "error":
            content = msg["content"]
            tb = content.get("traceback", [])
            evalue = str(content.get("evalue", ""))[:2000]
            msg = {**msg, "content": {**content, "evalue": evalue,
                                      "traceback": tb[:3] + tb[-12:] if len(tb) > 15 else tb}}
        return super().output(outs, msg, display_id, cell_index)


def kernel_env() -> dict[str, str]:
    """The grading kernel's environment: smoke mode, CPU only, one thread, no CI expectations."""
    env = dict(os.environ)
    for key in ("COURSE_EXPECT", "COURSE_TRAIN", "PYTHONSTARTUP"):
        env.pop(key, None)
    env.update({"COURSE_SMOKE": "1", "COURSE_DEVICE": "cpu", "CUDA_VISIBLE_DEVICES": "",
                "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
                "OPENBLAS_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1", "TQDM_DISABLE": "1",
                "PYDEVD_DISABLE_FILE_VALIDATION": "1", "PYTHONHASHSEED": "0"})
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_DIR)] + [p for p in env.get("PYTHONPATH", "")
                                                           .split(os.pathsep) if p])
    return env


@dataclass
class Attempt:
    """The outcome of one run of the graded notebook."""

    verdicts: dict[str, Any] | None
    failure: str = ""              # '', 'timeout', 'total-timeout', 'crash', 'startup', 'grader'
    failure_cell: int | None = None
    exit_code: int | None = None
    exercise_errors: dict[str, str] = field(default_factory=dict)
    dropped_output: int = 0
    kernel_log: str = ""
    notebook_json: str = ""


def build_graded_notebook(a: Assignment, sources: dict[str, str | None], results_path: str,
                          nonce: str, seconds: float, disabled: Iterable[str] = ()
                          ) -> tuple[Any, list[tuple[str, str | None]]]:
    """The template with the submitted exercise sources and the grader's injected cells.

    Returns the notebook and, per cell, its role ('prelude', 'template', 'exercise',
    'capture', 'final') and exercise id.
    """
    nb = nbformat.reads(a.template_json, as_version=4)
    by_cell = {e.cell: e for e in a.exercises}
    disabled = set(disabled)
    cells: list[Any] = []
    roles: list[tuple[str, str | None]] = []
    mod = f"__import__({kernel_side.__name__!r}, fromlist=['_'])"
    cells.append(nbformat.v4.new_code_cell(f"{mod}.kernel_prelude({list(a.check_modules)!r})"))
    roles.append(("prelude", None))
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
        ex = by_cell.get(i)
        if ex is None:
            cells.append(cell)
            roles.append(("template", None))
            continue
        src = sources.get(ex.id)
        if src is None or ex.id in disabled:
            src = ex.stub
        new = nbformat.v4.new_code_cell(src)
        new.metadata.update({"exercise_id": ex.id, "points": ex.points})
        cells.append(new)
        roles.append(("exercise", ex.id))
        cells.append(nbformat.v4.new_code_cell(
            f"{mod}.kernel_capture({ex.id!r}, {ex.target!r}, {list(ex.names)!r}, globals())"))
        roles.append(("capture", ex.id))
    ids = [e.id for e in a.exercises]
    cells.append(nbformat.v4.new_code_cell(
        f"{mod}.kernel_finish({results_path!r}, {nonce!r}, {ids!r}, {seconds!r}, "
        f"{a.hidden_tests or ''!r}, {sorted(disabled)!r})"))
    roles.append(("final", None))
    nb.cells = cells
    for i, cell in enumerate(nb.cells):
        cell.id = f"graded-{i:03d}"
    return nb, roles


def kill_group(pgid: int | None) -> None:
    """Kill a whole process group (e.g. a kernel and anything it started)."""
    if pgid and hasattr(os, "killpg") and pgid != os.getpgrp():
        try:
            os.killpg(pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError, OSError):
            pass


def _cell_time_limit(role: str, limits: Limits, n_active: int) -> float:
    """Seconds one cell of the graded notebook may run, by its role."""
    if role == "prelude":                   # the grader's own imports: not the student's
        return max(limits.cell_timeout, 120.0)
    if role == "final":
        return limits.cell_timeout * (2 * n_active + 1) + 10
    return limits.cell_timeout


def _error_text(cell: Any) -> str:
    """'Name: value' of the cell's last error output, '' if it has none."""
    errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
    return f"{errors[-1].get('ename')}: {errors[-1].get('evalue')}" if errors else ""


def _run_cells(client: CappedClient, prov: Any, nb: Any, roles: list[tuple[str, str | None]],
               limits: Limits, deadline: float, n_active: int, attempt: Attempt) -> None:
    """Execute the graded notebook's cells in order; record in ``attempt`` where it stopped."""
    for i, cell in enumerate(nb.cells):
        remaining = deadline - time.monotonic()
        if remaining <= 0.5:
            attempt.failure, attempt.failure_cell = "total-timeout", i
            return
        role, ex_id = roles[i]
        per_cell = _cell_time_limit(role, limits, n_active)
        client.timeout = max(1, int(min(per_cell, remaining)))
        try:
            client.execute_cell(cell, i)
        except CellTimeoutError:
            attempt.failure = "total-timeout" if per_cell > remaining else "timeout"
            attempt.failure_cell = i
            return
        except DeadKernelError:
            attempt.failure, attempt.failure_cell = "crash", i
            proc = getattr(prov, "process", None)
            if proc is not None:
                try:
                    attempt.exit_code = proc.wait(timeout=5)
                except Exception:
                    attempt.exit_code = proc.poll()
            return
        error = _error_text(cell)
        if role == "exercise" and ex_id and error:
            attempt.exercise_errors[ex_id] = error
        if role in ("prelude", "final") and error:
            attempt.failure, attempt.failure_cell = "grader", i
            attempt.kernel_log = error
            return


def _read_verdicts(attempt: Attempt, results_path: str, nonce: str, log_path: str) -> None:
    """Take the verdicts file (only with the right nonce) and the kernel log's tail."""
    try:
        if os.path.exists(results_path):
            with open(results_path, encoding="utf-8") as fh:
                data = json.load(fh)
            if isinstance(data, dict) and data.get("nonce") == nonce:
                attempt.verdicts = data
    except (OSError, ValueError):
        attempt.verdicts = None
    try:
        with open(log_path, "rb") as fh:
            tail = "\n".join(line for line in fh.read()[-4000:].decode("utf-8", "replace")
                             .splitlines() if "running over TCP" not in line)
        if attempt.failure in ("crash", "startup"):
            attempt.kernel_log = (attempt.kernel_log + "\n" + tail).strip()
    except OSError:
        pass


def _new_client(nb: Any, limits: Limits, deadline: float, keep_notebook: bool) -> CappedClient:
    client = CappedClient(nb, kernel_manager_class=limited_kernel_manager(limits), timeout=None,
                          allow_errors=True, interrupt_on_timeout=False, record_timing=False,
                          startup_timeout=min(120, max(10, int(deadline - time.monotonic()))),
                          shutdown_kernel="immediate", kernel_name="python3")
    client.cap = int(limits.output_kb * 1024)
    client.keep_rich = keep_notebook
    return client


def run_attempt(a: Assignment, sources: dict[str, str | None], limits: Limits, deadline: float,
                disabled: Iterable[str] = (), keep_notebook: bool = False) -> Attempt:
    """Run the graded notebook once in a fresh, limited kernel; never raises for bad code."""
    nonce = secrets.token_hex(16)
    workdir = tempfile.mkdtemp(prefix="course-grade-run-")
    resdir = tempfile.mkdtemp(prefix="course-grade-verdicts-")
    results_path = os.path.join(resdir, f"verdicts-{nonce}.json")
    log_path = os.path.join(resdir, "kernel.log")
    disabled = set(disabled)
    n_active = sum(1 for e in a.exercises if e.id not in disabled)
    nb, roles = build_graded_notebook(a, sources, results_path, nonce, limits.cell_timeout,
                                      disabled)
    client = _new_client(nb, limits, deadline, keep_notebook)
    attempt = Attempt(None)
    pgid = None
    log = open(log_path, "wb")
    try:
        with client.setup_kernel(cwd=workdir, env=kernel_env(), stdout=log, stderr=log):
            prov = getattr(client.km, "provisioner", None)
            pgid = getattr(prov, "pgid", None)
            _run_cells(client, prov, nb, roles, limits, deadline, n_active, attempt)
    except (DeadKernelError, RuntimeError, TimeoutError, OSError) as exc:
        if not attempt.failure:
            attempt.failure = "startup"
            attempt.kernel_log = f"{type(exc).__name__}: {exc}"
    finally:
        kill_group(pgid)
        log.close()
        _read_verdicts(attempt, results_path, nonce, log_path)
        attempt.dropped_output = getattr(client, "dropped", 0)
        if keep_notebook:
            attempt.notebook_json = nbformat.writes(nb)
        shutil.rmtree(workdir, ignore_errors=True)
        shutil.rmtree(resdir, ignore_errors=True)
    return attempt
