"""Cluster state for the views: a snapshot of the GCS tables and every raylet.

``cluster_snapshot()`` asks the GCS for its tables and each alive raylet for
its workers, leases and object store, and returns plain data
(:mod:`raylab.views.snapshot`). It only reads: taking a snapshot never changes
what the cluster does, and it works while the cluster is paused in step mode.
"""
from __future__ import annotations

import asyncio

from raylab.core_worker import current
from raylab.views.snapshot import (ActorState, ClusterSnapshot, NodeState, StoreObject,
                                   WorkerState)


def cluster_snapshot(timeout: float = 5.0) -> ClusterSnapshot:
    cw = current.CORE_WORKER
    if cw is None:
        raise RuntimeError("raylab is not initialized: call ray.init() first")
    return cw.run_sync(_gather(cw, timeout), timeout + 1)


async def _gather(cw, timeout: float) -> ClusterSnapshot:
    cw.settle_refs()  # the refs this process dropped so far count: a snapshot is "as of now"
    gcs = cw.gcs
    nodes, view, tables = await asyncio.gather(
        gcs.call("get_nodes"), gcs.call("get_resource_view"), gcs.call("get_tables"))
    avail = {nid: (total, available) for nid, _l, total, available, _a in view}
    states = await asyncio.gather(*(_node_state(cw, n, timeout) for n in nodes))
    snap = ClusterSnapshot(control_plane=tables.get("control_plane", "ownership"))
    for n, st in sorted(zip(nodes, states), key=lambda p: (len(p[0]["NodeName"]),
                                                             p[0]["NodeName"])):
        nid = bytes.fromhex(n["NodeID"])
        total, available = avail.get(nid, (n["Resources"], {}))
        node = NodeState(n["NodeID"], n["NodeName"], n["Alive"], n["IsHeadNode"], dict(total),
                         dict(available) if n["Alive"] else {})
        if st is not None:
            node.total, node.available = st["total"], st["available"]
            node.workers = [WorkerState(wid.hex(), f"{n['NodeName']}.w{counter}", pid, state,
                                        running or "", aid.hex() if aid else None)
                            for wid, counter, pid, state, running, aid in st["workers"]]
            node.queued = list(st["queued"])
            node.infeasible = list(st["infeasible"])
            store = st.get("store") or {}
            node.store_capacity = store.get("capacity", 0)
            node.store_used = store.get("used", 0)
            node.objects = [StoreObject(oid.hex(), size, process_label(owner), primary,
                                        pinned, spilled)
                            for oid, size, owner, primary, pinned, spilled in
                            store.get("objects", [])]
        snap.nodes.append(node)
    snap.actors = [ActorState(**a) for a in tables.get("actors", [])]
    snap.functions = list(tables.get("functions", []))
    snap.object_table = dict(tables.get("object_table", {}))
    return snap


async def _node_state(cw, n: dict, timeout: float):
    if not n["Alive"]:
        return None
    try:
        conn = await cw.conn_to(n["RayletSocketName"])
        return await asyncio.wait_for(conn.call("get_node_state"), timeout)
    except (OSError, asyncio.TimeoutError):
        return None


def process_label(address: str) -> str:
    """A process's socket address -> its label: "driver", or a worker "N2.w1"."""
    name = address.rsplit("/", 1)[-1].removesuffix(".sock")
    if name == "driver":
        return "driver"
    if name.startswith("w") and "_" in name:
        node, _, counter = name[1:].partition("_")
        return f"{node}.w{counter}"
    return name
