"""Replay: scrub a recorded trace back and forth, the diagram showing each step.

    t = ...                              # a ray.trace() recording (or a list of events)
    r = raylab.jupyter.player(t)         # a widget: slider, Back / Next, Play, speed
    r                                    # shows it; text/plain is the last frame's text
    r.show(5)                            # jump to step 5 (what the slider does)
    r.text(5)                            # step 5 as deterministic text (for notebooks)
    r.export("add.html")                 # a standalone page that plays without a kernel

Nothing is re-run: a frame is a pure function of the recorded events (and of a
snapshot of the cluster's nodes, taken once), see :mod:`raylab.jupyter.scene`.
:class:`Frames` is shared by the replay, the live dashboard and the export.
"""
from __future__ import annotations

import threading

from raylab.jupyter import kernel
from raylab.jupyter.diagram import scene_html, scene_text
from raylab.jupyter.panels import steplog_html, tables_html, tables_text
from raylab.jupyter.scene import Scene, lecture_positions, scene_at
from raylab.tracing.events import TraceEvent
from raylab.views.model import known_objects, made_objects


def events_of(source) -> list[TraceEvent]:
    """The events of a Trace, a Replay, a Dashboard or a list of events, in causal order."""
    if hasattr(source, "frames") and isinstance(getattr(source, "frames"), Frames):
        return list(source.frames.events)
    events = getattr(source, "events", source)
    if not isinstance(events, (list, tuple)):
        raise TypeError(f"expected a trace (ray.trace()), a dashboard, a replay or a list of "
                        f"trace events, not {type(source).__name__}")
    return sorted(events, key=TraceEvent.sort_key)


def current_base():
    """A snapshot of the running cluster (its nodes and their sizes), or None."""
    from raylab import api
    if not api.is_initialized():
        return None
    from raylab.state import cluster_snapshot
    try:
        return cluster_snapshot()
    except Exception:
        return None


class Frames:
    """The steps of a recording, ready to draw: step 0 (before anything) to step ``len``."""

    def __init__(self, events: list[TraceEvent], base=None):
        self.events = sorted(events, key=TraceEvent.sort_key)
        self.keys = {ev.key for ev in self.events}
        self.positions = lecture_positions(self.events)
        self.made = made_objects(self.events)
        self.base = base

    @property
    def base(self):
        return self._base

    @base.setter
    def base(self, snapshot) -> None:
        """The cluster's nodes and sizes; it also tells what the objects the trace only
        pulls or frees were before it began (their owner, size, primary copy)."""
        self._base = snapshot
        self.known = known_objects(self.events, snapshot)

    def __len__(self) -> int:
        return len(self.positions)

    def scene(self, step: int, *, stable: bool = False, paused: bool = False) -> Scene:
        return scene_at(self.events, step, self.base, stable=stable, paused=paused,
                        positions=self.positions, known=self.known, made=self.made)

    def html(self, step: int, *, paused: bool = False, window: int | None = 14) -> dict:
        """The three panels of step ``step`` as HTML: diagram, step log, tables."""
        scene = self.scene(step, paused=paused)
        return {"diagram": scene_html(scene),
                "steplog": steplog_html(self.events, current=scene.step, window=window),
                "tables": tables_html(scene.model)}

    def text(self, step: int | None = None, width: int = 100) -> str:
        """Step ``step`` (default: the last) as deterministic text: the cluster diagram."""
        return scene_text(self.scene(len(self) if step is None else step, stable=True), width)

    def tables_text(self, step: int | None = None) -> str:
        return tables_text(self.scene(len(self) if step is None else step, stable=True).model)

    def narratives(self) -> list[str]:
        """Step k's sentence at index k - 1 (what the replay must show, in order)."""
        return [self.events[i].narrative for i in self.positions]


def _widgets():
    import ipywidgets
    return ipywidgets


class Replay:
    """A scrubber over a recording (see the module docstring)."""

    def __init__(self, source, base=None, start: int | None = None):
        w = _widgets()
        self.frames = Frames(events_of(source), base if base is not None else current_base())
        n = len(self.frames)
        self._lock = threading.Lock()
        self.slider = w.IntSlider(value=n if start is None else start, min=0, max=n,
                                  description="step", continuous_update=True,
                                  layout=w.Layout(width="420px"))
        self.play = w.Play(value=0, min=0, max=n, interval=900, description="play")
        w.jslink((self.play, "value"), (self.slider, "value"))
        self.back = w.Button(description="◀ Back", layout=w.Layout(width="90px"))
        self.forward = w.Button(description="Next ▶", layout=w.Layout(width="90px"))
        self.speed = w.Dropdown(options=[("slow", 1600), ("normal", 900), ("fast", 350)],
                                value=900, description="speed", layout=w.Layout(width="170px"))
        self.diagram, self.log, self.tables = w.HTML(), w.HTML(), w.HTML()
        for x in (self.slider, self.play, self.back, self.forward, self.speed):
            kernel.route_to_sender(x)
        self.back.on_click(lambda _b: self._nudge(-1))
        self.forward.on_click(lambda _b: self._nudge(+1))
        self.slider.observe(lambda _c: self._draw(), names="value")
        self.speed.observe(lambda c: setattr(self.play, "interval", c["new"]), names="value")
        bar = w.HBox([self.play, self.back, self.forward, self.slider, self.speed])
        self.widget = w.VBox([w.HTML("<b>raylab replay</b>"), bar, self.diagram,
                              w.HTML("<b>step log</b>"), self.log, self.tables])
        self.widget.add_class("raylab-replay")
        self._draw()

    def _nudge(self, delta: int) -> None:
        """Back / Next: move the slider (its observer draws the frame)."""
        self.show(self.slider.value + delta)

    def show(self, step: int) -> None:
        """Show step ``step`` (clamped to 0..last): the slider moves, its observer draws.

        Any thread may call it (a slider change arrives on whatever thread the kernel
        handles it). Moving the slider and drawing are separate, so the observer never
        waits for a lock its own caller holds.
        """
        step = max(0, min(int(step), self.slider.max))
        if self.slider.value != step:
            self.slider.value = step          # the observer calls _draw on this thread
        else:
            self._draw()

    def _draw(self) -> None:
        """Draw the step the slider shows now. Serialised: of two draws at once, the one
        that runs last reads the slider last, so the panels end up matching it."""
        with self._lock:
            panels = self.frames.html(self.slider.value)
            self.diagram.value = panels["diagram"]
            self.log.value = panels["steplog"]
            self.tables.value = panels["tables"]

    @property
    def step(self) -> int:
        return self.slider.value

    def text(self, step: int | None = None, width: int = 100) -> str:
        return self.frames.text(self.step if step is None else step, width)

    def export(self, path, title: str = "raylab replay") -> str:
        from raylab.jupyter.export import export_html
        return export_html(self.frames, path, title=title)

    def __repr__(self) -> str:
        return f"Replay({len(self.frames)} steps)\n{self.text(len(self.frames))}"

    def _repr_mimebundle_(self, **kwargs):
        bundle = self.widget._repr_mimebundle_(**kwargs)
        bundle["text/plain"] = repr(self)
        return bundle


def replay(source, base=None, start: int | None = None) -> Replay:
    """A replay widget for a trace, a dashboard's recording or a list of events."""
    return Replay(source, base, start)
