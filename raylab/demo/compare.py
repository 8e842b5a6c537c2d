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
from raylab.demo import runner, task
from raylab.demo.task import add, setup

PLANES = ("centralized", "ownership")
IDLE_S = 0.5   # how long the GCS's background work (resource pulls, health checks) is measured


class Scenario(list):
    """A traced scenario's lecture-level steps, with its slide map and its objects' names
    (the comparison view labels rows "Step 4" and calls the objects a, b, c)."""

    def __init__(self, events, slides: dict, names: dict):
        super().__init__(events)
        self.slides, self.names = slides, names


def traced_task(control_plane: str) -> Scenario:
    """The lecture's task scenario under ``control_plane``: its lecture-level steps."""
    runner.fresh_cluster(control_plane=control_plane)
    try:
        a, b = setup()
        with ray.trace() as t:
            ref_c = task.scenario(a, b)
        return Scenario(task.steps(t, ref_c), task.SLIDES[control_plane],
                        task.names(a, b, ref_c))
    finally:
        ray.shutdown()


def traced_get(control_plane: str) -> Scenario:
    """The lecture's ``ray.get`` scenario under ``control_plane``: the steps of ``c``."""
    from raylab.demo import get
    runner.fresh_cluster(control_plane=control_plane)
    try:
        a, b = setup()
        with ray.trace() as t:
            ref_c, _ = get.scenario(a, b)
        return Scenario(t.steps(**get.get_flow(ref_c)), get.SLIDES[control_plane],
                        task.names(a, b, ref_c))
    finally:
        ray.shutdown()


def gcs_load(control_plane: str, tasks: int = 30) -> dict:
    """Messages the GCS receives, and its CPU time, per task of an ``add(a, b)`` workload
    (plasma arguments on two nodes, each result fetched by the driver). The GCS also
    works while no task runs (it pulls resources every 100 ms, checks health): that
    background is measured for a moment afterwards and taken out of the CPU time."""
    runner.fresh_cluster(control_plane=control_plane)
    try:
        a, b = setup()
        ray.get(add.remote(a, b))                     # warm up: export, workers, replicas
        before, cpu0 = _gcs_stats()
        t0 = time.perf_counter()
        refs = [add.remote(a, b) for _ in range(tasks)]
        for r in refs:
            ray.get(r)
        wall = time.perf_counter() - t0
        after, cpu1 = _gcs_stats()
        del refs
        background = _background_cpu()
        per_method = {m: (after.get(m, 0) - before.get(m, 0)) / tasks for m in after}
        per_method = {m: v for m, v in per_method.items() if v > 0}
        busy = max(0.0, (cpu1 - cpu0) - background * wall)
        return {"control_plane": control_plane, "tasks": tasks,
                "gcs_messages_per_task": sum(per_method.values()),
                "gcs_messages_by_method": dict(sorted(per_method.items())),
                "gcs_cpu_ms_per_task": busy * 1000 / tasks,
                "gcs_background_cpu_ms_per_s": background * 1000,
                "wall_ms_per_task": wall * 1000 / tasks}
    finally:
        ray.shutdown()


def _gcs_stats() -> tuple[dict, float]:
    """(messages received by method, CPU seconds) of the GCS process."""
    from raylab.core_worker import current
    cw = current.CORE_WORKER
    return cw.rpc_sync(cw.gcs, "get_message_stats", timeout=10)


def _background_cpu() -> float:
    """The GCS's CPU seconds per second while no task runs."""
    _m, cpu0 = _gcs_stats()
    t0 = time.perf_counter()
    time.sleep(IDLE_S)  # a measurement window, not a wait for anything
    _m, cpu1 = _gcs_stats()
    return (cpu1 - cpu0) / (time.perf_counter() - t0)


def run(step: bool = False, out=None, tasks: int = 30, control_plane: str | None = None) -> str:
    """Both control planes, always (``control_plane`` is accepted and has nothing to pick)."""
    from raylab.views.compare import compare_renderable, compare_text
    steps = {plane: traced_task(plane) for plane in PLANES}
    loads = {plane: gcs_load(plane, tasks) for plane in PLANES}
    c = out or runner.console()
    c.rule("The lecture's centralized control plane vs Ray 2's ownership")
    c.print(compare_renderable(steps, loads, width=max(c.width, 100)))
    return compare_text(steps, loads, width=runner.WIDTH)


__all__ = ["run", "traced_task", "traced_get", "gcs_load", "Scenario"]
