"""The raylet's worker pool: the node's worker processes and who holds each.

Workers are started ahead of demand (``num_prestart_workers``) and reused:
when an owner returns a lease, its worker goes back to the idle list for the
next lease. An actor gets a worker of its own for its whole life.
"""
from __future__ import annotations

from dataclasses import dataclass

IDLE = "IDLE"
LEASED = "LEASED"
ACTOR = "ACTOR"
DEAD = "DEAD"


@dataclass
class WorkerInfo:
    worker_id: bytes
    counter: int
    pid: int
    address: str
    state: str = IDLE
    lease_id: int | None = None
    task_name: str = ""        # what it runs now, for the views
    actor_id: bytes | None = None
    idle_since: float = 0.0


class WorkerPool:
    def __init__(self):
        self.workers: dict[bytes, WorkerInfo] = {}
        self.idle: list[WorkerInfo] = []
        self.starting = 0
        self.counter = 0

    def next_counter(self) -> int:
        self.counter += 1
        self.starting += 1
        return self.counter

    def register(self, w: WorkerInfo) -> None:
        self.starting = max(0, self.starting - 1)
        self.workers[w.worker_id] = w
        self.idle.append(w)

    def pop_idle(self) -> WorkerInfo | None:
        """The idle worker with the lowest number: the same program gets the same workers."""
        self.idle = [w for w in self.idle if w.state == IDLE]
        if not self.idle:
            return None
        w = min(self.idle, key=lambda w: w.counter)
        self.idle.remove(w)
        return w

    def push_idle(self, w: WorkerInfo, now: float) -> None:
        w.state = IDLE
        w.lease_id = None
        w.task_name = ""
        w.idle_since = now
        self.idle.append(w)

    def remove(self, worker_id: bytes) -> WorkerInfo | None:
        w = self.workers.pop(worker_id, None)
        if w is not None:
            w.state = DEAD
            if w in self.idle:
                self.idle.remove(w)
        return w

    def num_alive(self) -> int:
        return len(self.workers)
