"""The GCS actor manager: the actor table and every actor's lifecycle.

The lecture's actor creation, in Ray 2's words:

1. The owner *registers* the actor with the GCS (``register_actor``): a row in
   the actor table, state ``DEPENDENCIES_UNREADY`` until its constructor's
   arguments are ready, then ``PENDING_CREATION``.
2. The GCS, acting as the scheduler, picks a node, asks that node's raylet for
   a worker lease, and waits for the grant (``actor_scheduler.py``).
3. Once the lease is granted, the GCS pushes the *creation task* to the leased
   worker, which runs the constructor: the actor is ``ALIVE``, and that worker
   process is now the actor. Callers send method calls straight to it.

If the actor's process dies, the GCS restarts it (``RESTARTING``, the
constructor runs again) while ``max_restarts`` allows, else marks it ``DEAD``
with the cause. Every state change is published to subscribers, so callers
learn the actor's new address or its death.

This module is the table and the state transitions (sans-IO: effects out);
the scheduling procedure that talks to raylets and workers is in
``actor_scheduler.py``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from raylab.effects import Call, Publish, Trace
from raylab.states import ALIVE, DEAD, DEPENDENCIES_UNREADY, PENDING_CREATION, RESTARTING


@dataclass
class ActorEntry:
    actor_id: bytes
    class_name: str
    spec: object                 # the creation TaskSpec (kept to restart the actor)
    owner: str                   # address of the process that created the handle
    name: str | None
    namespace: str
    detached: bool
    max_restarts: int
    max_task_retries: int = 0    # handed to every handle made from this row (get_actor)
    job_id: bytes | None = None
    state: str = DEPENDENCIES_UNREADY
    node_id: bytes | None = None
    node_label: str | None = None
    worker_id: bytes | None = None
    address: str | None = None   # the actor process's socket: where callers send calls
    pid: int | None = None
    restarts: int = 0
    death_cause: str = ""
    error: object = None         # the constructor's exception, for RayActorError
    lease: tuple | None = None   # (raylet address, lease id)
    asking: bytes | None = None  # the node whose raylet holds our lease request now
    methods: dict = field(default_factory=dict)
    owner_node: bytes | None = None

    def info(self) -> dict:
        """What callers need: where to send calls, or why the actor is gone."""
        return {"actor_id": self.actor_id, "state": self.state, "address": self.address,
                "node_id": self.node_id, "restarts": self.restarts,
                "death_cause": self.death_cause, "error": self.error, "pid": self.pid,
                "class_name": self.class_name, "name": self.name,
                "namespace": self.namespace, "methods": self.methods,
                "owner": self.owner, "detached": self.detached,
                "max_task_retries": self.max_task_retries}

    def row(self) -> dict:
        return {"actor_id": self.actor_id.hex(), "class_name": self.class_name,
                "state": self.state, "name": self.name, "namespace": self.namespace,
                "node": self.node_label, "worker_pid": self.pid, "restarts": self.restarts,
                "death_cause": self.death_cause, "node_id": _hex(self.node_id),
                "worker_id": _hex(self.worker_id), "job_id": _hex(self.job_id),
                "detached": self.detached,
                "resources": dict(getattr(self.spec, "placement_resources", None) or {})}


class ActorTable:
    """Rows and named-actor lookup; every state change is traced and published."""

    def __init__(self):
        self.actors: dict[bytes, ActorEntry] = {}
        self.names: dict[tuple, bytes] = {}   # (namespace, name) -> actor id

    def name_taken(self, name: str, namespace: str) -> bytes | None:
        aid = self.names.get((namespace, name))
        if aid is not None and self.actors[aid].state == DEAD:
            del self.names[(namespace, name)]
            return None
        return aid

    def register(self, e: ActorEntry) -> list:
        self.actors[e.actor_id] = e
        if e.name:
            self.names[(e.namespace, e.name)] = e.actor_id
        return [Trace("gcs", "actor", "actor_registered", {"actor": e.actor_id.hex()},
                      {"class_name": e.class_name, "name": e.name}, 1)]

    def set_state(self, e: ActorEntry, state: str, **changes) -> list:
        for k, v in changes.items():
            setattr(e, k, v)
        e.state = state
        ids = {"actor": e.actor_id.hex()}
        if e.node_id is not None:
            ids["node"] = e.node_id.hex()
        out = [Trace("gcs", "actor", "actor_state", ids,
                     {"class_name": e.class_name, "state": state, "node_label": e.node_label,
                      "cause": e.death_cause}, 1),
               Publish("actor", "actor_update", (e.info(),))]
        if state == ALIVE:
            out.insert(1, Trace("gcs", "actor", "actor_alive", ids,
                                {"class_name": e.class_name, "to": e.node_label,
                                 "restarts": e.restarts}))
        return out

    # -- transitions ---------------------------------------------------------------
    def pending_creation(self, e: ActorEntry) -> list:
        return self.set_state(e, PENDING_CREATION)

    def created(self, e: ActorEntry, node_id, node_label, worker_id, address, pid) -> list:
        # a restarted actor is alive again: the cause of its last death is history
        return self.set_state(e, ALIVE, node_id=node_id, node_label=node_label,
                              worker_id=worker_id, address=address, pid=pid, death_cause="",
                              error=None)

    def creation_failed(self, e: ActorEntry, error, cause: str) -> list:
        out = self.set_state(e, DEAD, error=error, death_cause=cause, address=None)
        return out + [Call("release_lease", (e.actor_id,))]

    def process_died(self, e: ActorEntry, cause: str, allow_restart: bool = True) -> list:
        """The actor's worker died: restart it if allowed, else it is DEAD for good."""
        if e.state == DEAD:
            return []
        left = e.max_restarts == -1 or e.restarts < e.max_restarts
        out = [Trace("gcs", "actor", "actor_died", {"actor": e.actor_id.hex()},
                     {"class_name": e.class_name, "cause": cause, "will_restart":
                      bool(allow_restart and left)})]
        if allow_restart and left:
            e.restarts += 1
            out += self.set_state(e, RESTARTING, address=None, death_cause=cause)
            out.append(Trace("gcs", "actor", "actor_restart", {"actor": e.actor_id.hex()},
                             {"class_name": e.class_name, "attempt": e.restarts}))
            out.append(Call("schedule_actor", (e.actor_id,)))
        else:
            out += self.set_state(e, DEAD, address=None, death_cause=cause)
            if e.name and self.names.get((e.namespace, e.name)) == e.actor_id:
                del self.names[(e.namespace, e.name)]
        return out

    def rows(self) -> list:
        return [e.row() for e in self.actors.values()]

    def owned_by(self, owner: str) -> list[ActorEntry]:
        return [e for e in self.actors.values() if e.owner == owner and not e.detached
                and e.state != DEAD]

    def on_node(self, node_id: bytes) -> list[ActorEntry]:
        return [e for e in self.actors.values() if e.node_id == node_id and e.state == ALIVE]


def _hex(b: bytes | None) -> str | None:
    return b.hex() if b is not None else None
