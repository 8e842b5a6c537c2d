"""raylab only: the GCS's load per task under each control plane.

The lecture's centralized design sends every task through the GCS (the global
scheduler) and registers every object in the GCS object table; Ray 2's
ownership design keeps both out of the GCS. The workload is the lecture's
``add(a, b)`` with ``a`` on N1 and ``b`` on N2 (large, so they live in object
stores), each result fetched by the driver, run once per control plane on a
fresh two-node cluster. The GCS counts the protocol messages it receives
(health checks and resource pulls excluded) and reports its CPU time.

(Ray has no switch for this, so there is no Ray column.)
"""
from __future__ import annotations


def gcs_load(ctx) -> None:
    """GCS messages and CPU time per task, centralized vs ownership (raylab only)."""
    from raylab.demo.compare import PLANES, gcs_load as measure
    tasks = ctx.size(10, 40)
    for plane in PLANES:
        load = measure(plane, tasks)
        tag = "central" if plane == "centralized" else "owner"
        ctx.metrics[f"gcs_msgs_per_task_{tag}"] = load["gcs_messages_per_task"]
        ctx.metrics[f"gcs_cpu_ms_per_task_{tag}"] = load["gcs_cpu_ms_per_task"]
        ctx.metrics[f"wall_ms_per_task_{tag}"] = load["wall_ms_per_task"]
        ctx.info[f"gcs_messages_by_method_{tag}"] = load["gcs_messages_by_method"]
