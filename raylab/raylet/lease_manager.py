"""The raylet's lease manager: the local scheduler that grants worker leases.

An owner asks "may I have a worker with {CPU: 1}?" (``request``). The lease
manager runs the scheduling policy over its view of the cluster (its own
resources exactly, the other nodes as last broadcast by the GCS):

- best node is this one and the resources are free: *grant* a lease on an
  idle worker (starting one if needed) and subtract the resources;
- best node is this one but busy: queue the request until resources free up;
- best node is another: answer *spillback* with that node's raylet, so the
  owner asks there;
- no node could ever fit it: keep it as *infeasible* (and warn the owner,
  once) until a node that fits joins.

Which of these it does is the placement decision (``placement.py``): in Ray 2
this raylet decides; in the lecture's design it forwards the task to the
GCS's global scheduler, which schedules it on a node (``scheduled_by_gcs``).

When the owner returns the lease, the resources come back and the worker
goes back to the pool. A worker blocked in ``ray.get`` lends its CPU back
meanwhile, so nested tasks cannot deadlock the node.

Sans-IO: methods return effects (``Reply`` to a pending request, ``Trace``,
``Call("start_worker")``, ...) for the shell in ``raylet/server.py``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from raylab.effects import Call, Reply, Send, Trace
from raylab.raylet.placement import make_placement
from raylab.raylet.gpu_ids import GpuIds
from raylab.raylet.worker_pool import ACTOR, LEASED, WorkerInfo, WorkerPool
from raylab.scheduling import policies
from raylab.scheduling.resources import NodeResources, add, fits, subtract


@dataclass
class LeaseRequest:
    key: int                   # the shell's handle for the pending RPC
    resources: dict            # held while the lease lives
    placement: dict            # must fit to place it (actors: 1 CPU to place, 0 to run)
    strategy: tuple
    spilled: bool              # sent here by another raylet: grant or queue, never bounce
    owner: str
    task_id: bytes
    name: str
    actor_id: bytes | None = None
    deps: list = field(default_factory=list)   # (object id, owner) passed by reference
    missing: int = 0                           # how many of them are not on this node yet
    absent: list = field(default_factory=list)  # their ids (for the lecture's Step 5)
    fetching: bool = False
    by_gcs: bool = False       # the lecture: the global scheduler scheduled it on this node
    warned: bool = False       # the owner heard that it is infeasible (once per request)


@dataclass
class Lease:
    lease_id: int
    worker: WorkerInfo
    resources: dict
    owner: str
    name: str
    blocked: bool = False
    gpus: tuple = ()          # (GPU index, share) pairs this lease holds


class LeaseManager:
    def __init__(self, node_id: bytes, label: str, total: dict, cfg):
        self.node_id = node_id
        self.label = label
        self.total = dict(total)
        self.available = dict(total)
        self.cfg = cfg
        self.pool = WorkerPool()
        self.gpus = GpuIds(total.get("GPU", 0))
        self.queue: list[LeaseRequest] = []
        self.infeasible: list[LeaseRequest] = []
        self.leases: dict[int, Lease] = {}
        self.others: dict[bytes, NodeResources] = {}   # other nodes, from the GCS broadcast
        self.addresses: dict[bytes, str] = {}          # node id -> raylet address
        self.labels: dict[bytes, str] = {}             # node id -> label (N1, N2, ...)
        self._lease_counter = 0
        self._spread_cursor = 0
        self.placement = make_placement(cfg.control_plane)

    # -- the view the policy sees ---------------------------------------------------
    def view(self) -> list[NodeResources]:
        me = NodeResources(self.node_id, self.label, self.total, self.available)
        others = sorted(self.others.values(), key=lambda n: n.node_id)
        return [me] + [n for n in others if n.node_id != self.node_id]

    def decide(self, req: LeaseRequest) -> policies.Decision:
        strategy = req.strategy
        view = self.view()
        if strategy[0] == "NODE_AFFINITY":
            return policies.node_affinity(req.placement, view, strategy[1], strategy[2],
                                          self.node_id, self.cfg)
        if strategy[0] == "SPREAD":
            self._spread_cursor += 1
            return policies.spread(req.placement, view, self._spread_cursor - 1)
        return policies.hybrid(req.placement, view, self.node_id, self.cfg)

    # -- a lease request arrives --------------------------------------------------------
    def request(self, req: LeaseRequest) -> list:
        """An owner asks for a worker: decide here (Ray 2) or ask the global scheduler."""
        return self.placement.place(self, req)

    def scheduled_by_gcs(self, req: LeaseRequest) -> list:
        """The lecture's Step 4: the global scheduler decided that the task runs here. No
        decision is left to take: check the arguments (Step 5), then invoke a worker."""
        req.by_gcs = req.spilled = True  # placed: it is never bounced again
        self.queue.append(req)
        return [Trace("raylet", "task", "task_from_global_scheduler",
                      {"task": req.task_id.hex(), "node": self.node_id.hex()},
                      {"name": req.name}, 1)] + self.check_args(req) + self.dispatch()

    def placed(self, req: LeaseRequest, d: policies.Decision) -> list:
        ids = {"task": req.task_id.hex(), "node": self.node_id.hex()}
        if req.spilled and d.status != policies.UNSCHEDULABLE and \
                fits(req.placement, self.total) and d.node != self.node_id:
            d = policies.Decision(policies.QUEUED, self.node_id,
                                  f"spilled here from another raylet; {self.label} can fit it")
        if d.status == policies.INFEASIBLE:
            return self.keep_infeasible(req, d.reason)
        if d.status == policies.UNSCHEDULABLE:
            return [Trace("raylet", "task", "unschedulable", ids, {"why": d.reason}),
                    Reply(req.key, ("unschedulable", d.reason))]
        out = [Trace("raylet", "task", "schedule_decision", ids,
                     {"why": d.reason, "to": self._label_of(d.node), "name": req.name,
                      "candidates": d.candidates, "policy": req.strategy[0]})]
        if d.node != self.node_id:
            address = self.addresses.get(d.node)
            if address is not None:
                # count the task against that node now, as Ray does, so the next requests
                # do not all pile onto the same node before the next broadcast
                other = self.others.get(d.node)
                if other is not None:
                    other.available = subtract(other.available, req.placement)
                out.append(Trace("raylet", "task", "spillback", ids,
                                 {"to": self._label_of(d.node), "why": d.reason,
                                  "name": req.name}))
                out.append(Reply(req.key, ("spillback", d.node, address, d.reason)))
                return out
        self.queue.append(req)
        return out + self.check_args(req) + self.dispatch()

    def keep_infeasible(self, req: LeaseRequest, why: str) -> list:
        """No node could ever run it: keep it until one joins. The owner is warned once
        per request, not again each time a new resource view finds it still infeasible."""
        self.infeasible.append(req)
        if req.warned:
            return []
        req.warned = True
        return [Trace("raylet", "task", "infeasible",
                      {"task": req.task_id.hex(), "node": self.node_id.hex()},
                      {"why": why, "name": req.name, "resources": req.placement}),
                Send(req.key, "lease_infeasible", (req.name, req.placement, why))]

    def check_args(self, req: LeaseRequest) -> list:
        """The lecture's Step 5: does this node's object store hold the task's arguments?
        Missing ones are fetched before the lease is granted (Steps 6-7)."""
        if not req.deps:
            return []
        detail = {"name": req.name, "missing": req.missing, "args": len(req.deps)}
        if req.by_gcs:  # the lecture's words name the arguments (add(a, b)'s)
            detail.update({"global": True, "arg_ids": [oid.hex() for oid, _o in req.deps],
                           "fetch": [oid.hex() for oid in req.absent]})
        out = [Trace("raylet", "task", "check_local_args",
                     {"task": req.task_id.hex(), "node": self.node_id.hex()}, detail)]
        if req.missing and not req.fetching:
            req.fetching = True
            out.append(Call("fetch_args", (req.key, req.deps)))
        return out

    def args_ready(self, key: int) -> list:
        for req in self.queue:
            if req.key == key:
                req.missing = 0
        return self.dispatch()

    # -- grant leases while resources and workers allow ---------------------------------
    def dispatch(self) -> list:
        out: list = []
        waiting = 0
        still: list = []
        for req in self.queue:
            if req.missing or not fits(req.placement, self.available) or \
                    not fits(req.resources, self.available):
                still.append(req)
                continue
            w = self.pool.pop_idle()
            if w is None:
                waiting += 1
                still.append(req)
                continue
            out += self._grant(req, w)
        self.queue = still
        need = waiting - self.pool.starting
        for _ in range(max(0, need)):
            out.append(Call("start_worker", (self.pool.next_counter(),)))
        return out

    def next_lease_id(self) -> int:
        self._lease_counter += 1
        return self._lease_counter

    def _grant(self, req: LeaseRequest, w: WorkerInfo) -> list:
        lease = Lease(self.next_lease_id(), w, dict(req.resources), req.owner, req.name)
        self.leases[lease.lease_id] = lease
        lease.gpus = self.gpus.assign(req.resources.get("GPU", 0))
        self.available = subtract(self.available, req.resources)
        w.state = ACTOR if req.actor_id else LEASED
        w.lease_id = lease.lease_id
        w.task_name = req.name
        w.actor_id = req.actor_id
        return [Trace("raylet", "task", "lease_granted",
                      {"task": req.task_id.hex(), "node": self.node_id.hex(),
                       "worker": w.worker_id.hex()},
                      {"worker_pid": w.pid, "worker_label": f"{self.label}.w{w.counter}",
                       "resources": req.resources, "name": req.name,
                       "available_after": dict(self.available), "global": req.by_gcs}),
                Reply(req.key, ("granted", lease.lease_id, w.worker_id, w.address, self.node_id,
                                w.pid))]

    # -- workers come and go ----------------------------------------------------------------
    def worker_registered(self, w: WorkerInfo) -> list:
        self.pool.register(w)
        return [Trace("raylet", "worker", "worker_started", {"node": self.node_id.hex(),
                                                               "worker": w.worker_id.hex()},
                      {"pid": w.pid}, 1)] + self.dispatch()

    def return_worker(self, lease_id: int, disconnect: bool, now: float) -> list:
        relayed = self.placement.returned(self, lease_id, disconnect)
        if relayed is not None:
            return relayed
        lease = self.leases.pop(lease_id, None)
        if lease is None:
            return []
        self.gpus.release(lease.gpus)
        if not lease.blocked:
            self.available = add(self.available, lease.resources)
        else:
            self.available = add(self.available, _non_cpu(lease.resources))
        w = lease.worker
        out = [Trace("raylet", "task", "lease_returned", {"node": self.node_id.hex(),
                                                           "worker": w.worker_id.hex()},
                     {"resources": lease.resources}, 1)]
        if disconnect:
            self.pool.remove(w.worker_id)
            out.append(Call("kill_worker", (w.worker_id,)))
        elif w.state != "DEAD":
            self.pool.push_idle(w, now)
        return out + self.dispatch()

    def worker_died(self, worker_id: bytes) -> list:
        w = self.pool.remove(worker_id)
        if w is None:
            return []
        out = [Trace("raylet", "failure", "worker_died", {"node": self.node_id.hex(),
                                                           "worker": worker_id.hex()},
                     {"pid": w.pid, "was_running": w.task_name}),
               Call("report_worker_failure", (w.address,))]
        if w.lease_id is not None:
            lease = self.leases.pop(w.lease_id, None)
            if lease is not None:
                self.gpus.release(lease.gpus)
                freed = lease.resources if not lease.blocked else _non_cpu(lease.resources)
                self.available = add(self.available, freed)
        return out + self.dispatch()

    def worker_blocked(self, worker_id: bytes) -> list:
        lease = self._lease_of(worker_id)
        if lease is None or lease.blocked:
            return []
        lease.blocked = True
        self.available = add(self.available, _cpu_only(lease.resources))
        return [Trace("raylet", "task", "worker_blocked", {"node": self.node_id.hex(),
                                                            "worker": worker_id.hex()},
                      {"released": _cpu_only(lease.resources)}, 1)] + self.dispatch()

    def worker_unblocked(self, worker_id: bytes) -> list:
        lease = self._lease_of(worker_id)
        if lease is None or not lease.blocked:
            return []
        lease.blocked = False
        self.available = subtract(self.available, _cpu_only(lease.resources))  # may dip below 0
        return []

    def owner_died(self, owner: str) -> list:
        """The owner is gone: its queued requests and leases go with it."""
        self.queue = [r for r in self.queue if r.owner != owner]
        self.infeasible = [r for r in self.infeasible if r.owner != owner]
        out: list = self.placement.owner_died(self, owner)
        for lease in [l for l in self.leases.values() if l.owner == owner]:
            if lease.worker.state == ACTOR:
                continue  # actors answer to the GCS, which decides their fate
            out += self.return_worker(lease.lease_id, True, 0.0)
        return out

    def cancel_requests(self, keys: set) -> list:
        dropped = [r for r in self.queue + self.infeasible if r.key in keys]
        self.queue = [r for r in self.queue if r.key not in keys]
        self.infeasible = [r for r in self.infeasible if r.key not in keys]
        return [Reply(r.key, ("cancelled",)) for r in dropped]

    # -- the cluster view changes ------------------------------------------------------------
    def update_view(self, snapshot: list) -> list:
        """A fresh view: queued work may now fit elsewhere, infeasible work may fit at all."""
        self.others = {nid: NodeResources(nid, label, total, avail, alive)
                       for nid, label, total, avail, alive in snapshot if nid != self.node_id}
        out: list = []
        waiting = [r for r in self.queue if not r.spilled and not fits(r.placement, self.available)]
        if waiting and any(n.alive for n in self.others.values()):
            for req in waiting:
                d = self.decide(req)
                if d.status == policies.SCHEDULED and d.node != self.node_id:
                    self.queue.remove(req)
                    out += self.request(req)  # decides again and spills it back
        if self.infeasible:
            # ask again only for what some node in this view could run at all: a view
            # that changes nothing for it must not cost a decision (or a GCS message)
            view = self.view()
            still, retry = [], []
            for r in self.infeasible:
                fits_somewhere = any(n.alive and n.feasible(r.placement) for n in view)
                (retry if fits_somewhere else still).append(r)
            self.infeasible = still
            for req in retry:
                out += self.request(req)
        return out

    def node_added(self, node_id: bytes, address: str, label: str | None = None) -> None:
        self.addresses[node_id] = address
        if label:
            self.labels[node_id] = label

    def node_dead(self, node_id: bytes) -> list:
        self.addresses.pop(node_id, None)
        n = self.others.get(node_id)
        if n is not None:
            n.alive = False
        return []

    # -- helpers -----------------------------------------------------------------------
    def _lease_of(self, worker_id: bytes) -> Lease | None:
        w = self.pool.workers.get(worker_id)
        if w is None or w.lease_id is None:
            return None
        return self.leases.get(w.lease_id)

    def _label_of(self, node_id) -> str:
        if node_id == self.node_id:
            return self.label
        n = self.others.get(node_id)
        return n.label if n is not None else self.labels.get(node_id, "?")

    def report(self) -> tuple:
        return (dict(self.available), dict(self.total))


def _cpu_only(res: dict) -> dict:
    return {"CPU": res["CPU"]} if res.get("CPU") else {}


def _non_cpu(res: dict) -> dict:
    return {k: v for k, v in res.items() if k != "CPU"}
