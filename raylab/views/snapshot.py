"""A snapshot of the cluster's tables, as plain data for the views.

Views are pure functions of the trace events plus these snapshots. The
snapshot is gathered by :func:`raylab.state.cluster_snapshot` from the GCS and
every raylet; tests and replays can also build one by hand.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class WorkerState:
    worker_id: str            # hex
    label: str                # stable short name: "N2.w1" (node label, per-node counter)
    pid: int
    state: str                # IDLE | LEASED | ACTOR | DEAD
    running: str = ""         # task or actor class it runs now ("" when idle)
    actor_id: str | None = None


@dataclass
class StoreObject:
    object_id: str            # hex
    size: int                 # bytes
    owner: str                # a label: "driver" or a worker label
    primary: bool = True      # the primary copy (pinned by the owner) or a replica
    pinned: bool = True
    spilled: bool = False


@dataclass
class NodeState:
    node_id: str
    label: str                # N1, N2, ...
    alive: bool
    is_head: bool
    total: dict
    available: dict
    workers: list[WorkerState] = field(default_factory=list)
    store_capacity: int = 0
    store_used: int = 0
    objects: list[StoreObject] = field(default_factory=list)
    queued: list = field(default_factory=list)       # (task name, resources) waiting here
    infeasible: list = field(default_factory=list)   # (task name, resources) fitting nowhere


@dataclass
class ActorState:
    actor_id: str
    class_name: str
    state: str                # DEPENDENCIES_UNREADY | PENDING_CREATION | ALIVE | RESTARTING | DEAD
    name: str | None = None
    namespace: str | None = None
    node: str | None = None   # node label
    worker_pid: int | None = None
    restarts: int = 0
    death_cause: str = ""
    node_id: str | None = None     # hex, like the worker and job ids below
    worker_id: str | None = None
    job_id: str | None = None
    detached: bool = False
    resources: dict = field(default_factory=dict)   # what it needed to be placed


@dataclass
class ClusterSnapshot:
    nodes: list[NodeState] = field(default_factory=list)
    actors: list[ActorState] = field(default_factory=list)
    functions: list = field(default_factory=list)    # (function id hex, name)
    object_table: dict = field(default_factory=dict)  # lecture mode: object id -> [node labels]
    control_plane: str = "ownership"

    def node(self, label: str) -> NodeState | None:
        return next((n for n in self.nodes if n.label == label), None)
