"""The global scheduler: the lecture's (centralized) placement decision, in the GCS.

In the lecture's design a local scheduler that gets a task "contacts the global
scheduler" (Step 2). The global scheduler "performs an object table lookup" to
find which nodes hold the task's arguments (Step 3) and, weighing that against
each node's load in the resource view, "decides to schedule the task" on a node
(Step 4). It sends the task to that node's local scheduler, which checks and
fetches the arguments and invokes a worker (Steps 5-8); the grant comes back
here and goes on to the local scheduler that asked.

Ray 2 moved this decision to the raylets (leases and spillback, see
``raylet/lease_manager.py``): every decision no longer costs a round trip to
the GCS. raylab keeps both so a class can measure the difference.

:func:`place` is a pure function, like the policies in ``raylab.scheduling``;
:class:`GlobalScheduler` turns one request into trace steps and a decision, and
its RPC carries the decision out.
"""
from __future__ import annotations

from dataclasses import dataclass

from raylab.effects import Trace
from raylab.scheduling import policies
from raylab.scheduling.resources import NodeResources, subtract
from raylab.transport import ConnectionLost


def place(placement: dict, deps: list, view: list[NodeResources], locations: dict,
          sizes: dict, labels: dict, origin: bytes | None, cfg) -> policies.Decision:
    """Where should a task run? The node holding most argument bytes if it can take the
    task now; otherwise Ray's hybrid policy over the cluster's resource view."""
    alive = {n.node_id for n in view if n.alive}
    best = policies.locality({oid: locations.get(oid, set()) for oid in deps}, sizes, alive)
    if best is not None:
        node = next(n for n in view if n.node_id == best)
        if node.feasible(placement) and node.available_for(placement):
            label = labels.get(best, "?")
            return policies.Decision(
                policies.SCHEDULED, best,
                f"the object table says {label} holds most of the argument bytes, and the "
                f"resource view says {label} can take the task now",
                [n.label for n in view if n.alive])
    d = policies.hybrid(placement, view, origin, cfg)
    d.reason = f"by load in the resource view: {d.reason}"
    return d


@dataclass
class TaskToPlace:
    """What a local scheduler forwards: the task's demand, and its arguments."""
    task_id: bytes
    name: str
    resources: dict
    placement: dict
    strategy: tuple
    owner: str
    deps: list          # (object id, owner) of the arguments passed by reference
    origin: bytes       # the node whose local scheduler asked


class GlobalScheduler:
    def __init__(self, view, table, nodes, cfg):
        self.view = view      # the GCS resource view (load)
        self.table = table    # the GCS object table (locality)
        self.nodes = nodes    # the node table (raylet addresses)
        self.cfg = cfg

    def decide(self, task: TaskToPlace, exclude: set) -> tuple[policies.Decision, list]:
        """Steps 3-4: look the arguments up, pick a node. Returns (decision, trace steps)."""
        table = self.table
        labels = table.labels
        ids = {"task": task.task_id.hex(), "node": task.origin.hex()}
        out = [Trace("gcs", "task", "global_schedule_request", ids,
                     {"name": task.name, "from": labels.get(task.origin, "?")}, 1)]
        oids = [oid for oid, _owner in task.deps]
        for oid in oids:
            found = bool(table.locations.get(oid))
            out.append(Trace("gcs", "object", "object_table_lookup",
                             {"object": oid.hex(), "node": task.origin.hex()},
                             {"found": found, "at": table._where(oid) if found else "",
                              "by": "the global scheduler", "scheduler": True}))
        view = [n for n in sorted(self.view.nodes.values(), key=lambda n: n.node_id)
                if n.node_id not in exclude]
        d = place(task.placement, oids, view, table.locations, table.sizes, labels,
                  task.origin, self.cfg)
        if d.ok:
            chosen = self.view.nodes[d.node]
            # count the task against that node until its next report, so that a burst of
            # tasks is not all sent to the node that looked free
            chosen.available = subtract(chosen.available, task.placement)
            out.append(Trace("gcs", "task", "global_decision",
                             {"task": task.task_id.hex(), "node": d.node.hex()},
                             {"name": task.name, "to": labels.get(d.node, "?"),
                              "why": d.reason}))
        return d, out

    async def rpc_global_schedule(self, conn, task_id, name, resources, placement, strategy,
                                  owner, deps, origin):
        """A local scheduler forwards a task (Step 2). Schedule it on a node, and answer
        with that node's grant: ("granted", lease, worker, address, node, pid, raylet)."""
        task = TaskToPlace(task_id, name, resources, placement, strategy, owner, list(deps),
                           origin)
        tried: set = set()
        while True:
            d, effects = self.decide(task, tried)
            await self.run(effects)
            if not d.ok:
                return (d.status, d.reason)
            info = self.nodes.nodes.get(d.node)
            try:
                reply = await self.call_node(d.node, "schedule_task", task_id, name, resources,
                                             placement, strategy, owner, task.deps)
            except (ConnectionLost, OSError):
                tried.add(d.node)  # it died before its death was noticed: place it again
                continue
            if reply[0] == "granted":
                return tuple(reply) + (info.address,)
            return tuple(reply)

    # the GCS server sets these: run trace steps through its shell, call a node's raylet
    run = None
    call_node = None
