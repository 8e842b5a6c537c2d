"""What every cluster process's shell shares: start-up, lifeline, trace uplink.

A process shell (``gcs/server.py``, ``raylet/server.py``, ``worker/main.py``)
owns the event loop and the sockets; the logic lives in sans-IO cores. This
module holds the plumbing they all need:

- parse the common command line (``--session``, ``--lifeline-fd``);
- exit when the driver's lifeline pipe reads EOF (the driver died);
- ship this process's trace events to the driver's recorder, and take
  "release" messages back when the cluster is paused in step mode.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys

from raylab.effects import Trace
from raylab.tracing.emit import TRACER, checkpoint
from raylab.transport import connect


def common_args(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--session", required=True)
    p.add_argument("--lifeline-fd", type=int, default=-1)
    return p


def watch_lifeline(loop: asyncio.AbstractEventLoop, fd: int, on_eof) -> None:
    """Call ``on_eof`` when the driver's end of the lifeline pipe closes."""
    if fd < 0:
        return

    def readable():
        try:
            data = os.read(fd, 64)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            loop.remove_reader(fd)
            on_eof()

    os.set_blocking(fd, False)
    loop.add_reader(fd, readable)


def on_signals(loop: asyncio.AbstractEventLoop, handler) -> None:
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        try:
            loop.add_signal_handler(sig, handler)
        except (ValueError, RuntimeError):
            pass


async def run_effects(effects, apply) -> None:
    """Carry out a core's effects in order; a trace step may pause what follows it."""
    for e in effects:
        if type(e) is Trace:
            if TRACER.on:
                hold = checkpoint(e.component, e.flow, e.step, e.level, None, e.detail, **e.ids)
                if hold is not None:
                    await hold
        else:
            r = apply(e)
            if asyncio.iscoroutine(r):
                await r


class TraceUplink:
    """Streams this process's trace events to the driver's recorder.

    The driver sends ``trace_config`` (on/off, step rules, where to send) through
    the GCS; while tracing is on, buffered events are flushed at most one loop
    iteration after they are recorded.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, token: bytes, node_label: str = "",
                 role: str = "", proc: str = ""):
        self.loop = loop
        self.token = token
        self.collector = None
        self.conn = None
        self._connecting = None
        self._scheduled = False
        self._pending: list = []  # events recorded before the uplink connected
        TRACER.node = node_label
        TRACER.role = role
        TRACER.proc = proc or role
        TRACER.pid = os.getpid()
        TRACER.sink = self._send
        TRACER.wakeup = self._wake

    def configure(self, on: bool, rules, collector: str | None) -> None:
        if collector != self.collector and self.conn is not None:
            self.conn.close()
            self.conn = None
        self.collector = collector
        TRACER.configure(on and collector is not None, rules)
        if on and collector:
            self._wake()

    def _wake(self) -> None:
        if not self._scheduled:
            self._scheduled = True
            try:
                self.loop.call_soon_threadsafe(self._flush)
            except RuntimeError:  # loop closed during shutdown
                self._scheduled = False

    def _flush(self) -> None:
        self._scheduled = False
        TRACER.flush()

    async def _connect(self) -> None:
        try:
            self.conn = await connect(self.collector, self.token, self, name="trace-uplink")
            self.conn.send("trace_hello", os.getpid())
        except OSError:
            self.conn = None
        finally:
            self._connecting = None
        if self.conn is not None:
            pending, self._pending = self._pending, []
            if pending:
                self.conn.send("trace_events", pending)
            TRACER.flush()

    def _send(self, batch: list) -> None:
        if self.conn is not None and not self.conn.closed:
            self.conn.send("trace_events", batch)
            return
        self._pending.extend(batch)
        if self.collector and self._connecting is None:
            self._connecting = self.loop.create_task(self._connect())

    # the collector talks back on the same connection
    def rpc_trace_release(self, conn, key) -> None:
        TRACER.release(key)

    def rpc_trace_release_all(self, conn) -> None:
        TRACER.release_all()

    def connection_lost(self, conn, exc) -> None:
        if conn is self.conn:
            self.conn = None


def fatal(msg: str) -> None:
    print(f"raylab: {msg}", file=sys.stderr, flush=True)
    os._exit(1)
