"""The GCS node table: who is in the cluster, and who is still alive.

A raylet registers when it starts; the GCS records it and broadcasts the news
to every raylet and subscriber. The GCS then health-checks every raylet
periodically: a node that misses ``health_check_failure_threshold`` checks in
a row is marked DEAD, and that death is broadcast too, so owners can retry
tasks and rebuild lost objects. This module is the bookkeeping; the shell
(``gcs/server.py``) sends the pings.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from raylab.effects import Publish, Trace
from raylab.states import NODE_ALIVE, NODE_DEAD


@dataclass
class NodeInfo:
    node_id: bytes
    label: str              # N1, N2, ... (for views; ids stay hex strings)
    address: str            # the raylet's socket
    resources: dict
    pid: int
    is_head: bool = False
    state: str = NODE_ALIVE
    missed_checks: int = 0
    death_cause: str = ""
    labels: dict = field(default_factory=dict)

    def public(self) -> dict:
        """The node as ``ray.nodes()`` shows it."""
        return {
            "NodeID": self.node_id.hex(),
            "Alive": self.state == NODE_ALIVE,
            "NodeManagerAddress": "127.0.0.1",
            "NodeManagerHostname": self.label,
            "NodeName": self.label,
            "RayletSocketName": self.address,
            "Resources": dict(self.resources) if self.state == NODE_ALIVE else {},
            "IsHeadNode": self.is_head,
            "DeathReason": self.death_cause,
            "Labels": dict(self.labels),
            "pid": self.pid,
        }


class NodeTable:
    def __init__(self, failure_threshold: int):
        self.nodes: dict[bytes, NodeInfo] = {}
        self.failure_threshold = failure_threshold

    def alive(self) -> list[NodeInfo]:
        return [n for n in self.nodes.values() if n.state == NODE_ALIVE]

    def register(self, info: NodeInfo) -> list:
        self.nodes[info.node_id] = info
        return [
            Trace("gcs", "node", "node_registered", {"node": info.node_id.hex()},
                  {"label": info.label, "resources": info.resources}),
            Publish("node", "node_added", (info.public(),)),
        ]

    def health_ok(self, node_id: bytes) -> None:
        n = self.nodes.get(node_id)
        if n is not None:
            n.missed_checks = 0

    def health_missed(self, node_id: bytes) -> list:
        """One missed health check; past the threshold the node is declared dead."""
        n = self.nodes.get(node_id)
        if n is None or n.state != NODE_ALIVE:
            return []
        n.missed_checks += 1
        out = [Trace("gcs", "failure", "health_check_missed", {"node": node_id.hex()},
                     {"label": n.label, "missed": n.missed_checks,
                      "threshold": self.failure_threshold}, 1)]
        if n.missed_checks >= self.failure_threshold:
            out += self.mark_dead(node_id, f"missed {n.missed_checks} health checks in a row")
        return out

    def mark_dead(self, node_id: bytes, cause: str) -> list:
        n = self.nodes.get(node_id)
        if n is None or n.state == NODE_DEAD:
            return []
        n.state = NODE_DEAD
        n.death_cause = cause
        return [
            Trace("gcs", "failure", "node_marked_dead", {"node": node_id.hex()},
                  {"label": n.label, "cause": cause}),
            Publish("node", "node_dead", (node_id, n.label, cause)),
        ]
