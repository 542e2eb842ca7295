"""The sandbox every grading kernel runs in: bubblewrap (``bwrap``), the sandbox behind Flatpak.

What a submission sees inside it:

* no network at all (its own network namespace: not even the grader's loopback);
* its own PID namespace, killed with the grader: every process it starts, double-forked
  daemons and ``start_new_session`` children included, dies when the kernel is shut down;
* a cleared environment, with only the variables the grader sets;
* a private ``/tmp`` and one writable scratch folder (its working directory);
* a read-only view of the system (``/usr``, ``/etc``), of the Python installation and
  virtual environment, of the ``course_utils`` package and of the data folders -- and nothing
  else: not the output folder, not the submissions folder, not the hidden tests, not the
  instructor's solutions, not the grader's home directory.

Kernels talk to the grader over ZeroMQ IPC sockets in the scratch folder (TCP would not cross
the network namespace). Where bubblewrap is missing (macOS, some containers), the grader
refuses to run unless the instructor passes ``--no-sandbox``, and then says what that gives up
(:data:`NO_SANDBOX_WARNING`).
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

NO_SANDBOX_WARNING = (
    "grading WITHOUT a sandbox (--no-sandbox): submitted code runs as you, can read and write "
    "your files (the output folder and other students' records included), use the network, "
    "and leave processes running after grading. Grade untrusted submissions only with "
    "bubblewrap installed (Debian/Ubuntu: apt-get install bubblewrap) or inside a disposable "
    "container or VM (see docs/instructors.md).")

MISSING_SANDBOX = (
    "bubblewrap (bwrap) is not available or cannot create namespaces here, so submissions "
    "cannot be isolated. Install it (Debian/Ubuntu: apt-get install bubblewrap; it needs user "
    "namespaces, or root), or run the grader inside a disposable container or VM and pass "
    "--no-sandbox to accept the risk.")


class SandboxUnavailable(RuntimeError):
    """bubblewrap is missing or cannot create the namespaces it needs."""


@functools.cache
def bwrap_path() -> str | None:
    """The ``bwrap`` executable, if it is installed *and* can start a sandbox here."""
    path = shutil.which("bwrap")
    if path is None:
        return None
    probe = [path, "--die-with-parent", "--unshare-all", "--ro-bind", "/", "/",
             "--proc", "/proc", "--dev", "/dev", "--", "true"]
    try:
        ok = subprocess.run(probe, capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.SubprocessError):
        ok = False
    return path if ok else None


def require_bwrap() -> str:
    """``bwrap_path()`` or a :class:`SandboxUnavailable` that says how to get it."""
    path = bwrap_path()
    if path is None:
        raise SandboxUnavailable(MISSING_SANDBOX)
    return path


def _python_roots() -> list[Path]:
    """The folders a Python process needs to start: the venv and the base installation."""
    roots = {Path(sys.prefix), Path(sys.base_prefix), Path(sys.exec_prefix),
             Path(sys.base_exec_prefix), Path(sys.executable).resolve().parent.parent}
    return sorted(r.resolve() for r in roots)


def default_data_dirs() -> list[Path]:
    """Where the course's datasets may be found (read-only inside the sandbox)."""
    from .. import config
    dirs = [Path("/usr/share/datasets")]
    for value in (config.data_dir(), config.cache_dir()):
        if value:
            dirs.append(Path(value))
    return dirs


@dataclass
class Sandbox:
    """How to wrap one command: the writable scratch folder, read-only binds, environment.

    Args:
        scratch: the only writable folder; the working directory inside.
        readonly: extra folders to show read-only at the same path (missing ones are skipped).
        env: the whole environment inside (nothing is inherited).
    """

    scratch: Path
    readonly: Sequence[Path] = ()
    env: Mapping[str, str] = field(default_factory=dict)

    def binds(self) -> list[Path]:
        """Every read-only folder: system, Python, the package, data, and ``readonly``."""
        package = Path(__file__).resolve().parents[1]                 # .../course_utils
        wanted = [Path("/usr"), Path("/etc"), *_python_roots(), package, *self.readonly]
        out: list[Path] = []
        for path in wanted:
            path = Path(os.path.abspath(path))
            if path.exists() and path not in out:
                out.append(path)
        return out

    def wrap(self, argv: Sequence[str]) -> list[str]:
        """The ``bwrap`` command line that runs ``argv`` inside this sandbox."""
        cmd = [require_bwrap(), "--die-with-parent", "--unshare-all", "--new-session",
               "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]
        for link in ("bin", "lib", "lib64", "sbin"):                  # merged-/usr systems
            target = Path("/") / link
            if target.is_symlink():
                cmd += ["--symlink", os.readlink(target), str(target)]
        for path in self.binds():
            cmd += ["--ro-bind", str(path), str(path)]
        scratch = str(Path(self.scratch).resolve())
        cmd += ["--bind", scratch, scratch, "--chdir", scratch, "--clearenv"]
        for key, value in sorted(self.env.items()):
            cmd += ["--setenv", key, value]
        return [*cmd, "--", *argv]


def sandbox_env(scratch: Path, extra: Mapping[str, str] | None = None,
                passthrough: Iterable[str] = ("LANG", "LC_ALL", "TZ")) -> dict[str, str]:
    """A minimal environment for a sandboxed kernel (HOME and caches in the scratch folder)."""
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": str(scratch),
           "MPLCONFIGDIR": str(Path(scratch) / ".matplotlib"), "TMPDIR": "/tmp",
           "XDG_CACHE_HOME": str(Path(scratch) / ".cache")}
    env.update({k: os.environ[k] for k in passthrough if k in os.environ})
    env.update(extra or {})
    return env
