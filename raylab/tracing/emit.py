"""The emit hook: one tracer per process.

Components call :func:`step` (record the event, never pause) or
:func:`checkpoint` (record it, and hand back a :class:`Hold` when the step
controller wants the cluster to stop here). Both return at once when nobody
is listening, so a trace point costs a function call and an attribute test.

Tracing never changes results: recording never raises into the runtime, and
no runtime decision reads the trace. Events are buffered and flushed to the
driver's recorder by the process shell (``Tracer.sink``).
"""
from __future__ import annotations

import os
import threading
import time

from raylab.tracing import clock
from raylab.tracing.events import LECTURE, TraceEvent


class Hold:
    """A paused trace point: the code that hit it waits until the driver releases it.

    Await it from asyncio code, or call :meth:`block` from a plain thread.
    """

    __slots__ = ("event", "_released", "_waiters")

    def __init__(self, event: TraceEvent):
        self.event = event
        self._released = threading.Event()
        self._waiters = []  # (loop, future) pairs of asyncio waiters

    def release(self) -> None:
        self._released.set()
        for loop, fut in self._waiters:
            loop.call_soon_threadsafe(_resolve, fut)
        self._waiters.clear()

    @property
    def released(self) -> bool:
        return self._released.is_set()

    def block(self, timeout: float | None = None) -> bool:
        return self._released.wait(timeout)

    def __await__(self):
        import asyncio
        if self._released.is_set():
            return None
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        self._waiters.append((loop, fut))
        if self._released.is_set():  # released while we registered
            _resolve(fut)
        return (yield from fut.__await__())


def _resolve(fut):
    if not fut.done():
        fut.set_result(None)


class PauseRules:
    """When to pause: every lecture step ("step" mode) and/or at breakpoints.

    A breakpoint is a dict of criteria (flow, step, component, node, or an id
    such as task=...); an event matching every criterion of any breakpoint
    pauses. The rules are plain data so the driver can ship them to every
    process, and each process decides locally, with no round trip.
    """

    __slots__ = ("stepping", "breakpoints")

    def __init__(self, stepping: bool = False, breakpoints: list | None = None):
        self.stepping = stepping
        self.breakpoints = list(breakpoints or [])

    def should_pause(self, ev: TraceEvent) -> bool:
        if self.stepping and ev.level == LECTURE:
            return True
        for bp in self.breakpoints:
            if ev.matches(**bp):
                return True
        return False

    def to_wire(self):
        return (self.stepping, self.breakpoints)

    @classmethod
    def from_wire(cls, w):
        return cls(*w) if w else cls()

    @property
    def active(self) -> bool:
        return self.stepping or bool(self.breakpoints)


class Tracer:
    """This process's trace hook and event buffer."""

    def __init__(self):
        self.on = False            # is anybody listening?
        self.pid = os.getpid()
        self.node = ""             # node label, e.g. "N1"
        self.role = ""             # driver | worker | raylet | gcs: who "core_worker" is here
        self.proc = ""             # stable process label: driver, gcs, N2.raylet, N2.w1
        self.rules = PauseRules()
        self._seq = 0
        self._lock = threading.Lock()
        self._buffer: list = []
        self._holds: dict = {}     # event key -> Hold
        self.sink = None           # callable(list of wire tuples), run by the shell
        self.wakeup = None         # callable() asking the shell to flush soon

    def configure(self, on: bool, rules=None, node: str | None = None) -> None:
        if node is not None:
            self.node = node
        self.rules = PauseRules.from_wire(rules) if not isinstance(rules, PauseRules) else rules
        self.on = on
        if not self.rules.active:
            self.release_all()

    def record(self, component, flow, name, ids, detail, parent, level, pausable):
        try:
            with self._lock:
                self._seq += 1
                seq = self._seq
            if component == "core_worker":
                component = self.role or component
            ev = TraceEvent(clock.tick(), self.pid, seq, time.time(), self.node, component,
                            flow, name, ids, detail or {}, parent, level, False, self.proc)
            hold = None
            if pausable and self.rules.active and self.rules.should_pause(ev):
                ev.held = True
                hold = Hold(ev)
                self._holds[ev.key] = hold
            with self._lock:
                self._buffer.append(ev.to_wire())
                first = len(self._buffer) == 1
            if first or hold is not None:
                wake = self.wakeup
                if wake is not None:
                    wake()
            return ev, hold
        except Exception:  # tracing must never break the runtime
            return None, None

    def last_seq(self) -> int:
        return self._seq

    def take(self) -> list:
        """Hand the buffered events to the shell for sending."""
        with self._lock:
            out, self._buffer = self._buffer, []
        return out

    def flush(self) -> None:
        sink = self.sink
        if sink is None:
            return
        batch = self.take()
        if batch:
            try:
                sink(batch)
            except Exception:
                pass

    def release(self, key) -> None:
        hold = self._holds.pop(tuple(key), None)
        if hold is not None:
            hold.release()

    def release_all(self) -> None:
        holds, self._holds = self._holds, {}
        for h in holds.values():
            h.release()

    def held(self) -> list:
        return [h.event for h in self._holds.values()]


TRACER = Tracer()


def step(component: str, flow: str, name: str, level: int = LECTURE, parent=None,
         detail: dict | None = None, **ids):
    """Record one step; never pauses. Returns the event (or None when off)."""
    t = TRACER
    if not t.on:
        return None
    return t.record(component, flow, name, ids, detail, parent, level, False)[0]


def checkpoint(component: str, flow: str, name: str, level: int = LECTURE, parent=None,
               detail: dict | None = None, **ids):
    """Record one step; returns a :class:`Hold` if the cluster must pause here, else None."""
    t = TRACER
    if not t.on:
        return None
    return t.record(component, flow, name, ids, detail, parent, level, True)[1]
