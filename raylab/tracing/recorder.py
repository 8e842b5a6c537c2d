"""The driver's trace collector and recorders.

Every process streams its trace events to the driver; the :data:`COLLECTOR`
here receives them and hands them to each active :class:`Recorder` (what
``raylab.trace()`` returns). With no recorder and no step mode, tracing is
off everywhere and costs nearly nothing.
"""
from __future__ import annotations

import threading

from raylab.tracing.emit import TRACER
from raylab.tracing.events import TraceEvent


class Recorder:
    """Keeps the events of one ``with raylab.trace() as t:`` block."""

    def __init__(self):
        self.events: list[TraceEvent] = []
        self._lock = threading.Lock()

    def add(self, events: list) -> None:
        with self._lock:
            self.events.extend(events)

    def snapshot(self) -> list[TraceEvent]:
        with self._lock:
            return sorted(self.events, key=TraceEvent.sort_key)


class Collector:
    def __init__(self):
        self.recorders: list[Recorder] = []
        self.cw = None
        self.uplinks: dict[int, object] = {}   # pid -> connection (for step releases)
        self.on_events = []                    # callbacks(events) of the step controller
        self.live = []                         # callbacks(events) for live views
        self.seen: dict[int, int] = {}         # pid -> highest sequence number received
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)

    def attach(self, cw) -> None:
        self.cw = cw
        TRACER.pid = cw.pid
        TRACER.node = cw.node_label
        TRACER.role = "driver"
        TRACER.proc = "driver"
        TRACER.calls_are_roots = True
        TRACER.sink = self._local_batch
        TRACER.wakeup = lambda: cw.loop.call_soon_threadsafe(TRACER.flush)

    def detach(self, cw) -> None:
        if self.cw is cw:
            TRACER.on = False
            TRACER.release_all()
            TRACER.sink = None
            TRACER.wakeup = None
            self.cw = None
            self.uplinks.clear()

    def add_uplink(self, pid: int, conn) -> None:
        self.uplinks[pid] = conn

    def _local_batch(self, batch: list) -> None:
        self.add_batch(batch)

    def add_batch(self, batch: list) -> None:
        events = [TraceEvent.from_wire(t) for t in batch]
        with self._lock:
            recorders = list(self.recorders)
            hooks = list(self.on_events)
        for r in recorders:  # first into the recorders, then announce them (see wait_for)
            r.add(events)
        with self._lock:
            seen = self.seen
            for ev in events:
                if ev.seq > seen.get(ev.pid, 0):
                    seen[ev.pid] = ev.seq
            self._arrived.notify_all()
        for cb in hooks + list(self.live):
            try:
                cb(events)
            except Exception:  # a broken view must not lose events for the others
                pass

    def wait_for(self, marks: dict, timeout: float) -> bool:
        """Wait until every process's events up to ``marks[pid]`` have arrived."""
        with self._lock:
            return self._arrived.wait_for(
                lambda: all(self.seen.get(pid, 0) >= seq for pid, seq in marks.items()), timeout)

    def subscribe(self, callback) -> None:
        """Call ``callback(events)`` with every batch as it arrives (on the io thread: keep
        it quick and thread-safe). Tracing must also be on: see ``control.listen()``."""
        self.live.append(callback)

    def unsubscribe(self, callback) -> None:
        if callback in self.live:
            self.live.remove(callback)

    def add_recorder(self, r: Recorder) -> None:
        with self._lock:
            self.recorders.append(r)

    def remove_recorder(self, r: Recorder) -> None:
        with self._lock:
            if r in self.recorders:
                self.recorders.remove(r)


COLLECTOR = Collector()
