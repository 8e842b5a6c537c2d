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

import cloudpickle

from raylab import exceptions as exc
from raylab.core_worker.memory_store import ERROR, VALUE
from raylab.core_worker.task_spec import ARG_REF, ARG_VALUE
from raylab.states import ALIVE, DEAD
from raylab.tracing.emit import TRACER, checkpoint, step
from raylab.transport import ConnectionLost


class ActorQueue:
    """One actor, as seen by one caller."""

    __slots__ = ("actor_id", "state", "address", "conn", "pending", "in_flight", "info",
                 "max_task_retries", "watching", "error", "node_id", "lost_address",
                 "out_of_scope")

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
        self.out_of_scope = False  # every handle is gone: the actor goes once this is idle


class ActorSubmitter:
    def __init__(self, cw):
        self.cw = cw
        self.lock = threading.Lock()  # a queue's order: the caller's thread may send directly
        self.queues: dict[bytes, ActorQueue] = {}
        self.handle_objects: dict[bytes, bytes] = {}   # handle object id -> actor id
        self.detached: set = set()
        self.task_ids: set = set()
        # actor id -> (refs its constructor's arguments hold, kept until it is DEAD?)
        self.creation_args: dict[bytes, tuple] = {}

    def queue(self, actor_id: bytes, max_task_retries: int = 0) -> ActorQueue:
        q = self.queues.get(actor_id)
        if q is None:
            q = self.queues[actor_id] = ActorQueue(actor_id, max_task_retries)
        return q

    def owns_task(self, task_id: bytes) -> bool:
        return task_id in self.task_ids

    # -- creation (Step 1: register with the GCS) ---------------------------------------
    def register(self, spec, meta: dict, nested=()) -> dict | None:
        """Caller's thread. Named actors register synchronously (a taken name fails here)."""
        cw = self.cw
        deps = [a[1] for a in spec.args if a[0] == ARG_REF]
        meta = dict(meta, deps_ready=not deps, owner_node=cw.node_id)
        self.queue(spec.actor_id, meta.get("max_task_retries", 0))
        if meta.get("detached"):
            self.detached.add(spec.actor_id)
        self._hold_args(spec, nested, meta.get("max_restarts", 0) != 0)
        TRACER.on and step("core_worker", "actor", "register_actor", actor=spec.actor_id.hex(),
                           detail={"class_name": meta["class_name"], "name": meta.get("name")})
        if meta.get("name"):
            try:
                kind, info = cw.rpc_sync(cw.gcs_for_user(), "register_actor", spec, meta,
                                         timeout=30)
            except BaseException:
                cw.call_soon(self._release_args, spec.actor_id)
                raise
            if kind == "exists":
                cw.call_soon(self._release_args, spec.actor_id)
                return info
        else:
            cw.call_soon(self._register_async, spec, meta)
        if deps:
            cw.call_soon(self._resolve_creation_args, spec, deps)
        return None

    def _hold_args(self, spec, nested, restartable: bool) -> None:
        """The constructor's arguments (and refs inside them, such as handles) stay alive
        until the actor is ALIVE: by then its process has registered as a borrower of what
        it kept. A restartable actor needs them for every restart, until it is DEAD."""
        held = [a[1] for a in spec.args if a[0] == ARG_REF]
        held += [r[0] for r in nested if isinstance(r, tuple)]
        if not held:
            return
        with self.cw.lock:
            self.cw.refs.add_submitted(held)
        self.creation_args[spec.actor_id] = (held, restartable)

    def _release_args(self, actor_id: bytes, state: str = DEAD) -> None:
        """io thread: the creation task is over (ALIVE or DEAD): let the arguments go."""
        entry = self.creation_args.get(actor_id)
        if entry is None or (state != DEAD and entry[1]):
            return
        del self.creation_args[actor_id]
        out: list = []
        with self.cw.lock:
            self.cw.refs.remove_submitted(entry[0], out)
        if out:
            self.cw.release(out)

    def _register_async(self, spec, meta) -> None:
        self.cw.loop.create_task(self._register(spec, meta))

    async def _register(self, spec, meta) -> None:
        gcs = await self.cw.ensure_gcs()
        try:
            await gcs.call("register_actor", spec, meta)
        except Exception as e:  # surfaces on the first method call
            q = self.queue(spec.actor_id)
            q.state, q.error = DEAD, exc.ActorDiedError(f"registering the actor failed: {e}")
            self._release_args(spec.actor_id)
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
        failed = None
        for i, a in enumerate(spec.args):
            if a[0] != ARG_REF:
                continue
            kind, payload = store[a[1]][:2]
            if kind == VALUE:
                spec.args[i] = (ARG_VALUE, payload, None)
            elif kind == ERROR and failed is None:
                failed = payload
        gcs = await self.cw.ensure_gcs()
        if failed is not None:  # its creation task cannot run: the actor is DEAD with why
            error = creation_argument_error(spec, failed, self.cw.pid)
            await gcs.call("actor_dependencies_failed", spec.actor_id, cloudpickle.dumps(error))
            return
        await gcs.call("actor_dependencies_ready", spec.actor_id, spec)

    def on_handle_freed(self, oid: bytes) -> bool:
        """Every handle to an actor we own is gone: the actor goes too (unless detached)."""
        actor_id = self.handle_objects.pop(oid, None)
        if actor_id is None:
            return False
        if actor_id in self.detached:
            return True
        q = self.queues.get(actor_id)
        if q is not None and q.state != DEAD and (q.pending or q.in_flight):
            q.out_of_scope = True  # as in Ray, the calls already made still run first
        else:
            self._kill_out_of_scope(actor_id)
        return True

    def _kill_out_of_scope(self, actor_id: bytes) -> None:
        self.cw.loop.create_task(self._kill(actor_id, True, "all handles are out of scope"))

    def _after_call(self, q: ActorQueue) -> None:
        """io thread: a call is over; if it was the last one of an actor out of scope, the
        actor goes now."""
        if q.out_of_scope and not q.pending and not q.in_flight:
            q.out_of_scope = False
            self._kill_out_of_scope(q.actor_id)

    async def _kill(self, actor_id, no_restart, reason) -> None:
        try:
            gcs = await self.cw.ensure_gcs()
            await gcs.call("kill_actor", actor_id, no_restart, reason, False)  # not forced
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
            if q.in_flight.pop(spec.task_id, None) is None:
                return  # already back in the queue with the calls lost with that connection
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
            if err is not None:
                if spec.task_id in q.in_flight:
                    self._on_actor_lost(q, spec, isinstance(err, ConnectionLost))
                return
            if q.in_flight.pop(spec.task_id, None) is None:
                return
        self.task_ids.discard(spec.task_id)
        self.cw.task_manager.complete_task(spec, value, q.node_id)
        self._after_call(q)

    def _on_actor_lost(self, q: ActorQueue, spec, all_lost: bool) -> None:
        """The call's connection dropped: the actor died. Retry after a restart, or fail.
        Every call in flight went down with it: they go back to the head of the queue in
        the order they were sent (their own failures, which follow, find nothing left)."""
        if all_lost:
            lost = list(q.in_flight.values())  # in the order they were sent
            q.in_flight.clear()
        else:
            lost = [q.in_flight.pop(spec.task_id)]
        retries = q.max_task_retries
        for s in lost:
            if retries == -1 or s.attempt < retries:
                s.attempt += 1
                TRACER.on and step("core_worker", "failure", "retry_task", task=s.task_id.hex(),
                                   actor=q.actor_id.hex(),
                                   detail={"name": s.name, "attempt": s.attempt,
                                           "why": "the actor died; retry after its restart"})
            else:
                s.max_retries = -2  # marks: no retry left; failed once the GCS says why
        q.pending.extendleft(reversed(lost))
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
        self._after_call(q)

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
            if info["state"] in (ALIVE, DEAD) and q.actor_id in self.creation_args:
                self._release_args(q.actor_id, info["state"])
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


def creation_argument_error(spec, failed, pid) -> exc.RayTaskError:
    """The creation task's error when one of its arguments could not be computed (Ray's
    words); ``failed``, that argument's own error, is its cause."""
    cause, what = failed, f"{type(failed).__name__}: {failed}"
    if isinstance(failed, exc.RayTaskError):  # a plain one (not an instance-of-cause class)
        cause = exc.RayTaskError(failed.function_name, failed.traceback_str, failed.cause,
                                 failed.proctitle, failed.pid, failed.ip, failed.actor_repr,
                                 failed.actor_id)
        what = str(cause)  # it names its own cause: "KeyError: ray::bad() ..."
    text = f"{exc.ARGUMENT_NOT_COMPUTED}:\n{what}"
    class_name = (spec.actor_options or {}).get("class_name")
    return exc.RayTaskError(spec.name, text, cause, pid=pid, actor_repr=class_name,
                            actor_id=spec.actor_id.hex())


def _death_error(info) -> exc.RayActorError:
    err = info.get("error")
    name = info.get("class_name", "actor")
    actor_id = info["actor_id"].hex()
    if err is None:
        return exc.ActorDiedError(f"The actor {name} is dead: "
                                  f"{info.get('death_cause') or 'unknown'}.", actor_id=actor_id)
    cause = err
    if isinstance(err, exc.RayTaskError):
        # an argument's task failed (a RayTaskError(KeyError), say): that error is the cause;
        # else the constructor's, so `except ZeroDivisionError` sees it
        failed = err.cause if isinstance(err.cause, exc.RayTaskError) else err
        cause = failed.as_instanceof_cause()
    return exc.ActorDiedError(f"The actor {name} died because of an error raised in its "
                              f"creation task: {err}", cause=cause, actor_id=actor_id)


__all__ = ["ActorSubmitter", "asyncio"]
