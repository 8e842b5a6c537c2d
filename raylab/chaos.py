"""Failure injection for teaching: kill a worker, a node, an actor's process; add a node.

    from raylab import chaos
    chaos.kill_node("N2")            # SIGKILL to N2's raylet, zygote and workers, at once
    chaos.kill_worker("N2.w1")       # one worker process (a task running there is retried)
    chaos.kill_actor_process(handle) # the actor's process (it restarts if max_restarts allows)
    chaos.freeze_node("N2")          # N2 hangs (SIGSTOP): alive, but it stops answering
    chaos.thaw_node("N2")            # ... and wakes up (SIGCONT), too late if it was declared DEAD
    chaos.wait_until_dead("N2")      # until the GCS has declared it DEAD (missed health checks)
    chaos.add_node(num_cpus=2)       # a fresh node joins (N3, ...)

Nothing here tells the GCS: it finds out the way it would in a real cluster
(a node misses its health checks; a worker's connection drops), and the
trace shows who noticed what. Only processes this session started are
signalled, by PID.
"""
from __future__ import annotations

import os
import signal
import threading

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
    _note("kill_node", n.label)
    cluster.kill_node(n)
    return n.label


def freeze_node(node) -> str:
    """Hang a worker node: stop (SIGSTOP) its raylet, object store and workers. Nothing
    dies and no connection drops; the node just stops answering, as a machine that
    swaps or a network that partitions does. Only the GCS's health checks can tell."""
    cluster = api.cluster()
    n = cluster.live_worker_node(node, "freeze")
    TRACER.on and step("driver", "failure", "freeze_node", node=n.node_id,
                       detail={"label": n.label})
    _note("freeze_node", n.label)  # before the stop: a stopped raylet reads no note
    _signal_node(cluster, n, signal.SIGSTOP)
    return n.label


def thaw_node(node) -> str:
    """Let a frozen node run again (SIGCONT). If the GCS declared it DEAD meanwhile, it
    stays dead: the GCS dropped it, and owners ignore whatever it still sends."""
    cluster = api.cluster()
    n = cluster.node(node)
    TRACER.on and step("driver", "failure", "thaw_node", node=n.node_id,
                       detail={"label": n.label})
    _signal_node(cluster, n, signal.SIGCONT)
    return n.label


def wait_until_dead(node, timeout: float = 60.0) -> str:
    """Block until this driver hears from the GCS that ``node`` is DEAD. After kill_node or
    freeze_node that takes the GCS's missed health checks: a few periods (seconds)."""
    n = api.cluster().node(node)
    cw = current.CORE_WORKER
    nid = bytes.fromhex(n.node_id)
    heard = threading.Event()

    def on_dead(node_id, _label, _cause):
        if node_id == nid:
            heard.set()
    listeners = cw.listeners.setdefault("node_dead", [])
    listeners.append(on_dead)
    try:
        info = cw.nodes.get(nid)
        if (info is None or info["Alive"]) and not heard.wait(timeout):
            raise TimeoutError(f"the GCS did not declare {n.label} dead within {timeout:g} s")
    finally:
        listeners.remove(on_dead)
    return n.label


def _signal_node(cluster, n, sig) -> None:
    p = cluster.procs.procs.get("raylet_" + n.label)
    if p is None or p.poll() is not None:
        return
    try:
        os.killpg(p.pid, sig)  # our raylet leads its own process group (start_new_session)
    except ProcessLookupError:
        pass


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
                _note("kill_worker", w.label)
                _kill(w.pid)
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
    _note("kill_actor_process", info["class_name"])
    _kill(info["pid"])
    return info["pid"]


def add_node(num_cpus=None, num_gpus=None, resources=None, object_store_memory=None) -> str:
    """Start one more node; returns its label."""
    from raylab.cluster_utils import Cluster
    return Cluster().add_node(num_cpus=num_cpus, num_gpus=num_gpus, resources=resources,
                              object_store_memory=object_store_memory).label


def _note(kind: str, target: str) -> None:
    """Tell the GCS and every raylet that we are about to break something. It changes
    nothing there; it carries our Lamport clock, and it is sent before the blow, so
    whoever notices the failure is traced *after* the kill, as it really happened."""
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
    # what the victim did before the blow reaches the driver first (its processes'
    # unsent trace events would die with them, leaving holes in the story)
    from raylab.tracing import control
    control.flush(5.0)


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
