"""The GCS object table: the lecture's (centralized) object directory.

In the lecture's design every node's object store reports each object it
stores to the GCS object table ("N2's local object store in turn adds c's
entry to GCS", Step 4 of ``ray.get``). A node that needs an object looks it up
there; if the table has no entry yet, the node *registers a callback* that the
GCS fires when the entry is created (Steps 2 and 5).

Ray 2 dropped this table: owners keep their objects' locations (see
``raylet/object_directory.py``). raylab keeps both, so a class can compare.
This module is the bookkeeping; ``lookup`` answers now or returns a future the
shell awaits (the registered callback).
"""
from __future__ import annotations

import asyncio

from raylab.effects import Reply, Trace


class ObjectTable:
    def __init__(self):
        self.locations: dict[bytes, set] = {}
        self.sizes: dict[bytes, int] = {}
        self.owners: dict[bytes, str] = {}
        self.callbacks: dict[bytes, list] = {}   # object id -> [(future, requesting node)]
        self.labels: dict[bytes, str] = {}       # node id -> label, for the narratives

    def add(self, oid: bytes, node: bytes, size: int, owner: str) -> list:
        """A node's object store stored an object: record it, fire waiting callbacks."""
        first = not self.locations.get(oid)
        self.locations.setdefault(oid, set()).add(node)
        self.sizes[oid] = size
        self.owners[oid] = owner
        out = [Trace("gcs", "object", "object_table_add", {"object": oid.hex(),
                                                          "node": node.hex()},
                     {"at": self.labels.get(node, "?"), "size": size}, 0 if first else 1)]
        for fut, waiter in self.callbacks.pop(oid, []):
            out.append(Trace("gcs", "object", "callback_fired", {"object": oid.hex(),
                                                                "node": waiter.hex()},
                             {"to": self.labels.get(waiter, "?"),
                              "at": self.labels.get(node, "?")}))
            out.append(Reply(fut, self.entry(oid)))  # after the step: it may pause there
        return out

    def remove(self, oid: bytes, node: bytes) -> None:
        nodes = self.locations.get(oid)
        if nodes is not None:
            nodes.discard(node)

    def entry(self, oid: bytes) -> tuple:
        return ("ok", self.sizes.get(oid), sorted(self.locations.get(oid, ())))

    def lookup(self, oid: bytes, requester: bytes, loop) -> tuple:
        """(effects, answer): the entry now, or a future fired when it is created."""
        if self.locations.get(oid):
            return [Trace("gcs", "object", "object_table_lookup",
                          {"object": oid.hex(), "node": requester.hex()},
                          {"found": True, "at": self._where(oid),
                           "by": self.labels.get(requester, "?")})], self.entry(oid)
        if oid in self.sizes:  # it existed, and every copy is gone (lost, or freed)
            from raylab.exceptions import ObjectLostError
            return [Trace("gcs", "object", "object_table_lookup",
                          {"object": oid.hex(), "node": requester.hex()},
                          {"found": False, "at": "no live node",
                           "by": self.labels.get(requester, "?")})], \
                ("error", ObjectLostError(oid.hex(), self.owners.get(oid), message=(
                    f"Failed to retrieve object {oid.hex()}: the GCS object table lists no "
                    "live copy")))
        fut = loop.create_future()
        self.callbacks.setdefault(oid, []).append((fut, requester))
        return [Trace("gcs", "object", "register_callback",
                      {"object": oid.hex(), "node": requester.hex()},
                      {"by": self.labels.get(requester, "?")})], fut

    def _where(self, oid: bytes) -> str:
        return ", ".join(sorted(self.labels.get(n, "?") for n in self.locations.get(oid, ())))

    def on_node_dead(self, node_id: bytes) -> list:
        for nodes in self.locations.values():
            nodes.discard(node_id)
        return []

    def table_rows(self) -> dict:
        return {oid.hex(): sorted(self.labels.get(n, n.hex()[:6]) for n in nodes)
                for oid, nodes in self.locations.items() if nodes}

    # -- RPCs (the GCS handler forwards rpc_* names here) ---------------------------------
    async def rpc_object_table_add(self, conn, oid, node, size, owner):
        await self.run(self.add(oid, node, size, owner))  # answered after the step (it may pause)

    def rpc_object_table_remove(self, conn, oid, node):
        self.remove(oid, node)

    def rpc_object_table_free(self, conn, oid):
        """The owner freed the object: every node the table lists deletes its copy."""
        for node in self.locations.pop(oid, set()):
            self.send_to_node(node, "store_delete", oid)
        self.sizes.pop(oid, None)
        self.owners.pop(oid, None)

    async def rpc_object_table_lookup(self, conn, oid, requester):
        effects, answer = self.lookup(oid, requester, asyncio.get_running_loop())
        await self.run(effects)
        if isinstance(answer, asyncio.Future):
            return await answer
        return answer

    # the GCS server sets these so the table's trace steps go through its shell
    run = None
    send_to_node = None
