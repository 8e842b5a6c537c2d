"""The raylet process: one per simulated node.

The shell around the node's local scheduler (``lease_manager.py``), worker
pool (``worker_pool.py``) and, with the object store, the node's shared-memory
store and object manager. It registers the node with the GCS, answers the
GCS's health checks and resource pulls, grants leases to owners, and starts
workers through the node's zygote.

Run as ``python -m raylab.raylet.server --session DIR --index 2 --label N2 ...``.
"""
from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time

from raylab import exceptions as exc
from raylab import ids
from raylab.effects import Call, Reply, Send
from raylab.process_shell import TraceUplink, common_args, on_signals, run_effects, watch_lifeline
from raylab.raylet import zygote
from raylab.raylet.lease_manager import LeaseManager, LeaseRequest
from raylab.raylet.object_directory import make_directory
from raylab.raylet.object_manager import ObjectManager
from raylab.raylet.worker_pool import WorkerInfo
from raylab.session import SessionInfo
from raylab.tracing import cause
from raylab.tracing.emit import TRACER, step
from raylab.transport import connect, serve
from raylab.transport import run as run_loop


class Raylet:
    def __init__(self, session: SessionInfo, index: int, label: str, resources: dict,
                 store_memory: int, head: bool, zygote_pid: int, zygote_fd: int, arena_fd: int):
        self.session = session
        self.cfg = session.config
        self.index = index
        self.label = label
        self.node_id = ids.node_id(index)
        self.address = session.socket(f"r{index}")
        self.head = head
        self.store_memory = store_memory
        self.leases = LeaseManager(self.node_id, label, resources, self.cfg)
        self.pending: dict[int, tuple] = {}      # request key -> (future, connection)
        self.worker_conns: dict[bytes, object] = {}
        self.gcs = None
        self.zygote_pid = zygote_pid
        self.zygote_fd = zygote_fd
        self.loop = asyncio.get_running_loop()
        self.stopping = asyncio.Event()
        self.uplink = TraceUplink(self.loop, session.token, label, "raylet",
                                  f"{label}.raylet")
        self.trace_config = (False, None, None)
        self._key = 0
        self.conns: dict[str, object] = {}       # other raylets and owners, by address
        self._connecting: dict[str, asyncio.Task] = {}
        self.objects = ObjectManager(self, arena_fd, store_memory, session.spill_dir(label))
        self.directory = make_directory(self, self.cfg.control_plane)
        self.node_waiters: list[tuple[int, asyncio.Future]] = []   # (count, future)

    def nodes_known(self) -> int:
        return 1 + len(self.leases.labels.keys() - {self.node_id})

    def wake_node_waiters(self) -> None:
        known = self.nodes_known()
        for n, fut in [w for w in self.node_waiters if w[0] <= known]:
            self.node_waiters.remove((n, fut))
            if not fut.done():
                fut.set_result(True)

    # -- effects -----------------------------------------------------------------------
    def apply(self, e):
        t = type(e)
        if t is Reply:
            fut, _conn = self.pending.pop(e.key, (None, None))
            if fut is not None and not fut.done():
                cause.resolve(fut, e.value)  # the reply names the step that decided it
        elif t is Send:
            conn = self.pending.get(e.to, (None, None))[1] if isinstance(e.to, int) else e.to
            if conn is not None and not conn.closed:
                conn.send(e.method, *e.args)
        elif t is Call:
            getattr(self, "do_" + e.action)(*e.args)

    async def run(self, effects) -> None:
        await run_effects(effects, self.apply)

    def run_soon(self, effects) -> None:
        if effects:
            self.loop.create_task(self.run(effects))

    def do_global_schedule(self, req) -> None:
        """The lecture's Step 2: forward the task to the GCS's global scheduler, which
        schedules it on a node and answers once that node's local scheduler granted it."""
        async def ask():
            try:
                reply = await self.gcs.call(
                    "global_schedule", req.task_id, req.name, req.resources, req.placement,
                    req.strategy, req.owner, req.deps, self.node_id)
            except Exception as e:  # the GCS failed us: the owner's request fails, it asks again
                fut = self.pending.pop(req.key, (None, None))[0]
                if fut is not None and not fut.done():
                    fut.set_exception(exc.RaySystemError(f"the global scheduler failed: {e!r}"))
                return
            wanted = req.key in self.pending
            await self.run(self.leases.placement.answered(self.leases, req, reply, wanted))
        self.loop.create_task(ask())

    def do_forward_return(self, address: str, lease_id: int, disconnect: bool) -> None:
        """Hand a worker back to the node whose local scheduler granted it."""
        async def forward():
            try:
                conn = await self.conn_to(address)
                conn.send("return_worker", lease_id, disconnect)
            except OSError:
                pass  # that node is gone, and its workers with it
        self.loop.create_task(forward())

    def do_fetch_args(self, key: int, deps: list) -> None:
        """Before granting a lease, bring the task's arguments to this node (in parallel,
        one transfer per object however many tasks want it)."""
        async def fetch(oid, owner):
            try:
                await self.objects.pull(oid, owner, [])
            except Exception:
                pass  # a lost argument is the worker's to recover, through its owner

        async def all_args():
            await asyncio.gather(*(fetch(oid, owner) for oid, owner in deps))
            await self.run(self.leases.args_ready(key))

        self.loop.create_task(all_args())

    def do_start_worker(self, counter: int) -> None:
        os.write(self.zygote_fd, b"%d\n" % counter)

    def do_report_worker_failure(self, address: str) -> None:
        """Tell the GCS, which tells everyone: objects this worker owned are gone with it."""
        if self.gcs is not None and not self.gcs.closed:
            self.gcs.send("report_worker_failure", address)

    def do_kill_worker(self, worker_id: bytes) -> None:
        conn = self.worker_conns.get(worker_id)
        w = self.leases.pool.workers.get(worker_id)
        pid = w.pid if w is not None else None
        if conn is not None and not conn.closed:
            conn.send("exit_worker", "killed by its raylet")
        if pid:
            self.loop.call_later(0.5, _kill_pid, pid)

    # -- other processes ----------------------------------------------------------------
    async def conn_to(self, address: str):
        c = self.conns.get(address)
        if c is not None and not c.closed:
            return c
        task = self._connecting.get(address)
        if task is None:
            task = self._connecting[address] = self.loop.create_task(
                connect(address, self.session.token, RayletHandler(self), name=address))
            task.add_done_callback(lambda _t: self._connecting.pop(address, None))
        c = await asyncio.shield(task)
        self.conns[address] = c
        return c

    def raylet_address(self, node_id: bytes) -> str | None:
        if node_id == self.node_id:
            return self.address
        return self.leases.addresses.get(node_id)

    def label_of(self, node_id: bytes) -> str:
        return self.leases._label_of(node_id)

    def new_key(self) -> int:
        self._key += 1
        return self._key

    # -- start up -----------------------------------------------------------------------
    async def register(self) -> None:
        # prestart workers first: the node joins the cluster with them ready, so the same
        # program always gets the same workers (N2.w1 before N2.w2)
        n = min(self.cfg.num_prestart_workers, int(self.leases.total.get("CPU", 0)))
        for _ in range(n):
            self.do_start_worker(self.leases.pool.next_counter())
        deadline = self.loop.time() + 30
        while self.leases.pool.num_alive() < n and self.loop.time() < deadline:
            await asyncio.sleep(0.005)
        self.gcs = await connect(self.session.gcs_address, self.session.token,
                                 RayletHandler(self), name="gcs", retry=True, timeout=30)
        nodes, view, trace_cfg = await self.gcs.call(
            "register_node", self.node_id, self.label, self.address, self.leases.total,
            os.getpid(), self.head)
        for n in nodes:
            if n["Alive"]:
                self.leases.node_added(bytes.fromhex(n["NodeID"]), n["RayletSocketName"],
                                       n["NodeName"])
        self.wake_node_waiters()
        self.run_soon(self.leases.update_view(view))
        await self.set_trace_config(*trace_cfg)

    async def set_trace_config(self, on, rules, collector) -> None:
        self.trace_config = (on, rules, collector)
        self.uplink.configure(on, rules, collector)
        await self.all_workers("trace_config", on, rules, collector)

    async def all_workers(self, method: str, *args) -> list:
        conns = [c for c in self.worker_conns.values() if not c.closed]
        results = await asyncio.gather(
            *(asyncio.wait_for(c.call(method, *args), 5) for c in conns), return_exceptions=True)
        return list(results)


class RayletHandler:
    def __init__(self, raylet: Raylet):
        self.r = raylet
        self.worker_id = None
        self.owner = None

    def connection_lost(self, conn, exc):
        r = self.r
        if conn is r.gcs:
            r.stopping.set()  # the cluster is going away
            return
        r.objects.disconnect(conn)
        r.objects.push_end_all(conn)
        if self.worker_id is not None:
            r.worker_conns.pop(self.worker_id, None)
            r.run_soon(r.leases.worker_died(self.worker_id))
        if self.owner is not None:
            keys = {k for k, (_f, c) in r.pending.items() if c is conn}
            for k in keys:
                fut, _ = r.pending.pop(k)
                if not fut.done():
                    fut.cancel()
            r.run_soon(r.leases.cancel_requests(keys) + r.leases.owner_died(self.owner))

    # -- owners ask for workers ----------------------------------------------------------
    async def rpc_request_worker_lease(self, conn, resources, placement, strategy, spilled,
                                       owner, task_id, name, actor_id, deps=()):
        r = self.r
        self.owner = owner
        key, fut = self._pending(conn)
        req = self._request(key, resources, placement, strategy, spilled, owner, task_id, name,
                            actor_id, deps)
        await r.run(r.leases.request(req))
        return await fut

    async def rpc_schedule_task(self, conn, task_id, name, resources, placement, strategy,
                                owner, deps):
        """The lecture's Step 4: the GCS's global scheduler schedules a task on this node;
        the answer (the grant) goes back to it."""
        r = self.r
        key, fut = self._pending(conn)
        req = self._request(key, resources, placement, strategy, True, owner, task_id, name,
                            None, deps)
        await r.run(r.leases.scheduled_by_gcs(req))
        return await fut

    def _pending(self, conn):
        r = self.r
        key = r.new_key()
        fut = r.loop.create_future()
        r.pending[key] = (fut, conn)
        return key, fut

    def _request(self, key, resources, placement, strategy, spilled, owner, task_id, name,
                 actor_id, deps) -> LeaseRequest:
        here = self.r.objects.core.objects
        absent = [oid for oid, _o in deps if oid not in here]
        return LeaseRequest(key, resources, placement if placement is not None else resources,
                            strategy, spilled, owner, task_id, name, actor_id,
                            deps=list(deps), missing=len(absent), absent=absent)

    def rpc_cancel_worker_lease(self, conn, task_id):
        """The requester no longer wants the lease (a killed actor): drop its request."""
        r = self.r
        keys = {q.key for q in r.leases.queue + r.leases.infeasible if q.task_id == task_id}
        r.run_soon(r.leases.cancel_requests(keys))
        return bool(keys)

    def rpc_return_worker(self, conn, lease_id, disconnect):
        r = self.r
        r.run_soon(r.leases.return_worker(lease_id, disconnect, time.monotonic()))

    def rpc_kill_worker(self, conn, worker_id, force=True):
        self.r.do_kill_worker(worker_id)
        return True

    # -- workers --------------------------------------------------------------------
    def rpc_register_worker(self, conn, worker_id, pid, address):
        r = self.r
        self.worker_id = worker_id
        r.worker_conns[worker_id] = conn
        counter = int(address.rsplit("_", 1)[1].split(".")[0])
        r.run_soon(r.leases.worker_registered(WorkerInfo(worker_id, counter, pid, address)))
        return r.trace_config

    def rpc_lease_gpu_ids(self, conn, worker_id):
        """A worker asks which GPUs its current lease holds (``ray.get_gpu_ids()``)."""
        from raylab.raylet.gpu_ids import indices
        lease = self.r.leases._lease_of(worker_id)
        return indices(lease.gpus) if lease is not None else []

    def rpc_worker_blocked(self, conn, worker_id):
        self.r.run_soon(self.r.leases.worker_blocked(worker_id))

    def rpc_worker_unblocked(self, conn, worker_id):
        self.r.run_soon(self.r.leases.worker_unblocked(worker_id))

    # -- the GCS: health checks, resource pulls, broadcasts ---------------------------
    def rpc_ping(self, conn):
        return True

    def rpc_get_resources(self, conn):
        return self.r.leases.report()

    def rpc_resource_view(self, conn, snapshot):
        self.r.run_soon(self.r.leases.update_view(snapshot))

    def rpc_node_added(self, conn, info):
        self.r.leases.node_added(bytes.fromhex(info["NodeID"]), info["RayletSocketName"],
                                 info["NodeName"])
        self.r.wake_node_waiters()

    async def rpc_wait_for_nodes(self, conn, count: int):
        """``ray.init``: answer once this raylet knows ``count`` nodes (itself included), so
        the first steps anyone traces name every node (N1, not "?")."""
        if self.r.nodes_known() >= count:
            return True
        fut = self.r.loop.create_future()
        self.r.node_waiters.append((count, fut))
        return await fut

    def rpc_node_dead(self, conn, node_id, label, cause):
        TRACER.on and step("raylet", "failure", "node_dead_received", node=node_id.hex(),
                           detail={"label": label, "cause": cause})
        self.r.run_soon(self.r.leases.node_dead(node_id))

    def rpc_chaos_note(self, conn, kind, target):
        pass  # it only carries the injector's clock (see raylab.chaos)

    def rpc_worker_failure(self, conn, address):
        """The GCS says a worker died somewhere: objects it owned are gone for good."""
        self.r.objects.owner_died(address)

    async def rpc_trace_config(self, conn, on, rules, collector):
        await self.r.set_trace_config(on, rules, collector)
        return True

    async def rpc_trace_flush(self, conn):
        TRACER.flush()
        out = {TRACER.pid: TRACER.last_seq()}
        for part in await self.r.all_workers("trace_flush"):
            if isinstance(part, dict):
                out.update(part)
        return out

    # -- the node's object store: its own clients -------------------------------------------
    def rpc_store_hello(self, conn, address):
        self.r.objects.clients[conn] = address

    def rpc_store_create(self, conn, oid, size, owner, primary):
        return self.r.objects.create(conn, oid, size, owner, primary)

    def rpc_store_seal(self, conn, oid):
        return self.r.objects.seal(conn, oid)  # (lecture mode: answered once the GCS has it)

    def rpc_store_abort(self, conn, oid):
        objects = self.r.objects
        if oid in objects.core.objects:
            objects.apply(objects.core.abort(oid))

    def rpc_store_get(self, conn, oid, owner, hints):
        return self.r.objects.get_now(conn, oid) or self.r.objects.get(conn, oid, owner, hints)

    async def rpc_store_pull(self, conn, oid, owner, hints):
        await self.r.objects.pull(oid, owner, hints)
        return True

    def rpc_store_contains(self, conn, oid):
        return oid in self.r.objects.core.objects

    def rpc_store_release(self, conn, oid):
        self.r.objects.release(conn, oid)

    def rpc_store_busy(self, conn, oid):
        self.r.objects.busy(conn, oid)

    def rpc_store_delete(self, conn, oid):
        self.r.objects.delete(oid)

    # -- another node's object manager pulls from ours -------------------------------------
    def rpc_push_begin(self, conn, oid):
        return self.r.objects.push_begin(conn, oid)

    def rpc_read_chunk(self, conn, oid, start, length):
        return self.r.objects.read_chunk(conn, oid, start, length)

    def rpc_push_end(self, conn, oid):
        self.r.objects.push_end(conn, oid)

    # -- views ------------------------------------------------------------------------
    def rpc_get_node_state(self, conn):
        r = self.r
        lm = r.leases
        return {
            "node_id": r.node_id, "label": r.label, "total": lm.total,
            "available": lm.available,
            "workers": [(w.worker_id, w.counter, w.pid, w.state, w.task_name, w.actor_id)
                        for w in sorted(lm.pool.workers.values(), key=lambda w: w.counter)],
            "queued": [(q.name, q.placement) for q in lm.queue],
            "infeasible": [(q.name, q.placement) for q in lm.infeasible],
            "store": r.objects.contents(),
        }


def _kill_pid(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


async def serve_raylet(args, session, zygote_pid, zygote_fd) -> None:
    raylet = Raylet(session, args.index, args.label, json.loads(args.resources),
                    args.object_store_memory, args.head, zygote_pid, zygote_fd, args.arena_fd)
    loop = asyncio.get_running_loop()
    server = await serve(raylet.address, session.token, lambda: RayletHandler(raylet),
                         name=f"raylet-{args.label}")
    watch_lifeline(loop, args.lifeline_fd, raylet.stopping.set)
    on_signals(loop, raylet.stopping.set)
    await raylet.register()
    await raylet.stopping.wait()
    TRACER.on = False
    server.close()
    raylet.objects.shutdown()  # spill files go with the node


def main(argv=None) -> None:
    p = common_args("raylab raylet")
    p.add_argument("--index", type=int, required=True)
    p.add_argument("--label", required=True)
    p.add_argument("--resources", required=True)
    p.add_argument("--object-store-memory", type=int, default=0)
    p.add_argument("--head", action="store_true")
    p.add_argument("--arena-fd", type=int, required=True)
    args = p.parse_args(argv)
    session = SessionInfo.load(args.session)
    node_id = ids.node_id(args.index)
    # fork the zygote first, while this process has no threads and no event loop
    zpid, zfd = zygote.start(session.dir, node_id, args.label,
                             session.socket(f"r{args.index}"), args.arena_fd,
                             close_fds=(args.lifeline_fd,))
    try:
        run_loop(serve_raylet(args, session, zpid, zfd))
    finally:
        # take the whole node down with us: zygote and workers share our process group
        try:
            os.killpg(os.getpgid(0), signal.SIGKILL)
        finally:
            os._exit(0)


if __name__ == "__main__":
    main(sys.argv[1:])
