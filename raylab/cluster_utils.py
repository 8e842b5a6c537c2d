"""``raylab.cluster_utils.Cluster``: build a multi-node cluster node by node, as in Ray's tests.

    from raylab.cluster_utils import Cluster
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2})
    ray.init(address=cluster.address)        # or Cluster(..., connect=True), or cluster.connect()
    n2 = cluster.add_node(num_cpus=2, resources={"special": 1})
    ...
    cluster.remove_node(n2)      # the node's processes are killed; the GCS marks it DEAD
    ray.shutdown()               # the driver leaves; the cluster keeps running
    cluster.shutdown()           # every process of the cluster ends

As in Ray, the cluster *stands* on its own: the head starts without a driver, and
``ray.shutdown()`` disconnects the driver without stopping it. ``Cluster()`` without
``initialize_head`` inside a running ``ray.init()`` session adds nodes to that session.
"""
from __future__ import annotations

import asyncio
import atexit
import threading
import time

from raylab import api
from raylab import driver
from raylab.cluster import NodeHandle, machine_memory
from raylab.core_worker import current

_HEAD_ONLY_ARGS = {"namespace", "_system_config", "control_plane"}


class Cluster:
    def __init__(self, initialize_head: bool = False, connect: bool = False,
                 head_node_args: dict | None = None, shutdown_at_exit: bool = True):
        if connect and not initialize_head:
            raise RuntimeError("Cannot connect to uninitialized cluster.")
        self._local = None           # the LocalCluster this object started (or joined)
        self._namespace = None
        self._shutdown_at_exit = shutdown_at_exit
        self.head_node = None
        if initialize_head:
            self.add_node(**dict(head_node_args or {}))
            if connect:
                self.connect()

    @property
    def address(self) -> str | None:
        local = self._cluster_or_none()
        return local.session.gcs_address if local is not None else None

    @property
    def gcs_address(self) -> str | None:
        return self.address

    @property
    def connected(self) -> bool:
        """Is this process's driver connected to the cluster now?"""
        local = self._cluster_or_none()
        return local is not None and api.is_initialized() and api.cluster() is local

    def connect(self, namespace: str | None = None) -> None:
        """Connect this process's driver to the cluster (``ray.init(address=...)``)."""
        if self.address is None:
            raise RuntimeError("Cannot connect to uninitialized cluster.")
        if self.connected:
            raise RuntimeError("this Cluster is already connected")
        api.init(address=self.address, namespace=namespace or self._namespace,
                 ignore_reinit_error=True)

    def add_node(self, wait: bool = True, num_cpus=None, num_gpus=None, resources=None,
                 object_store_memory=None, **kwargs) -> NodeHandle:
        """Start a node; the first one is the head (a GCS starts with it)."""
        if self._cluster_or_none() is None:
            return self._start_head(num_cpus, num_gpus, resources, object_store_memory, kwargs)
        unknown = set(kwargs) - _HEAD_ONLY_ARGS
        if unknown:
            raise TypeError(f"add_node() got unexpected keyword argument(s): {sorted(unknown)}")
        cluster = self._cluster_or_none()
        node_resources = driver.node_resources_of(num_cpus, num_gpus, resources)
        if object_store_memory is None:
            object_store_memory = int(machine_memory() * 0.3 / (len(cluster.nodes) + 1))
        cw = current.CORE_WORKER if api.is_initialized() and api.cluster() is cluster else None
        if cw is None:
            node = cluster.add_node(node_resources, object_store_memory)
            if wait:
                _wait_registered(cluster.session, {node.label}, 30)
            return node
        return _add_node_seen_by_driver(cw, cluster, node_resources, object_store_memory, wait)

    def _start_head(self, num_cpus, num_gpus, resources, object_store_memory, kwargs):
        if api.is_initialized():
            raise RuntimeError("ray.init() already runs a cluster in this process: call "
                               "ray.shutdown() first, or use Cluster() without "
                               "initialize_head to add nodes to that cluster")
        unknown = set(kwargs) - _HEAD_ONLY_ARGS
        if unknown:
            raise TypeError(f"add_node() got unexpected keyword argument(s): {sorted(unknown)}")
        self._namespace = kwargs.get("namespace")
        plan = driver.plan_cluster(1, num_cpus, num_gpus, resources, object_store_memory,
                                   kwargs.get("control_plane"), kwargs.get("_system_config"))
        local = driver.start_cluster(*plan)
        self._local = local
        driver.STANDING[local.session.gcs_address] = local
        if self._shutdown_at_exit:
            atexit.register(self.shutdown)
        try:
            _wait_registered(local.session, {"N1"}, 60)
        except BaseException:
            self.shutdown()
            raise
        self.head_node = local.nodes["N1"]
        return self.head_node

    def remove_node(self, node, allow_graceful: bool = True) -> None:
        """Kill the node's processes and tell the GCS it is gone (no health-check wait)."""
        cluster = self._cluster_or_none()
        if cluster is None:
            raise RuntimeError("the cluster is not running")
        node = cluster.kill_node(node)
        cause = "removed by cluster_utils.Cluster.remove_node"
        if api.is_initialized() and api.cluster() is cluster:
            cw = current.CORE_WORKER
            cw.rpc_sync(cw.gcs, "mark_node_dead", bytes.fromhex(node.node_id), cause,
                        timeout=10)
        else:
            _ask_gcs(cluster.session, "mark_node_dead", bytes.fromhex(node.node_id), cause)

    def list_all_nodes(self) -> list[NodeHandle]:
        """The head and every node added and not removed (nor killed)."""
        cluster = self._cluster_or_none()
        return [n for n in cluster.nodes.values() if n.alive] if cluster is not None else []

    def wait_for_nodes(self, timeout: float = 30) -> None:
        """Wait until the GCS counts exactly the nodes of ``list_all_nodes`` as alive."""
        cluster = self._cluster_or_none()
        if cluster is None:
            return
        want = {n.label for n in self.list_all_nodes()}
        deadline = time.monotonic() + timeout
        while True:
            alive = {n["NodeName"] for n in _ask_gcs(cluster.session, "get_nodes")
                     if n["Alive"]}
            if alive == want:
                return
            if time.monotonic() > deadline:
                raise TimeoutError("Timed out while waiting for nodes to join.")
            time.sleep(0.02)

    def shutdown(self) -> None:
        """End the cluster: disconnect the driver if it is connected, stop every process."""
        local = self._cluster_or_none()
        if local is None:
            return
        if api.is_initialized() and api.cluster() is local:
            api.shutdown()
        if driver.STANDING.get(local.session.gcs_address) is local:
            del driver.STANDING[local.session.gcs_address]
            local.shutdown()
        self._local = None
        self.head_node = None
        try:
            atexit.unregister(self.shutdown)
        except Exception:
            pass

    def _cluster_or_none(self):
        if self._local is not None:
            return self._local
        if api.is_initialized():  # Cluster() inside a ray.init() session: that one
            return api.cluster()
        return None


def _add_node_seen_by_driver(cw, cluster, node_resources, object_store_memory, wait):
    """Start a node and wait until the driver's core worker has heard of it."""
    started = threading.Event()
    node = None

    def on_node(info):
        if node is not None and info["NodeName"] == node.label:
            started.set()

    cw.listeners.setdefault("node_added", []).append(on_node)
    try:
        node = cluster.add_node(node_resources, object_store_memory)
        if wait and not (node.label in {n["NodeName"] for n in cw.nodes.values()}
                         or started.wait(30)):
            raise TimeoutError(f"node {node.label} did not register with the GCS")
    finally:
        cw.listeners["node_added"].remove(on_node)
    return node


class _Quiet:
    """The handler of a short-lived admin connection: nothing is served on it."""

    def connection_lost(self, conn, exc):
        pass


def _ask_gcs(session, method: str, *args, timeout: float = 10.0):
    """Call the GCS once without a driver (a fresh connection on a helper thread, so it
    works inside a running event loop too, as in a Jupyter cell)."""
    from raylab.transport import connect

    async def go():
        conn = await connect(session.gcs_address, session.token, _Quiet(), name="cluster_utils",
                             retry=True, timeout=timeout)
        try:
            return await asyncio.wait_for(conn.call(method, *args), timeout)
        finally:
            conn.close()

    out: dict = {}

    def run():
        try:
            out["value"] = asyncio.run(go())
        except BaseException as e:  # re-raised in the caller's thread
            out["error"] = e

    t = threading.Thread(target=run, name="raylab-cluster-utils", daemon=True)
    t.start()
    t.join(timeout + 5)
    if "error" in out:
        raise out["error"]
    if "value" not in out:
        raise TimeoutError(f"the GCS did not answer {method} within {timeout:.0f}s")
    return out["value"]


def _wait_registered(session, labels: set, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        alive = {n["NodeName"] for n in _ask_gcs(session, "get_nodes") if n["Alive"]}
        if labels <= alive:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"node(s) {sorted(labels - alive)} did not register with the "
                               f"GCS within {timeout:.0f}s; see the logs in {session.dir}/logs")
        time.sleep(0.02)
