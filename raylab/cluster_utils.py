"""``raylab.cluster_utils.Cluster``: build a multi-node cluster node by node, as in Ray's tests.

    from raylab.cluster_utils import Cluster
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2})
    n2 = cluster.add_node(num_cpus=2, resources={"special": 1})
    ...
    cluster.remove_node(n2)      # the node's processes are killed; the GCS marks it DEAD
    cluster.shutdown()
"""
from __future__ import annotations

import threading

from raylab import api
from raylab.cluster import NodeHandle, machine_memory
from raylab.core_worker import current


class Cluster:
    def __init__(self, initialize_head: bool = False, connect: bool = True,
                 head_node_args: dict | None = None, shutdown_at_exit: bool = True):
        self._head_args = dict(head_node_args or {})
        self.head_node = None
        if initialize_head:
            self.add_node(**self._head_args)

    @property
    def address(self) -> str:
        return api.cluster().session.gcs_address

    def add_node(self, wait: bool = True, num_cpus=None, num_gpus=None, resources=None,
                 object_store_memory=None, **kwargs) -> NodeHandle:
        """Start a node; the first one is the head (it starts the cluster with ``ray.init``)."""
        if not api.is_initialized():
            allowed = {"namespace", "_system_config", "control_plane"}
            extra = {k: v for k, v in kwargs.items() if k in allowed}
            api.init(num_nodes=1, num_cpus=num_cpus, num_gpus=num_gpus, resources=resources,
                     object_store_memory=object_store_memory, **extra)
            self.head_node = api.cluster().nodes["N1"]
            return self.head_node
        cluster = api.cluster()
        node_resources = api._node_resources(num_cpus, num_gpus, resources)
        mem = object_store_memory or int(machine_memory() * 0.3 / (len(cluster.nodes) + 1))
        cw = current.CORE_WORKER
        started = threading.Event()
        node = None

        def on_node(info):
            if node is not None and info["NodeName"] == node.label:
                started.set()

        cw.listeners.setdefault("node_added", []).append(on_node)
        try:
            node = cluster.add_node(node_resources, mem)
            if wait and not started.wait(30):
                raise TimeoutError(f"node {node.label} did not register with the GCS")
        finally:
            cw.listeners["node_added"].remove(on_node)
        return node

    def remove_node(self, node, allow_graceful: bool = True) -> None:
        """Kill the node's processes and tell the GCS it is gone (no health-check wait)."""
        cluster = api.cluster()
        node = cluster.kill_node(node)
        cw = current.CORE_WORKER
        cw.rpc_sync(cw.gcs, "mark_node_dead", bytes.fromhex(node.node_id),
                    "removed by cluster_utils.Cluster.remove_node", timeout=10)

    def list_all_nodes(self) -> list[NodeHandle]:
        return list(api.cluster().nodes.values())

    def wait_for_nodes(self, timeout: float = 30) -> None:
        """Nodes are registered when add_node returns; kept for Ray compatibility."""

    def shutdown(self) -> None:
        api.shutdown()
