"""The actor submitter: the caller's side of actors.

Creating an actor: the owner builds the *creation task* and registers the
actor with the GCS (lecture Step 1); the GCS does the rest. If the
constructor takes ObjectRefs, the actor is registered as
``DEPENDENCIES_UNREADY`` and the owner tells the GCS once they are ready.

Calling a method: the call is sent **straight to the actor's process**, not
through the GCS (the caller learns the actor's address from the GCS once, and
hears about restarts and death by subscription). Calls from one caller go out
in submission order, one connection, so a plain actor runs them in that
order. Calls made before the actor is ALIVE wait here and are sent once it is.

If the actor's process dies, calls in flight are retried after the restart
while ``max_task_retries`` allows; otherwise they fail with ``RayActorError``,
as do later calls to a dead actor.
"""
from __future__ import annotations

import asyncio
import collections
import threading

from raylab import exceptions as exc
from raylab.core_worker.memory_store import ERROR, VALUE
from raylab.core_worker.task_spec import ARG_REF, ARG_VALUE
from raylab.states import ALIVE, DEAD
from raylab.tracing.emit import TRACER, checkpoint, step
from raylab.transport import ConnectionLost


class ActorQueue:
    """One actor, as seen by one caller."""

    __slots__ = ("actor_id", "state", "address", "conn", "pending", "in_flight", "info",
                 "max_task_retries", "watching", "error", "node_id", "lost_address")

    def __init__(self, actor_id: bytes, max_task_retries: int = 0):
        self.actor_id = actor_id
        self.state = None
        self.address = None
        self.conn = None
        self.pending: collections.deque = collections.deque()  # in submission order
        self.in_flight: dict = {}
        self.info = None
        self.max_task_retries = max_task_retries
        self.watching = False
        self.error = None
        self.node_id = None
        self.lost_address = None


class ActorSubmitter:
    def __init__(self, cw):
        self.cw = cw
        self.lock = threading.Lock()  # a queue's order: the caller's thread may send directly
        self.queues: dict[bytes, ActorQueue] = {}
        self.handle_objects: dict[bytes, bytes] = {}   # handle object id -> actor id
        self.detached: set = set()
        self.task_ids: set = set()

    def queue(self, actor_id: bytes, max_task_retries: int = 0) -> ActorQueue:
        q = self.queues.get(actor_id)
        if q is None:
            q = self.queues[actor_id] = ActorQueue(actor_id, max_task_retries)
        return q

    def owns_task(self, task_id: bytes) -> bool:
        return task_id in self.task_ids

    # -- creation (Step 1: register with the GCS) ---------------------------------------
    def register(self, spec, meta: dict) -> dict | None:
        """Caller's thread. Named actors register synchronously (a taken name fails here)."""
        cw = self.cw
        deps = [a[1] for a in spec.args if a[0] == ARG_REF]
        meta = dict(meta, deps_ready=not deps, owner_node=cw.node_id)
        self.queue(spec.actor_id, meta.get("max_task_retries", 0))
        if meta.get("detached"):
            self.detached.add(spec.actor_id)
        TRACER.on and step("core_worker", "actor", "register_actor", actor=spec.actor_id.hex(),
                           detail={"class_name": meta["class_name"], "name": meta.get("name")})
        if meta.get("name"):
            kind, info = cw.rpc_sync(cw.gcs_for_user(), "register_actor", spec, meta, timeout=30)
            if kind == "exists":
                return info
        else:
            cw.call_soon(self._register_async, spec, meta)
        if deps:
            cw.call_soon(self._resolve_creation_args, spec, deps)
        return None

    def _register_async(self, spec, meta) -> None:
        self.cw.loop.create_task(self._register(spec, meta))

    async def _register(self, spec, meta) -> None:
        gcs = await self.cw.ensure_gcs()
        try:
            await gcs.call("register_actor", spec, meta)
        except Exception as e:  # surfaces on the first method call
            q = self.queue(spec.actor_id)
            q.state, q.error = DEAD, exc.ActorDiedError(f"registering the actor failed: {e}")
            self._fail_pending(q)

    def _resolve_creation_args(self, spec, deps) -> None:
        pending = {"n": len(deps)}

        def ready(_oid, _entry):
            pending["n"] -= 1
            if pending["n"] == 0:
                self.cw.loop.create_task(self._deps_ready(spec))

        for oid in deps:
            e = self.cw.refs.entries.get(oid)
            if e is not None and not e.owned and oid not in self.cw.store.objects:
                self.cw.objects.fetch(oid)
            self.cw.store.when_ready(oid, ready)

    async def _deps_ready(self, spec) -> None:
        store = self.cw.store.objects
        for i, a in enumerate(spec.args):
            if a[0] == ARG_REF and store[a[1]][0] == VALUE:
                spec.args[i] = (ARG_VALUE, store[a[1]][1], None)
        gcs = await self.cw.ensure_gcs()
        await gcs.call("actor_dependencies_ready", spec.actor_id, spec)

    def on_handle_freed(self, oid: bytes) -> bool:
        """Every handle to an actor we own is gone: the actor goes too (unless detached)."""
        actor_id = self.handle_objects.pop(oid, None)
        if actor_id is None:
            return False
        if actor_id not in self.detached:
            self.cw.loop.create_task(self._kill(actor_id, True, "all handles are out of scope"))
        return True

    async def _kill(self, actor_id, no_restart, reason) -> None:
        try:
            gcs = await self.cw.ensure_gcs()
            await gcs.call("kill_actor", actor_id, no_restart, reason)
        except (ConnectionLost, OSError):
            pass

    # -- method calls --------------------------------------------------------------------
    def send_now(self, spec) -> bool:
        """Caller's thread: the short path. If the actor is ALIVE, nothing is queued before
        this call and its arguments are values, write it straight to the actor's process."""
        q = self.queues.get(spec.actor_id)
        if TRACER.on or q is None or q.state != ALIVE or q.pending:
            return False
        if any(a[0] == ARG_REF for a in spec.args):
            return False
        with self.lock:
            conn = q.conn
            if q.pending or q.state != ALIVE or conn is None or conn.closed:
                return False
            self.task_ids.add(spec.task_id)
            q.in_flight[spec.task_id] = spec
            conn.call_from_thread("push_task", (spec,),
                                  lambda err, value: self._on_reply(q, spec, err, value))
        return True

    def enqueue(self, spec) -> None:
        """Caller's thread: queue a call (in order, before any later direct send)."""
        q = self.queue(spec.actor_id)
        with self.lock:
            self.task_ids.add(spec.task_id)
            q.pending.append(spec)
        self.cw.call_soon(self._queued, q, spec)

    def _queued(self, q: ActorQueue, spec) -> None:
        """io thread: calls leave in submission order once the actor is ALIVE."""
        for a in spec.args:
            if a[0] == ARG_REF:
                e = self.cw.refs.entries.get(a[1])
                if e is not None and not e.owned and a[1] not in self.cw.store.objects:
                    self.cw.objects.fetch(a[1])
                self.cw.store.when_ready(a[1], lambda _o, _e, q=q: self._pump(q))
        self._pump(q)

    def _pump(self, q: ActorQueue) -> None:
        if q.state == DEAD:
            self._fail_pending(q)
            return
        if q.state != ALIVE or q.conn is None or q.conn.closed:
            self._watch(q)
            return
        store = self.cw.store.objects
        with self.lock:
            while q.pending:
                spec = q.pending[0]
                if not self._inline_ready_args(spec, store):
                    return  # head-of-line: later calls wait, so order is kept
                q.pending.popleft()
                self._send(q, spec)

    def _inline_ready_args(self, spec, store) -> bool:
        for i, a in enumerate(spec.args):
            if a[0] != ARG_REF:
                continue
            entry = store.get(a[1])
            if entry is None:
                return False
            if entry[0] == VALUE:
                spec.args[i] = (ARG_VALUE, entry[1], None)
            elif entry[0] == ERROR:
                self.cw.task_manager.fail_task(spec, entry[1])
                return False
        return True

    def _send(self, q: ActorQueue, spec) -> None:
        q.in_flight[spec.task_id] = spec
        hold = TRACER.on and checkpoint(
            "core_worker", "actor", "actor_method_call", task=spec.task_id.hex(),
            actor=q.actor_id.hex(), node=q.node_id.hex() if q.node_id else None,
            detail={"method": spec.method_name, "name": spec.name,
                    "to": self.cw.label_of(q.node_id)})
        self.cw.submitter.after(hold, self._push, q, q.conn, spec)

    def _push(self, q: ActorQueue, conn, spec) -> None:
        if conn is None or conn.closed:  # never sent: wait for the actor's next address
            q.in_flight.pop(spec.task_id, None)
            q.pending.appendleft(spec)
            if q.state == ALIVE:
                q.state, q.lost_address = None, q.address
            q.conn = None
            self._watch(q)
            return
        fut = conn.call("push_task", spec)
        fut.add_done_callback(lambda f: self._on_reply(
            q, spec, f.exception() if not f.cancelled() else ConnectionLost("cancelled"),
            None if f.cancelled() or f.exception() else f.result()))

    def _on_reply(self, q: ActorQueue, spec, err, value) -> None:
        """io thread: the actor answered (``value``), or its connection dropped (``err``)."""
        with self.lock:
            if q.in_flight.pop(spec.task_id, None) is None:
                return
            if err is not None:
                self._on_actor_lost(q, spec)
                return
        self.task_ids.discard(spec.task_id)
        self.cw.task_manager.complete_task(spec, value, q.node_id)

    def _on_actor_lost(self, q: ActorQueue, spec) -> None:
        """The call's connection dropped: the actor died. Retry after a restart, or fail."""
        retries = q.max_task_retries
        if retries == -1 or spec.attempt < retries:
            spec.attempt += 1
            q.pending.appendleft(spec)
            TRACER.on and step("core_worker", "failure", "retry_task", task=spec.task_id.hex(),
                               actor=q.actor_id.hex(),
                               detail={"name": spec.name, "attempt": spec.attempt,
                                       "why": "the actor died; retry after its restart"})
        else:
            q.pending.appendleft(spec)  # failed below once the GCS says what happened
            spec.max_retries = -2       # marks: no retry left
        if q.state == ALIVE:
            q.state = None  # ask the GCS: restarting, or dead?
            q.lost_address = q.address
        q.conn = None
        self._watch(q)

    def _fail_pending(self, q: ActorQueue) -> None:
        err = q.error or exc.ActorDiedError("The actor died unexpectedly before finishing this "
                                            "task.")
        while q.pending:
            spec = q.pending.popleft()
            self.task_ids.discard(spec.task_id)
            self.cw.task_manager.fail_task(spec, err)

    # -- where is the actor? ask the GCS, listen for updates ---------------------------------
    def _watch(self, q: ActorQueue) -> None:
        if q.watching:
            return
        q.watching = True
        self.cw.loop.create_task(self._wait_ready(q))

    async def _wait_ready(self, q: ActorQueue) -> None:
        try:
            gcs = await self.cw.ensure_gcs()
            info = await gcs.call("get_actor_info", q.actor_id, True, q.lost_address)
        except (ConnectionLost, OSError):
            info = None
        finally:
            q.watching = False
        if info is None:
            q.state = DEAD
            q.error = q.error or exc.ActorDiedError("The actor is unknown to the GCS.")
        await self.update(q, info)

    async def update(self, q: ActorQueue, info) -> None:
        if info is not None:
            q.info = info
            q.state = info["state"]
            q.node_id = info["node_id"]
            if q.state == DEAD:
                q.error = _death_error(info)
        if q.state == ALIVE and info is not None and (q.address != info["address"]
                                                      or q.conn is None or q.conn.closed):
            q.address = info["address"]
            try:
                q.conn = await self.cw.conn_to(q.address)
            except OSError:
                q.conn = None
                q.state = None
        # calls whose retries ran out fail now; the rest go to the (restarted) actor
        for spec in [s for s in q.pending if s.max_retries == -2]:
            q.pending.remove(spec)
            self.task_ids.discard(spec.task_id)
            self.cw.task_manager.fail_task(spec, q.error or exc.ActorDiedError(
                "The actor died while running this call, and max_task_retries is exhausted."))
        self._pump(q)

    def rpc_actor_update(self, conn, info) -> None:
        """GCS pubsub: an actor changed state (restarted at a new address, or died)."""
        q = self.queues.get(info["actor_id"])
        if q is not None:
            self.cw.loop.create_task(self.update(q, info))

    def on_node_dead(self, node_id: bytes) -> None:
        pass


def _death_error(info) -> exc.RayActorError:
    err = info.get("error")
    cause = info.get("death_cause") or "unknown"
    name = info.get("class_name", "actor")
    if err is not None:
        if isinstance(err, exc.RayTaskError):
            err = err.as_instanceof_cause()  # so `except ZeroDivisionError` sees the cause
        return exc.ActorDiedError(
            f"The actor {name} died because of an error raised in its creation task: "
            f"{err}", cause=err, actor_id=info["actor_id"].hex())
    return exc.ActorDiedError(f"The actor {name} is dead: {cause}.",
                              actor_id=info["actor_id"].hex())


__all__ = ["ActorSubmitter", "asyncio"]
