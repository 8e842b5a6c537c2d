"""A scene: what the lecture's diagram shows at one step of a trace.

The dashboard, the replay scrubber and the exported HTML all draw the same
thing: the cluster *as it was after step k*, the box that acted at step k, and
what moved between boxes (a task pushed to a worker, an object pulled from one
store into another). A :class:`Scene` holds exactly that, and it is a pure
function of data:

- the trace events (folded into a :class:`~raylab.views.model.TraceModel` up to
  step k: tasks, objects, actors, workers, dead nodes);
- a *base* :class:`~raylab.views.snapshot.ClusterSnapshot` for what the trace does
  not say: which nodes exist, their resources and store capacity.

So a live dashboard and a replay of the same events show the same pictures, and a
notebook can print a frame as deterministic text. With ``stable=True`` only what
the trace says is drawn (plus the nodes' totals): no worker that merely idles, no
object put before the trace began, nothing that depends on timing. That is the
form used for ``text/plain``.

Boxes are named like the processes they stand for: ``"gcs"``, ``"driver"``,
``"N2.raylet"``, ``"N2.store"`` (the node's object store and object manager),
``"N2.w1"`` (a worker process).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field

from raylab.tracing.events import LECTURE, TraceEvent
from raylab.views.format import short_object
from raylab.views.model import FREED, LOST, TraceModel, fold
from raylab.views.snapshot import ActorState, ClusterSnapshot, NodeState, StoreObject, WorkerState

MEMORY_RESOURCES = ("memory", "object_store_memory")   # machine-sized: never shown


@dataclass
class Motion:
    """Something travelling between two boxes at this step: a task, an object, a call."""
    src: str
    dst: str
    label: str
    kind: str          # "task" | "object" | "call"


@dataclass
class Scene:
    snapshot: ClusterSnapshot      # the cluster at this step, as the diagram draws it
    model: TraceModel              # the trace folded up to this step
    step: int                      # lecture step number; 0 is "before the first step"
    steps: int                     # lecture steps in the whole trace
    event: TraceEvent | None       # the lecture step shown (None at step 0)
    acting: str | None = None      # the box that acted
    motion: Motion | None = None
    paused: bool = False           # the real cluster is held at this step
    inline: dict = field(default_factory=dict)   # owner process -> objects in its memory store

    @property
    def headline(self) -> str:
        if self.event is None:
            return f"step 0 of {self.steps}: nothing has happened yet"
        pause = "  (paused here)" if self.paused else ""
        return f"step {self.step} of {self.steps}: {self.event.narrative}{pause}"


# -- which events make step k ---------------------------------------------------------------
def lecture_positions(events: list[TraceEvent]) -> list[int]:
    """Indices of the lecture-level steps in ``events`` (already in causal order)."""
    return [i for i, ev in enumerate(events) if ev.level == LECTURE]


def events_upto(events: list[TraceEvent], step: int, positions=None) -> list[TraceEvent]:
    """The events that have happened once lecture step ``step`` has: up to the next one."""
    positions = lecture_positions(events) if positions is None else positions
    if step <= 0:
        return []
    if step >= len(positions):
        return list(events)
    return events[: positions[step]]


def scene_at(events: list[TraceEvent], step: int, base: ClusterSnapshot | None = None, *,
             stable: bool = False, paused: bool = False, positions=None,
             known: dict | None = None, made=frozenset()) -> Scene:
    """The scene after lecture step ``step`` (clamped to 0..steps) of ``events``;
    ``known``: objects that existed before the first event (``model.known_objects``);
    ``made``: objects the events make (``model.made_objects``): the trace, not ``base``,
    tells where those are at each step."""
    positions = lecture_positions(events) if positions is None else positions
    step = max(0, min(step, len(positions)))
    upto = events_upto(events, step, positions)
    model = fold(upto, known)
    ev = events[positions[step - 1]] if step else None
    snap = project(base, model, upto, stable=stable, made=made)
    return Scene(snap, model, step, len(positions), ev, box_of(ev) if ev else None,
                 motion_of(ev, model) if ev else None, paused, inline_objects(model))


# -- the boxes and what moves ---------------------------------------------------------------------
def box_of(ev: TraceEvent) -> str:
    """The box on the diagram that acted at ``ev``."""
    c = ev.component
    if c == "gcs":
        return "gcs"
    if c == "driver":
        return "driver"
    if c == "worker":
        return ev.proc or f"{ev.node}.raylet"
    if c in ("object_store", "object_manager"):
        return f"{ev.node}.store"
    return f"{ev.node}.raylet"


def _owner_box(proc: str) -> str:
    return proc if proc and proc != "gcs" else "driver"


def _worker_box(model: TraceModel, short_worker, node: str) -> str:
    if isinstance(short_worker, str) and short_worker:
        for wid, label in model.workers.items():
            if wid.startswith(short_worker):
                return label
    return f"{node}.raylet"


def motion_of(ev: TraceEvent, model: TraceModel) -> Motion | None:
    """What travels at ``ev``, and between which boxes (None: nothing moves)."""
    d, me = ev.detail, box_of(ev)
    name = d.get("name") or "task"
    task = model.tasks.get(ev.ids.get("task") or "")
    obj = short_object(ev.ids.get("object")) if ev.ids.get("object") else ""
    step = ev.step
    if step in ("export_function", "register_actor"):
        return Motion(me, "gcs", d.get("name") or d.get("class_name") or "", "call")
    if step == "request_lease" and d.get("raylet"):
        return Motion(me, f"{d['raylet']}.raylet", f"{name}()", "task")
    if step in ("schedule_decision", "spillback") and d.get("to") and d["to"] != ev.node:
        return Motion(me, f"{d['to']}.raylet", f"{name}()", "task")
    if step == "lease_granted" and d.get("worker_label"):
        return Motion(me, d["worker_label"], f"{name}()", "task")
    if step == "push_task" and d.get("to"):
        return Motion(me, _worker_box(model, d.get("worker"), d["to"]), f"{name}()", "task")
    if step == "actor_method_call":
        actor = model.actors.get(ev.ids.get("actor") or "")
        dst = actor.worker if actor is not None and actor.worker else f"{d.get('to', ev.node)}.raylet"
        return Motion(me, dst, f"{d.get('method', name)}()", "call")
    if step == "task_returned" and task is not None and task.owner:
        return Motion(me, _owner_box(task.owner), f"{name} result", "object")
    if step in ("pull_object", "object_replicated") and d.get("from") and d.get("to"):
        return Motion(f"{d['from']}.store", f"{d['to']}.store", obj, "object")
    if step == "put_object" and "memory store" not in str(d.get("where", "")):
        return Motion(me, f"{ev.node}.store", obj, "object")
    if step in ("locate_object", "ask_owner"):
        o = model.objects.get(ev.ids.get("object") or "")
        return Motion(me, _owner_box(o.owner if o else ""), f"where is {obj}?", "call")
    if step in ("schedule_actor", "create_actor") and d.get("to"):
        return Motion("gcs", f"{d['to']}.raylet", d.get("class_name", "actor"), "task")
    if step == "health_check_missed" and d.get("label"):
        return Motion("gcs", f"{d['label']}.raylet", "ping?", "call")
    if step == "kill_node" and d.get("label"):
        return Motion("driver", f"{d['label']}.raylet", "SIGKILL", "call")
    return None


def inline_objects(model: TraceModel) -> dict:
    """Objects that live in an owner's in-process memory store (small ones), by owner."""
    out: dict = {}
    for o in model.objects.values():
        if o.inline and o.state not in (FREED, LOST):
            out.setdefault(_owner_box(o.owner), []).append(o.object_id)
    return out


# -- the cluster at step k ----------------------------------------------------------------------------
def logical(resources: dict) -> dict:
    """Resources without the machine-sized memory entries."""
    return {k: v for k, v in (resources or {}).items() if k not in MEMORY_RESOURCES}


def _node_key(label: str) -> tuple:
    return (len(label), label)


def _worker_key(w: WorkerState) -> tuple:
    node, _, rest = w.label.partition(".w")
    return (_node_key(node), int(rest) if rest.isdigit() else 0, w.label)


def project(base: ClusterSnapshot | None, model: TraceModel, events: list[TraceEvent], *,
            stable: bool = False, made=frozenset()) -> ClusterSnapshot:
    """The cluster after ``events``: nodes from ``base``, everything else from the trace
    (``stable``: nothing from ``base`` that may differ between runs)."""
    snap = ClusterSnapshot(control_plane=base.control_plane if base else "ownership")
    labels = [n.label for n in base.nodes] if base else []
    for label in sorted(set(model.nodes.values()) | set(model.dead_nodes), key=_node_key):
        if label not in labels:
            labels.append(label)
    available = _available(base, events)
    leased = _leased(model, events)
    stuck = _infeasible(events)
    for label in labels:
        b = base.node(label) if base else None
        total = logical(b.total) if b else {}
        node = NodeState(b.node_id if b else "", label,
                         (b.alive if b else True) and label not in model.dead_nodes,
                         b.is_head if b else label == "N1", total,
                         available.get(label, dict(total)))
        node.store_capacity = b.store_capacity if b else 0
        known = {} if stable or b is None else {n: r for n, r in b.infeasible}
        node.infeasible = list({**known, **stuck.get(label, {})}.items())
        node.queued = [] if stable or b is None else list(b.queued)
        node.workers = _workers(b, model, label, leased, stable)
        node.objects = _objects(b, model, label, stable, made)
        # a spilled object's bytes are in a file on disk, not in the shared memory
        node.store_used = sum(o.size for o in node.objects if not o.spilled)
        snap.nodes.append(node)
    snap.actors = _actors(base, model, stable)
    snap.functions = _functions(base, model, stable)
    if snap.control_plane == "centralized":
        snap.object_table = {} if stable or base is None else dict(base.object_table)
        for o in model.objects.values():
            if o.locations:
                snap.object_table[o.object_id] = list(o.locations)
    return snap


def _available(base, events) -> dict:
    """Resources free per node: the totals, minus what the traced leases hold."""
    totals = {n.label: logical(n.total) for n in base.nodes} if base else {}
    avail = {label: dict(t) for label, t in totals.items()}
    for ev in events:
        if ev.step == "lease_granted" and isinstance(ev.detail.get("available_after"), dict):
            avail[ev.node] = logical(ev.detail["available_after"])
        elif ev.step == "lease_returned" and ev.node in avail:
            a, t = avail[ev.node], totals.get(ev.node, {})
            for k, v in logical(ev.detail.get("resources") or {}).items():
                a[k] = min(a.get(k, 0) + v, t.get(k, a.get(k, 0) + v))
    return avail


def _infeasible(events) -> dict:
    """Node label -> {task name: resources} of the tasks it holds as infeasible (no node
    could ever run them), as the trace tells: until they are placed after all, or cancelled."""
    waiting: dict = {}
    for ev in events:
        task = ev.ids.get("task")
        if ev.step == "infeasible" and task:
            waiting[task] = (ev.node, ev.detail.get("name", "?"), ev.detail.get("resources"))
        elif task in waiting and ev.step in ("lease_granted", "execute_task", "task_finished",
                                             "task_failed", "cancel_task"):
            del waiting[task]
    out: dict = {}
    for node, name, resources in waiting.values():
        out.setdefault(node, {})[name] = resources
    return out


def _leased(model: TraceModel, events) -> dict:
    """Worker label -> the task name it is leased for, as the trace tells."""
    out: dict = {}
    for ev in events:
        wid = ev.ids.get("worker")
        if ev.step == "lease_granted" and ev.detail.get("worker_label"):
            out[ev.detail["worker_label"]] = ev.detail.get("name", "")
        elif ev.step in ("lease_returned", "worker_died") and wid:
            out.pop(model.workers.get(wid, ""), None)
    return out


def _workers(b: NodeState | None, model: TraceModel, label: str, leased: dict,
             stable: bool) -> list[WorkerState]:
    found = {} if stable or b is None else {w.label: copy.copy(w) for w in b.workers}
    traced = set(model.workers.values()) | {s.proc for s in model.spans} | set(leased)
    traced |= {a.worker for a in model.actors.values() if a.worker}
    for wl in traced:
        if not wl.startswith(label + "."):
            continue
        w = found.get(wl) or WorkerState("", wl, 0, "IDLE")
        open_spans = model.open_spans(wl)
        actor = next((a for a in model.actors.values() if a.worker == wl
                      and a.state not in ("DEAD", "RESTARTING")), None)
        if wl in model.dead_workers:
            w.state, w.running = "DEAD", ""
        elif actor is not None:
            w.state, w.running, w.actor_id = "ACTOR", actor.class_name, actor.actor_id
            if open_spans:
                w.running = open_spans[-1].name
        elif open_spans:
            w.state, w.running = "LEASED", open_spans[-1].name
        elif wl in leased:
            w.state, w.running = "LEASED", leased[wl]
        elif stable or w.state not in ("ACTOR",):
            w.state, w.running = "IDLE", ""
        found[wl] = w
    return sorted(found.values(), key=_worker_key)


def _objects(b: NodeState | None, model: TraceModel, label: str,
             stable: bool, made=frozenset()) -> list[StoreObject]:
    out = {} if stable or b is None else {o.object_id: copy.copy(o) for o in b.objects
                                          if o.object_id not in made}
    for oid in list(out):
        if oid in model.objects and model.objects[oid].state in (FREED, LOST):
            del out[oid]
    for o in model.objects.values():
        if o.state in (FREED, LOST) or label not in o.locations:
            continue
        out[o.object_id] = StoreObject(o.object_id, o.size or 0, o.owner or "?",
                                       o.primary == label, False, o.spilled)
    return [out[k] for k in sorted(out)]


def _actors(base, model: TraceModel, stable: bool) -> list[ActorState]:
    out = {} if stable or base is None else {a.actor_id: copy.copy(a) for a in base.actors}
    for a in model.actors.values():
        st = out.get(a.actor_id) or ActorState(a.actor_id, a.class_name, a.state or "?")
        st.class_name, st.name = a.class_name, a.name or st.name
        st.state, st.node = a.state or st.state, a.node or st.node
        st.restarts, st.death_cause = a.restarts, a.cause or st.death_cause
        out[a.actor_id] = st
    return list(out.values())


def _functions(base, model: TraceModel, stable: bool) -> list:
    """(id, name) pairs. A function's id hashes its pickled code, which names the kernel's
    temporary file for a function defined in a notebook, so the stable form hides it."""
    out = {} if stable or base is None else {fid: name for fid, name in base.functions}
    out.update(model.functions)
    pairs = sorted(out.items(), key=lambda p: (str(p[1]), p[0]))
    return [("(varies)", name) for _fid, name in pairs] if stable else pairs
