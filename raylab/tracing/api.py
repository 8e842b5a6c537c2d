"""``raylab.trace()``: record what the cluster does while a block of code runs.

    with raylab.trace() as t:
        ray.get(add.remote(a, b))
    t.steps(flow="task")          # the lecture-level steps, in causal order
    t.show()                      # the numbered step log (rich in a terminal or notebook)
    t.text()                      # the same, as deterministic plain text

Events come from every process of the cluster; they are ordered by their
Lamport clocks (cause before effect), never by wall time.
"""
from __future__ import annotations

from raylab.tracing import control
from raylab.tracing.events import LECTURE, TraceEvent
from raylab.tracing.recorder import COLLECTOR, Recorder


class Trace:
    """A recorded trace: the events, filters over them, and its views."""

    def __init__(self, recorder: Recorder):
        self._recorder = recorder
        self._frozen: list[TraceEvent] | None = None
        self._recording: "trace | None" = None   # set by trace.start(); cleared by stop()

    @property
    def events(self) -> list[TraceEvent]:
        """All events (both zoom levels), in causal order."""
        if self._frozen is not None:
            return self._frozen
        return self._recorder.snapshot()

    def freeze(self) -> None:
        self._frozen = self._recorder.snapshot()

    def stop(self) -> "Trace":
        """End a recording begun with ``raylab.trace().start()`` (no-op otherwise)."""
        recording, self._recording = self._recording, None
        if recording is not None:
            recording.__exit__(None, None, None)
        return self

    def steps(self, flow=None, task=None, object=None, level: int | None = LECTURE,
              **criteria) -> list[TraceEvent]:
        """The events matching every given criterion (lecture level unless ``level=None``)."""
        crit = dict(criteria, flow=flow, task=task, object=object, level=level)
        return [e for e in self.events if e.matches(**crit)]

    def names(self, **criteria) -> list[str]:
        return [e.step for e in self.steps(**criteria)]

    def text(self, level: int | None = LECTURE, width: int = 100, **criteria) -> str:
        """The numbered step log as plain text (``level=None``: protocol steps too)."""
        from raylab.views.steplog import steplog_text
        return steplog_text(self.steps(level=level, **criteria), expand=level is None,
                            width=width)

    def show(self, level: int | None = LECTURE, console=None, **criteria) -> None:
        from raylab.views.steplog import show_steplog
        show_steplog(self.steps(level=level, **criteria), console=console,
                     expand=level is None)

    def lineage(self, object_ref=None):
        """The lineage graph of an object (or of every result) from this trace."""
        from raylab.views.lineage import lineage_view
        return lineage_view(self.events, object_ref)

    def timeline(self):
        """A per-worker timeline of the task executions in this trace."""
        from raylab.views.timeline import timeline_view
        return timeline_view(self.events)

    def __len__(self):
        return len(self.events)

    def __repr__(self):
        return self.text()

    def _repr_html_(self):
        from raylab.views.steplog import steplog_html
        return steplog_html(self.steps())


class trace:
    """Context manager: trace the cluster while the block runs (usable as a decorator too).

    For a recording that spans notebook cells: ``t = raylab.trace().start()``, later
    ``t.stop()``.
    """

    def __init__(self):
        self._recorder = Recorder()
        self.result = Trace(self._recorder)

    def __enter__(self) -> Trace:
        from raylab.tracing import timeline
        timeline.remember(self.result)   # ray.timeline() exports the latest trace
        COLLECTOR.add_recorder(self._recorder)
        control.listen()
        return self.result

    def start(self) -> Trace:
        """Begin recording now; the returned trace's ``stop()`` ends it."""
        t = self.__enter__()
        t._recording = self
        return t

    def __exit__(self, *exc) -> None:
        try:
            control.flush()
        finally:
            control.unlisten()
            COLLECTOR.remove_recorder(self._recorder)
            self.result.freeze()
