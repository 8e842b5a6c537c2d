"""The trace model: what a list of trace events says about tasks, objects and actors.

Every view (step log, cluster, lineage, timeline, the Jupyter dashboard) reads
the same model, folded from the events one at a time, in causal order:

    model = fold(trace.events)            # or: m = TraceModel(); m.apply(ev) ...
    model.tasks["4f5a..."].state          # "FINISHED"
    model.objects["4f5a...01000000"].locations   # ["N2"]

The model only *reads* events; it never asks the cluster anything, so the same
log gives the same model live, in a replay or in a test. A step it does not
know is not an error: it is kept in ``model.events`` (and so in the step log)
and its name is listed in ``model.unknown``; a known step missing a key it needs
is kept too, and noted in ``model.problems``.

Step names and the keys read (ids are hex strings in ``event.ids``; every
other key is in ``event.detail``; "proc" is ``event.proc``, the process label):

  functions   export_function (ids function; name)
  tasks       submit_task (task; name, returns, arg_refs)  -> PENDING_ARGS_AVAIL
              submit_actor_task (task, actor; name)        -> PENDING_ARGS_AVAIL
              resolve_dependencies (task)   -> PENDING_NODE_ASSIGNMENT; its arguments are ready
              request_lease (task; why)     -> PENDING_NODE_ASSIGNMENT
              schedule_decision, spillback, infeasible, unschedulable (task; to, why)
              lease_granted (task, worker; worker_label)
              push_task (task; to), actor_method_call (task, actor; to) -> SUBMITTED_TO_WORKER
              execute_task (task, actor; name, attempt)    -> RUNNING, a span opens on proc
                  (an older attempt, or on a worker already dead: a span that died)
              task_returned (task)       -> the span closes (an actor creation task: FINISHED)
              task_finished (task; status, returns)        -> FINISHED | FAILED
              task_failed (task; error)                    -> FAILED
              retry_task (task; attempt, why)              -> PENDING_ARGS_AVAIL again
  objects     put_object (object; size, where), store_object (object; size, primary),
              pull_object (object; to, size), object_replicated (object; to),
              spill_object, restore_object, evict_replica (object; node),
              object_freed (object; reason), object_lost (object; reason),
              get_returned, owner_replied (object; kind),
              reconstruct_object (object, task), reconstruction_done (object)
  actors      register_actor, actor_registered (actor; class_name, name),
              actor_state (actor; state, node_label, cause),
              schedule_actor, create_actor, actor_alive (actor; class_name, to),
              actor_died (actor; cause, will_restart), actor_restart (actor; attempt),
              kill_actor (actor; reason)
  nodes       node_registered (node; label), node_marked_dead (node; label, cause),
              worker_died (worker, or detail worker: a short worker id)
  story only  the steps in ``transitions.STORY_ONLY`` (fetch_function, lease_returned, ...)
              are known and logged but change nothing kept here.
  and, for every event: event.node, event.proc, event.level, event.time.

Objects that existed before the trace began (a ``ray.put`` array a traced task
pulls) appear in it only as pulled, located or freed. ``fold(events, known)``
starts from what a snapshot of the cluster taken when the trace began says about
them (:func:`known_objects`: owner, size, the node with the primary copy), so a
view can draw the store the pull came from and the object's owner.

Node ids are turned into labels (N1, N2) with what the events tell: a raylet's
events carry its own node id, node_registered names every node, and a request
sent to another node names it in detail "raylet" or "to". The records
live in :mod:`raylab.views.records`, the per-step functions in
:mod:`raylab.views.transitions`.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field

from raylab.tracing.events import LECTURE, TraceEvent
from raylab.views.records import (FREED, LOST, PENDING, READY, REBUILT, SPILLED, ActorInfo,
                                  Edge, ObjectInfo, Span, TaskInfo)
from raylab.views.transitions import HANDLERS

__all__ = ["TraceModel", "fold", "known_objects", "made_objects", "TaskInfo", "ObjectInfo", "ActorInfo", "Span", "Edge",
           "PENDING", "READY", "FREED", "LOST", "REBUILT", "SPILLED"]


@dataclass
class TraceModel:
    events: list = field(default_factory=list)
    tasks: dict = field(default_factory=dict)
    objects: dict = field(default_factory=dict)
    actors: dict = field(default_factory=dict)
    functions: dict = field(default_factory=dict)   # function id -> name
    spans: list = field(default_factory=list)
    edges: list = field(default_factory=list)
    nodes: dict = field(default_factory=dict)       # node id hex -> label
    dead_nodes: list = field(default_factory=list)  # labels
    workers: dict = field(default_factory=dict)     # worker id hex -> process label
    dead_workers: list = field(default_factory=list)  # process labels of workers that died
    reconstructions: list = field(default_factory=list)  # (task id, object id)
    unknown: list = field(default_factory=list)     # step names not read, first seen first
    problems: list = field(default_factory=list)    # (step, error) for events missing a key
    step_count: int = 0                             # lecture steps seen so far

    def apply(self, ev: TraceEvent) -> None:
        """Fold one more event into the model (events must come in causal order)."""
        self.events.append(ev)
        if ev.level == LECTURE:
            self.step_count += 1
        _learn_node(self, ev)
        handler = HANDLERS.get(ev.step)
        if handler is None:
            if ev.step not in self.unknown:
                self.unknown.append(ev.step)
            return
        try:
            handler(self, ev)
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            # a view must not break on an odd event: keep it in the log, note what was missing
            self.problems.append((ev.step, f"{type(e).__name__}: {e}"))

    # -- lookups the handlers and views share ---------------------------------------
    def task(self, task_id: str) -> TaskInfo:
        t = self.tasks.get(task_id)
        if t is None:
            t = self.tasks[task_id] = TaskInfo(task_id)
        return t

    def object(self, object_id: str) -> ObjectInfo:
        o = self.objects.get(object_id)
        if o is None:
            o = self.objects[object_id] = ObjectInfo(object_id)
        return o

    def actor(self, actor_id: str) -> ActorInfo:
        a = self.actors.get(actor_id)
        if a is None:
            a = self.actors[actor_id] = ActorInfo(actor_id)
        return a

    def label(self, node_id: str | None) -> str:
        """A node id -> its label ("N2"); an unknown id -> its short hex."""
        if not node_id:
            return ""
        return self.nodes.get(node_id, node_id[:6])

    def open_spans(self, proc: str | None = None) -> list[Span]:
        return [s for s in self.spans if s.end is None and (proc is None or s.proc == proc)]

    def producer(self, object_id: str) -> TaskInfo | None:
        """The task whose return ``object_id`` is (None for ``ray.put`` objects)."""
        o = self.objects.get(object_id)
        return self.tasks.get(o.task) if o is not None and o.task else None


def fold(events, known: dict | None = None) -> TraceModel:
    """The model of ``events`` (a list in causal order, as ``Trace.events`` gives it);
    ``known``: objects that existed before the first event (see :func:`known_objects`)."""
    m = TraceModel()
    for oid, info in (known or {}).items():
        m.objects[oid] = copy.copy(info)
        m.objects[oid].locations = list(info.locations)
    for ev in events:
        m.apply(ev)
    return m


# steps that make an object: an object first seen in any other step was made before
_MAKES = ("put_object", "store_object", "submit_task", "task_finished", "task_returned")


def made_objects(events) -> set:
    """The objects ``events`` show being made (put, stored, or returned by a task)."""
    made = set()
    for ev in events:
        if ev.step in _MAKES:
            if ev.step == "submit_task":
                made.update(ev.detail.get("returns") or ())
            elif ev.ids.get("object"):
                made.add(ev.ids["object"])
    return made


def known_objects(events, snapshot) -> dict:
    """The objects ``events`` mention but never make, as ``snapshot`` shows them.

    Only what stays true while an object lives is taken (its owner, its size, the node
    of its primary copy) and the replicas the events do not show being pulled, so a
    snapshot taken later than the first event (a live dashboard's) gives the same answer.
    """
    if snapshot is None:
        return {}
    made = made_objects(events)
    mentioned = {ev.ids["object"] for ev in events if ev.ids.get("object")}
    mentioned.update(a for ev in events if ev.step == "submit_task"
                     for a in ev.detail.get("arg_refs") or ())
    mentioned -= made
    pulled = {(ev.ids.get("object"), ev.detail.get("to") or ev.node) for ev in events
              if ev.step in ("pull_object", "object_replicated")}
    out: dict = {}
    for node in snapshot.nodes:
        for o in node.objects:
            if o.object_id not in mentioned or (o.object_id, node.label) in pulled:
                continue
            info = out.setdefault(o.object_id, ObjectInfo(o.object_id, READY, o.size, o.owner))
            info.locations.append(node.label)
            if o.primary:
                info.primary, info.spilled = node.label, o.spilled
    return out


def _learn_node(m: TraceModel, ev: TraceEvent) -> None:
    """Learn a node id's label: a raylet's events carry its own node id, node_registered
    names its node, and a request to another node names it ("raylet" or "to")."""
    nid = ev.ids.get("node")
    if not nid or not isinstance(nid, str):
        return
    if ev.component == "raylet":
        label = ev.node
    elif ev.step in ("node_registered", "node_marked_dead"):
        label = ev.detail.get("label")
    else:
        label = ev.detail.get("raylet") or ev.detail.get("to")
    if label and isinstance(label, str):
        m.nodes.setdefault(nid, label)
