"""Step mode: pause the real cluster at trace points, and release it step by step.

    stepper = raylab.stepper
    stepper.on()                      # show every lecture-level step, pausing where it can
    ref = add.remote(a, b)            # returns at once; the cluster stops at its first step
    ev = stepper.wait()               # the current step: the one shown now
    ev = stepper.next()               # let the current step happen; returns the next one
    bp = stepper.break_at(step="lease_granted", node="N2")   # or stop only at breakpoints
    stepper.remove(bp)                # one breakpoint less (clear_breakpoints: all of them)
    stepper.continue_()               # run on until the next breakpoint (if any)
    stepper.off()                     # no pausing at all

Nothing is replayed: the process that reached a paused step really waits (an
asyncio coroutine awaits, or a worker's thread blocks) until the driver
releases that step, while everything else keeps running: health checks are
answered, other flows proceed, and you can kill a node meanwhile.

The steps are shown one at a time, in causal order, and :attr:`current` is the
one shown; ``next()`` releases exactly that one. Most steps pause where they
happen (``ev.held``). The steps a program's own thread takes in the driver
(``export_function``, ``submit_task``, ``put_object``, ``get_object`` ...) are
shown in the same sequence but never hold that thread: pausing inside
``.remote()`` would freeze the user's cell. They are *passed* steps
(``ev.held`` is False): already done when shown, and ``next()`` only moves on.

Changing the rules (a breakpoint added, removed or cleared) affects the steps
still to come: what is paused now stays paused until ``next()``,
``continue_()`` or ``off()``, and :attr:`paused` lists exactly that.

Each process decides locally whether a step pauses (the rules are shipped to
every process), so a paused step costs one message to the driver and one back.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass

from raylab.core_worker import current
from raylab.tracing import control
from raylab.tracing.emit import TRACER, PauseRules
from raylab.tracing.events import TraceEvent
from raylab.tracing.recorder import COLLECTOR

CRITERIA = ("flow", "step", "component", "node", "task", "object", "actor", "worker",
            "function", "level")


@dataclass(eq=False)
class Breakpoint:
    """One breakpoint (what ``break_at`` returns): stop where every criterion matches."""
    criteria: dict

    def __repr__(self) -> str:
        return "Breakpoint(" + ", ".join(f"{k}={v!r}" for k, v in self.criteria.items()) + ")"


class StepController:
    def __init__(self):
        self._cond = threading.Condition()
        self._stepping = False
        self._breakpoints: list[Breakpoint] = []
        self._rules = PauseRules()
        self._line: list[TraceEvent] = []       # steps that arrived and are not shown yet
        self._held: dict[int, TraceEvent] = {}  # key -> a step some process is paused at
        self._current: TraceEvent | None = None
        self._shut = False                      # reset at shutdown: late arrivals are stale
        self.history: list[TraceEvent] = []     # every step shown, in order
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
        COLLECTOR.on_events.append(self._arrived)

    # -- switching -----------------------------------------------------------------
    def on(self, breakpoints: list | None = None) -> "StepController":
        """Show every lecture-level step (and stop at ``breakpoints``, dicts of criteria)."""
        self._stepping = True
        if breakpoints is not None:
            self._breakpoints = [Breakpoint(self._checked(b)) for b in breakpoints]
        self._apply()
        return self

    def off(self) -> None:
        """No more pausing anywhere; everything paused now runs on."""
        self._stepping = False
        self._breakpoints = []
        self._apply()
        self._settle()   # every step paused under the old rules has arrived: forget them all
        with self._cond:
            self._line, self._held, self._current = [], {}, None
        self._release_everywhere()

    def break_at(self, **criteria) -> Breakpoint:
        """Stop where every criterion matches: flow, step, component, node, task=, object=...

        Returns the breakpoint, for :meth:`remove`. Steps of the driver's own thread
        (``submit_task``, ``put_object``, ``get_object``, ...) are shown when they match but
        never hold that thread (see the module's docstring).
        """
        bp = Breakpoint(self._checked(criteria))
        self._breakpoints.append(bp)
        self._apply()
        return bp

    def remove(self, bp: Breakpoint) -> None:
        """Remove one breakpoint (as returned by ``break_at``); what is paused stays paused."""
        if not any(b is bp for b in self._breakpoints):
            raise ValueError(f"{bp!r} is not a breakpoint of this stepper (now: "
                             f"{self._breakpoints}); pass what break_at returned")
        self._breakpoints = [b for b in self._breakpoints if b is not bp]
        self._apply()

    def clear_breakpoints(self) -> None:
        """Remove every breakpoint; what is paused now stays paused until next/continue_."""
        self._breakpoints = []
        self._apply()

    @staticmethod
    def _checked(criteria: dict) -> dict:
        if not criteria:
            raise ValueError("break_at needs at least one criterion, e.g. step='lease_granted'")
        unknown = set(criteria) - set(CRITERIA)
        if unknown:
            raise ValueError(f"unknown breakpoint criteria {sorted(unknown)}; use flow, step, "
                             "component, node, task, object, actor, worker, function or level")
        return dict(criteria)

    @property
    def stepping(self) -> bool:
        """Pausing at every step (``on()``), not only at breakpoints."""
        return self._stepping

    @property
    def active(self) -> bool:
        """The stepper may hold the cluster: step mode or breakpoints are on, or a step is
        still paused (a blocking ray.get then waits through pauses)."""
        return self._stepping or bool(self._breakpoints) or bool(self._held)

    @property
    def breakpoints(self) -> list[dict]:
        return [dict(b.criteria) for b in self._breakpoints]

    def _apply(self) -> None:
        rules = PauseRules(self._stepping, [b.criteria for b in self._breakpoints])
        with self._cond:
            self._rules = rules
            self._shut = False
            # passed steps not shown yet are shown only if still wanted; paused ones stay
            self._line = [e for e in self._line if e.key in self._held or
                          rules.should_pause(e)]
        control.set_rules(rules)

    # -- the steps, as they arrive (io thread) -------------------------------------------
    def _arrived(self, events: list) -> None:
        rules = self._rules
        if self._shut or (not rules.active and not any(ev.held for ev in events)):
            return
        with self._cond:
            got = False
            for ev in events:
                if ev.held:
                    self._held[ev.key] = ev
                elif not rules.should_pause(ev):
                    continue
                self._line.append(ev)
                got = True
            if got:
                self._cond.notify_all()

    # -- showing them one at a time ------------------------------------------------------
    @property
    def current(self) -> TraceEvent | None:
        """The step shown now (what ``wait`` or ``next`` returned), until ``next()``."""
        return self._current

    @property
    def pending(self) -> list[TraceEvent]:
        """Steps that happened (or are paused) and are not shown yet, earliest first: what
        ``next()`` shows after the current one."""
        with self._cond:
            return sorted(self._line, key=TraceEvent.sort_key)

    @property
    def paused(self) -> list[TraceEvent]:
        """The steps the cluster is really paused at now, earliest first."""
        with self._cond:
            return sorted(self._held.values(), key=TraceEvent.sort_key)

    def wait(self, timeout: float | None = 10.0) -> TraceEvent | None:
        """The current step; if none, wait for the next one and make it current
        (None if nothing arrives within ``timeout``)."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._current is not None or self._line,
                                       timeout):
                return None
        return self._take_next()

    def next(self, timeout: float | None = 10.0) -> TraceEvent | None:
        """Let the current step happen; return the step shown next (None if nothing comes
        within ``timeout``: the flow has finished). With no current step, the first one
        to arrive is let happen."""
        ev = self.wait(timeout)
        if ev is None:
            return None
        with self._cond:
            if self._current is ev:
                self._current = None
            held = self._held.pop(ev.key, None) is not None
        if held:
            self._release(ev)
        return self.wait(timeout)

    def _take_next(self) -> TraceEvent | None:
        """Make the earliest step in line current, once every step that could have caused
        it has arrived: a flush first (which brings everything recorded before it), and
        again if the earliest one arrived only during the flush."""
        for attempt in range(3):
            with self._cond:
                if self._current is not None or not self._line:
                    return self._current
                before = {e.key for e in self._line}
            self._settle()
            with self._cond:
                if self._current is not None or not self._line:
                    return self._current
                ev = min(self._line, key=TraceEvent.sort_key)
                if ev.key in before or attempt == 2:
                    self._line.remove(ev)
                    self._current = ev
                    self.history.append(ev)
                    return ev
        return self._current

    def _settle(self) -> None:
        cw = current.CORE_WORKER
        if cw is not None and not cw.on_io_thread():
            control.flush(timeout=2.0)

    def continue_(self) -> None:
        """Stop stepping and let everything paused run on; breakpoints stay armed."""
        self._stepping = False
        self._apply()
        self._settle()   # every step paused under the old rules has arrived now
        with self._cond:
            held = list(self._held.values())
            self._line, self._held, self._current = [], {}, None
        for ev in held:
            self._release(ev)

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

    def _release_everywhere(self) -> None:
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
            self._rules = PauseRules()
            self._shut = True
            self._line, self._held, self._current = [], {}, None
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
