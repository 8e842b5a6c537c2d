"""What the actor tests share: a Counter actor, a Gate, and lookups in the GCS's actor table."""
from __future__ import annotations

import asyncio
import os
import time

import raylab as ray
from raylab.state import cluster_snapshot


@ray.remote
class Counter:
    def __init__(self, start=0):
        self.counts = start

    def increment(self):
        self.counts += 1
        return self.counts

    def read(self):
        return self.counts

    def where(self):
        return ray.get_runtime_context().get_node_id(), os.getpid()

    def worker_id(self):
        return ray.get_runtime_context().get_worker_id()

    @ray.method(num_returns=2)
    def pair(self):
        return self.counts, -self.counts

    def crash(self):
        os._exit(1)

    def boom(self):
        raise ValueError("method failed")


def node_id(label):
    return next(n["NodeID"] for n in ray.nodes() if n["NodeName"] == label)


def actor_row(actor_id_hex):
    return next(a for a in cluster_snapshot().actors if a.actor_id == actor_id_hex)


def state_of(actor_id_hex):
    """The actor's state in the GCS table, None until it is registered there."""
    row = next((a for a in cluster_snapshot().actors if a.actor_id == actor_id_hex), None)
    return row.state if row is not None else None


def process_gone(pid):
    import psutil
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def marker_path(tag):
    """A file a call creates when it starts (or a crash-once flag): seen by every process."""
    return f"/tmp/raylab_test_{tag}_{os.getpid()}_{time.monotonic_ns()}"


@ray.remote
class Gate:
    """Holds callers until it is opened: synchronisation through real processes."""

    def __init__(self):
        self.event = asyncio.Event()

    async def wait(self):
        await self.event.wait()
        return True

    async def open(self):
        self.event.set()


@ray.remote
def held(gate, value):
    ray.get(gate.wait.remote())
    return value
