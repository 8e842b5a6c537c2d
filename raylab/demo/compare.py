"""Demo: the same program under both control planes, side by side.

The lecture describes a *centralized* control plane: every task goes through a
global scheduler in the GCS, and every object is registered in the GCS object
table. Ray 2 moved both out of the GCS: owners keep their objects' locations
and ask raylets for leases directly (spilling back when another node is
better). Running the lecture's ``add(a, b)`` both ways shows which steps
differ, and counting the messages the GCS receives per task shows why Ray moved:
in the centralized design the GCS is on every task's path.
"""
from __future__ import annotations

import time

import raylab as ray
from raylab.demo import runner
from raylab.demo.task import add, setup

PLANES = ("centralized", "ownership")


def traced_task(control_plane: str):
    """The lecture's task scenario under ``control_plane``: its lecture-level steps."""
    runner.fresh_cluster(control_plane=control_plane)
    try:
        a, b = setup()
        with ray.trace() as t:
            ref_c = add.remote(a, b)
            ray.wait([ref_c], fetch_local=False)
        return t.steps(flow=["task", "object"])
    finally:
        ray.shutdown()


def traced_get(control_plane: str):
    """The lecture's ``ray.get`` scenario under ``control_plane``: the steps of ``c``."""
    from raylab.demo import get
    runner.fresh_cluster(control_plane=control_plane)
    try:
        a, b = setup()
        with ray.trace() as t:
            ref_c, _ = get.scenario(a, b)
        return t.steps(object=ref_c.hex())
    finally:
        ray.shutdown()


def gcs_load(control_plane: str, tasks: int = 30) -> dict:
    """Messages the GCS receives, and its CPU time, per task of an ``add(a, b)`` workload
    (plasma arguments on two nodes, each result fetched by the driver)."""
    runner.fresh_cluster(control_plane=control_plane)
    try:
        a, b = setup()
        ray.get(add.remote(a, b))                     # warm up: export, workers, replicas
        cw = _core_worker()
        before, cpu0 = cw.rpc_sync(cw.gcs, "get_message_stats", timeout=10)
        t0 = time.perf_counter()
        refs = [add.remote(a, b) for _ in range(tasks)]
        for r in refs:
            ray.get(r)
        wall = time.perf_counter() - t0
        after, cpu1 = cw.rpc_sync(cw.gcs, "get_message_stats", timeout=10)
        del refs
        per_method = {m: (after.get(m, 0) - before.get(m, 0)) / tasks for m in after}
        per_method = {m: v for m, v in per_method.items() if v > 0}
        return {"control_plane": control_plane, "tasks": tasks,
                "gcs_messages_per_task": sum(per_method.values()),
                "gcs_messages_by_method": dict(sorted(per_method.items())),
                "gcs_cpu_ms_per_task": (cpu1 - cpu0) * 1000 / tasks,
                "wall_ms_per_task": wall * 1000 / tasks}
    finally:
        ray.shutdown()


def _core_worker():
    from raylab.core_worker import current
    return current.CORE_WORKER


def run(step: bool = False, out=None, tasks: int = 30) -> str:
    from raylab.views.compare import compare_renderable, compare_text
    steps = {plane: traced_task(plane) for plane in PLANES}
    loads = {plane: gcs_load(plane, tasks) for plane in PLANES}
    c = out or runner.console()
    c.rule("The lecture's centralized control plane vs Ray 2's ownership")
    c.print(compare_renderable(steps, loads, width=runner.WIDTH))
    return compare_text(steps, loads, width=runner.WIDTH)


__all__ = ["run", "traced_task", "traced_get", "gcs_load"]
