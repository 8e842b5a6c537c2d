"""The live dashboard: the lecture's diagram of the real cluster, updated as events arrive.

    dash = raylab.jupyter.dashboard(step=True)   # a widget; the cluster pauses at each step
    dash                                         # show it (in its own cell)
    ref = add.remote(a, 2)                       # returns at once; the cluster is paused
    # ... click Next (or run %raylab next, or dash.next()) while the kernel is idle

How it stays live while a cell runs:

- Every process streams its trace events to the driver; the collector hands each
  batch to :meth:`Dashboard._on_events` on the driver's io thread, which only
  puts it in an inbox (quick and thread-safe).
- The dashboard's own **drawing thread** is the only one that writes to its
  widgets. It empties the inbox, keeps the events in causal order, and redraws:
  the diagram of the step shown (a pure function of the events,
  :mod:`raylab.jupyter.scene`), the step log and the tables. Setting a widget's
  value from a thread sends it to the front end at once, even while the main
  thread is busy in a cell.
- Clicks go to a :class:`~raylab.jupyter.controller.Controller` thread, never to
  the main thread (see :mod:`raylab.jupyter.kernel` for when a click can reach a
  busy kernel at all); a click that changes what is shown (the scrubber, Back,
  Live) only tells the drawing thread what to show.
- The cluster's shape (nodes, their sizes, workers to pick from) comes from a
  snapshot of the cluster, an RPC to every raylet; it is read again when a step
  changes the shape (a node joins or dies, a worker starts or dies), at most once
  per ``snapshot_period`` however many such steps arrive.
- Closing (``%raylab shutdown`` does it) first waits for every event recorded so
  far, then draws the last frame: what the page keeps shows how the lesson ended.

The scrubber under the diagram replays what was recorded: drag it back to see
an earlier step, click Live to follow the cluster again.
"""
from __future__ import annotations

import queue
import threading
import time
from html import escape

from raylab.jupyter import kernel
from raylab.jupyter.controller import Controller
from raylab.jupyter.controls import Controls, stepping
from raylab.jupyter.diagram import check_scale, scene_html
from raylab.jupyter.panels import font, steplog_html, tables_html
from raylab.jupyter.player import Frames, current_base
from raylab.tracing import control
from raylab.tracing.events import TraceEvent
from raylab.tracing.recorder import COLLECTOR
from raylab.tracing.stepper import STEPPER

# steps after which the cluster's shape (nodes, workers) is read again
RESHAPING = {"node_registered", "node_marked_dead", "worker_started", "worker_died",
             "actor_alive"}
_OPEN: list = []       # the dashboards now open (magics close them at shutdown)


class Dashboard:
    """A live view of the cluster with step controls (see the module docstring)."""

    def __init__(self, *, step: bool = False, max_rate: float = 10.0, scale: float = 1.0,
                 snapshot_period: float = 1.0):
        from raylab import api
        if not api.is_initialized():
            raise RuntimeError("the dashboard shows a running cluster: call ray.init() "
                               "(or %raylab init) first")
        self.scale = check_scale(scale)
        kernel.install()
        self.session = api.cluster().session.dir
        for old in [d for d in _OPEN if d.session != self.session]:
            old.close()            # a dashboard of a cluster that was shut down
        self._lock = threading.Lock()           # guards self.frames (read by any thread)
        self._inbox: queue.SimpleQueue = queue.SimpleQueue()
        self._wake, self._urgent = threading.Event(), threading.Event()
        self._closing, self._closed = threading.Event(), threading.Event()
        self._drawn = threading.Condition()     # draw requests asked / done (see sync)
        self._asked = self._done = 0
        self._period = 1.0 / max_rate
        self.snapshot_period = snapshot_period
        self._reshape, self._reshape_now, self._fetched_at = True, True, 0.0  # read it first
        self._wants: queue.SimpleQueue = queue.SimpleQueue()   # ("step", k) or ("live",)
        self._close_widgets = False
        self._following, self._shown = True, 0
        self._counted = False                   # counted as controls a user can click
        self.message = ""
        self.renders = self.snapshots = 0
        self.frames = Frames([], None)          # the first draw reads the cluster's shape
        self.controller = Controller(report=self._report, changed=self._cluster_changed)
        self.ui = Controls(self, self.scale)
        COLLECTOR.subscribe(self._on_events)
        control.listen()
        _OPEN.append(self)
        if refresh_all not in STEPPER.blocked_get_hooks:   # "a ray.get is waiting" at once
            STEPPER.blocked_get_hooks.append(refresh_all)
        self._thread = threading.Thread(target=self._run, name="raylab-dashboard", daemon=True)
        self._thread.start()
        if step:
            self.controller.call("step_mode", True)
        self.sync()

    # -- inputs: any thread, quick; none of them touches a widget ------------------------------
    def _on_events(self, events: list) -> None:
        self._inbox.put(events)
        self._wake.set()

    def _report(self, message: str) -> None:
        self.message = message
        self._wake.set()

    def _cluster_changed(self) -> None:
        """A control changed the cluster (killed, added): read its shape at the next draw."""
        self._reshape = self._reshape_now = True
        self._wake.set()

    def scrubbed(self, step: int) -> None:
        """The slider moved. Its own moves (the drawing thread following) are not news."""
        if threading.current_thread() is not self._thread:
            self.show_step(step)

    def show_step(self, step: int | None) -> None:
        """Show recorded step ``step`` (None: follow the cluster live). Any thread."""
        self._wants.put(("live",) if step is None else ("step", int(step)))
        self._request()

    # -- the drawing thread: the only writer of widget state ----------------------------------
    def _request(self) -> int:
        """Ask for a draw soon (not waiting for the rate limit); returns its ticket."""
        with self._drawn:
            self._asked += 1
            ticket = self._asked
        self._wake.set()
        self._urgent.set()
        return ticket

    def _run(self) -> None:
        while True:
            self._wake.wait(self._until_reshape())
            self._wake.clear()
            self._urgent.clear()
            closing = self._closing.is_set()
            with self._drawn:
                ticket = self._asked
            try:
                self._update(final=closing)
            except Exception as e:      # drawing must never kill the dashboard
                self.message = f"the dashboard could not draw: {type(e).__name__}: {e}"
            with self._drawn:
                self._done = ticket
                self._drawn.notify_all()
            if closing:
                self._finish()
                return
            self._urgent.wait(self._period)    # at most max_rate redraws a second

    def _until_reshape(self):
        """How long the drawing thread may sleep: until a pending snapshot is due."""
        if not self._reshape:
            return None
        return max(0.0, self._fetched_at + self.snapshot_period - time.monotonic())

    def _update(self, final: bool = False) -> None:
        """Take in the events that arrived, read the cluster's shape if due, draw."""
        new = []
        while True:
            try:
                new.extend(self._inbox.get_nowait())
            except queue.Empty:
                break
        if any(ev.step in RESHAPING for ev in new):
            self._reshape = True
        base = self._base_if_due(final)
        with self._lock:
            if new or base is not None:
                events = self.frames.events + new if new else self.frames.events
                self.frames = Frames(events, base if base is not None else self.frames.base)
            frames = self.frames
        if base is not None:
            self.ui.set_choices(base)
        self._draw(frames)

    def _base_if_due(self, final: bool):
        """A fresh snapshot of the cluster, if its shape changed and one is due (coalesced:
        many steps that change it cost one snapshot per ``snapshot_period``)."""
        now = time.monotonic()
        due = self._reshape_now or final or now - self._fetched_at >= self.snapshot_period
        if not (self._reshape and due):
            return None
        self._reshape = self._reshape_now = False
        if not self._ours():                   # shut down: nothing to read any more
            return None
        self._fetched_at = now
        self.snapshots += 1
        return _keep_sizes(current_base(), self.frames.base)

    def _ours(self) -> bool:
        """Is the cluster this dashboard shows still the running one?"""
        from raylab import api
        return api.is_initialized() and api.cluster().session.dir == self.session

    def _draw(self, frames: Frames) -> None:
        ui, n = self.ui, len(frames)
        want = None
        while not self._wants.empty():          # the latest request wins
            want = self._wants.get_nowait()
        if want is not None:
            self._following = want[0] == "live" or want[1] >= n
            self._shown = n if self._following else max(0, want[1])
        step = n if self._following else min(self._shown, n)
        ui.slider.max = n
        if ui.slider.value != step:
            ui.slider.value = step
        # The stepper hears of a pause a moment before this dashboard's inbox gets the same
        # event: a pause counts once its step is drawn, so status and diagram always agree.
        paused = {ev.key for ev in STEPPER.paused if ev.key in frames.keys}
        shown_key = frames.events[frames.positions[step - 1]].key if step else None
        scene = frames.scene(step, paused=shown_key in paused)
        ui.diagram.value = scene_html(scene, self.scale)
        ui.log.value = steplog_html(frames.events, current=step, paused=paused,
                                    scale=self.scale)
        ui.tables.value = tables_html(scene.model, self.scale)
        ui.status.value = self._status_html(step, n, paused)
        ui.show_mode()
        self.renders += 1

    def _finish(self) -> None:
        """The drawing thread's last act: grey out the controls (or close the widgets)."""
        if self._close_widgets:
            self.ui.close()
        else:
            n = len(self.frames)
            self.ui.disable(f"this dashboard is closed: its last frame (step {n} of {n}) "
                            f"stays here", self.scale)

    def _status_html(self, step: int, n: int, paused: set) -> str:
        facts = [f"step mode {'on' if stepping() else 'off'}"]
        if self.controller.playing:
            facts.append(f"playing, one step every {STEPPER.pace:g} s")
        if STEPPER.breakpoints:
            facts.append("breakpoints: " + "; ".join(
                " ".join(f"{k}={v}" for k, v in bp.items()) for bp in STEPPER.breakpoints))
        if paused:
            facts.append(f"cluster paused at {len(paused)} step(s)")
        facts.append(f"{len(STEPPER.history)} pause(s) so far")
        if STEPPER.blocked_get == "wait":
            facts.append("a ray.get is waiting: click Next or Continue")
        elif STEPPER.blocked_get == "advance":
            facts.append(f"a ray.get steps the cluster itself every {STEPPER.pace:g} s")
        if step != n:
            facts.append(f"replaying step {step} of {n} (click Live to follow)")
        line = " · ".join(facts)
        note = f"<br><span style='color:#1565c0'>{escape(self.message)}</span>" \
            if self.message else ""
        return f"<div class='raylab-status' style='{font(self.scale)}'>{escape(line)}{note}</div>"

    # -- the same actions as the buttons, from code (they wait until done) ---------------------
    def next(self) -> "Dashboard":
        """Let the paused step happen (the Next button), then show the result."""
        return self._do("next")

    def continue_(self) -> "Dashboard":
        return self._do("continue")

    def pause(self) -> "Dashboard":
        return self._do("pause")

    def play(self) -> "Dashboard":
        return self._do("play")

    def speed(self, pace: float) -> "Dashboard":
        """Seconds between steps while playing (and for a blocking get that advances)."""
        return self._do("speed", pace)

    def break_at(self, **criteria) -> "Dashboard":
        """Pause wherever every criterion matches (step=, node=, ...), like Add breakpoint."""
        return self._do("break_at", criteria)

    def step_mode(self, on: bool = True) -> "Dashboard":
        return self._do("step_mode", bool(on))

    def kill_node(self, label: str) -> "Dashboard":
        return self._do("kill_node", label)

    def kill_worker(self, label: str) -> "Dashboard":
        return self._do("kill_worker", label)

    def add_node(self, num_cpus=None, object_store_memory=None) -> "Dashboard":
        """Start one more node, shaped like the cluster's others unless told otherwise."""
        return self._do("add_node", num_cpus, object_store_memory)

    def _do(self, action: str, *args) -> "Dashboard":
        self.controller.call(action, *args)
        return self.sync()

    # -- reading it --------------------------------------------------------------------------
    def sync(self, timeout: float = 5.0) -> "Dashboard":
        """Wait until every event recorded so far has arrived and has been drawn."""
        if self._closing.is_set():
            return self
        if self._ours():
            control.flush(timeout)
        ticket = self._request()
        with self._drawn:
            self._drawn.wait_for(lambda: self._done >= ticket or not self._thread.is_alive(),
                                 timeout)
        return self

    @property
    def events(self) -> list[TraceEvent]:
        with self._lock:
            return list(self.frames.events)

    def text(self, step: int | None = None, width: int = 100) -> str:
        """The diagram at ``step`` (default: the last) as deterministic text."""
        self.sync()
        return self.frames.text(step, width)

    def steplog(self):
        """The recorded steps as a rich step log view (text and HTML)."""
        from raylab.views.steplog import steplog
        return steplog([e for e in self.sync().events if e.level == 0])

    def clear(self) -> "Dashboard":
        """Forget what was recorded so far (the next flow starts at step 1)."""
        self.sync()
        with self._lock:
            self.frames = Frames([], self.frames.base)
        self.show_step(None)
        return self.sync()

    def replay(self):
        from raylab.jupyter.player import Replay
        return Replay(self.sync().events, self.frames.base)

    def export(self, path, title: str = "raylab replay") -> str:
        from raylab.jupyter.export import export_html
        return export_html(self.sync().frames, path, title=title)

    def close(self, widgets: bool = False) -> None:
        """Stop listening and drawing, after drawing every event recorded so far: the last
        frame stays on the page with its controls greyed out (``widgets=True`` closes the
        widgets instead). Step mode is left as it is."""
        if self._closing.is_set():
            return
        self._close_widgets = widgets
        if self._ours():
            control.flush(5.0)                 # every step recorded so far reaches the inbox
        COLLECTOR.unsubscribe(self._on_events)
        control.unlisten()
        self.controller.close()                # its last report is in the last frame
        self._closing.set()
        self._request()
        self._thread.join(15)
        self._closed.set()
        if self._counted:
            kernel.controls_shown(-1)
        if self in _OPEN:
            _OPEN.remove(self)

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    # -- display -----------------------------------------------------------------------------
    def __repr__(self) -> str:
        base = self.frames.base
        nodes = ", ".join(n.label + (" (head)" if n.is_head else "") for n in base.nodes) \
            if base else "?"
        return f"raylab dashboard of nodes {nodes}; step mode {'on' if STEPPER.active else 'off'}"

    def _repr_mimebundle_(self, **kwargs):
        """Shown in a notebook: from now on its buttons are there to click (a blocking get
        may wait for them, see ``kernel.blocking_get_policy``)."""
        if not self._counted and not self._closing.is_set():
            self._counted = True
            kernel.controls_shown(+1)
        bundle = self.ui.widget._repr_mimebundle_(**kwargs)
        bundle["text/plain"] = repr(self)
        return bundle


def dashboard(step: bool = False, scale: float = 1.0) -> Dashboard:
    """Open a live dashboard of the running cluster (``step=True``: pause at every step;
    ``scale=1.5``: larger text, for a projector)."""
    return Dashboard(step=step, scale=scale)


def _keep_sizes(new, old):
    """A raylet that stopped answering reports no store size until the GCS marks its node
    dead: keep the size the last snapshot had."""
    if new is not None and old is not None:
        for n in new.nodes:
            before = old.node(n.label)
            if not n.store_capacity and before is not None:
                n.store_capacity = before.store_capacity
    return new


def refresh_all(*_why) -> None:
    """Ask every open dashboard to draw again soon (a blocking get began to wait)."""
    for d in list(_OPEN):
        d._request()


def close_all() -> None:
    for d in list(_OPEN):
        d.close()
