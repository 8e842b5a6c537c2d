"""``ray.put``, ``ray.get`` and ``ray.wait`` on the owner side.

``get`` first looks in this process's memory store (the lecture's Step 1:
"check the local object store"). A missing object owned here is a task still
running: wait for its reply. A missing object owned elsewhere is *borrowed*:
ask its owner for the status (a long poll that answers when the object is
ready), which is the Ray 2 replacement for the lecture's GCS object table
callback.

Large objects live in the node's shared-memory store (see ``plasma.py``); the
borrower protocol is in ``borrowers.py`` and rebuilding lost objects in
``lineage.py``.
"""
from __future__ import annotations

import concurrent.futures
import time

from raylab import exceptions as exc
from raylab.core_worker.borrowers import BorrowerProtocol
from raylab.core_worker.lineage import LineageRecovery
from raylab.core_worker.memory_store import ERROR, IN_PLASMA, VALUE, Waiter
from raylab.core_worker.object_ref import ObjectRef
from raylab.core_worker.serialization import deserialize, serialize
from raylab.tracing.emit import TRACER, step
from raylab.tracing.stepper import STEPPER
from raylab.transport import ConnectionLost


class ObjectApi(BorrowerProtocol, LineageRecovery):
    def __init__(self, cw):
        self.cw = cw
        self._fetching: set = set()
        self._borrow_acks: dict = {}   # oid -> future of the owner's add_borrower ack
        self.unacked: set = set()      # those acks still in flight

    # -- ray.put -----------------------------------------------------------------
    def put(self, value, owner_address: str | None = None) -> ObjectRef:
        cw = self.cw
        if isinstance(value, ObjectRef):
            raise TypeError("Calling 'put' on an ray.ObjectRef is not allowed. If you really "
                            "want to do this, you can wrap the ray.ObjectRef in a list and "
                            "call 'put' on it.")
        plasma = cw.plasma
        data, buffers, contained = serialize(value, oob=plasma is not None)
        size = len(data) + sum(memoryview(b).nbytes for b in buffers)
        if buffers and (plasma is None or size < cw.store_threshold):
            data, buffers, contained = serialize(value)  # small: keep it in-band
        return self.put_serialized(data, buffers, contained, size)

    def put_for_owner(self, value, owner_handle) -> ObjectRef:
        """``ray.put(value, _owner=actor)``: store it here, but let the actor own it (its
        lifetime and its directory entry follow that actor, not this process)."""
        cw = self.cw
        info = cw.rpc_sync(cw.gcs_for_user(), "get_actor_info", owner_handle._actor_id, True,
                           None, timeout=30)
        if info is None or info["state"] != "ALIVE":
            raise ValueError(f"the _owner actor {owner_handle!r} is not alive")
        owner = info["address"]
        data, buffers, contained = serialize(value, oob=cw.plasma is not None)
        size = len(data) + sum(memoryview(b).nbytes for b in buffers)
        oid = cw.next_put_id()
        if cw.plasma is not None and size >= cw.store_threshold:
            cw.plasma.put_serialized(oid, data, buffers, owner)
            entry = (IN_PLASMA, size)
        else:
            if buffers:
                data, _b, contained = serialize(value)
            entry = (VALUE, data)
        conn = cw.run_sync(cw.conn_to(owner), 30)
        cw.rpc_sync(conn, "adopt_object", oid, entry, cw.node_id, contained, timeout=30)
        TRACER.on and step("core_worker", "put", "put_object", object=oid.hex(), detail={
            "size": size, "where": f"{cw.node_label}'s object store (owned by an actor)"})
        return ObjectRef(oid, owner)

    def adopt(self, oid: bytes, entry, node: bytes, contained) -> bool:
        """Owner side of ``put(_owner=...)``: this process now owns an object made elsewhere."""
        cw = self.cw
        with cw.lock:
            e = cw.refs.add_owned(oid, is_put=True)
            if contained:
                cw.refs.set_contains(oid, contained)
            if entry[0] == IN_PLASMA:
                e.size, e.primary_node = entry[1], node
                e.locations.add(node)
        cw.store.put(oid, entry)
        return True

    def put_serialized(self, data, buffers, contained, size: int) -> ObjectRef:
        """Store an already-serialized value: in shared memory if large, else in-process."""
        cw = self.cw
        plasma = cw.plasma
        oid = cw.next_put_id()
        with cw.lock:
            e = cw.refs.add_owned(oid, is_put=True)
            if contained:
                cw.refs.set_contains(oid, contained)
        if plasma is not None and size >= cw.store_threshold:
            plasma.put_serialized(oid, data, buffers, cw.address)
            e.size, e.primary_node = size, cw.node_id
            e.locations.add(cw.node_id)
            entry, where = (IN_PLASMA, size), f"{cw.node_label}'s object store"
        else:
            entry, where = (VALUE, data), "in-process memory store"
        cw.store.put(oid, entry)
        TRACER.on and step("core_worker", "put", "put_object", object=oid.hex(), detail={
            "size": size, "where": where})
        return ObjectRef(oid, cw.address)

    # -- ray.get ------------------------------------------------------------------
    def get(self, refs: list, timeout: float | None):
        cw = self.cw
        objects = cw.store.objects
        oids = [r._id for r in refs]
        missing = [oid for oid in oids if oid not in objects]
        if TRACER.on:
            self._trace_get(oids, missing)
        if missing and cw.lecture_mode:
            for oid, ref in zip(oids, refs):
                if oid in missing:  # the local object store asks the GCS (and waits there)
                    cw.call_soon(self._lecture_fetch, oid, ref._owner)
        deadline = None if timeout is None else time.monotonic() + timeout
        if missing:
            self._wait_for(missing, len(missing), timeout, "get")
        out = []
        for ref in refs:
            entry = objects.get(ref._id)
            if entry is None:  # freed under us, or shutdown woke us
                raise exc.ReferenceCountingAssertionError(ref.hex())
            out.append(self._value_of(ref, entry, deadline))
        if TRACER.on:
            for oid in oids[:4]:
                step("core_worker", "get", "get_returned", object=oid.hex())
        return out

    def _lecture_fetch(self, oid: bytes, owner: str) -> None:
        """Lecture mode, io thread: have this node's object store fetch ``oid`` as soon as it
        exists anywhere (it looks it up in the GCS object table, registering a callback)."""
        async def pull():
            try:
                raylet = await self.cw.conn_to(self.cw.raylet_address)
                await raylet.call("store_pull", oid, owner or self.cw.address, [])
            except Exception:
                pass  # the get itself reports failures, through the owner
        self.cw.loop.create_task(pull())

    def _trace_get(self, oids, missing) -> None:
        """Step 1 of the lecture's ray.get: check the local store for each object."""
        for oid in oids[:4]:
            e = self.cw.refs.entries.get(oid)
            owner = "this process" if e is None or e.owned else "another process"
            if oid not in missing:
                then = "it is there"
            elif self.cw.lecture_mode:
                then = "not there yet; the local object store looks for it in the GCS"
            else:
                then = f"not there yet; the owner ({owner}) will tell where it is"
            step("core_worker", "get", "get_object", object=oid.hex(), detail={
                "hit": oid not in missing, "owner": owner,
                "text": "{who} checks its local object store for {object}: " + then})

    def _value_of(self, ref, entry, deadline: float | None = None):
        kind, payload = entry
        if kind == VALUE:
            return deserialize(payload)
        if kind == ERROR:
            if isinstance(payload, exc.RayTaskError):
                raise payload.as_instanceof_cause()
            raise payload
        return self._from_plasma(ref._id, ref._owner, deadline)

    def get_by_ids(self, pairs: list) -> list:
        """Values of (object id, owner) arguments a task received by reference."""
        return [self._from_plasma(oid, owner) for oid, owner in pairs]

    def _wait_for(self, missing: list, need: int, timeout: float | None, flow: str) -> bool:
        """Sleep until ``need`` of ``missing`` are in the memory store; False on timeout."""
        cw = self.cw
        for oid in missing:
            e = cw.refs.entries.get(oid)
            if e is not None and not e.owned:
                cw.call_soon(self.fetch, oid)
        waiter = Waiter(need)
        present = cw.store.add_waiter(missing, waiter)
        waiter.remaining -= present
        if waiter.remaining <= 0:
            cw.store.remove_waiter(missing, waiter)
            return True
        blocked = cw.executor is not None and cw.executor.notify_blocked()
        try:
            if cw.executor is None and STEPPER.active:  # a driver waiting on a paused cluster
                ok = STEPPER.wait_through_pauses(waiter, timeout)
            else:
                ok = waiter.wait(timeout)
        finally:
            if blocked:
                cw.executor.notify_unblocked()
        if not ok:
            cw.store.remove_waiter(missing, waiter)
            if flow == "get":
                raise exc.GetTimeoutError(
                    f"Get timed out: some object(s) not ready after {timeout} s.")
        if cw.shutting_down:
            raise exc.RaySystemError("raylab was shut down while waiting for objects")
        return ok

    def get_future(self, ref) -> concurrent.futures.Future:
        fut: concurrent.futures.Future = concurrent.futures.Future()
        cw = self.cw

        def done(oid, entry):
            if fut.done():
                return
            try:
                fut.set_result(self._value_of(ref, entry))
            except BaseException as e:  # the task's error is the future's error
                fut.set_exception(e)

        e = cw.refs.entries.get(ref._id)
        if e is not None and not e.owned and ref._id not in cw.store.objects:
            cw.call_soon(self.fetch, ref._id)
        cw.store.when_ready(ref._id, done)
        return fut

    # -- ray.wait -----------------------------------------------------------------
    def wait(self, refs: list, num_returns: int, timeout: float | None, fetch_local: bool):
        cw = self.cw
        objects = cw.store.objects
        missing = [r._id for r in refs if r._id not in objects]
        ready_now = len(refs) - len(missing)
        if ready_now < num_returns and missing and timeout != 0:
            self._wait_for(missing, num_returns - ready_now, timeout, "wait")
        elif missing:
            for oid in missing:  # timeout=0: only start the fetches
                e = cw.refs.entries.get(oid)
                if e is not None and not e.owned:
                    cw.call_soon(self.fetch, oid)
        ready, not_ready = [], []
        for r in refs:
            if len(ready) < num_returns and r._id in objects:
                ready.append(r)
            else:
                not_ready.append(r)
        if fetch_local and cw.plasma is not None:
            self._fetch_local(ready)
        TRACER.on and step("core_worker", "wait", "wait_returned", detail={
            "ready": len(ready), "not_ready": len(not_ready)})
        return ready, not_ready

    def _fetch_local(self, refs: list) -> None:
        """``wait(fetch_local=True)``: a ready object in another node's store is pulled here
        before it counts as ready, as in Ray."""
        cw = self.cw
        for r in refs:
            entry = cw.store.objects.get(r._id)
            e = cw.refs.entries.get(r._id)
            if entry is None or entry[0] != IN_PLASMA or (e is not None and
                                                          cw.node_id in e.locations):
                continue
            try:
                cw.plasma.ensure_local(r._id, r._owner or cw.address,
                                       sorted(e.locations) if e is not None else [])
            except exc.RayError:
                pass  # a lost object is reported by the get that reads it

    # -- borrowed objects: ask the owner ---------------------------------------------
    def fetch(self, oid: bytes) -> None:
        """io thread: a borrowed object is needed here; long-poll its owner for it."""
        if oid in self._fetching or oid in self.cw.store.objects:
            return
        e = self.cw.refs.entries.get(oid)
        if e is None or e.owned:
            return
        self._fetching.add(oid)
        self.cw.loop.create_task(self._fetch(oid, e.owner))

    async def _fetch(self, oid: bytes, owner: str) -> None:
        cw = self.cw
        TRACER.on and step("core_worker", "get", "ask_owner", object=oid.hex(), detail={"owner": owner})
        try:
            conn = await cw.conn_to(owner)
            kind, payload = await conn.call("get_object_status", oid)
        except (ConnectionLost, OSError):
            kind, payload = ERROR, exc.OwnerDiedError(oid.hex(), owner)
        finally:
            self._fetching.discard(oid)
        if kind == IN_PLASMA:
            kind, payload = await self.cw.plasma_fetch(oid, payload)
        TRACER.on and step("core_worker", "get", "owner_replied", object=oid.hex(),
             detail={"kind": ("value", "error", "plasma")[kind]})
        cw.store.put(oid, (kind, payload))

    def object_status(self, oid: bytes):
        """Owner side of the long poll: answer when the object is ready."""
        cw = self.cw
        entry = cw.store.objects.get(oid)
        if entry is not None:
            return self._status(oid, entry)
        if cw.refs.entries.get(oid) is None:
            return (ERROR, exc.ReferenceCountingAssertionError(
                oid.hex(), message=f"Object {oid.hex()} was already freed by its owner."))
        fut = cw.loop.create_future()

        def ready(_oid, entry):
            if not fut.done():
                fut.set_result(self._status(oid, entry))

        cw.store.when_ready(oid, ready)
        return fut

    def _status(self, oid: bytes, entry):
        if entry[0] != IN_PLASMA:
            return entry
        e = self.cw.refs.entries.get(oid)
        return (IN_PLASMA, (entry[1], sorted(e.locations) if e is not None else []))

    def object_locations(self, oid: bytes):
        """Owner side, asked by a raylet that must pull the object: where are its copies?"""
        cw = self.cw
        entry = cw.store.objects.get(oid)
        if entry is not None:
            return self._locations_reply(oid, entry)
        if cw.refs.entries.get(oid) is None:
            return ("error", exc.ReferenceCountingAssertionError(
                oid.hex(), message=f"Object {oid.hex()} was already freed by its owner."))
        fut = cw.loop.create_future()
        cw.store.when_ready(oid, lambda _o, entry: fut.done() or fut.set_result(
            self._locations_reply(oid, entry)))
        return fut

    def _locations_reply(self, oid: bytes, entry):
        kind, payload = entry
        if kind == ERROR:
            return ("error", payload)
        if kind != IN_PLASMA:
            return ("inline", None)
        e = self.cw.refs.entries.get(oid)
        return ("ok", payload, sorted(e.locations) if e is not None else [])

    def free_owned(self, oid: bytes, entry) -> None:
        """An object we own went out of scope: it is gone from every store."""
        if self.cw.actors.on_handle_freed(oid):
            return
        # freeing an inline object is bookkeeping; freeing shared memory is a lecture step
        TRACER.on and step("core_worker", "refcount", "object_freed", 0 if entry.locations else 1,
                           object=oid.hex(), detail={"reason": "no references remain"})
        if entry.locations and self.cw.plasma is not None:
            self.cw.plasma.free_everywhere(oid, entry.locations)

    def on_location(self, oid, node_id, size, added) -> None:
        """Owner side (io thread): a node's object manager made (or dropped) a copy."""
        cw = self.cw
        e = cw.refs.entries.get(oid)
        if e is None or (e.value_freed and not e.pending):
            # The news came after we freed the object (the raylet tells us in the
            # background, the get that made the copy returned at once): that copy was
            # not among those we deleted, so it must go now.
            if added and cw.plasma is not None:
                cw.plasma.free_everywhere(oid, [node_id], late=True)
            return
        if not added:
            e.locations.discard(node_id)
            return
        e.size = size or e.size
        if node_id not in e.locations:
            e.locations.add(node_id)
            TRACER.on and step("core_worker", "object", "location_recorded", 1,
                               object=oid.hex(), detail={"at": cw.label_of(node_id)})

    # -- failures ----------------------------------------------------------------------
    def on_node_dead(self, node_id: bytes) -> None:
        """Copies on a dead node are gone; objects left with none are rebuilt on demand."""
        with self.cw.lock:
            for e in self.cw.refs.entries.values():
                e.locations.discard(node_id)

