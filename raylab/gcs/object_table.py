"""The GCS object table (the lecture's centralized control plane; filled in by lecture mode)."""
from __future__ import annotations


class ObjectTable:
    def __init__(self):
        self.locations: dict[bytes, set] = {}

    def on_node_dead(self, node_id):
        return []

    def table_rows(self) -> dict:
        return {oid.hex(): sorted(nodes) for oid, nodes in self.locations.items()}
