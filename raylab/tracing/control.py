"""Turning tracing on and off across the cluster, and flushing it (driver side).

Tracing is on while anyone listens: a recorder (``raylab.trace()``) or the
step controller. Switching goes through the GCS, which forwards to every
raylet, which forwards to its workers; the call returns only when every
process has the new setting, so no event of the traced code is missed.
"""
from __future__ import annotations

import threading

from raylab.core_worker import current
from raylab.tracing.emit import TRACER, PauseRules
from raylab.tracing.recorder import COLLECTOR

_lock = threading.Lock()
_listeners = 0
_rules = PauseRules()


def _push(on: bool, rules: PauseRules) -> None:
    cw = current.CORE_WORKER
    if cw is None:
        TRACER.configure(on, rules)
        return
    TRACER.configure(on, rules)
    cw.rpc_sync(cw.gcs, "set_trace_config", on, rules.to_wire(), cw.address, timeout=15)


def listen() -> None:
    """One more listener: tracing is on everywhere when this returns."""
    global _listeners
    with _lock:
        _listeners += 1
        if _listeners == 1 or not TRACER.on:
            _push(True, _rules)


def unlisten() -> None:
    global _listeners
    with _lock:
        _listeners = max(0, _listeners - 1)
        if _listeners == 0 and not _rules.active:
            _push(False, _rules)


def set_rules(rules: PauseRules) -> None:
    """Change step mode and breakpoints everywhere (used by the step controller)."""
    global _rules
    with _lock:
        _rules = rules
        _push(_listeners > 0 or rules.active, rules)


def rules() -> PauseRules:
    return _rules


def flush(timeout: float = 5.0) -> bool:
    """Make sure every event recorded anywhere so far has reached the driver."""
    cw = current.CORE_WORKER
    if cw is None:
        return True
    try:
        cw.settle_refs(timeout)  # refs dropped so far free their objects first
    except Exception:
        pass
    TRACER.flush()
    try:
        marks = cw.rpc_sync(cw.gcs, "trace_flush", timeout=timeout)
    except Exception:
        return False
    marks.pop(cw.pid, None)
    return COLLECTOR.wait_for(marks, timeout)


def reset() -> None:
    """Forget listeners and rules (at shutdown)."""
    global _listeners, _rules
    with _lock:
        _listeners = 0
        _rules = PauseRules()
        TRACER.configure(False, _rules)
