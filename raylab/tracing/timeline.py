"""``ray.timeline()``: the traced task executions as a Chrome trace.

Ray's ``ray.timeline(filename)`` dumps task executions in the Chrome trace
event format, which chrome://tracing and https://ui.perfetto.dev open: one
"complete" event (``"ph": "X"``) per execution of a task on a worker, with its
start ``ts`` and duration ``dur`` in microseconds. raylab does the same for
the events of a ``raylab.trace()`` recording (the one running now, else the
most recent one), so the timeline shows exactly what the step log narrates.

Processes and threads: as in Ray's own export, ``pid`` and ``tid`` are small
integers and metadata events (``"ph": "M"``) name them: each node is a process
(named ``N2``), each worker process a thread in it (named ``N2.w1``). Trace
viewers draw one track per worker. Times are wall times here, unlike the text
views, because a timeline is about how long things took.

This module is part of the runtime and imports no rich: it folds the events
with :mod:`raylab.views.model`, which is plain Python.
"""
from __future__ import annotations

import json

from raylab.tracing.events import TraceEvent
from raylab.tracing.recorder import COLLECTOR

_LAST: list = []   # [the Trace of the most recent raylab.trace() block]


def remember(trace) -> None:
    """Called when a ``raylab.trace()`` block starts: ``timeline()`` exports this trace.

    The trace's ``events`` are live while it records and frozen once it ends.
    """
    _LAST[:] = [trace]


def recorded_events() -> list[TraceEvent]:
    """The events of the most recent trace (or of a recording still running)."""
    if _LAST:
        return list(_LAST[0].events)
    recorders = list(COLLECTOR.recorders)
    return recorders[-1].snapshot() if recorders else []


def _us(seconds: float) -> int:
    return int(round(seconds * 1_000_000))


def _node_key(label: str) -> tuple:
    return (len(label), label)


def _node_number(label: str, i: int) -> int:
    """N2 -> 2, so a node keeps its number as its pid; other labels count from 1000."""
    return int(label[1:]) if label[:1] == "N" and label[1:].isdigit() else 1000 + i


def chrome_trace_events(events: list[TraceEvent]) -> list[dict]:
    """The Chrome trace events (a list of dicts) for the task executions in ``events``."""
    from raylab.views.model import fold
    model = fold(events)
    if not model.spans:
        return []
    last = max(ev.time for ev in events)
    nodes = sorted({s.node or "?" for s in model.spans}, key=_node_key)
    pid = {n: _node_number(n, i) for i, n in enumerate(nodes, 1)}
    procs = sorted({(s.node or "?", s.proc) for s in model.spans},
                   key=lambda p: (_node_key(p[0]), p[1]))
    tid = {p: i for i, p in enumerate(procs, 1)}
    out: list[dict] = []
    for n in nodes:
        out.append({"name": "process_name", "ph": "M", "pid": pid[n], "tid": 0,
                    "args": {"name": n}})
        out.append({"name": "process_sort_index", "ph": "M", "pid": pid[n], "tid": 0,
                    "args": {"sort_index": pid[n]}})
    for (n, proc), t in tid.items():
        out.append({"name": "thread_name", "ph": "M", "pid": pid[n], "tid": t,
                    "args": {"name": proc}})
    for s in model.spans:
        end = s.t1 if s.t1 is not None else last
        args = {"task_id": s.task, "attempt": s.attempt, "status": s.status, "node": s.node,
                "worker": s.proc, "steps": f"{s.start}-{s.end if s.end is not None else ''}"}
        if s.actor:
            args["actor_id"] = s.actor
        out.append({"cat": "task", "name": s.name, "ph": "X", "ts": _us(s.t0),
                    "dur": max(_us(end - s.t0), 1), "pid": pid[s.node or "?"],
                    "tid": tid[(s.node or "?", s.proc)], "args": args})
    return out


def timeline(filename: str | None = None):
    """Like ``ray.timeline()``: the traced task executions in Chrome trace format.

    With no ``filename``, returns the list of trace events. With one, writes
    ``{"traceEvents": [...]}`` there (open it in chrome://tracing or Perfetto)
    and returns None. Only what a ``raylab.trace()`` block recorded is known;
    with no trace at all, the list is empty and a warning says what to do.
    """
    events = recorded_events()
    if not events:
        import warnings
        warnings.warn("ray.timeline() exports the task executions of a raylab.trace() "
                      "recording, and there is none yet: run your code inside "
                      "`with ray.trace():` first, then call ray.timeline().", stacklevel=2)
    trace_events = chrome_trace_events(events)
    if filename is None:
        return trace_events
    with open(filename, "w") as f:
        json.dump({"traceEvents": trace_events, "displayTimeUnit": "ms"}, f)
    return None
