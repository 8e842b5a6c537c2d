"""The core worker: the Ray 2 *owner* that lives inside the driver and every worker.

It is the process's link to the cluster. Its state (the ownership table, the
in-process memory store, the task submitter) is driven by a private asyncio
loop on a background thread (the "io thread"), so the user's thread only
does quick work (build a task spec, look up the store) and sleeps in
``ray.get``; in a Jupyter kernel nothing blocks the kernel's own loop.

This file is the shell: start-up, connections and reference counting
plumbing; ``handler.py`` is what other processes may call on it. The owner-side protocols
live beside it: ``submitter.py`` (tasks), ``objects.py`` (put/get/wait).
"""
from __future__ import annotations

import asyncio
import collections
import os
import threading

from raylab import ids
from raylab.core_worker import current
from raylab.core_worker.current import DRIVER, WORKER
from raylab.core_worker.handler import CoreWorkerHandler, print_worker_lines
from raylab.core_worker.memory_store import ERROR, IN_PLASMA, VALUE, MemoryStore
from raylab.core_worker.objects import ObjectApi
from raylab.core_worker.reference_table import FREE, RELEASED, ReferenceTable
from raylab.core_worker.actor_submitter import ActorSubmitter
from raylab.core_worker.submitter import NormalTaskSubmitter
from raylab.core_worker.task_context import TaskContext, running
from raylab.core_worker.task_manager import TaskManager
from raylab.tracing.emit import TRACER, step
from raylab.transport import ConnectionLost, connect, new_event_loop, serve

# how long a dropped ObjectRef may wait before the io thread counts it (see remove_local_ref)
DELETE_SWEEP_PERIOD = 0.05



class CoreWorker:
    def __init__(self, session, mode: str, node_id: bytes, node_label: str, raylet_address: str,
                 worker_id: bytes, address: str):
        self.session = session
        self.cfg = session.config
        self.mode = mode
        self.node_id = node_id
        self.node_label = node_label
        self.raylet_address = raylet_address
        self.worker_id = worker_id
        self.address = address
        self.pid = os.getpid()
        self.job_id = None
        self.namespace = None
        self.loop = new_event_loop()
        self.thread = threading.Thread(target=self._run_loop, name="raylab-io", daemon=True)
        self.lock = threading.Lock()
        self.refs = ReferenceTable(address)
        self.store = MemoryStore(self.call_soon)
        self.objects = ObjectApi(self)
        self.submitter = NormalTaskSubmitter(self)
        self.task_manager = TaskManager(self)
        self.plasma = None          # the node's shared-memory store client (object store)
        self.actors = ActorSubmitter(self)
        self.executor = None        # the task executor, in worker processes
        self.conns: dict[str, object] = {}
        self._connecting: dict[str, asyncio.Future] = {}
        self.nodes: dict[bytes, dict] = {}
        self.node_labels: dict[bytes, str] = {}
        self.unreachable: set = set()  # nodes whose raylet refused us (dying, not yet DEAD)
        self.gcs = None
        self.raylet = None
        self.server = None
        self.main_ctx = TaskContext(None)  # see task_context.py
        # The lecture's design keeps every object (not only large ones) in the node's
        # object store, so the GCS object table can tell where it is.
        self.lecture_mode = self.cfg.control_plane == "centralized"
        self.store_threshold = 0 if self.lecture_mode else self.cfg.max_direct_call_object_size
        self.exported: set = set()
        self._deleted = collections.deque()
        self._delete_scheduled = False
        self.shutting_down = False
        self.listeners: dict[str, list] = {}   # pubsub method -> callbacks (views, tests)
        self.on_log = None                     # driver: prints worker output
        self.infeasible_warned: set = set()    # resource shapes already warned about

    # -- the io thread ---------------------------------------------------------
    def _run_loop(self):
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()
        if self.shutting_down:
            _close_loop(self.loop)

    def call_soon(self, fn, *args):
        """Run ``fn(*args)`` on the io thread (from any thread)."""
        if threading.get_ident() == self.thread.ident:
            fn(*args)
        else:
            try:
                self.loop.call_soon_threadsafe(fn, *args)
            except RuntimeError:  # the loop is closed: raylab was shut down
                if not self.shutting_down:
                    raise

    def run_sync(self, coro, timeout: float | None = None):
        """Run a coroutine on the io thread and wait for its result (user threads only)."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def rpc_sync(self, conn, method: str, *args, timeout: float | None = None):
        """Call ``method`` on a peer from a user thread and wait for the answer."""
        async def go():
            return await conn.call(method, *args)
        return self.run_sync(go(), timeout)

    def on_io_thread(self) -> bool:
        return threading.get_ident() == self.thread.ident

    # -- start and stop ---------------------------------------------------------
    def start(self, timeout: float = 30.0) -> None:
        self.thread.start()
        self.run_sync(self._start(), timeout)
        current.CORE_WORKER = self

    async def _start(self) -> None:
        token = self.session.token
        self.server = await serve(self.address, token, lambda: CoreWorkerHandler(self),
                                  name=f"core-worker-{self.mode}")
        if self.mode == DRIVER:
            self.gcs = await connect(self.session.gcs_address, token, CoreWorkerHandler(self),
                                     name="gcs", retry=True, timeout=60)
            job, nodes, trace_cfg = await self.gcs.call("register_job", self.address, self.pid,
                                                        self.namespace)
            self.job_id = job
            self.main_ctx = TaskContext(ids.driver_task_id(job))  # all driver threads
            for n in nodes:
                self._learn_node(n)
        self.raylet = await self.conn_to(self.raylet_address, retry=True)
        self.loop.call_later(DELETE_SWEEP_PERIOD, self._sweep_deleted)

    async def ensure_gcs(self):
        if self.gcs is None or self.gcs.closed:
            self.gcs = await connect(self.session.gcs_address, self.session.token,
                                     CoreWorkerHandler(self), name="gcs", retry=True)
            await self.gcs.call("subscribe", ["node", "actor", "worker"])
            for n in await self.gcs.call("get_nodes"):
                self._learn_node(n)
        return self.gcs

    def attach_plasma(self, arena_fd: int) -> None:
        """Map this node's shared-memory object store (large objects go there)."""
        from raylab.core_worker.plasma import PlasmaClient
        self.plasma = PlasmaClient(self, arena_fd)

    async def plasma_fetch(self, oid: bytes, payload) -> tuple:
        """A borrowed object is in shared memory somewhere: remember where (io thread)."""
        size, locations = payload
        e = self.refs.entries.get(oid)
        if e is not None:
            e.size = size
            e.locations.update(locations)
        return (IN_PLASMA, size)

    def gcs_for_user(self):
        """The GCS connection, opened on first use (workers connect lazily)."""
        if self.gcs is None or self.gcs.closed:
            self.run_sync(self.ensure_gcs(), 30)
        return self.gcs

    def shutdown(self) -> None:
        """Stop the io thread; wake anything still waiting so no thread hangs."""
        if self.shutting_down:
            return
        self.shutting_down = True
        current.CORE_WORKER = None
        TRACER.release_all()
        self.store.fail_all_waiters()
        if self.plasma is not None:
            self.plasma.close()

        async def close():
            for c in list(self.conns.values()):
                c.close()
            if self.gcs is not None:
                self.gcs.close()
            if self.server is not None:
                self.server.close()

        try:
            asyncio.run_coroutine_threadsafe(close(), self.loop).result(1.0)
        except Exception:
            pass
        self.loop.call_soon_threadsafe(self.loop.stop)
        if threading.get_ident() != self.thread.ident:
            self.thread.join(timeout=1.0)

    # -- connections ------------------------------------------------------------
    async def conn_to(self, address: str, retry: bool = False):
        """One connection per peer, reused; both directions share it (ordered messages)."""
        c = self.conns.get(address)
        if c is not None and not c.closed:
            return c
        fut = self._connecting.get(address)
        if fut is None:
            fut = self._connecting[address] = self.loop.create_task(self._open(address, retry))
        try:
            return await asyncio.shield(fut)
        finally:
            if fut.done():
                self._connecting.pop(address, None)

    async def _open(self, address: str, retry: bool):
        c = await connect(address, self.session.token, CoreWorkerHandler(self), name=address,
                          retry=retry, timeout=60)
        c.peer = address
        c.send("hello", self.address)
        self.conns[address] = c
        return c

    def peer_lost(self, conn) -> None:
        addr = conn.peer
        if addr is not None and self.conns.get(addr) is conn:
            del self.conns[addr]
        if addr is not None and not self.shutting_down:
            self.objects.on_peer_lost(addr)

    # -- nodes ---------------------------------------------------------------------
    def _learn_node(self, n: dict) -> None:
        nid = bytes.fromhex(n["NodeID"])
        self.nodes[nid] = n
        self.node_labels[nid] = n["NodeName"]

    def raylet_address_of(self, node_id: bytes) -> str | None:
        n = self.nodes.get(node_id)
        if n is None or not n["Alive"] or node_id in self.unreachable:
            return None
        return n["RayletSocketName"]

    def label_of(self, node_id: bytes | None) -> str:
        if node_id is None:
            return "?"
        return self.node_labels.get(node_id, node_id.hex()[:6])

    def alive_nodes(self) -> set:
        return {nid for nid, n in self.nodes.items() if n["Alive"]} - self.unreachable

    def export(self, function_id: bytes, name: str, blob: bytes) -> None:
        """Put a remote function into the GCS function table (Step 0), without waiting
        (while tracing, wait: the trace then shows Step 0 before the task's Step 1)."""
        if TRACER.on and not TRACER.rules.active and not self.on_io_thread():
            self.rpc_sync(self.gcs_for_user(), "kv_put", "fun", function_id, (name, blob),
                          timeout=30)
            return
        self.call_soon(self._export, function_id, (name, blob))

    def _export(self, function_id: bytes, entry: tuple) -> None:
        if self.gcs is not None and not self.gcs.closed:
            self.gcs.send("kv_put", "fun", function_id, entry)
        else:
            self.loop.create_task(self._export_async(function_id, entry))

    async def _export_async(self, function_id: bytes, entry: tuple) -> None:
        gcs = await self.ensure_gcs()
        gcs.send("kv_put", "fun", function_id, entry)

    def notify(self, method: str, *args) -> None:
        for cb in self.listeners.get(method, ()):
            try:
                cb(*args)
            except Exception:
                pass

    # -- ids --------------------------------------------------------------------
    @property
    def ctx(self) -> TaskContext:
        """The task running in this thread or coroutine, else the process's main one."""
        return running() or self.main_ctx

    def next_task_id(self) -> bytes:
        ctx = self.ctx
        return ids.normal_task_id(self.current_job(), ctx.task_id, ctx.next_task_index())

    def next_put_id(self) -> bytes:
        ctx = self.ctx
        return ids.object_id(ctx.task_id, ctx.next_put_index())

    def current_job(self) -> bytes:
        return self.job_id if self.job_id is not None else ids.job_of_task(self.ctx.task_id)

    def current_task_id(self) -> bytes:
        return self.ctx.task_id

    # -- reference counting plumbing ------------------------------------------------
    def add_local_ref(self, oid: bytes, owner: str) -> None:
        with self.lock:
            e = self.refs.entries.get(oid)
            new_borrow = e is None and owner != self.address
            self.refs.add_local(oid, owner)
        if new_borrow and owner:
            self.call_soon(self.objects.register_borrow, oid, owner)

    def remove_local_ref(self, oid: bytes) -> None:
        # Called from __del__ (any thread, maybe inside a GC pass): defer the work to the io
        # thread. From another thread, do not wake it for this: it drains the queue when it
        # next completes a task, or at the next sweep. On two cores, a wake-up per dropped
        # ref takes a CPU from the process that is about to answer our next call.
        self._deleted.append(oid)
        if not self._delete_scheduled and threading.get_ident() == self.thread.ident:
            self._delete_scheduled = True
            self.loop.call_soon(self._process_deleted)

    def settle_refs(self, timeout: float = 5.0) -> None:
        """Count the refs dropped so far now, not at the next sweep: what shows the cluster
        "as of now" (a trace flush, a view) shows their objects freed."""
        if not self._deleted:
            return
        if self.on_io_thread():
            self._process_deleted()
            return

        async def drain():
            self._process_deleted()
        self.run_sync(drain(), timeout)

    def _sweep_deleted(self) -> None:
        """io thread, every DELETE_SWEEP_PERIOD: drop the refs that went out of scope."""
        if self._deleted and not self._delete_scheduled:
            self._process_deleted()
        if not self.shutting_down:
            self.loop.call_later(DELETE_SWEEP_PERIOD, self._sweep_deleted)

    def _process_deleted(self) -> None:
        self._delete_scheduled = False
        out: list = []
        dq = self._deleted
        with self.lock:
            while dq:
                self.refs.remove_local(dq.popleft(), out)
        if out:
            self.release(out)

    def release(self, actions: list) -> None:
        """Carry out what the reference table decided: free owned objects, drop borrows."""
        for kind, oid, entry in actions:
            self.store.delete(oid)
            if kind == FREE:
                self.objects.free_owned(oid, entry)
            elif kind == RELEASED:
                self.objects.release_borrow(oid, entry)


def _close_loop(loop) -> None:
    """After shutdown, on the io thread: cancel what is still pending (lease requests,
    connection attempts, long polls) and let it unwind, then close the loop, as
    ``asyncio.run`` does; nothing is left to complain at exit ("Task was destroyed but it
    is pending", "Event loop is closed")."""
    try:
        for _ in range(3):  # unwinding may start a task or two more
            pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
            if not pending:
                break
            for t in pending:
                t.cancel()
            loop.run_until_complete(asyncio.wait(pending, timeout=0.5))
            for t in pending:  # retrieved, so none reports "exception was never retrieved"
                if t.done() and not t.cancelled():
                    t.exception()
        loop.run_until_complete(loop.shutdown_asyncgens())
    except Exception:
        pass
    finally:
        loop.close()


__all__ = ["CoreWorker", "CoreWorkerHandler", "DRIVER", "WORKER", "VALUE", "ERROR", "IN_PLASMA",
           "ConnectionLost", "step", "print_worker_lines"]
