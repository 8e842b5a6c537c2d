"""What ``%%raylab trace`` shows: a cell's step log and the diagram of its last step.

A cell usually starts several activities at once (the GCS registering a function
while the driver resolves the arguments; ``ray.get`` checking its store while the
task is submitted), and their steps may interleave differently from run to run.
The steps of *one causal chain* cause each other, so their order never changes:
``%%raylab trace --of ref_c`` (or :func:`story`) shows only those, and the diagram
of the chain's last step folded from them alone, so both forms are deterministic
and a notebook test can compare them. The chain of

- an ObjectRef: the remote function's export, the puts of its arguments passed by
  value, the task that makes it, the fetches of its arguments on the node that
  runs it, and where its result is stored (and fetched to);
- an actor handle: its registration and creation (or restart) through the GCS,
  and every step its own process takes (its method calls run there one by one,
  or interleaved for an async actor).

Without ``--of`` every lecture step of the cell is shown, with the diagram of the
last one.
"""
from __future__ import annotations

from raylab.jupyter.diagram import scene_html
from raylab.jupyter.player import Frames
from raylab.tracing.events import LECTURE, TraceEvent
from raylab.views.steplog import steplog_html, steplog_text

_DRIVER_ACTOR_STEPS = ("register_actor", "kill_actor_process", "kill_actor")
_OBJECT_BOXES = ("object_store", "object_manager")


def chain_of(events: list[TraceEvent], of) -> list[TraceEvent]:
    """The lecture steps of ``of``'s causal chain in ``events`` (see the module docstring)."""
    from raylab.views.model import fold
    events = sorted(events, key=TraceEvent.sort_key)
    tasks, actor = set(), getattr(of, "_actor_id", None)
    if actor is not None:
        actor = actor.hex()
        tasks.add("f" * 16 + actor)          # the actor creation task
    elif hasattr(of, "task_id"):
        tasks.add(of.task_id().hex())
    else:
        raise TypeError(f"a causal chain starts from an ObjectRef or an actor handle, not "
                        f"{type(of).__name__}")
    model = fold(events)
    args = {a for t in tasks if t in model.tasks for a in model.tasks[t].args}
    made = {r for t in tasks if t in model.tasks for r in model.tasks[t].returns}
    names = {model.tasks[t].name.split(".")[0] for t in tasks if t in model.tasks}

    def in_chain(ev) -> bool:
        if ev.level != LECTURE:
            return False
        ids, c = ev.ids, ev.component
        if ev.step == "export_function":
            return ev.detail.get("name") in names   # before the submit, in the same thread
        if ev.flow == "get" and c == "driver":
            return False                            # a get runs beside the task
        if ids.get("task") in tasks:
            return True
        if actor is not None and ids.get("actor") == actor:
            return c in ("gcs", "worker") or (c == "driver" and ev.step in _DRIVER_ACTOR_STEPS)
        obj = ids.get("object")
        if c == "driver":
            return ev.step == "put_object" and obj in args   # in the same thread, before
        return c in _OBJECT_BOXES and (obj in args or obj in made)
    return [ev for ev in events if in_chain(ev)]


class TraceView:
    """A recorded trace shown as step log + diagram (``%%raylab trace``)."""

    def __init__(self, trace, *, flow=None, expand: bool = False, width: int = 100,
                 base=None, of=None):
        self.trace = trace
        self.flow, self.expand, self.width, self.of = flow, expand, width, of
        self.frames = Frames(trace.events, base)
        self.chain = None if of is None else chain_of(trace.events, of)
        self.final = self._final_frames(base)

    def _final_frames(self, base) -> Frames:
        """What the diagram is folded from. Of a chain: its steps alone. Of the whole cell:
        the events up to the last step shown, as what happens after it (a worker handed
        back a moment later) may or may not be in the trace yet."""
        if self.chain is not None:
            return Frames(self.chain, base)
        shown = [e for e in self._steps() if e.level == LECTURE]
        if not shown:
            return self.frames
        last = shown[-1].key
        upto = next(i for i, e in enumerate(self.frames.events) if e.key == last)
        return Frames(self.frames.events[: upto + 1], base)

    def _steps(self):
        if self.chain is None:
            return self.trace.steps(flow=self.flow, level=None if self.expand else LECTURE)
        steps = [e for e in self.chain if self.flow is None or e.flow == self.flow]
        if not self.expand:
            return steps
        keys = {e.key for e in steps}
        return [e for e in self.trace.events if e.key in keys or e.parent in keys]

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
    """The lecture steps of one causal chain in a trace, as a step log view (see the
    module docstring: for an ObjectRef, the task that makes it; for an actor handle,
    its creation and what its process does)."""
    from raylab.views.steplog import steplog
    return steplog(chain_of(getattr(trace, "events", trace), of))


def timeline(trace, of=None):
    """The timeline of a trace's task executions; ``of`` a ref or an actor handle: of its
    causal chain only, numbered as ``story`` numbers it (an async actor's calls overlap)."""
    from raylab.views.timeline import timeline_view
    events = getattr(trace, "events", trace)
    return timeline_view(events if of is None else chain_of(events, of))
