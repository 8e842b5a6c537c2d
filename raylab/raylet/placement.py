"""The placement decision, seen from a raylet: two answers, one interface.

- Ray 2 (``control_plane="ownership"``): the raylet decides itself. It runs the
  scheduling policy over its view of the cluster and grants a lease here, queues
  the request, or answers *spillback* so that the owner asks a better node
  (:class:`LocalPlacement`).
- The lecture (``control_plane="centralized"``): "N1's local scheduler contacts
  the global scheduler" (Step 2). The global scheduler in the GCS looks the
  arguments up in the object table (Step 3), decides on a node (Step 4) and
  schedules the task there; that node's local scheduler checks and fetches the
  arguments and invokes a worker (Steps 5-8). The grant comes back the way the
  request went, so the owner hears it from its own local scheduler
  (:class:`GlobalPlacement`).

The lease manager calls ``place`` for every request it gets from an owner, and
``returned`` / ``owner_died`` when leases end; nothing else in the raylet knows
which of the two runs.
"""
from __future__ import annotations

from dataclasses import dataclass

from raylab.effects import Call, Reply, Trace


class LocalPlacement:
    """Ray 2: this raylet decides (grant, queue, spill back) with its own view."""

    def place(self, lm, req) -> list:
        return lm.placed(req, lm.decide(req))

    def returned(self, lm, lease_id: int, disconnect: bool) -> list | None:
        return None  # every lease an owner returns here was granted here

    def owner_died(self, lm, owner: str) -> list:
        return []


@dataclass
class RelayedLease:
    """A lease another node's local scheduler granted for a task this one forwarded."""
    raylet: str        # the granting raylet's address
    lease_id: int      # its id there
    owner: str


class GlobalPlacement(LocalPlacement):
    """The lecture: forward the task to the GCS's global scheduler, which places it."""

    def __init__(self):
        self.relayed: dict[int, RelayedLease] = {}   # our lease id -> the real lease

    def place(self, lm, req) -> list:
        if req.spilled or req.actor_id is not None or req.strategy[0] != "DEFAULT":
            return super().place(lm, req)  # pinned or spread work is placed as in Ray 2
        return [Trace("raylet", "task", "forward_to_global_scheduler",
                      {"task": req.task_id.hex(), "node": lm.node_id.hex()},
                      {"name": req.name}),
                Call("global_schedule", (req,))]

    def answered(self, lm, req, reply: tuple, wanted: bool) -> list:
        """The global scheduler's answer to a forwarded task. ``wanted``: the owner is
        still waiting for it (it may have gone away meanwhile)."""
        kind = reply[0]
        if kind == "granted":
            _, lease_id, worker_id, address, node, pid, raylet = reply
            if node == lm.node_id:  # scheduled right here: the lease is ours already
                if not wanted:
                    return lm.return_worker(lease_id, False, 0.0)
                return [Reply(req.key, reply[:6])]
            if not wanted:
                return [Call("forward_return", (raylet, lease_id, False))]
            # the owner returns the worker to us; lease ids are per raylet, so it gets one
            # of ours, and we hand the worker back to the node that granted it
            ours = lm.next_lease_id()
            self.relayed[ours] = RelayedLease(raylet, lease_id, req.owner)
            return [Reply(req.key, ("granted", ours, worker_id, address, node, pid))]
        if kind == "infeasible":
            return lm.keep_infeasible(req, reply[1])
        if kind == "unschedulable":
            return [Trace("raylet", "task", "unschedulable",
                          {"task": req.task_id.hex(), "node": lm.node_id.hex()},
                          {"why": reply[1]}),
                    Reply(req.key, ("unschedulable", reply[1]))]
        return [Reply(req.key, ("cancelled",))]

    def returned(self, lm, lease_id: int, disconnect: bool) -> list | None:
        r = self.relayed.pop(lease_id, None)
        if r is None:
            return None
        return [Call("forward_return", (r.raylet, r.lease_id, disconnect))]

    def owner_died(self, lm, owner: str) -> list:
        gone = [k for k, r in self.relayed.items() if r.owner == owner]
        out: list = []
        for k in gone:
            out += self.returned(lm, k, True)
        return out


def make_placement(control_plane: str) -> LocalPlacement:
    return GlobalPlacement() if control_plane == "centralized" else LocalPlacement()
