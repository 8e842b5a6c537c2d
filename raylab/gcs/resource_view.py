"""The GCS resource view: every node's total and available resources.

The GCS pulls each raylet's resources every ``resource_broadcast_period_ms``
(100 ms, as in Ray) and broadcasts the whole view back to the raylets, so each
raylet's scheduler knows, a moment late, how busy the other nodes are. Only a
changed view is broadcast.
"""
from __future__ import annotations

from raylab.scheduling.resources import NodeResources


class ResourceView:
    def __init__(self):
        self.nodes: dict[bytes, NodeResources] = {}
        self.version = 0

    def add_node(self, node_id: bytes, label: str, total: dict) -> None:
        self.nodes[node_id] = NodeResources(node_id, label, dict(total), dict(total))
        self.version += 1

    def remove_node(self, node_id: bytes) -> None:
        n = self.nodes.get(node_id)
        if n is not None and n.alive:
            n.alive = False
            n.available = {}
            self.version += 1

    def update(self, node_id: bytes, available: dict, total: dict | None = None) -> bool:
        """A raylet reported; returns True if anything changed."""
        n = self.nodes.get(node_id)
        if n is None or not n.alive:
            return False
        changed = n.available != available or (total is not None and total != n.total)
        if changed:
            n.available = dict(available)
            if total is not None:
                n.total = dict(total)
            self.version += 1
        return changed

    def snapshot(self) -> list:
        """The view as plain tuples, for the wire."""
        return [(n.node_id, n.label, n.total, n.available, n.alive) for n in self.nodes.values()]

    def cluster_total(self) -> dict:
        out: dict = {}
        for n in self.nodes.values():
            if n.alive:
                for k, v in n.total.items():
                    out[k] = out.get(k, 0.0) + v
        return out

    def cluster_available(self) -> dict:
        out: dict = {}
        for n in self.nodes.values():
            if n.alive:
                for k, v in n.available.items():
                    if v > 0:
                        out[k] = out.get(k, 0.0) + v
        return out


def view_from_wire(snapshot: list) -> list[NodeResources]:
    return [NodeResources(nid, label, total, avail, alive)
            for nid, label, total, avail, alive in snapshot]
