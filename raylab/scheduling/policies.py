"""Scheduling policies: where should this task run?

Each policy is a pure function of a resource request, the cluster's resource
view (a list of :class:`NodeResources`, local node first) and the config. It
returns a :class:`Decision`: a node, and the reason in words for the trace.
No sockets, no clocks: a student can rewrite one and test it with plain
lists (see ``labs/``).

- :func:`hybrid` is Ray's DEFAULT: pack onto the local node while its
  utilization is under ``scheduler_spread_threshold``, then spread to the
  least-utilized of the top-k nodes.
- :func:`spread` is ``"SPREAD"``: round-robin over nodes that can run it now.
- :func:`node_affinity` is ``NodeAffinitySchedulingStrategy(node_id, soft)``.
- :func:`locality` is the owner's choice of raylet to ask: the node holding
  the most argument bytes.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field

from raylab.scheduling.resources import NodeResources, missing

# Decision.status values
SCHEDULED = "scheduled"      # run on `node` (it has the resources now)
QUEUED = "queued"            # `node` is the best feasible one; wait there for resources
INFEASIBLE = "infeasible"    # no node in the cluster could ever run it
UNSCHEDULABLE = "unschedulable"  # a hard constraint cannot be met (e.g. affinity to a dead node)


@dataclass
class Decision:
    status: str
    node: bytes | None = None
    reason: str = ""
    candidates: list = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status in (SCHEDULED, QUEUED)


def _alive(view):
    return [n for n in view if n.alive]


def hybrid(req: dict, view: list[NodeResources], local: bytes | None, cfg,
           rng: random.Random | None = None) -> Decision:
    """Ray's default policy, step for step.

    1. Score each feasible node by its critical resource utilization (its most-used
       resource), counted as 0 while below ``scheduler_spread_threshold``.
    2. Prefer nodes that have the resources *now*; otherwise queue on a feasible one.
    3. The local node wins if its score is as good as the best; otherwise pick among
       the top ``max(scheduler_top_k_absolute, fraction * nodes)`` lowest scores.
    """
    nodes = _alive(view)
    feasible = [n for n in nodes if n.feasible(req)]
    if not feasible:
        return _infeasible(req, nodes)
    available = [n for n in feasible if n.available_for(req)]
    pool = available or feasible
    thr = cfg.scheduler_spread_threshold

    def score(n: NodeResources) -> float:
        u = n.utilization()
        return 0.0 if u < thr else u

    ranked = sorted(pool, key=lambda n: (score(n), n.node_id))
    status = SCHEDULED if available else QUEUED
    names = [m.label for m in pool]
    mine = next((n for n in pool if n.node_id == local), None)
    if mine is not None and score(mine) <= score(ranked[0]):
        return Decision(status, local,
                        f"local node {mine.label} is {mine.utilization():.0%} used "
                        f"(spread threshold {thr:.0%}): keep it local", names)
    k = max(cfg.scheduler_top_k_absolute, int(len(view) * cfg.scheduler_top_k_fraction), 1)
    top = ranked[:k]
    best = top[0] if len(top) == 1 else (rng or random).choice(top)
    why = f"{best.label} is the least used ({best.utilization():.0%})"
    if mine is not None:
        why += f"; local {mine.label} is {mine.utilization():.0%} used, past the spread threshold"
    return Decision(status, best.node_id, why, names)


def spread(req: dict, view: list[NodeResources], cursor: int) -> Decision:
    """``"SPREAD"``: the next node (round-robin from ``cursor``) that can run it now."""
    nodes = sorted(_alive(view), key=lambda n: (len(n.label), n.label))
    feasible = [n for n in nodes if n.feasible(req)]
    if not feasible:
        return _infeasible(req, nodes)
    order = feasible[cursor % len(feasible):] + feasible[:cursor % len(feasible)]
    for n in order:
        if n.available_for(req):
            return Decision(SCHEDULED, n.node_id, f"SPREAD: next node in round-robin is {n.label}",
                            [m.label for m in feasible])
    return Decision(QUEUED, order[0].node_id, f"SPREAD: all nodes busy, wait on {order[0].label}",
                    [m.label for m in feasible])


def node_affinity(req: dict, view: list[NodeResources], target: bytes, soft: bool,
                  local: bytes | None, cfg) -> Decision:
    """Pin to ``target``; if it is gone or cannot fit the request, ``soft`` falls back to hybrid."""
    node = next((n for n in view if n.node_id == target), None)
    if node is not None and node.alive and node.feasible(req):
        if node.available_for(req) or not soft:
            status = SCHEDULED if node.available_for(req) else QUEUED
            return Decision(status, target, f"NodeAffinity pins the task to {node.label}",
                            [node.label])
    if soft:
        d = hybrid(req, view, local, cfg)
        d.reason = f"NodeAffinity(soft) target unavailable; {d.reason}"
        return d
    if node is None or not node.alive:
        return Decision(UNSCHEDULABLE, None,
                        f"NodeAffinity(soft=False) target node {target.hex()[:8]} is dead or unknown")
    return Decision(UNSCHEDULABLE, None,
                    f"NodeAffinity(soft=False) target {node.label} can never fit {req} "
                    f"(missing {missing(req, node.total)})")


def locality(arg_locations: dict, arg_sizes: dict, alive: set) -> bytes | None:
    """The node holding the most bytes of the task's arguments, or None.

    ``arg_locations`` maps object id -> set of node ids; ``arg_sizes`` maps
    object id -> size in bytes.
    """
    totals: dict = {}
    for oid, nodes in arg_locations.items():
        for n in nodes:
            if n in alive:
                totals[n] = totals.get(n, 0) + arg_sizes.get(oid, 0)
    if not totals:
        return None
    return max(sorted(totals), key=lambda n: totals[n])


def _infeasible(req: dict, nodes: list[NodeResources]) -> Decision:
    if not nodes:
        return Decision(INFEASIBLE, None, "no alive nodes")
    gaps = "; ".join(f"{n.label} lacks {missing(req, n.total)}" for n in nodes)
    return Decision(INFEASIBLE, None, f"no node can ever fit {req}: {gaps}")
