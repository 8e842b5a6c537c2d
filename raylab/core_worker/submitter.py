"""The normal-task submitter: how an owner gets its tasks run (Ray 2).

For each task the owner:

1. resolves its dependencies: waits for the arguments passed as ObjectRefs and
   inlines the small ones into the spec (``resolve_dependencies``);
2. queues it by *scheduling key* (function, resources, strategy): tasks with
   the same key can run on the same leased worker;
3. asks a raylet for a worker lease (``request_lease``): the local raylet by
   default, the node holding most argument bytes (locality), or the pinned
   node (node affinity). The raylet grants a worker, or answers *spillback*:
   "try node N2", and the owner asks N2's raylet;
4. pushes the task straight to the leased worker (``push_task``) and reuses
   the lease for the next queued task of the same key;
5. on the reply, stores the return values and tells the waiting ``get``;
   when no task of that key is left, returns the worker to its raylet.

A worker that dies mid-task makes the push fail: the task is retried up to
``max_retries`` times, then fails with ``WorkerCrashedError``; a node declared
DEAD has its tasks failed over (``task_failures.py``).
"""
from __future__ import annotations

import asyncio
import collections

from raylab import exceptions as exc
from raylab.core_worker.memory_store import ERROR, IN_PLASMA, VALUE
from raylab.core_worker.task_failures import TaskFailures, drop_connection
from raylab.core_worker.task_spec import ARG_REF, ARG_VALUE
from raylab.scheduling import policies
from raylab.states import (FAILED, FINISHED, PENDING_ARGS_AVAIL, PENDING_NODE_ASSIGNMENT,
                           SUBMITTED_TO_WORKER)
from raylab.tracing.emit import TRACER, checkpoint, step
from raylab.transport import ConnectionLost

# the lecture's Step 1: the driver contacts its local scheduler, which asks the global one
ASK_GLOBAL = "the local scheduler asks the global one"


class LeasedWorker:
    """A worker the owner holds a lease on, and the tasks in flight there."""

    __slots__ = ("lease_id", "worker_id", "address", "conn", "node_id", "raylet", "in_flight",
                 "pid", "dead")

    def __init__(self, lease_id, worker_id, address, node_id, raylet, pid):
        self.lease_id = lease_id
        self.worker_id = worker_id
        self.address = address
        self.conn = None
        self.node_id = node_id
        self.raylet = raylet
        self.in_flight: dict = {}  # task id -> spec
        self.pid = pid
        self.dead = False


class KeyQueue:
    """Tasks of one scheduling key, and the leases that serve them."""

    __slots__ = ("key", "tasks", "leases", "pending_leases")

    def __init__(self, key):
        self.key = key
        self.tasks: collections.deque = collections.deque()
        self.leases: list[LeasedWorker] = []
        self.pending_leases = 0


class NormalTaskSubmitter(TaskFailures):
    def __init__(self, cw):
        self.cw = cw
        self.queues: dict[tuple, KeyQueue] = {}
        self.states: dict[bytes, str] = {}       # task id -> Ray task state, while pending
        self.specs: dict[bytes, object] = {}     # task id -> spec, while pending
        self.running_on: dict[bytes, LeasedWorker] = {}
        self.asking: dict = {}  # node id -> lease requests waiting on that node's raylet
        self.cancelled: set = set()
        self._lease_counter = 0
        self.max_in_flight = cw.cfg.max_tasks_in_flight_per_worker
        self.max_pending = cw.cfg.max_pending_lease_requests_per_scheduling_category
        self.linger = cw.cfg.worker_lease_linger_ms / 1000

    # -- 1. dependency resolution ---------------------------------------------------
    def submit(self, spec) -> None:
        """io thread: a new task (or a retry) enters the owner's pipeline."""
        tid = spec.task_id
        self.specs[tid] = spec
        deps = [a[1] for a in spec.args if a[0] == ARG_REF]
        if not deps:
            self._enqueue(spec)
            return
        self.states[tid] = PENDING_ARGS_AVAIL
        pending = {"n": len(deps)}
        store = self.cw.store

        def one_ready(_oid, _entry):
            pending["n"] -= 1
            if pending["n"] == 0:
                self._resolved(spec)

        for oid in deps:
            e = self.cw.refs.entries.get(oid)
            if e is not None and oid not in store.objects:
                if not e.owned:
                    self.cw.objects.fetch(oid)
                elif e.value_freed and not e.pending:
                    self.cw.objects.recover_owned(oid, [])  # kept only as lineage: rebuild it
            store.when_ready(oid, one_ready)

    def _resolved(self, spec) -> None:
        if spec.task_id in self.cancelled:
            return
        store = self.cw.store.objects
        args = spec.args
        for i, a in enumerate(args):
            if a[0] != ARG_REF:
                continue
            kind, payload = store[a[1]]
            if kind == VALUE:  # small and ready: inline it, the worker needs no fetch
                args[i] = (ARG_VALUE, payload, None)
            elif kind == ERROR:  # an argument failed: so does this task, without running
                self._finish_failed(spec, payload)
                return
        hold = TRACER.on and checkpoint("core_worker", "task", "resolve_dependencies",
                                        task=spec.task_id.hex(),
                                        detail={"args": len(args), "name": spec.name})
        self.after(hold, self._enqueue, spec)

    def choose_raylet(self, spec):
        """Which raylet to ask for a lease (Ray's lease policy): the pinned node for node
        affinity, the node holding most argument bytes, else the local raylet."""
        cw = self.cw
        strategy = spec.strategy
        dead = ""
        if strategy[0] == "NODE_AFFINITY":
            target, soft = strategy[1], strategy[2]
            addr = cw.raylet_address_of(target)
            if addr is not None:
                return target, addr, f"NodeAffinity pins it to {cw.label_of(target)}"
            if not soft:
                raise exc.TaskUnschedulableError(
                    f"Task {spec.name} has NodeAffinitySchedulingStrategy(soft=False) to node "
                    f"{target.hex()}, which is dead or unknown.")
            dead = f"{cw.label_of(target)} is dead, so soft NodeAffinity lets it run elsewhere; "
        if cw.cfg.control_plane == "centralized":  # the lecture: always the local scheduler
            return cw.node_id, cw.raylet_address, dead + ASK_GLOBAL
        plasma_args = [a[1] for a in spec.args if a[0] == ARG_REF]
        if plasma_args:
            sizes, locs = {}, {}
            for oid in plasma_args:
                e = cw.refs.entries.get(oid)
                if e is not None and e.locations:
                    sizes[oid] = e.size
                    locs[oid] = e.locations
            best = policies.locality(locs, sizes, cw.alive_nodes())
            if best is not None and cw.raylet_address_of(best):
                return best, cw.raylet_address_of(best), (
                    f"{dead}data locality: {cw.label_of(best)} holds most argument bytes")
        return cw.node_id, cw.raylet_address, dead + "the local raylet decides"

    # -- 2. queue by scheduling key, 3. leases, 4. push --------------------------------
    def _enqueue(self, spec) -> None:
        key = spec.scheduling_key()
        q = self.queues.get(key)
        if q is None:
            q = self.queues[key] = KeyQueue(key)
        self.states[spec.task_id] = PENDING_NODE_ASSIGNMENT
        q.tasks.append(spec)
        self._pump(q)

    def _pump(self, q: KeyQueue) -> None:
        tasks = q.tasks
        while tasks:
            best = None
            for lw in q.leases:
                if not lw.dead and lw.conn is not None and len(lw.in_flight) < self.max_in_flight:
                    if best is None or len(lw.in_flight) < len(best.in_flight):
                        best = lw
            if best is None:
                break
            self._push(best, tasks.popleft())
        want = min(len(tasks), self.max_pending)
        while q.pending_leases < want:
            q.pending_leases += 1
            self.cw.loop.create_task(self._request_lease(q, tasks[0]))
        if not tasks:
            for lw in list(q.leases):
                if not lw.in_flight:
                    # linger a moment: the next task of this key (a get-submit loop) reuses
                    # the lease instead of paying a raylet round trip
                    self.cw.loop.call_later(self.linger, self._maybe_return, q, lw)
        if not tasks and not q.leases and not q.pending_leases:
            self.queues.pop(q.key, None)

    async def _request_lease(self, q: KeyQueue, spec) -> None:
        cw = self.cw
        lw = None
        try:
            lw = await self._lease_loop(spec)
        except exc.TaskUnschedulableError as e:
            q.pending_leases -= 1
            while q.tasks:
                self._finish_failed(q.tasks.popleft(), e)
            self._pump(q)
            return
        except Exception as e:  # a raylet we asked died: try again from the start
            q.pending_leases -= 1
            if not cw.shutting_down:
                TRACER.on and step("core_worker", "task", "lease_request_failed", 1, detail={"error": repr(e)})
                await asyncio.sleep(0.05)
                self._pump(q)
            return
        q.pending_leases -= 1
        if lw is None:
            self._pump(q)
            return
        if not q.tasks:  # the work went elsewhere meanwhile: give the worker back
            self._send_return(lw)
            self._pump(q)
            return
        try:
            lw.conn = await cw.conn_to(lw.address)
        except OSError:
            self._send_return(lw, disconnect=True)
            self._pump(q)
            return
        if self._dead(lw.node_id):  # its node was declared dead while we connected
            drop_connection(lw.conn)
            self._pump(q)
            return
        q.leases.append(lw)
        self._pump(q)

    async def _lease_loop(self, spec) -> LeasedWorker | None:
        """Ask raylets for a lease, following spillback, until one grants."""
        cw = self.cw
        node_id, address, why = self.choose_raylet(spec)
        spilled = False
        for _hop in range(16):
            hold = TRACER.on and checkpoint("core_worker", "task", "request_lease", task=spec.task_id.hex(),
                              node=node_id.hex() if node_id else None,
                              detail={"raylet": cw.label_of(node_id), "why": why,
                                      "resources": spec.resources, "name": spec.name,
                                      "global": why.endswith(ASK_GLOBAL)})
            if hold:
                await hold
            deps = [(a[1], a[2]) for a in spec.args if a[0] == ARG_REF]
            try:
                conn = await cw.conn_to(address)
                fut = conn.call("request_worker_lease", spec.resources,
                                spec.placement_resources, self._strategy(spec), spilled,
                                cw.address, spec.task_id, spec.name, spec.actor_id, deps)
                waiting = self.asking.setdefault(node_id, set())
                waiting.add(fut)  # failed at once if the node is declared dead meanwhile
                try:
                    reply = await fut
                finally:
                    waiting.discard(fut)
            except OSError:
                if node_id is not None and node_id != cw.node_id:
                    cw.unreachable.add(node_id)  # its raylet is gone: treat the node as dead
                raise
            kind = reply[0]
            if kind == "granted":
                _, lease_id, worker_id, waddr, wnode, pid = reply
                lw = LeasedWorker(lease_id, worker_id, waddr, wnode, address, pid)
                if self._dead(wnode):  # a late grant from a node already DEAD: fenced
                    raise ConnectionLost(f"{cw.label_of(wnode)} is dead")
                return lw
            if kind == "spillback":
                _, node_id, address, why = reply
                spilled = True
                TRACER.on and step("core_worker", "task", "follow_spillback",
                                   task=spec.task_id.hex(),
                     node=node_id.hex(), detail={"to": cw.label_of(node_id), "why": why})
                continue
            if kind == "unschedulable":
                raise exc.TaskUnschedulableError(reply[1])
            if kind == "cancelled":
                return None
        raise exc.RaySystemError("lease request bounced between raylets too many times")

    def _strategy(self, spec) -> tuple:
        """A soft affinity to a node we found unreachable (dying) no longer binds."""
        st = spec.strategy
        if st[0] == "NODE_AFFINITY" and st[2] and self._dead(st[1]):
            return ("DEFAULT",)
        return st

    def _dead(self, node_id) -> bool:
        """Declared DEAD by the GCS, or its raylet refused us (dying)."""
        return node_id != self.cw.node_id and self.cw.raylet_address_of(node_id) is None

    def _push(self, lw: LeasedWorker, spec) -> None:
        tid = spec.task_id
        if tid in self.cancelled:
            return
        lw.in_flight[tid] = spec
        self.running_on[tid] = lw
        self.states[tid] = SUBMITTED_TO_WORKER
        hold = TRACER.on and checkpoint(
            "core_worker", "task", "push_task", task=tid.hex(), node=lw.node_id.hex(),
            detail={"worker": lw.worker_id.hex()[:8], "name": spec.name,
                    "to": self.cw.label_of(lw.node_id)})
        self.after(hold, self._send_push, lw, spec)

    def _send_push(self, lw: LeasedWorker, spec) -> None:
        try:
            fut = lw.conn.call("push_task", spec)
        except ConnectionLost:
            fut = self.cw.loop.create_future()
            fut.set_exception(ConnectionLost("worker connection closed"))
        fut.add_done_callback(lambda f: self._on_reply(lw, spec, f))

    def after(self, hold, fn, *args) -> None:
        """Run ``fn(*args)`` now, or once a paused step (step mode) is released."""
        if not hold:
            fn(*args)
            return

        async def resume():
            await hold
            fn(*args)
        self.cw.loop.create_task(resume())

    # -- 5. the reply ----------------------------------------------------------------
    def _on_reply(self, lw: LeasedWorker, spec, fut) -> None:
        tid = spec.task_id
        if lw.in_flight.pop(tid, None) is None:
            # fenced: failed over when its node was declared dead; this reply is stale
            if not fut.cancelled():
                fut.exception()  # (retrieved, so asyncio does not warn about it)
            return
        self.running_on.pop(tid, None)
        q = self.queues.get(spec.scheduling_key())
        if fut.cancelled() or fut.exception() is not None:
            self._on_worker_failed(lw, q)
            self._retry_or_fail(spec, "worker_died")
        else:
            self.cw.task_manager.complete_task(spec, fut.result(), lw.node_id)
            if self.cw.lecture_mode and q is not None:
                # the lecture's design schedules every task afresh: no lease is reused
                self._return_lease(q, lw)
        if q is not None:
            self._pump(q)

    def _finish_failed(self, spec, error) -> None:
        self.cw.task_manager.fail_task(spec, error)

    def task_done(self, tid: bytes, failed: bool) -> None:
        self.states.pop(tid, None)
        self.specs.pop(tid, None)
        self.cancelled.discard(tid)

    # -- returning leases ------------------------------------------------------------
    def _maybe_return(self, q, lw) -> None:
        if not lw.in_flight and not q.tasks and lw in q.leases:
            self._return_lease(q, lw)
            if not q.leases and not q.pending_leases:
                self.queues.pop(q.key, None)

    def _return_lease(self, q: KeyQueue, lw: LeasedWorker) -> None:
        if lw in q.leases:
            q.leases.remove(lw)
        self._send_return(lw)

    def _send_return(self, lw: LeasedWorker, disconnect: bool = False) -> None:
        cw = self.cw
        TRACER.on and step("core_worker", "task", "return_worker", 1, node=lw.node_id.hex(),
             detail={"worker": lw.worker_id.hex()[:8], "disconnect": disconnect})
        conn = cw.conns.get(lw.raylet)
        if conn is not None and not conn.closed:
            conn.send("return_worker", lw.lease_id, disconnect)

    # -- cancellation (failures: see task_failures.py) -----------------------------------
    def cancel(self, tid: bytes, force: bool, recursive: bool = True) -> bool:
        spec = self.specs.get(tid)
        if spec is None:
            return False
        self.cancelled.add(tid)
        for q in self.queues.values():
            if spec in q.tasks:
                q.tasks.remove(spec)
                self._finish_failed(spec, exc.TaskCancelledError(tid.hex()))
                return True
        lw = self.running_on.get(tid)
        if lw is not None and lw.conn is not None and not lw.conn.closed:
            lw.conn.send("cancel_task", tid, force, recursive)
            return True
        if self.states.get(tid) == PENDING_ARGS_AVAIL:
            self._finish_failed(spec, exc.TaskCancelledError(tid.hex()))
        return True

    def cancel_children(self, parent: bytes, force: bool) -> int:
        """Recursive cancel, in the worker running ``parent``: cancel every task it submitted
        that is still pending or running (their workers cancel their own children in turn)."""
        children = [tid for tid, spec in self.specs.items() if spec.parent_task_id == parent]
        for tid in children:
            self.cancel(tid, force)
        return len(children)

    def num_pending(self) -> int:
        return len(self.specs)


__all__ = ["NormalTaskSubmitter", "LeasedWorker", "FINISHED", "FAILED", "IN_PLASMA"]
