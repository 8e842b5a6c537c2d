"""Ray's ``ray.util.state``: the cluster's tables as records, with Ray's field names.

    from raylab.util.state import list_actors, get_actor, list_nodes
    list_actors(filters=[("state", "=", "ALIVE")])   # the GCS actor table
    get_actor(handle._actor_id.hex()).death_cause     # why it died, once it is DEAD

In Ray these answers come from the dashboard's state API. Here they are read
from :func:`raylab.state.cluster_snapshot`: the GCS actor table, and each
raylet's workers and object store. Each record is a dataclass that can also be
read like a dict (``actor["state"]``), as Ray's are. Fields marked *detail*
are filled only with ``detail=True`` (``get_actor`` always fills them).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

from raylab.core_worker import current
from raylab.state import cluster_snapshot

DEFAULT_LIMIT = 100
_IP = "127.0.0.1"  # every simulated node runs on this machine


class _Record:
    """Dict-like access, as Ray's state records allow."""

    def __getitem__(self, key):
        return getattr(self, key)

    def get(self, key, default=None):
        return getattr(self, key, default)

    def asdict(self) -> dict:
        return asdict(self)


def _detail(**kw):
    return field(default=None, metadata={"detail": True}, **kw)


@dataclass
class ActorState(_Record):
    actor_id: str
    class_name: str
    state: str    # DEPENDENCIES_UNREADY | PENDING_CREATION | ALIVE | RESTARTING | DEAD
    job_id: str | None
    name: str | None            # "" in Ray when unnamed; None here
    node_id: str | None
    pid: int                    # 0 until the actor has a process, as in Ray
    ray_namespace: str | None
    required_resources: dict | None = _detail()
    death_cause: dict | None = _detail()   # None unless the actor died
    is_detached: bool | None = _detail()
    num_restarts: int | None = _detail()
    worker_id: str | None = _detail()       # raylab: the worker process that is the actor
    node_name: str | None = _detail()       # raylab: the node's label (N1, N2, ...)


@dataclass
class NodeState(_Record):
    node_id: str
    node_ip: str
    is_head_node: bool
    state: str                  # ALIVE | DEAD
    node_name: str              # raylab: the node's label (N1, N2, ...)
    resources_total: dict
    labels: dict = field(default_factory=dict)
    resources_available: dict | None = _detail()   # raylab: what is free now


@dataclass
class WorkerState(_Record):
    worker_id: str
    is_alive: bool
    worker_type: str            # DRIVER | WORKER
    node_id: str
    ip: str
    pid: int
    exit_type: str | None = None
    worker_state: str | None = _detail()   # raylab: IDLE | LEASED | ACTOR | DEAD
    actor_id: str | None = _detail()       # raylab: the actor this worker is, if any


@dataclass
class ObjectState(_Record):
    """A copy of an object in a node's shared-memory store (objects under 100 KiB live in
    their owner's process and are not listed)."""
    object_id: str
    object_size: int
    node_id: str
    ip: str
    reference_type: str         # PINNED_IN_MEMORY (the primary copy) | LOCAL_REFERENCE (a replica)
    task_status: str = "FINISHED"
    spilled: bool | None = _detail()    # raylab: written to disk, read back on access
    owner: str | None = _detail()       # raylab: the owner's label ("driver", "N2.w1")


# -- the API ---------------------------------------------------------------------------
def list_actors(address=None, filters=None, limit: int = DEFAULT_LIMIT, timeout: int = 30,
                detail: bool = False, raise_on_missing_output: bool = True,
                _explain: bool = False) -> list[ActorState]:
    """Every actor in the GCS actor table, alive or dead."""
    return _select(_actors(cluster_snapshot(timeout)), ActorState, filters, limit, detail)


def get_actor(id: str, address=None, timeout: int = 30, _explain: bool = False):
    """One actor's row (with every detail), or None if the GCS does not know it."""
    if not isinstance(id, str):
        raise TypeError(f"get_actor takes the actor id as a hex string "
                        f"(handle._actor_id.hex()), got {type(id).__name__}")
    return next((a for a in _actors(cluster_snapshot(timeout)) if a.actor_id == id), None)


def list_nodes(address=None, filters=None, limit: int = DEFAULT_LIMIT, timeout: int = 30,
               detail: bool = False, raise_on_missing_output: bool = True,
               _explain: bool = False) -> list[NodeState]:
    nodes = [NodeState(n.node_id, _IP, n.is_head, "ALIVE" if n.alive else "DEAD", n.label,
                       dict(n.total), {}, dict(n.available))
             for n in cluster_snapshot(timeout).nodes]
    return _select(nodes, NodeState, filters, limit, detail)


def list_workers(address=None, filters=None, limit: int = DEFAULT_LIMIT, timeout: int = 30,
                 detail: bool = False, raise_on_missing_output: bool = True,
                 _explain: bool = False) -> list[WorkerState]:
    """The driver and every worker process the raylets know."""
    snap = cluster_snapshot(timeout)
    cw = current.CORE_WORKER
    head = next((n.node_id for n in snap.nodes if n.is_head), cw.node_id.hex())
    out = [WorkerState(cw.worker_id.hex(), True, "DRIVER", head, _IP, cw.pid, None,
                       "DRIVER", None)]
    for n in snap.nodes:
        out += [WorkerState(w.worker_id, w.state != "DEAD", "WORKER", n.node_id, _IP, w.pid,
                            None if w.state != "DEAD" else "SYSTEM_ERROR", w.state, w.actor_id)
                for w in n.workers]
    return _select(out, WorkerState, filters, limit, detail)


def list_objects(address=None, filters=None, limit: int = DEFAULT_LIMIT, timeout: int = 30,
                 detail: bool = False, raise_on_missing_output: bool = True,
                 _explain: bool = False) -> list[ObjectState]:
    """Every copy in the nodes' shared-memory object stores."""
    out = [ObjectState(o.object_id, o.size, n.node_id, _IP,
                       "PINNED_IN_MEMORY" if o.primary else "LOCAL_REFERENCE",
                       "FINISHED", o.spilled, o.owner)
           for n in cluster_snapshot(timeout).nodes for o in n.objects]
    return _select(out, ObjectState, filters, limit, detail)


# -- helpers ---------------------------------------------------------------------------
def _actors(snap) -> list[ActorState]:
    return [ActorState(a.actor_id, a.class_name, a.state, a.job_id, a.name, a.node_id,
                       a.worker_pid or 0, a.namespace, dict(a.resources),
                       _death_cause(a), a.detached, a.restarts, a.worker_id, a.node)
            for a in snap.actors]


def _death_cause(a) -> dict | None:
    if a.state != "DEAD" and not a.death_cause:
        return None
    return {"actor_died_error_context": {
        "error_message": a.death_cause, "actor_id": a.actor_id, "class_name": a.class_name,
        "name": a.name or "", "ray_namespace": a.namespace, "pid": a.worker_pid or 0,
        "node_ip_address": _IP}}


def _select(records: list, cls, filters, limit: int, detail: bool) -> list:
    """Ray's filters: ``[(column, "=" or "!=", value), ...]``, all of which must hold."""
    names = [f.name for f in fields(cls)]
    checks = []
    for f in filters or []:
        if not isinstance(f, (tuple, list)) or len(f) != 3:
            raise ValueError(f"a filter is a (column, predicate, value) tuple, got {f!r}")
        key, predicate, value = f
        key = str(key).lower()
        if key not in names:
            raise ValueError(f"The given filter column {key} is not supported. Supported "
                             f"filter columns: {names}")
        if predicate not in ("=", "!="):
            raise ValueError(f"Unsupported filter predicate {predicate!r}: use '=' or '!='")
        checks.append((key, predicate == "=", value))
    out = [r for r in records if all(_equal(getattr(r, k), v) == eq for k, eq, v in checks)]
    if not detail:
        hidden = [f.name for f in fields(cls) if f.metadata.get("detail")]
        for r in out:
            for name in hidden:
                setattr(r, name, None)
    return out[:limit]


def _equal(have, want) -> bool:
    if have == want:
        return True
    # as in Ray: strings match whatever their case, and "1234" or "true" match numbers and
    # booleans (the CLI passes every value as a string)
    return have is not None and isinstance(want, str) and str(have).lower() == want.lower()


__all__ = ["list_actors", "get_actor", "list_nodes", "list_workers", "list_objects",
           "ActorState", "NodeState", "WorkerState", "ObjectState"]
