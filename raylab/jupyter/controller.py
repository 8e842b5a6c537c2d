"""Where a click becomes an action: one thread that steps the cluster and injects failures.

Widget callbacks run on whatever thread the kernel handles the click on: the
main thread when the kernel is idle, a subshell thread while a cell runs
(JupyterLab >= 4.4), the event loop during an ``await``. So a callback does
one thread-safe thing: it puts a command on this controller's queue. The
controller's own thread then talks to the step controller (``raylab.stepper``)
and to :mod:`raylab.chaos`, one command at a time, in the order clicked.

Nothing here needs the kernel's main thread, which is why Next works while a
cell is blocked in ``ray.get`` (when the click can reach the kernel at all).

"Play" steps on its own: while playing, the queue is read with a timeout of
one ``pace``, and each timeout releases one step, so the cluster moves at the
chosen speed until Pause (or Next, or Continue) is clicked.
"""
from __future__ import annotations

import queue
import threading

from raylab.tracing.stepper import STEPPER


class Controller:
    def __init__(self, report=None, changed=None):
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._done = threading.Condition()
        self.finished = 0            # commands carried out so far (tests wait on it)
        self._submitted = 0
        self.playing = False
        self.report = report or (lambda message: None)      # a line for the status bar
        self.changed = changed or (lambda: None)             # the cluster's shape changed
        self._thread = threading.Thread(target=self._run, name="raylab-controls", daemon=True)
        self._thread.start()

    # -- called from any thread (widget callbacks) ------------------------------------------
    def submit(self, action: str, *args) -> int:
        """Queue ``action``; returns its ticket (wait for it with :meth:`wait`)."""
        if not hasattr(self, "do_" + action):
            raise ValueError(f"unknown dashboard action {action!r}")
        with self._done:
            self._submitted += 1
            ticket = self._submitted
        self._queue.put((action, args))
        return ticket

    def wait(self, ticket: int, timeout: float = 30.0) -> bool:
        """Wait until the command with ``ticket`` (and all before it) is done."""
        with self._done:
            return self._done.wait_for(lambda: self.finished >= ticket, timeout)

    def call(self, action: str, *args, timeout: float = 30.0) -> None:
        """Do ``action`` now, in order with the clicks, and wait for it."""
        if not self.wait(self.submit(action, *args), timeout):
            raise TimeoutError(f"the dashboard action {action!r} did not finish in {timeout} s")

    def close(self) -> None:
        self._queue.put(None)
        if threading.current_thread() is not self._thread:
            self._thread.join(5)

    # -- the controller's thread ---------------------------------------------------------------
    def _run(self) -> None:
        while True:
            try:
                item = self._queue.get(timeout=STEPPER.pace if self.playing else None)
            except queue.Empty:        # playing, and one pace has passed: one more step
                if STEPPER.paused or STEPPER.pending:  # passed (driver) steps count too
                    STEPPER.next(timeout=0)
                continue
            if item is None:
                return
            action, args = item
            try:
                message = getattr(self, "do_" + action)(*args)
            except Exception as e:     # a failed action is told, never raised into a thread
                message = f"{action.replace('_', ' ')} failed: {e}"
            if message:
                self.report(message)
            with self._done:
                self.finished += 1
                self._done.notify_all()

    # -- stepping ------------------------------------------------------------------------------------
    def do_next(self):
        self.playing = False
        if not STEPPER.paused and not STEPPER.active:
            return "step mode is off: switch it on to pause the cluster at every step"
        ev = STEPPER.next(timeout=1.0)
        return f"paused at: {ev.narrative}" if ev is not None else "nothing is paused now"

    def do_play(self):
        if not STEPPER.active:
            STEPPER.on()
        self.playing = True
        return f"playing: one step every {STEPPER.pace:g} s"

    def do_pause(self):
        self.playing = False
        STEPPER.on()
        return "paused: the cluster stops at its next step"

    def do_continue(self):
        self.playing = False
        STEPPER.continue_()
        bps = len(STEPPER.breakpoints)
        return f"running on; {bps} breakpoint(s) armed" if bps else "running on"

    def do_step_mode(self, on: bool):
        self.playing = False
        if on:
            STEPPER.on()
            return "step mode on: the cluster pauses at every lecture step"
        STEPPER.off()
        return "step mode off"

    def do_speed(self, pace: float):
        STEPPER.pace = float(pace)
        return None

    def do_break_at(self, criteria: dict):
        STEPPER.break_at(**criteria)
        return "breakpoint set: " + " ".join(f"{k}={v}" for k, v in criteria.items())

    def do_clear_breakpoints(self):
        STEPPER.clear_breakpoints()
        return "breakpoints cleared"

    # -- failures and new nodes ---------------------------------------------------------------------
    def do_kill_worker(self, label: str):
        from raylab import chaos
        pid = chaos.kill_worker(label)
        self.changed()
        return f"killed worker {label} (pid {pid})"

    def do_kill_node(self, label: str):
        from raylab import chaos
        chaos.kill_node(label)
        self.changed()
        return f"killed node {label}: the GCS finds out when its health checks fail"

    def do_add_node(self, num_cpus=None, object_store_memory=None):
        from raylab import chaos
        cpus, store = node_shape()
        label = chaos.add_node(num_cpus=cpus if num_cpus is None else num_cpus,
                               object_store_memory=store if object_store_memory is None
                               else object_store_memory)
        self.changed()
        return f"added node {label}"

    def do_refresh(self):
        self.changed()
        return None


def node_shape() -> tuple:
    """(CPUs, object store bytes) of a typical node of the running cluster: what a new node
    gets unless told otherwise, so it looks like its neighbours (the most common shape)."""
    from collections import Counter

    from raylab import api
    nodes = list(api.cluster().nodes.values())
    if not nodes:
        return None, None
    cpus = Counter(n.resources.get("CPU") for n in nodes).most_common(1)[0][0]
    store = Counter(n.object_store_memory for n in nodes).most_common(1)[0][0]
    return cpus, store
