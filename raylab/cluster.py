"""The driver's handle on the local cluster: start the GCS, add and kill nodes.

``ray.init`` makes one :class:`LocalCluster`; ``raylab.cluster_utils.Cluster``
and ``raylab.chaos`` use it to add a node at runtime or kill one (its raylet,
zygote and workers: the node's whole process group).
"""
from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass

from raylab import ids
from raylab.session import ProcessSet, create_session


@dataclass
class NodeHandle:
    index: int
    label: str
    resources: dict
    object_store_memory: int
    head: bool
    alive: bool = True

    @property
    def node_id(self) -> str:
        return ids.node_id(self.index).hex()

    def __repr__(self):
        return f"NodeHandle({self.label}, {self.node_id[:12]}..., {self.resources})"


def machine_memory() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        return 8 * 2 ** 30


class LocalCluster:
    def __init__(self, config, control_plane: str = "ownership"):
        self.config = config
        self.control_plane = control_plane
        self.session = create_session(config)
        self.procs = ProcessSet(self.session)
        self.nodes: dict[str, NodeHandle] = {}
        self._next_index = 1
        self._lock = threading.Lock()

    def start_gcs(self) -> None:
        self.procs.start_gcs()

    def add_node(self, resources: dict, object_store_memory: int) -> NodeHandle:
        """Start one more simulated node (a raylet process and its zygote)."""
        with self._lock:
            index = self._next_index
            self._next_index += 1
        label = f"N{index}"
        head = index == 1
        node = NodeHandle(index, label, dict(resources), int(object_store_memory), head)
        self.nodes[label] = node
        self.procs.start_raylet(index, label, node.resources, node.object_store_memory, head)
        return node

    def node(self, which) -> NodeHandle:
        """Find a node by label ("N2"), index (2), node id hex, or NodeHandle."""
        if isinstance(which, NodeHandle):
            return which
        if isinstance(which, int):
            which = f"N{which}"
        if isinstance(which, str):
            if which in self.nodes:
                return self.nodes[which]
            for n in self.nodes.values():
                if n.node_id == which:
                    return n
        raise ValueError(f"unknown node {which!r}; nodes are "
                         f"{', '.join(sorted(self.nodes, key=lambda s: (len(s), s)))}")

    def live_worker_node(self, which, doing: str = "kill") -> NodeHandle:
        """The node ``which``, if failure injection may hit it: alive, and not the head."""
        node = self.node(which)
        if node.head:
            raise ValueError(f"{node.label} is the head node (it hosts the driver's raylet); "
                             f"{doing} a worker node instead")
        if not node.alive:
            raise ValueError(f"{node.label} is already dead")
        return node

    def kill_node(self, which) -> NodeHandle:
        """Kill a node's processes at once (SIGKILL to its process group), like pulling a plug."""
        node = self.live_worker_node(which)
        self.procs.kill_node(node.label)
        node.alive = False
        return node

    def alive_nodes(self) -> list[NodeHandle]:
        return [n for n in self.nodes.values() if n.alive]

    def shutdown(self) -> None:
        self.procs.shutdown(timeout=0.5)
        self.procs.remove_session_dir()


def wait_until(pred, timeout: float, what: str, poll: float = 0.005) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(poll)
