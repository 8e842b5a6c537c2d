"""What ``%%raylab trace`` shows: a cell's step log and the diagram of its last step.

Both forms are deterministic for a deterministic flow: ``text/plain`` is the
numbered step log in the lecture's words plus the cluster diagram as text (only
what the trace says, see :mod:`raylab.jupyter.scene`); ``text/html`` is the
coloured step log and the SVG diagram, with the last step's motion (also drawn from
what the trace says only, so a notebook test can compare it).
"""
from __future__ import annotations

from raylab.jupyter.diagram import scene_html
from raylab.jupyter.player import Frames
from raylab.tracing.events import LECTURE
from raylab.views.steplog import steplog_html, steplog_text


class TraceView:
    """A recorded trace shown as step log + diagram (``%%raylab trace``)."""

    def __init__(self, trace, *, flow=None, expand: bool = False, width: int = 100,
                 base=None):
        self.trace = trace
        self.flow, self.expand, self.width = flow, expand, width
        self.frames = Frames(trace.events, base)
        self.final = self._final_frames(base)

    def _final_frames(self, base) -> Frames:
        """The events up to the last step shown: what happens after it (a worker handed
        back a moment later) may or may not be in the trace yet, so it is not drawn."""
        shown = [e for e in self._steps() if e.level == LECTURE]
        if not shown:
            return self.frames
        last = shown[-1].key
        upto = next(i for i, e in enumerate(self.frames.events) if e.key == last)
        return Frames(self.frames.events[: upto + 1], base)

    def _steps(self):
        return self.trace.steps(flow=self.flow, level=None if self.expand else LECTURE)

    def text(self) -> str:
        log = steplog_text(self._steps(), expand=self.expand, width=self.width)
        return f"{log}\n\n{self.final.text(width=self.width)}"

    def __repr__(self) -> str:
        return self.text()

    def _repr_html_(self) -> str:
        log = steplog_html(self._steps(), expand=self.expand, width=self.width)
        return log + scene_html(self.final.scene(len(self.final), stable=True))

    def replay(self):
        from raylab.jupyter.player import Replay
        return Replay(self.frames.events, self.frames.base)


def story(trace, of):
    """The lecture steps of one causal chain in a trace, as a step log view.

    A trace of a cell holds several activities at once (the GCS registering a
    function while the driver resolves arguments; ``ray.get`` checking its store
    while the task is submitted), and their steps may interleave differently from
    run to run. The steps of *one* chain cause each other, so their order never
    changes: for an ObjectRef, the task that makes it (and the fetches of its
    arguments on the node that runs it); for an actor handle, its creation.
    """
    from raylab.tracing.events import TraceEvent
    from raylab.views.model import fold
    from raylab.views.steplog import steplog
    events = sorted(getattr(trace, "events", trace), key=TraceEvent.sort_key)
    tasks, actor = set(), None
    if hasattr(of, "_actor_id"):
        actor = of._actor_id.hex()
        tasks.add("f" * 16 + actor)          # the actor creation task
    else:
        tasks.add(of.task_id().hex())
    model = fold(events)
    args = {a for t in tasks if t in model.tasks for a in model.tasks[t].args}

    def in_chain(ev) -> bool:
        if ev.level != LECTURE or ev.flow == "get":
            return False
        if ev.ids.get("task") in tasks:
            return True
        if actor is not None and ev.ids.get("actor") == actor and ev.component == "gcs":
            return True
        return ev.ids.get("object") in args and ev.component != "driver"
    return steplog([ev for ev in events if in_chain(ev)])
