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
import stat
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat
from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient
from nbclient.exceptions import CellTimeoutError, DeadKernelError

from ..checks.core import get_exercise
from ..checks.protocol import MAX_PROBE_BYTES
from . import kernel as kernel_side
from .assignment import REPO_DIR, Assignment, Limits
from .sandbox import Sandbox, default_data_dirs, sandbox_env

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
    """An AsyncKernelManager whose kernel is this Python, started under resource limits and,
    unless ``grading_box`` is None, inside the bubblewrap sandbox.

    ``grading_limits`` and ``grading_box`` are set on a subclass per run, see
    :func:`limited_kernel_manager`.
    """

    grading_limits = Limits()
    grading_box: Sandbox | None = None

    def format_kernel_cmd(self, extra_arguments: list[str] | None = None) -> list[str]:
        kernel = [sys.executable, "-m", "ipykernel_launcher", "-f",
                  os.path.realpath(self.connection_file), *(extra_arguments or [])]
        if _HAS_RLIMITS:
            limits = self.grading_limits
            mem = int(limits.memory_mb) * 2**20
            cpu = int(limits.total_timeout * 2 + 60)
            fsize = int(limits.file_size_mb) * 2**20
            kernel = [sys.executable, "-c", _LIMITS_CODE, str(mem), str(cpu), str(fsize),
                      *kernel]
        return self.grading_box.wrap(kernel) if self.grading_box is not None else kernel


def limited_kernel_manager(limits: Limits, box: Sandbox | None = None
                           ) -> type[LimitedKernelManager]:
    """A :class:`LimitedKernelManager` class that applies ``limits`` (nbclient wants a class)
    and runs the kernel in ``box`` (None: no sandbox)."""
    return type("LimitedKernelManager", (LimitedKernelManager,),
                {"grading_limits": limits, "grading_box": box})


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


_KERNEL_VARS = {"COURSE_SMOKE": "1", "COURSE_DEVICE": "cpu", "CUDA_VISIBLE_DEVICES": "",
                "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
                "OPENBLAS_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1", "TQDM_DISABLE": "1",
                "PYDEVD_DISABLE_FILE_VALIDATION": "1", "PYTHONHASHSEED": "0"}


def sandboxed_env(scratch: str) -> dict[str, str]:
    """The whole environment of a sandboxed kernel: nothing of the grader's is inherited."""
    return sandbox_env(Path(scratch), {**_KERNEL_VARS, "PYTHONPATH": str(REPO_DIR)})


def kernel_env() -> dict[str, str]:
    """The environment of an unsandboxed kernel (``--no-sandbox``): the grader's own, plus
    smoke mode, CPU only, one thread, no CI expectations."""
    env = dict(os.environ)
    for key in ("COURSE_EXPECT", "COURSE_TRAIN", "PYTHONSTARTUP"):
        env.pop(key, None)
    env.update(_KERNEL_VARS)
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
    plan: dict[str, list[list[Any]]] = field(default_factory=dict)   # probe cases per exercise
    probes: dict[str, list[bytes | None]] = field(default_factory=dict)  # their data, read back


N_HIDDEN_CASES = 2      # hidden cases per probe/judge exercise, besides the public Case(seed=0)


def draw_plan(a: Assignment, disabled: Iterable[str] = ()) -> dict[str, list[list[Any]]]:
    """The probe cases of each probe/judge exercise: the public one, then hidden cases whose
    seeds are drawn here, afresh for every run (``[seed, hidden]`` pairs)."""
    disabled = set(disabled)
    plan: dict[str, list[list[Any]]] = {}
    for spec in a.exercises:
        if spec.id not in disabled and get_exercise(spec.id).probe is not None:
            plan[spec.id] = [[0, False]] + [[secrets.randbelow(2**62), True]
                                            for _ in range(N_HIDDEN_CASES)]
    return plan


def build_graded_notebook(a: Assignment, sources: dict[str, str | None], results_path: str,
                          nonce: str, seconds: float, disabled: Iterable[str] = (),
                          plan: dict[str, list[list[Any]]] | None = None, probe_dir: str = ""
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
        f"{sorted(disabled)!r}, {plan or {}!r}, {probe_dir!r})"))
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


def read_untrusted(path: str, limit: int) -> bytes | None:
    """A file the kernel wrote, read without following links, blocking on a FIFO or reading
    more than ``limit`` bytes; None if it is missing, not a plain file, or too large."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > limit:
            return None
        with os.fdopen(fd, "rb", closefd=False) as fh:
            data = fh.read(limit + 1)
        return data if len(data) <= limit else None
    finally:
        os.close(fd)


def _read_verdicts(attempt: Attempt, results_path: str, nonce: str, log_path: str,
                   probe_dir: str) -> None:
    """Take the run's progress file (only with the right nonce), the probe data files and the
    kernel log's tail. All of them are data the kernel wrote: never trusted as verdicts."""
    blob = read_untrusted(results_path, 4 * 2**20)
    try:
        data = json.loads(blob) if blob else None
        if isinstance(data, dict) and data.get("nonce") == nonce:
            attempt.verdicts = data
    except ValueError:
        attempt.verdicts = None
    for ex_id, cases in attempt.plan.items():
        attempt.probes[ex_id] = [read_untrusted(os.path.join(probe_dir, f"{ex_id}-{i}.npz"),
                                                MAX_PROBE_BYTES) for i in range(len(cases))]
    try:
        with open(log_path, "rb") as fh:
            fh.seek(max(0, os.fstat(fh.fileno()).st_size - 4000))
            tail = "\n".join(line for line in fh.read().decode("utf-8", "replace")
                             .splitlines() if "running over TCP" not in line)
        if attempt.failure in ("crash", "startup"):
            attempt.kernel_log = (attempt.kernel_log + "\n" + tail).strip()
    except OSError:
        pass


def _new_client(nb: Any, limits: Limits, deadline: float, keep_notebook: bool,
                scratch: str) -> CappedClient:
    """The notebook client; with the sandbox, its kernel talks over IPC sockets in scratch."""
    box = None
    if limits.sandbox:
        box = Sandbox(Path(scratch), readonly=default_data_dirs(), env=sandboxed_env(scratch))
    client = CappedClient(nb, kernel_manager_class=limited_kernel_manager(limits, box),
                          timeout=None, allow_errors=True, interrupt_on_timeout=False,
                          record_timing=False,
                          startup_timeout=min(120, max(10, int(deadline - time.monotonic()))),
                          shutdown_kernel="immediate", kernel_name="python3")
    client.cap = int(limits.output_kb * 1024)
    client.keep_rich = keep_notebook
    if box is not None:              # TCP cannot cross the sandbox's network namespace
        km = client.km = client.create_kernel_manager()
        km.transport = "ipc"
        km.ip = os.path.join(scratch, "kernel-ipc")
        km.connection_file = os.path.join(scratch, "kernel.json")
    return client


def _kill_kernel(proc: Any, pgid: int | None) -> None:
    """Kill the kernel and everything it started: the sandbox process (its PID namespace dies
    with it) and, without a sandbox, the kernel's process group."""
    if proc is not None and proc.poll() is None:
        try:
            proc.kill()
            proc.wait(timeout=10)
        except Exception:
            pass
    kill_group(pgid)


def run_attempt(a: Assignment, sources: dict[str, str | None], limits: Limits, deadline: float,
                disabled: Iterable[str] = (), keep_notebook: bool = False) -> Attempt:
    """Run the graded notebook once in a fresh, limited (and sandboxed) kernel.

    Never raises for bad code. The kernel's only writable folder is a fresh scratch folder;
    what it leaves there (progress file, probe data) is read back into the :class:`Attempt`.
    """
    nonce = secrets.token_hex(16)
    scratch = tempfile.mkdtemp(prefix="course-grade-run-")
    results_path = os.path.join(scratch, f"progress-{nonce}.json")
    probe_dir = os.path.join(scratch, "probes")
    logdir = tempfile.mkdtemp(prefix="course-grade-log-")      # outside the sandbox
    log_path = os.path.join(logdir, "kernel.log")
    disabled = set(disabled)
    n_active = sum(1 for e in a.exercises if e.id not in disabled)
    attempt = Attempt(None, plan=draw_plan(a, disabled))
    nb, roles = build_graded_notebook(a, sources, results_path, nonce, limits.cell_timeout,
                                      disabled, attempt.plan, probe_dir)
    client = _new_client(nb, limits, deadline, keep_notebook, scratch)
    pgid = proc = None
    env = sandboxed_env(scratch) if limits.sandbox else kernel_env()
    log = open(log_path, "wb")
    try:
        with client.setup_kernel(cwd=scratch, env=env, stdout=log, stderr=log):
            prov = getattr(client.km, "provisioner", None)
            pgid, proc = getattr(prov, "pgid", None), getattr(prov, "process", None)
            _run_cells(client, prov, nb, roles, limits, deadline, n_active, attempt)
    except (DeadKernelError, RuntimeError, TimeoutError, OSError) as exc:
        if not attempt.failure:
            attempt.failure = "startup"
            attempt.kernel_log = f"{type(exc).__name__}: {exc}"
    finally:
        _kill_kernel(proc, pgid)
        log.close()
        _read_verdicts(attempt, results_path, nonce, log_path, probe_dir)
        attempt.dropped_output = getattr(client, "dropped", 0)
        if keep_notebook:
            attempt.notebook_json = nbformat.writes(nb)
        shutil.rmtree(scratch, ignore_errors=True)
        shutil.rmtree(logdir, ignore_errors=True)
    return attempt
