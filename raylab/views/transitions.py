"""Transitions: how each step of a flow changes the trace model.

One small function per step name, ``handler(model, event)``; :data:`HANDLERS`
maps step names to them. They read only the event and the model, never the
cluster (the keys each reads are listed in :mod:`raylab.views.model`).
"""
from __future__ import annotations

from raylab import states
from raylab.tracing.events import TraceEvent
from raylab.views.records import (FREED, LOST, PENDING, READY, REBUILT, SPILLED, ActorInfo,
                                  Edge, ObjectInfo, Span)


def _proc(ev: TraceEvent) -> str:
    """The acting process's label: "driver", "gcs", "N2.raylet", "N2.w1"."""
    return ev.proc or ev.component


# -- tasks ---------------------------------------------------------------------------
def _submit_task(m, ev):
    t = m.task(ev.ids["task"])
    d = ev.detail
    t.name, t.owner, t.state = d.get("name", t.name), _proc(ev), states.PENDING_ARGS_AVAIL
    t.actor = ev.ids.get("actor") or t.actor
    t.returns = list(d.get("returns", t.returns))
    t.args = list(d.get("arg_refs", t.args))
    for oid in t.args:
        m.edges.append(Edge(oid, t.task_id, "arg"))
        m.object(oid)
    for oid in t.returns:
        m.edges.append(Edge(t.task_id, oid, "return"))
        o = m.object(oid)
        o.task, o.owner = t.task_id, t.owner


def _pending_node(m, ev):
    t = m.task(ev.ids["task"])
    t.state = states.PENDING_NODE_ASSIGNMENT
    t.why = ev.detail.get("why", t.why)
    t.name = ev.detail.get("name", t.name)


def _resolve_dependencies(m, ev):
    _pending_node(m, ev)
    for oid in m.task(ev.ids["task"]).args:  # resolved: every argument has a value
        o = m.object(oid)
        if o.state == PENDING:
            _available(o)


def _lease_granted(m, ev):
    label = ev.detail.get("worker_label")
    if label and ev.ids.get("worker"):
        m.workers[ev.ids["worker"]] = label
    if ev.ids.get("task"):
        m.task(ev.ids["task"]).node = ev.node


def _to_worker(m, ev):
    t = m.task(ev.ids["task"])
    t.state = states.SUBMITTED_TO_WORKER
    t.node = ev.detail.get("to", t.node)
    t.actor = ev.ids.get("actor") or t.actor
    t.name = ev.detail.get("name", t.name)


def _execute_task(m, ev):
    t = m.task(ev.ids["task"])
    t.name = ev.detail.get("name", t.name)
    attempt = ev.detail.get("attempt", t.attempt)
    if attempt < t.attempt or _proc(ev) in m.dead_workers:
        # a death notice carries no clock, so an attempt that died can be logged after
        # its retry began: draw it, already over, and leave the task alone
        m.spans.append(Span(_proc(ev), ev.node, t.task_id, t.name, m.step_count,
                            m.step_count, ev.time, ev.time, "died", attempt, t.actor))
        return
    t.state, t.node, t.worker, t.attempt = states.RUNNING, ev.node, _proc(ev), attempt
    t.actor = ev.ids.get("actor") or t.actor
    if t.actor:
        a = m.actor(t.actor)
        a.node, a.worker = ev.node, _proc(ev)
        if a.class_name == "?":  # seen only through its methods: "Counter.increment"
            a.class_name = t.name.split(".")[0]
        if not a.state and not _is_creation(t.task_id):
            a.state = states.ALIVE  # it runs a method, so it is alive
    m.spans.append(Span(_proc(ev), ev.node, t.task_id, t.name, m.step_count, t0=ev.time,
                        attempt=t.attempt, actor=t.actor))


def _close_spans(m, ev, status, task=None, proc=None, attempt=None) -> None:
    """End the open spans of ``task`` / on ``proc``; those of an older attempt died."""
    for s in m.spans:
        if s.end is None and (task is None or s.task == task) and \
                (proc is None or s.proc == proc):
            stale = attempt is not None and s.attempt != attempt
            s.end, s.t1, s.status = m.step_count, ev.time, "died" if stale else status


def _is_creation(task_id: str) -> bool:
    """An actor creation task's id is eight 0xff bytes + the actor id (ids.py)."""
    return task_id.startswith("f" * 16)


def _task_returned(m, ev):
    tid = ev.ids["task"]
    _close_spans(m, ev, states.FINISHED, task=tid, proc=_proc(ev))
    if _is_creation(tid):  # nobody owns a creation task's reply: the constructor is done
        m.task(tid).state = states.FINISHED


def _task_finished(m, ev):
    t = m.task(ev.ids["task"])
    status = ev.detail.get("status", states.FINISHED)
    t.state, t.name = status, ev.detail.get("name", t.name)
    _close_spans(m, ev, status, task=t.task_id, attempt=t.attempt)
    if not t.returns and ev.ids.get("object"):
        t.returns = [ev.ids["object"]]   # an actor call's submit names no returns: this does
    kinds = ev.detail.get("returns", [])
    for i, oid in enumerate(t.returns):
        kind = kinds[i] if i < len(kinds) else ""
        o = m.object(oid)
        o.task, o.owner = o.task or t.task_id, o.owner or _proc(ev)  # the owner hears of it
        o.inline = o.inline or kind == "inline"
        o.error = kind == "error" or status == states.FAILED
        _available(o)


def _task_failed(m, ev):
    t = m.task(ev.ids["task"])
    t.state, t.error = states.FAILED, ev.detail.get("error", "")
    _close_spans(m, ev, states.FAILED, task=t.task_id)
    for oid in t.returns:
        o = m.object(oid)
        o.error = True
        _available(o)


def _retry_task(m, ev):
    if not ev.ids.get("task"):
        return
    t = m.task(ev.ids["task"])
    t.state, t.attempt = states.PENDING_ARGS_AVAIL, ev.detail.get("attempt", t.attempt + 1)
    t.why = ev.detail.get("why", t.why)


# -- objects ---------------------------------------------------------------------------
def _available(o: ObjectInfo) -> None:
    """The object has a value again: "rebuilt" if it had been lost, else "ready"."""
    o.state = REBUILT if (o.state in (LOST, REBUILT) or o.reconstructing) else READY
    o.reconstructing = False


def _add_location(o: ObjectInfo, node: str) -> None:
    if node and node not in o.locations:
        o.locations.append(node)


def _put_object(m, ev):
    o = m.object(ev.ids["object"])
    o.owner, o.size, o.put = _proc(ev), ev.detail.get("size", o.size), True
    if "memory store" in str(ev.detail.get("where", "")):
        o.inline = True
    else:
        _add_location(o, ev.node)
        o.primary = o.primary or ev.node
    _available(o)


def _store_object(m, ev):
    o = m.object(ev.ids["object"])
    o.size = ev.detail.get("size", o.size)
    _add_location(o, ev.node)
    if ev.detail.get("primary", True):
        o.primary = ev.node
    _available(o)


def _replicated(m, ev):
    """A pull: the copy it came ``from`` exists (perhaps since before the trace began),
    and now one on ``to`` too."""
    o = m.object(ev.ids["object"])
    o.size = ev.detail.get("size", o.size)
    _add_location(o, ev.detail.get("from"))
    _add_location(o, ev.detail.get("to") or ev.node)


def _spill(m, ev):
    o = m.object(ev.ids["object"])
    o.spilled, o.state = True, SPILLED


def _restore(m, ev):
    o = m.object(ev.ids["object"])
    o.spilled, o.state = False, READY
    _add_location(o, ev.node)


def _evict_replica(m, ev):
    o = m.object(ev.ids["object"])
    node = ev.detail.get("node") or ev.node
    if node in o.locations:
        o.locations.remove(node)


def _gone(state):
    def handler(m, ev):
        o = m.object(ev.ids["object"])
        o.state, o.reason, o.locations = state, ev.detail.get("reason", ""), []
        o.owner = o.owner or _proc(ev)   # the owner frees an object, and finds it lost
    return handler


def _got(m, ev):
    oid = ev.ids.get("object")
    if oid:
        o = m.object(oid)
        if ev.detail.get("kind") == "error":
            o.error = True
        if o.state in (PENDING, LOST):
            _available(o)


def _reconstruct(m, ev):
    o = m.object(ev.ids["object"])
    o.reconstructing = True
    tid = ev.ids.get("task") or o.task
    if tid:
        m.task(tid).reexecuted_for.append(o.object_id)
        m.reconstructions.append((tid, o.object_id))


def _reconstruction_done(m, ev):
    o = m.object(ev.ids["object"])
    o.state, o.reconstructing = REBUILT, False


# -- actors -------------------------------------------------------------------------------
def _actor_named(m, ev) -> ActorInfo:
    a = m.actor(ev.ids["actor"])
    a.class_name = ev.detail.get("class_name") or a.class_name
    if ev.detail.get("name"):
        a.name = ev.detail["name"]
    return a


def _actor_state(m, ev):
    a = _actor_named(m, ev)
    a.state = ev.detail.get("state") or a.state or states.DEPENDENCIES_UNREADY
    a.node = ev.detail.get("node_label") or a.node
    a.cause = ev.detail.get("cause") or a.cause


def _actor_placed(state):
    def handler(m, ev):
        a = _actor_named(m, ev)
        a.node = ev.detail.get("to") or a.node
        if state:
            a.state = state
    return handler


def _actor_alive(m, ev):
    """ALIVE: the constructor has returned, so the creation task is FINISHED."""
    _actor_placed(states.ALIVE)(m, ev)
    creation = "f" * 16 + ev.ids["actor"]
    if creation in m.tasks:
        m.tasks[creation].state = states.FINISHED
        _close_spans(m, ev, states.FINISHED, task=creation)


def _actor_died(m, ev):
    a = _actor_named(m, ev)
    a.cause = ev.detail.get("cause", a.cause)
    a.state = states.RESTARTING if ev.detail.get("will_restart") else states.DEAD
    if a.worker:
        _close_spans(m, ev, "died", proc=a.worker)


def _actor_restart(m, ev):
    a = _actor_named(m, ev)
    a.state, a.restarts = states.RESTARTING, ev.detail.get("attempt", a.restarts + 1)


def _kill_actor(m, ev):
    _actor_named(m, ev).cause = ev.detail.get("reason", "")


# -- nodes, workers, functions ----------------------------------------------------------------
def _worker_died(m, ev):
    wid = ev.ids.get("worker") or ev.detail.get("worker") or ""
    label = m.workers.get(wid) or next(
        (lab for w, lab in m.workers.items() if wid and w.startswith(wid)), "")
    if label:
        _close_spans(m, ev, "died", proc=label)
        if label not in m.dead_workers:
            m.dead_workers.append(label)


def _node_marked_dead(m, ev):
    label = ev.detail.get("label") or m.label(ev.ids.get("node"))
    if label and label not in m.dead_nodes:
        m.dead_nodes.append(label)
    for s in m.open_spans():
        if s.node == label:
            s.end, s.t1, s.status = m.step_count, ev.time, "died"
    for o in m.objects.values():
        if label in o.locations:
            o.locations.remove(label)


def _export_function(m, ev):
    if ev.ids.get("function"):
        m.functions[ev.ids["function"]] = ev.detail.get("name", "?")


def _nothing(m, ev):
    """A known step that changes nothing the model keeps (it is still in the log)."""


HANDLERS = {
    "export_function": _export_function,
    "submit_task": _submit_task, "submit_actor_task": _submit_task,
    "resolve_dependencies": _resolve_dependencies, "request_lease": _pending_node,
    "schedule_decision": _pending_node, "spillback": _pending_node,
    "infeasible": _pending_node, "unschedulable": _pending_node,
    "lease_granted": _lease_granted,
    "push_task": _to_worker, "actor_method_call": _to_worker,
    "execute_task": _execute_task, "task_returned": _task_returned,
    "task_finished": _task_finished, "task_failed": _task_failed,
    "retry_task": _retry_task,
    "put_object": _put_object, "store_object": _store_object,
    "pull_object": _replicated, "object_replicated": _replicated,
    "spill_object": _spill, "restore_object": _restore, "evict_replica": _evict_replica,
    "object_freed": _gone(FREED), "object_lost": _gone(LOST),
    "get_returned": _got, "owner_replied": _got,
    "reconstruct_object": _reconstruct, "reconstruction_done": _reconstruction_done,
    "register_actor": _actor_state, "actor_registered": _actor_state,
    "actor_state": _actor_state,
    "schedule_actor": _actor_placed(states.PENDING_CREATION),
    "create_actor": _actor_placed(None), "actor_alive": _actor_alive,
    "actor_died": _actor_died, "actor_restart": _actor_restart, "kill_actor": _kill_actor,
    "worker_died": _worker_died, "node_marked_dead": _node_marked_dead,
}
# steps that only tell a story: they are in the log, and change nothing the model keeps
STORY_ONLY = ("register_function", "fetch_function", "get_object", "node_registered",
              "health_check_missed", "worker_started", "return_worker", "lease_returned",
              "lease_request_failed", "worker_blocked", "worker_exit", "cancel_task",
              "infeasible_warning", "get_local_hit", "ask_owner", "wait_returned",
              "borrower_added", "resource_view_broadcast", "kill_node", "kill_worker",
              "kill_actor_process", "freeze_node", "thaw_node", "node_dead_received")
for _name in STORY_ONLY:
    HANDLERS.setdefault(_name, _nothing)
