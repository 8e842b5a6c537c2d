"""The worker process: a task slot on one node.

A worker is forked by its node's zygote, registers with its raylet, and then
waits for owners to push tasks to it under a lease. It has its own core
worker, so a task can submit tasks, put objects and own them, as in Ray.

Its ``print`` output is streamed to the driver and shown there prefixed like
Ray's: ``(add pid=1234) hello``. Everything it writes also lands in its log
file in the session directory.
"""
from __future__ import annotations

import io
import os
import sys
import threading

from raylab import ids
from raylab.core_worker import current
from raylab.core_worker.core_worker import WORKER, CoreWorker
from raylab.process_shell import TraceUplink
from raylab.session import SessionInfo
from raylab.worker.executor import TaskExecutor


class WorkerOutput(io.TextIOBase):
    """sys.stdout/sys.stderr of a worker: lines go to its log and to the driver."""

    def __init__(self, cw, stream_no: int, raw):
        self.cw = cw
        self.stream_no = stream_no
        self.raw = raw
        self._buf = ""
        self._lock = threading.Lock()
        self.dirty = False

    def writable(self):
        return True

    def write(self, s: str) -> int:
        with self._lock:
            self.dirty = True
            self._buf += s
            if "\n" not in self._buf:
                return len(s)
            text, _, self._buf = self._buf.rpartition("\n")
        self._emit(text)
        return len(s)

    def flush(self):
        with self._lock:
            text, self._buf = self._buf, ""
            self.dirty = False
        if text:
            self._emit(text)
        try:
            self.raw.flush()
        except Exception:
            pass

    def _emit(self, text: str) -> None:
        try:
            self.raw.write(text + "\n")
        except Exception:
            pass
        prefix = f"{self.cw.ctx.name or 'worker'} pid={self.cw.pid}"
        actor = getattr(self.cw, "actor_name", None)
        if actor:
            prefix = f"{actor} pid={self.cw.pid}"
        self.cw.send_log((self.stream_no, prefix, text))

    def fileno(self):
        return self.raw.fileno()

    def isatty(self):
        return False


def run_worker(session_dir: str, node_id: bytes, label: str, counter: int,
               raylet_address: str, arena_fd: int) -> None:
    """Entry point in the forked child: become a worker and serve until told to stop."""
    session = SessionInfo.load(session_dir)
    log = os.open(session.log_path(f"worker_{label}_{counter}"),
                  os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)
    sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), line_buffering=True)
    sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), line_buffering=True)
    worker_id = ids.worker_id(node_id, counter)
    address = session.socket(f"w{label}_{counter}")
    cw = CoreWorker(session, WORKER, node_id, label, raylet_address, worker_id, address)
    cw.executor = TaskExecutor(cw)
    cw.trace_uplink = TraceUplink(cw.loop, session.token, label, "worker",
                                  f"{label}.w{counter}")
    _attach_log_sender(cw, session)
    cw.start()
    cw.attach_plasma(arena_fd)
    trace_cfg = cw.rpc_sync(cw.raylet, "register_worker", worker_id, os.getpid(), address)
    if trace_cfg:  # before the first task can run: its steps must be traced too
        on, rules, collector = trace_cfg

        async def configure():
            cw.trace_uplink.configure(on, rules, collector)
        cw.run_sync(configure(), 30)
    sys.stdout = WorkerOutput(cw, 1, sys.stdout)
    sys.stderr = WorkerOutput(cw, 2, sys.stderr)
    try:
        cw.executor.run()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except Exception:
            pass
        current.CORE_WORKER = None
        os._exit(0)


def _attach_log_sender(cw, session) -> None:
    """Batch this worker's output lines and send them to the driver.

    Lines collect from any thread and go out on the io loop; at the end of a task the
    task's own thread sends what is left, on the socket it is about to reply on, so a
    driver that has the result has its output too (even if it shuts down at once)."""
    driver = session.socket("driver")
    lock = threading.Lock()
    state = {"batch": [], "scheduled": False}

    def send_log(line) -> None:
        with lock:
            state["batch"].append(line)
            if state["scheduled"]:
                return
            state["scheduled"] = True
        cw.call_soon(flush)

    def take() -> list:
        with lock:
            state["scheduled"] = False
            batch, state["batch"] = state["batch"], []
        return batch

    def flush() -> None:
        batch = take()
        if not batch:
            return
        conn = cw.conns.get(driver)
        if conn is not None and not conn.closed:
            conn.send("log_lines", batch)
        else:
            cw.loop.create_task(_send_later(batch))

    def flush_now() -> None:
        """The task's thread, before its reply: what it printed goes out first."""
        conn = cw.conns.get(driver)
        if conn is None or conn.closed:
            return  # the loop sends it once connected
        batch = take()
        if batch:
            conn.send_from_thread("log_lines", batch)

    async def _send_later(batch) -> None:
        try:
            conn = await cw.conn_to(driver)
            conn.send("log_lines", batch)
        except OSError:
            pass

    cw.flush_logs = flush_now
    cw.send_log = send_log
