"""The emit hook: one tracer per process.

Components call :func:`step` (record the event, never pause) or
:func:`checkpoint` (record it, and hand back a :class:`Hold` when the step
controller wants the cluster to stop here). Both return at once when nobody
is listening, so a trace point costs a function call and an attribute test.

Each event names its cause (:mod:`raylab.tracing.cause`): the step this
context was carrying out when it was recorded, which it then replaces.

Tracing never changes results: recording never raises into the runtime, and
no runtime decision reads the trace. Events are buffered and flushed to the
driver's recorder by the process shell (``Tracer.sink``); an event that cannot
be pickled is sent with its odd values spelled out (``repr``) instead.
"""
from __future__ import annotations

import os
import pickle
import threading
import time

from raylab.tracing import cause, clock
from raylab.tracing.events import LECTURE, TraceEvent
from raylab.tracing.steps import STARTS_A_CALL


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
        self.calls_are_roots = False   # the driver: a step that starts a user's call has no cause
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
        # New rules never release a step paused now: only the driver's stepper does
        # (next / continue / off), so clearing a breakpoint keeps the current pause.

    def record(self, component, flow, name, ids, detail, parent, level, pausable):
        """Buffer one event (as its wire tuple); returns the Hold if it pauses here."""
        try:
            if component == "core_worker":
                component = self.role or component
            if parent is None and not (self.calls_are_roots and name in STARTS_A_CALL):
                parent = cause.current() or None
            lamport, now, pid, hold = clock.tick(), time.time(), self.pid, None
            with self._lock:  # one lock: sequence numbers enter the buffer in order
                self._seq += 1
                seq = self._seq
                wire = (lamport, pid, seq, now, self.node, component, flow, name, ids,
                        detail or {}, parent or None, level, False, self.proc)
                if pausable and self.rules.active:
                    ev = TraceEvent(*wire)
                    if self.rules.should_pause(ev):
                        ev.held = True
                        hold = self._holds[ev.key] = Hold(ev)
                        wire = ev.to_wire()
                self._buffer.append(wire)
                first = len(self._buffer) == 1
            cause.enter((pid << 32) | seq)  # what this context does next, this step caused
            if first or hold is not None:
                wake = self.wakeup
                if wake is not None:
                    wake()
            return hold
        except Exception:  # tracing must never break the runtime
            return None

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
            except Exception:  # most likely a detail that cannot be pickled: spell it out
                try:
                    sink([_picklable(t) for t in batch])
                except Exception:
                    pass

    def release(self, key) -> None:
        hold = self._holds.pop(key, None)
        if hold is not None:
            hold.release()

    def release_all(self) -> None:
        holds, self._holds = self._holds, {}
        for h in holds.values():
            h.release()

    def held(self) -> list:
        return [h.event for h in self._holds.values()]


def _picklable(wire: tuple) -> tuple:
    """The event, with any id or detail that cannot be pickled replaced by its repr."""
    try:
        pickle.dumps(wire, 5)
        return wire
    except Exception:
        pass
    ev = list(wire)
    for i in (8, 9):  # ids, detail
        ev[i] = {k: _plain(v) for k, v in (ev[i] or {}).items()}
    return tuple(ev)


def _plain(v):
    try:
        pickle.dumps(v, 5)
        return v
    except Exception:
        return repr(v)


TRACER = Tracer()


def step(component: str, flow: str, name: str, level: int = LECTURE, parent=None,
         detail: dict | None = None, **ids):
    """Record one step; never pauses. ``parent``: the key of its cause if not the step
    this context is carrying out (0: none, a root)."""
    t = TRACER
    if t.on:
        t.record(component, flow, name, ids, detail, parent, level, False)


def checkpoint(component: str, flow: str, name: str, level: int = LECTURE, parent=None,
               detail: dict | None = None, **ids):
    """Record one step; returns a :class:`Hold` if the cluster must pause here, else None."""
    t = TRACER
    if not t.on:
        return None
    return t.record(component, flow, name, ids, detail, parent, level, True)
