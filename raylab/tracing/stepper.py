"""Step mode: pause the real cluster at trace points, and release it step by step.

    stepper = raylab.stepper
    stepper.on()                      # pause at every lecture-level step
    ref = add.remote(a, b)            # returns at once; the cluster stops at its first step
    ev = stepper.wait()               # the step the cluster is paused at
    ev = stepper.next()               # let that step happen; returns the next paused step
    stepper.break_at(step="lease_granted", node="N2")   # or pause only at breakpoints
    stepper.continue_()               # run on until the next breakpoint (if any)
    stepper.off()                     # no pausing at all

Nothing is replayed: the process that reached a paused step really waits (an
asyncio coroutine awaits, or a worker's thread blocks) until the driver
releases that step, while everything else keeps running: health checks are
answered, other flows proceed, and you can kill a node meanwhile.

Each process decides locally whether a step pauses (the rules are shipped to
every process), so a paused step costs one message to the driver and one back.
"""
from __future__ import annotations

import threading

from raylab.core_worker import current
from raylab.tracing import control
from raylab.tracing.emit import TRACER, PauseRules
from raylab.tracing.events import TraceEvent
from raylab.tracing.recorder import COLLECTOR


class StepController:
    def __init__(self):
        self._held: list[TraceEvent] = []
        self._cond = threading.Condition()
        self._stepping = False
        self._breakpoints: list[dict] = []
        self.history: list[TraceEvent] = []   # every step that paused, in order
        # What a blocking ray.get does when the cluster is paused (see wait_through_pauses):
        # "advance" steps by itself every `pace` seconds; "wait" waits for someone else to
        # step (another thread, a widget click); "error" fails at once saying how to step;
        # "auto" (the default) asks `policy`, which raylab.jupyter sets in a kernel ("wait"
        # where a click can reach a blocked cell, else "advance"); with no policy: "advance".
        self.blocking_get = "auto"
        self.pace = 0.5
        self.policy = None            # () -> "advance" | "wait" | "error", used by "auto"
        self.blocked_get_hooks = []   # callbacks(mode): a blocking get found the cluster paused
        self.blocked_get = None       # the mode of the blocking get waiting now, else None
        COLLECTOR.on_held.append(self._on_held)

    # -- switching -----------------------------------------------------------------
    def on(self, breakpoints: list | None = None) -> "StepController":
        """Pause at every lecture-level step (and at ``breakpoints``, dicts of criteria)."""
        self._stepping = True
        if breakpoints is not None:
            self._breakpoints = [dict(b) for b in breakpoints]
        self._apply()
        return self

    def off(self) -> None:
        """No more pausing anywhere; everything paused now runs on."""
        self._stepping = False
        self._breakpoints = []
        self._apply()
        self._release_all()

    def break_at(self, **criteria) -> "StepController":
        """Pause where every criterion matches: flow, step, component, node, task=, object=..."""
        if not criteria:
            raise ValueError("break_at needs at least one criterion, e.g. step='lease_granted'")
        unknown = set(criteria) - {"flow", "step", "component", "node", "task", "object",
                                   "actor", "worker", "function", "level"}
        if unknown:
            raise ValueError(f"unknown breakpoint criteria {sorted(unknown)}; use flow, step, "
                             "component, node, task, object, actor, worker, function or level")
        self._breakpoints.append(criteria)
        self._apply()
        return self

    def clear_breakpoints(self) -> None:
        self._breakpoints = []
        self._apply()

    @property
    def stepping(self) -> bool:
        """Pausing at every step (``on()``), not only at breakpoints."""
        return self._stepping

    @property
    def active(self) -> bool:
        return self._stepping or bool(self._breakpoints)

    @property
    def breakpoints(self) -> list[dict]:
        return list(self._breakpoints)

    def _apply(self) -> None:
        control.set_rules(PauseRules(self._stepping, self._breakpoints))

    # -- the paused steps ---------------------------------------------------------
    def _on_held(self, ev: TraceEvent) -> None:
        with self._cond:
            self._held.append(ev)
            self.history.append(ev)
            self._cond.notify_all()

    @property
    def paused(self) -> list[TraceEvent]:
        """The steps the cluster is paused at now, earliest first."""
        with self._cond:
            return sorted(self._held, key=TraceEvent.sort_key)

    def wait(self, timeout: float | None = 10.0) -> TraceEvent | None:
        """Wait until the cluster is paused somewhere; returns the earliest paused step."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._held, timeout):
                return None
            return min(self._held, key=TraceEvent.sort_key)

    def next(self, timeout: float | None = 10.0) -> TraceEvent | None:
        """Let the earliest paused step happen; return the step the cluster pauses at next
        (None if nothing pauses within ``timeout``: the flow has finished)."""
        with self._cond:
            if not self._held:
                if not self._cond.wait_for(lambda: self._held, timeout):
                    return None
            ev = min(self._held, key=TraceEvent.sort_key)
            self._held.remove(ev)
            before = len(self.history)
        self._release(ev)
        with self._cond:
            self._cond.wait_for(lambda: len(self.history) > before or self._held, timeout)
            return min(self._held, key=TraceEvent.sort_key) if self._held else None

    def continue_(self) -> None:
        """Stop stepping and let everything paused run on; breakpoints stay armed."""
        self._stepping = False
        self._apply()
        self._release_all()

    resume = continue_

    # -- a blocking ray.get while paused ------------------------------------------------
    def blocking_mode(self) -> str:
        """What a blocking get does now: "advance", "wait" or "error" ("auto" resolved)."""
        mode = self.blocking_get
        if mode == "auto":
            policy = self.policy
            try:
                mode = policy() if policy is not None else "advance"
            except Exception:  # a broken policy must not break ray.get
                mode = "advance"
        if mode not in ("advance", "wait", "error"):
            raise ValueError(f"invalid value for raylab.stepper.blocking_get, expected "
                             f"\"auto\", \"advance\", \"wait\" or \"error\" (not {mode!r})")
        return mode

    def wait_through_pauses(self, waiter, timeout: float | None) -> bool:
        """Wait for ``waiter`` (a blocking get) while the cluster may be paused.

        Nothing may hang silently: with ``blocking_get == "advance"`` the cluster moves
        one step every ``pace`` seconds (so a plain script still finishes, at a pace you
        can watch); with ``"error"`` a get that would wait on a paused cluster raises at
        once, saying how to step; with ``"wait"`` someone else must step (the hooks in
        ``blocked_get_hooks`` are told, so a notebook can say where to click).
        """
        import time
        deadline = None if timeout is None else time.monotonic() + timeout
        told = False
        try:
            while True:
                mode = self.blocking_mode()
                if self._held and not told:
                    told = True
                    self.blocked_get = mode
                    for hook in list(self.blocked_get_hooks):
                        try:
                            hook(mode)
                        except Exception:
                            pass
                if mode == "error" and self._held:
                    raise RuntimeError(
                        "ray.get would wait for a cluster paused in step mode. Step it with "
                        "raylab.stepper.next() (or %raylab next, or the dashboard's Next "
                        "button) from another cell or thread, use `await ref` instead of "
                        "ray.get, or switch step mode off with raylab.stepper.off().")
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                piece = self.pace if left is None else min(self.pace, left)
                if waiter.wait(piece):
                    return True
                if mode == "advance" and self._held:
                    self.next(timeout=0)
                if not self.active:
                    return waiter.wait(left)
        finally:
            self.blocked_get = None

    # -- releasing ------------------------------------------------------------------
    def _release(self, ev: TraceEvent) -> None:
        cw = current.CORE_WORKER
        if cw is None or ev.pid == cw.pid:
            TRACER.release(ev.key)
            return
        conn = COLLECTOR.uplinks.get(ev.pid)
        if conn is not None:
            cw.call_soon(_send_release, conn, ev.key)

    def _release_all(self) -> None:
        with self._cond:
            held, self._held = self._held, []
        for ev in held:
            self._release(ev)
        TRACER.release_all()
        cw = current.CORE_WORKER
        if cw is not None:
            for conn in list(COLLECTOR.uplinks.values()):
                cw.call_soon(_send_release_all, conn)

    def reset(self) -> None:
        """Forget everything (at shutdown): nothing may stay paused."""
        self._stepping = False
        self._breakpoints = []
        with self._cond:
            self._held = []
            self.history = []
            self._cond.notify_all()
        TRACER.release_all()


def _send_release(conn, key) -> None:
    if not conn.closed:
        conn.send("trace_release", key)


def _send_release_all(conn) -> None:
    if not conn.closed:
        conn.send("trace_release_all")


STEPPER = StepController()
