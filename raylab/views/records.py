"""The records of the trace model: a task, an object, an actor, a span, a lineage edge.

Plain dataclasses with Ray's words in them (task states from
:mod:`raylab.states`; object states in the lecture's words). The model
(:mod:`raylab.views.model`) keeps them up to date as events arrive; every view
reads them.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from raylab import states

# object states (Ray has no enum for these; the lecture's words)
PENDING, READY, FREED, LOST, REBUILT, SPILLED = (
    "pending", "ready", "freed", "lost", "rebuilt", "spilled")


@dataclass
class TaskInfo:
    task_id: str
    name: str = "?"
    state: str = states.PENDING_ARGS_AVAIL
    owner: str = ""                 # process label of the submitter: "driver", "N1.w2"
    node: str = ""                  # node label it was placed on / ran on
    worker: str = ""                # process label of the worker that ran it: "N2.w1"
    actor: str | None = None
    attempt: int = 0
    args: list = field(default_factory=list)      # object ids it takes
    returns: list = field(default_factory=list)   # object ids it makes
    why: str = ""                   # the last scheduling reason
    error: str = ""
    reexecuted_for: list = field(default_factory=list)  # objects it was re-run to rebuild


@dataclass
class ObjectInfo:
    object_id: str
    state: str = PENDING
    size: int | None = None
    owner: str = ""                 # process label of the owner
    task: str | None = None         # the task that makes it (None for ray.put, or unknown)
    put: bool = False               # made by ray.put (the trace saw it)
    locations: list = field(default_factory=list)  # node labels with a shared-memory copy
    primary: str = ""               # node label of the primary copy
    inline: bool = False            # lives in the owner's in-process memory store
    spilled: bool = False
    error: bool = False             # the value is an exception (its task failed)
    reason: str = ""                # why it was freed or lost
    reconstructing: bool = False


@dataclass
class ActorInfo:
    actor_id: str
    class_name: str = "?"
    name: str | None = None
    state: str = ""                 # Ray's actor state; "" until a step tells it
    node: str = ""
    worker: str = ""
    restarts: int = 0
    cause: str = ""


@dataclass
class Span:
    """One execution of a task on one worker process (a bar on the timeline)."""
    proc: str                       # "N2.w1"
    node: str
    task: str
    name: str
    start: int                      # lecture step number at which it started
    end: int | None = None          # lecture step number at which it ended (None: running)
    t0: float = 0.0                 # wall times, only for the Chrome trace export
    t1: float | None = None
    status: str = states.RUNNING    # RUNNING | FINISHED | FAILED | died
    attempt: int = 0
    actor: str | None = None


@dataclass
class Edge:
    """Lineage: ``src`` -> ``dst``; kind "arg" (object -> task) or "return" (task -> object)."""
    src: str
    dst: str
    kind: str
