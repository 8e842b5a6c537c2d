"""Tunables, with Ray's names: ``RAY_<name>`` in the environment overrides a default.

One frozen :class:`Config` is made by the driver at ``init`` and handed to every
process of the cluster, so they all agree.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Config:
    # scheduling (Ray's hybrid policy)
    scheduler_spread_threshold: float = 0.5
    scheduler_top_k_fraction: float = 0.2
    scheduler_top_k_absolute: int = 1
    # the GCS pulls each raylet's resources this often and broadcasts the view
    resource_broadcast_period_ms: int = 100
    # health checks: a raylet that misses `threshold` checks in a row is DEAD
    health_check_period_ms: int = 500
    health_check_timeout_ms: int = 1000
    health_check_failure_threshold: int = 3
    # objects smaller than this stay in the owner's in-process store
    max_direct_call_object_size: int = 100 * 1024
    # owner-side task submission
    max_tasks_in_flight_per_worker: int = 1
    max_pending_lease_requests_per_scheduling_category: int = 10
    # an idle lease is returned to its raylet after this long without a new task
    worker_lease_linger_ms: int = 2
    # object transfer between nodes
    object_manager_chunk_size: int = 8 * 1024 * 1024
    # a put that finds the store full of objects pinned by readers waits this long for
    # them to be released before it fails with ObjectStoreFullError
    object_store_full_timeout_ms: int = 3000
    # a process keeps its pin on an object this long after its last read ended, so a
    # get of it again needs no request; the store asks for the pin back when it needs
    # the room or the object is freed
    object_store_release_delay_ms: int = 1000
    # workers prestarted by each raylet at startup (capped by its CPUs)
    num_prestart_workers: int = 2
    # idle workers above the node's CPU count are ended after this long
    idle_worker_killing_time_threshold_ms: int = 1000
    # how long a raylet waits before warning about an infeasible request
    infeasible_warning_delay_ms: int = 0
    # "ownership" (Ray 2: owners keep object locations, raylets grant leases) or
    # "centralized" (the lecture: GCS object table and global scheduler)
    control_plane: str = "ownership"

    @classmethod
    def from_env(cls, **overrides) -> "Config":
        values = {}
        for f in dataclasses.fields(cls):
            env = os.environ.get("RAY_" + f.name)
            if env is not None:
                values[f.name] = _cast(f, env)
        values.update({k: v for k, v in overrides.items() if v is not None})
        unknown = set(values) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown system config {sorted(unknown)}; known: "
                             f"{sorted(f.name for f in dataclasses.fields(cls))}")
        return cls(**values)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _cast(f, text: str):
    default = f.default
    if isinstance(default, bool):
        return text.lower() in ("1", "true", "yes")
    if isinstance(default, int):
        return int(text)
    if isinstance(default, float):
        return float(text)
    return text
