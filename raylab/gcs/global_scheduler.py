"""The global scheduler: the lecture's (centralized) placement decision, in the GCS.

In the lecture's design a local scheduler that gets a task asks the global
scheduler where it should run (Step 2). The global scheduler "performs an
object table lookup" to find which nodes hold the task's arguments (Step 3)
and, weighing that against load from the resource view, "decides to schedule
the task" on a node (Step 4).

Ray 2 moved this decision to the raylets (leases and spillback, see
``raylet/lease_manager.py``): every decision no longer costs a round trip to
the GCS. raylab keeps both so a class can measure the difference.

:func:`place` is a pure function, like the policies in ``raylab.scheduling``.
"""
from __future__ import annotations

from raylab.scheduling import policies
from raylab.scheduling.resources import NodeResources


def place(placement: dict, deps: list, view: list[NodeResources], locations: dict,
          sizes: dict, labels: dict, origin: bytes | None, cfg) -> policies.Decision:
    """Where should a task run? The node holding most argument bytes if it can take the
    task now; otherwise Ray's hybrid policy over the cluster's resource view."""
    alive = {n.node_id for n in view if n.alive}
    best = policies.locality({oid: locations.get(oid, set()) for oid in deps}, sizes, alive)
    if best is not None:
        node = next(n for n in view if n.node_id == best)
        if node.feasible(placement) and node.available_for(placement):
            held = [labels.get(n, "?") for oid in deps for n in locations.get(oid, ())]
            return policies.Decision(
                policies.SCHEDULED, best,
                f"the object table says {labels.get(best, '?')} holds most of the "
                f"arguments (copies on {', '.join(sorted(set(held)))})",
                [n.label for n in view if n.alive])
    d = policies.hybrid(placement, view, origin, cfg)
    d.reason = f"no argument to follow; by load: {d.reason}"
    return d
