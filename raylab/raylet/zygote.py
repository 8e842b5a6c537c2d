"""The node's zygote: a warm, single-threaded process that forks workers.

Starting a fresh Python with our runtime takes a few hundred milliseconds on
a small machine; forking a process that has already imported it takes a few.
The raylet forks the zygote once, before it starts its event loop or any
thread (so no lock can be copied while held), and then asks it for workers by
writing a counter to a pipe. The zygote shares the raylet's process group, so
killing the node kills it and every worker it made.
"""
from __future__ import annotations

import os
import signal
import sys


def start(session_dir: str, node_id: bytes, label: str, raylet_address: str, arena_fd: int,
          close_fds: tuple = ()) -> tuple[int, int]:
    """Fork the zygote; returns (pid, write end of its request pipe)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the zygote
        try:
            os.close(w)
            for fd in close_fds:
                try:
                    os.close(fd)
                except OSError:
                    pass
            _serve(r, session_dir, node_id, label, raylet_address, arena_fd)
        finally:
            os._exit(0)
    os.close(r)
    return pid, w


def _serve(r: int, session_dir: str, node_id: bytes, label: str, raylet_address: str,
           arena_fd: int) -> None:
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps our children
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # import what every worker needs once, here, so each fork starts warm
    import raylab.worker.main  # noqa: F401
    preloaded = False
    buf = b""
    while True:
        try:
            chunk = os.read(r, 4096)
        except InterruptedError:
            continue
        if not chunk:
            return  # the raylet is gone: so is its node
        buf += chunk
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            _fork_worker(r, int(line), session_dir, node_id, label, raylet_address, arena_fd)
        if not preloaded:
            preloaded = True
            _preload_optional()


def _fork_worker(r: int, counter: int, session_dir: str, node_id: bytes, label: str,
                 raylet_address: str, arena_fd: int) -> None:
    pid = os.fork()
    if pid != 0:
        return
    try:
        os.close(r)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        from raylab.worker.main import run_worker
        run_worker(session_dir, node_id, label, counter, raylet_address, arena_fd)
    except BaseException:
        import traceback
        traceback.print_exc()
        sys.stderr.flush()
    finally:
        os._exit(1)


def _preload_optional() -> None:
    """After the first workers are out, warm up numpy for the later ones (if installed)."""
    try:
        import numpy  # noqa: F401
    except ImportError:
        pass
