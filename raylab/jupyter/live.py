"""The live dashboard: the lecture's diagram of the real cluster, updated as events arrive.

    dash = raylab.jupyter.live(step=True)   # a widget; the cluster pauses at each step
    dash                                         # show it (in its own cell)
    ref = add.remote(a, 2)                       # returns at once; the cluster is paused
    # ... click Next (or run %raylab next, or dash.next()) while the kernel is idle

How it stays live while a cell runs:

- Every process streams its trace events to the driver; the collector hands each
  batch to :meth:`Dashboard._on_events` on the driver's io thread, which only
  puts it in an inbox (quick and thread-safe).
- The dashboard's own drawing thread empties the inbox, keeps the events in
  causal order, and redraws: the diagram of the step shown (a pure function of
  the events, :mod:`raylab.jupyter.scene`), the step log and the tables. Setting
  a widget's value from a thread sends it to the front end at once, even while
  the main thread is busy in a cell.
- Clicks go to a :class:`~raylab.jupyter.controller.Controller` thread, never to
  the main thread; see :mod:`raylab.jupyter.kernel` for when a click can reach a
  busy kernel at all.

The scrubber under the diagram replays what was recorded: drag it back to see
an earlier step, click Live to follow the cluster again.
"""
from __future__ import annotations

import queue
import threading
from html import escape

from raylab.jupyter import kernel
from raylab.jupyter.controller import Controller
from raylab.jupyter.controls import Controls, stepping
from raylab.jupyter.diagram import scene_html
from raylab.jupyter.panels import FONT, steplog_html, tables_html
from raylab.jupyter.player import Frames, current_base
from raylab.tracing import control
from raylab.tracing.events import TraceEvent
from raylab.tracing.recorder import COLLECTOR
from raylab.tracing.stepper import STEPPER

# steps after which the cluster's shape (nodes, workers) is read again
RESHAPING = {"node_registered", "node_marked_dead", "worker_died", "worker_started",
             "actor_alive", "lease_granted"}
_OPEN: list = []       # the dashboards now open (magics close them at shutdown)


class Dashboard:
    """A live view of the cluster with step controls (see the module docstring)."""

    def __init__(self, *, step: bool = False, max_rate: float = 10.0):
        from raylab import api
        if not api.is_initialized():
            raise RuntimeError("the dashboard shows a running cluster: call ray.init() "
                               "(or %raylab init) first")
        kernel.install()
        self.session = api.cluster().session.dir
        for old in [d for d in _OPEN if d.session != self.session]:
            old.close()            # a dashboard of a cluster that was shut down
        self._lock = threading.RLock()
        self._inbox: queue.SimpleQueue = queue.SimpleQueue()
        self._wake, self._closed = threading.Event(), threading.Event()
        self._period = 1.0 / max_rate
        self._following, self._shown = True, 0
        self._reshape = False
        self.message = ""
        self.renders = 0
        self.frames = Frames([], current_base())
        self.controller = Controller(report=self._report, changed=self._cluster_changed)
        self.ui = Controls(self)
        self.ui.set_choices(self.frames.base)
        COLLECTOR.subscribe(self._on_events)
        control.listen()
        kernel.controls_shown(+1)
        _OPEN.append(self)
        self._thread = threading.Thread(target=self._run, name="raylab-dashboard", daemon=True)
        self._thread.start()
        if step:
            self.controller.call("step_mode", True)
        self.sync()

    # -- inputs: any thread, quick -----------------------------------------------------------
    def _on_events(self, events: list) -> None:
        self._inbox.put(events)
        self._wake.set()

    def _report(self, message: str) -> None:
        self.message = message
        self._wake.set()

    def _cluster_changed(self) -> None:
        self._reshape = True
        self._wake.set()

    def scrubbed(self, step: int) -> None:
        """The slider moved (a click or the drawing thread): follow live only at the end."""
        self._following = step >= self.ui.slider.max
        self._shown = step
        self._wake.set()

    def show_step(self, step: int | None) -> None:
        """Show recorded step ``step`` (None: follow the cluster live)."""
        if step is None:
            self._following = True
            self._wake.set()
            return
        self.ui.slider.value = max(0, min(step, self.ui.slider.max))

    # -- the drawing thread ------------------------------------------------------------------
    def _run(self) -> None:
        while not self._closed.is_set():
            self._wake.wait()
            if self._closed.is_set():
                return
            self._wake.clear()
            try:
                self.update()
            except Exception as e:      # drawing must never kill the dashboard
                self.message = f"the dashboard could not draw: {type(e).__name__}: {e}"
            self._closed.wait(self._period)    # at most max_rate redraws a second

    def update(self) -> None:
        """Take in the events that arrived and redraw (any thread; serialised)."""
        with self._lock:
            new = []
            while True:
                try:
                    new.extend(self._inbox.get_nowait())
                except queue.Empty:
                    break
            if new:
                events = self.frames.events + new
                self.frames = Frames(sorted(events, key=TraceEvent.sort_key), self.frames.base)
                if any(ev.step in RESHAPING for ev in new):
                    self._reshape = True
            if self._reshape:
                self._reshape = False
                base = current_base()
                if base is not None:
                    self.frames.base = base
                    self.ui.set_choices(base)
            self._draw()

    def _draw(self) -> None:
        frames, ui = self.frames, self.ui
        n = len(frames)
        ui.slider.max = n
        step = n if self._following else min(self._shown, n)
        if self._following and ui.slider.value != n:
            ui.slider.value = n
        paused = {ev.key for ev in STEPPER.paused}
        shown_key = frames.events[frames.positions[step - 1]].key if step else None
        scene = frames.scene(step, paused=shown_key in paused)
        ui.diagram.value = scene_html(scene)
        ui.log.value = steplog_html(frames.events, current=step, paused=paused)
        ui.tables.value = tables_html(scene.model)
        ui.status.value = self._status_html(step, n, paused)
        ui.show_mode()
        self.renders += 1

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
        return f"<div class='raylab-status' style='{FONT}'>{escape(line)}{note}</div>"

    # -- the same actions as the buttons, from code (they wait until done) ---------------------
    def next(self) -> "Dashboard":
        """Let the paused step happen (the Next button), then show the result."""
        return self._do("next")

    def continue_(self) -> "Dashboard":
        return self._do("continue")

    def pause(self) -> "Dashboard":
        return self._do("pause")

    def step_mode(self, on: bool = True) -> "Dashboard":
        self.ui.step_mode.value = bool(on)      # its observer submits the command
        return self._do("refresh")

    def kill_node(self, label: str) -> "Dashboard":
        return self._do("kill_node", label)

    def kill_worker(self, label: str) -> "Dashboard":
        return self._do("kill_worker", label)

    def add_node(self, num_cpus=None) -> "Dashboard":
        return self._do("add_node", num_cpus if num_cpus is not None else self.cpus_per_node())

    def _do(self, action: str, *args) -> "Dashboard":
        self.controller.call(action, *args)
        return self.sync()

    def cpus_per_node(self):
        nodes = self.frames.base.nodes if self.frames.base else []
        return nodes[-1].total.get("CPU") if nodes else None

    # -- reading it --------------------------------------------------------------------------
    def sync(self, timeout: float = 5.0) -> "Dashboard":
        """Wait until every event recorded so far has arrived, and redraw with them."""
        if not self._closed.is_set():
            control.flush(timeout)
            self.update()
        return self

    @property
    def events(self) -> list[TraceEvent]:
        return list(self.frames.events)

    def text(self, step: int | None = None, width: int = 100) -> str:
        """The diagram at ``step`` (default: the last) as deterministic text."""
        self.sync()
        return self.frames.text(step, width)

    def steplog(self):
        """The recorded steps as a rich step log view (text and HTML)."""
        from raylab.views.steplog import steplog
        return steplog([e for e in self.sync().frames.events if e.level == 0])

    def clear(self) -> "Dashboard":
        """Forget what was recorded so far (the next flow starts at step 1)."""
        with self._lock:
            self.sync()
            self.frames = Frames([], self.frames.base)
            self._following = True
            self._draw()
        return self

    def replay(self):
        from raylab.jupyter.player import Replay
        return Replay(self.sync().frames.events, self.frames.base)

    def export(self, path, title: str = "raylab replay") -> str:
        from raylab.jupyter.export import export_html
        return export_html(self.sync().frames, path, title=title)

    def close(self, widgets: bool = False) -> None:
        """Stop listening and drawing. The last frame stays on the page with its controls
        disabled (``widgets=True`` closes the widgets too). Step mode is left as it is."""
        if self._closed.is_set():
            return
        self._closed.set()
        self._wake.set()
        COLLECTOR.unsubscribe(self._on_events)
        control.unlisten()
        kernel.controls_shown(-1)
        self.controller.close()
        self._thread.join(5)
        if self in _OPEN:
            _OPEN.remove(self)
        if widgets:
            self.ui.close()
        else:
            self.ui.disable("this dashboard is closed: its last frame stays here")

    # -- display -----------------------------------------------------------------------------
    def __repr__(self) -> str:
        base = self.frames.base
        nodes = ", ".join(n.label + (" (head)" if n.is_head else "") for n in base.nodes) \
            if base else "?"
        return f"raylab dashboard of nodes {nodes}; step mode {'on' if STEPPER.active else 'off'}"

    def _repr_mimebundle_(self, **kwargs):
        bundle = self.ui.widget._repr_mimebundle_(**kwargs)
        bundle["text/plain"] = repr(self)
        return bundle


def dashboard(step: bool = False) -> Dashboard:
    """Open a live dashboard of the running cluster (``step=True``: pause at every step)."""
    return Dashboard(step=step)


def close_all() -> None:
    for d in list(_OPEN):
        d.close()
