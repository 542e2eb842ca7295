"""The grading sandbox (bubblewrap): what a submission can and cannot reach."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import time

import pytest

from course_utils.grading import sandbox

pytestmark = pytest.mark.skipif(
    sandbox.bwrap_path() is None and os.environ.get("CI", "").lower() != "true",
    reason="bubblewrap (bwrap) is not installed or cannot create namespaces here")


def _run(box: sandbox.Sandbox, code: str, timeout: float = 60) -> subprocess.CompletedProcess:
    argv = box.wrap([sys.executable, "-c", textwrap.dedent(code)])
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def box(tmp_path):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    return sandbox.Sandbox(scratch, env=sandbox.sandbox_env(scratch, {"COURSE_SMOKE": "1"}))


def test_environment_is_cleared_and_only_the_grader_variables_are_set(box, monkeypatch):
    monkeypatch.setenv("GRADER_SECRET", "hunter2")
    out = _run(box, "import os, json; print(json.dumps(dict(os.environ)))")
    assert out.returncode == 0, out.stderr
    assert "hunter2" not in out.stdout and "GRADER_SECRET" not in out.stdout
    assert '"COURSE_SMOKE": "1"' in out.stdout


def test_only_the_scratch_folder_is_writable_and_other_folders_are_invisible(box, tmp_path):
    secret = tmp_path / "grades"
    secret.mkdir()
    (secret / "gradebook.csv").write_text("alice,10\n")
    out = _run(box, f"""
        import os, pathlib
        print("see-secret", os.path.exists({str(secret)!r}))
        pathlib.Path("note.txt").write_text("ok")
        for target in ("/usr/pwned", {str(sandbox.Path(sandbox.__file__))!r} + ".x", "/etc/x"):
            try:
                open(target, "w")
                print("wrote", target)
            except OSError:
                pass
        import course_utils, torch
        print("imports ok")
        """)
    assert out.returncode == 0, out.stderr
    assert "see-secret False" in out.stdout and "imports ok" in out.stdout
    assert "wrote" not in out.stdout
    assert (box.scratch / "note.txt").read_text() == "ok"


def test_no_network_not_even_the_graders_loopback(box):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    try:
        out = _run(box, f"""
            import socket
            try:
                socket.create_connection(("127.0.0.1", {port}), timeout=3)
                print("connected")
            except OSError as exc:
                print("refused", type(exc).__name__)
            """)
    finally:
        server.close()
    assert out.returncode == 0, out.stderr
    assert "refused" in out.stdout


def test_every_process_dies_with_the_sandbox(box):
    beat = box.scratch / "beat"
    code = f"""
        import os, subprocess, sys, time
        loop = ("import time\\nwhile True:\\n"
                "    open({str(beat)!r}, 'a').write('.')\\n    time.sleep(0.05)")
        subprocess.Popen([sys.executable, "-c", loop], start_new_session=True)
        if os.fork() == 0:                       # a double-forked daemon
            if os.fork() == 0:
                os.setsid()
                exec(loop)
            os._exit(0)
        time.sleep(0.5)
        print("started")
        """
    argv = box.wrap([sys.executable, "-c", textwrap.dedent(code) + "\ntime.sleep(60)"])
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "started"
    proc.kill()                                # what the grader does when a kernel ends
    proc.wait(timeout=10)
    time.sleep(0.5)
    size = beat.stat().st_size
    time.sleep(1.0)
    assert beat.stat().st_size == size, "a process outlived the sandbox"


def test_require_bwrap_explains_how_to_get_it(monkeypatch):
    monkeypatch.setattr(sandbox, "bwrap_path", lambda: None)
    with pytest.raises(sandbox.SandboxUnavailable, match="apt-get install bubblewrap"):
        sandbox.require_bwrap()
