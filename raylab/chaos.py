"""Failure injection for teaching: kill a worker, a node, an actor's process; add a node.

    from raylab import chaos
    chaos.kill_node("N2")            # SIGKILL to N2's raylet, zygote and workers, at once
    chaos.kill_worker("N2.w1")       # one worker process (a task running there is retried)
    chaos.kill_actor_process(handle) # the actor's process (it restarts if max_restarts allows)
    chaos.add_node(num_cpus=2)       # a fresh node joins (N3, ...)

Nothing here tells the GCS: it finds out the way it would in a real cluster
(a node misses its health checks; a worker's connection drops), and the
trace shows who noticed what. Only processes this session started are
signalled, by PID.
"""
from __future__ import annotations

import os
import signal

from raylab import api
from raylab.core_worker import current
from raylab.tracing.emit import TRACER, step


def kill_node(node) -> str:
    """Kill a worker node (label "N2", index 2 or node id hex) like pulling its plug."""
    cluster = api.cluster()
    n = cluster.node(node)
    TRACER.on and step("driver", "failure", "kill_node", node=n.node_id,
                       detail={"label": n.label, "text": f"chaos: {n.label} is killed "
                                                         "(raylet, object store, workers)"})
    cluster.kill_node(n)
    _note("kill_node", n.label)
    return n.label


def kill_worker(worker: str | int) -> int:
    """Kill one worker process, by label ("N2.w1") or pid. Returns the pid killed."""
    from raylab.state import cluster_snapshot
    snap = cluster_snapshot()
    for node in snap.nodes:
        for w in node.workers:
            if worker in (w.label, w.pid) and w.state != "DEAD":
                TRACER.on and step("driver", "failure", "kill_worker", node=node.node_id,
                                   detail={"label": w.label, "running": w.running,
                                           "text": f"chaos: worker {w.label} is killed"
                                                   + (f" while running {w.running}"
                                                      if w.running else "")})
                _kill(w.pid)
                _note("kill_worker", w.label)
                return w.pid
    known = [w.label for n in snap.nodes for w in n.workers]
    raise ValueError(f"no live worker {worker!r}; workers are {known}")


def kill_actor_process(handle) -> int:
    """Kill the process an actor lives in (not ray.kill: the GCS sees a crash)."""
    cw = current.CORE_WORKER
    info = cw.rpc_sync(cw.gcs_for_user(), "get_actor_info", handle._actor_id, True, None,
                       timeout=30)
    if info is None or not info.get("pid"):
        raise ValueError(f"{handle!r} has no live process")
    TRACER.on and step("driver", "failure", "kill_actor_process", actor=handle._actor_id.hex(),
                       detail={"text": f"chaos: {info['class_name']}'s process is killed"})
    _kill(info["pid"])
    _note("kill_actor_process", info["class_name"])
    return info["pid"]


def add_node(num_cpus=None, num_gpus=None, resources=None, object_store_memory=None) -> str:
    """Start one more node; returns its label."""
    from raylab.cluster_utils import Cluster
    return Cluster().add_node(num_cpus=num_cpus, num_gpus=num_gpus, resources=resources,
                              object_store_memory=object_store_memory).label


def _note(kind: str, target: str) -> None:
    """Tell the GCS and every raylet that we just broke something. It changes nothing
    there; it carries our Lamport clock, so whoever notices the failure afterwards is
    traced *after* the kill, as it really happened."""
    if not TRACER.on:
        return
    cw = current.CORE_WORKER

    async def send():
        cw.gcs.send("chaos_note", kind, target)
        for nid in cw.alive_nodes():
            address = cw.raylet_address_of(nid)
            try:
                conn = await cw.conn_to(address)
                conn.send("chaos_note", kind, target)
            except OSError:
                pass
    cw.run_sync(send(), 10)


def _kill(pid: int) -> None:
    cluster = api.cluster()
    if not _ours(cluster, pid):
        raise ValueError(f"pid {pid} is not a process of this raylab session")
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _ours(cluster, pid: int) -> bool:
    """Is ``pid`` in the process group of one of this session's raylets?"""
    try:
        pgid = os.getpgid(pid)
    except ProcessLookupError:
        return False
    return any(p.pid == pgid for name, p in cluster.procs.procs.items()
               if name.startswith("raylet_"))
