"""The worker pool: grade tasks in worker processes, isolated from each other and the batch.

Each submission's notebook already runs in a kernel process of its own (see
:mod:`.execution`); the pool adds a second wall around the code that drives that kernel, so
that nothing one submission does can stop the batch. It keeps three guarantees:

* **A per-task hard time limit.** A worker that has not answered ``hard_limit`` seconds after
  it was sent a task is killed with its whole process group, and its task gets a
  ``grader-error`` record.
* **A crashing worker never stops the batch.** A worker that dies costs only the task it was
  grading (a ``grader-error`` record, with the tail of the worker's output for the
  instructor); the next task starts a fresh worker.
* **Results are written as they come.** Slots hand records to the calling thread through a
  queue, and ``on_done`` runs there as each record arrives.

Why not :class:`concurrent.futures.ProcessPoolExecutor`: its public interface cannot cancel
a running task or kill one worker (that needs one single-worker executor per slot and a kill
by process id), and, more seriously, its workers start by the ``spawn`` or ``forkserver``
method, which re-imports the caller's ``__main__`` script in every worker (``fork`` would
instead copy a process that is running threads). A script that calls
:func:`~.batch.grade_batch` without an ``if __name__ == "__main__":`` guard would then run its
whole batch again inside each worker, writing into the same output folder. The workers here
are plain ``python -c`` processes that import only ``course_utils``: they never run the
caller's code, whatever the caller is. Tasks and records travel over their stdin and stdout
as length-prefixed pickles; the worker points its file descriptor 1 at stderr (a temporary
file) so that nothing printed can corrupt that channel.
"""

from __future__ import annotations

import os
import pickle
import queue
import select
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from typing import IO

from .assignment import REPO_DIR
from .execution import kill_group
from .records import Record, Task
from .verdicts import grade_submission

_WORKER_CMD = ("import sys; sys.path.insert(0, sys.argv[1]); "
               "from course_utils.grading.pool import worker_loop; worker_loop()")


def worker_loop() -> None:
    """A worker process: read length-prefixed pickled tasks on stdin, answer with records.

    The protocol uses a private copy of stdout; file descriptor 1 is pointed at stderr so
    that nothing else printed in this process can corrupt it.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    proto = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    inp = sys.stdin.buffer
    while True:
        header = inp.read(8)
        if len(header) < 8:
            return
        (size,) = struct.unpack("!Q", header)
        task = pickle.loads(inp.read(size))
        body = pickle.dumps(grade_submission(task))
        proto.write(struct.pack("!Q", len(body)) + body)
        proto.flush()


class _Worker:
    """One long-lived worker process of the pool, restarted after a crash or an overrun."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        self.err: IO[bytes] | None = None

    def start(self) -> None:
        self.err = tempfile.TemporaryFile()
        self.proc = subprocess.Popen([sys.executable, "-c", _WORKER_CMD, str(REPO_DIR)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.err, start_new_session=True)

    def stop(self) -> None:
        if self.proc is not None:
            kill_group(self.proc.pid)
            try:
                self.proc.kill()
                self.proc.wait(timeout=10)
            except Exception:
                pass
            for stream in (self.proc.stdin, self.proc.stdout, self.err):
                try:
                    if stream is not None:
                        stream.close()
                except Exception:
                    pass
        self.proc = None

    def _read(self, n: int, deadline: float) -> bytes:
        assert self.proc is not None and self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        buf = b""
        while len(buf) < n:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            if os.name == "posix":
                ready, _, _ = select.select([fd], [], [], min(remaining, 5.0))
                if not ready:
                    continue
            chunk = os.read(fd, min(n - len(buf), 1 << 20))
            if not chunk:
                raise EOFError
            buf += chunk
        return buf

    def _died(self, task: Task) -> Record:
        code = self.proc.poll() if self.proc is not None else None
        tail = b""
        if self.err is not None:
            self.err.seek(0)
            tail = self.err.read()[-1500:]
        self.stop()
        return Record.failed(task, f"the grading worker died (exit code {code}): "
                                   f"{tail.decode('utf-8', 'replace')}")

    def grade(self, task: Task, hard_limit: float) -> Record:
        if self.proc is None or self.proc.poll() is not None:
            self.stop()
            self.start()
        assert self.proc is not None and self.proc.stdin is not None
        payload = pickle.dumps(task)
        deadline = time.monotonic() + hard_limit
        try:
            self.proc.stdin.write(struct.pack("!Q", len(payload)) + payload)
            self.proc.stdin.flush()
            (size,) = struct.unpack("!Q", self._read(8, deadline))
            record = pickle.loads(self._read(size, deadline))
            if isinstance(record, Record) and record.student == task.student:
                return record
            raise EOFError
        except TimeoutError:
            self.stop()
            return Record.failed(task, f"the grading worker overran the hard limit of "
                                       f"{hard_limit:g} s and was killed")
        except (EOFError, OSError, pickle.UnpicklingError, struct.error):
            return self._died(task)


def run_pool(tasks: list[Task], jobs: int, hard_limit: float,
             on_done: Callable[[Record], None]) -> None:
    """Grade ``tasks`` over a pool of ``jobs`` worker processes.

    Each worker grades one submission at a time, and each submission runs in a kernel process
    of its own. A worker that dies or overruns ``hard_limit`` seconds is killed (its
    submission gets a ``grader-error`` record) and replaced; the other submissions carry on.
    ``on_done`` is called in this thread as each record arrives.
    """
    if not tasks:
        return
    todo: queue.Queue[Task] = queue.Queue()
    for t in tasks:
        todo.put(t)
    done: queue.Queue[Record] = queue.Queue()
    stop = threading.Event()

    def slot() -> None:
        worker = _Worker()
        try:
            while not stop.is_set():
                try:
                    task = todo.get_nowait()
                except queue.Empty:
                    return
                try:
                    record = worker.grade(task, hard_limit)
                except Exception as exc:   # e.g. the worker could not be started at all
                    record = Record.failed(task, f"{type(exc).__name__}: {exc}")
                done.put(record)
        finally:
            worker.stop()

    threads = [threading.Thread(target=slot, name=f"course-grade-{i}", daemon=True)
               for i in range(max(1, min(jobs, len(tasks))))]
    for t in threads:
        t.start()
    try:
        for _ in range(len(tasks)):
            on_done(done.get())
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=hard_limit + 30)
