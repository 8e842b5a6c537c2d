"""The node's object store (the plasma role): bookkeeping, as a sans-IO core.

The raylet owns one shared-memory arena per node; this core decides what
lives where in it. Objects of 100 KiB and more are created here (by ray.put,
by task returns, or as REPLICAS fetched from other nodes), read zero-copy by
the node's workers, and freed when their owner says so.

When the arena is full, the store makes room in a fixed order:
  1. EVICT replicas (least recently used first): the primary copy is safe elsewhere.
  2. SPILL primary copies (least recently used first) to files; a later get
     RESTORES them transparently.
Objects pinned by readers (a live numpy array from ray.get) and objects still
being written are never touched. Only when even that cannot make room does the
request fail with ObjectStoreFullError.

Events in, effects out (see ``effects.py``): no memory, files, sockets,
threads or clocks in here. ``now`` is a logical time the caller passes in
(or an internal counter): it orders objects for LRU and nothing else.
"""
from __future__ import annotations

from collections import deque

from raylab.exceptions import ObjectStoreFullError, ReferenceCountingAssertionError
from raylab.object_store.allocator import PAGE_SIZE, Allocator
from raylab.object_store.effects import (Created, DeleteFile, Evict, Failed, Ready, Reclaim,
                                         Restore, Spill)
from raylab.object_store.entries import (CREATED, RESTORING, SEALED, SPILLED, SPILLING, Entry,
                                         ObjectInfo, Request, StoreUsage)
from raylab.object_store.spill import spill_path

FITS, WAIT, FULL = "fits", "wait", "full"


class ObjectStoreCore:
    def __init__(self, capacity: int, spill_dir: str = "spill", align: int = PAGE_SIZE):
        self.allocator = Allocator(capacity, align)
        self.capacity = self.allocator.capacity
        self.spill_dir = spill_dir
        self.objects: dict[bytes, Entry] = {}
        self.queue: deque[Request] = deque()  # creates and restores waiting for room
        self._clock = 0

    # -- events from clients --------------------------------------------------

    def create(self, object_id: bytes, size: int, owner: str, primary: bool = True,
               client=None, now: int | None = None) -> list:
        """Reserve a block for a new object. Effects: ``Created`` (now or later).

        Raises ObjectStoreFullError if the object can never fit, or if nothing
        can be evicted or spilled to make room for it.
        """
        if object_id in self.objects or self._queued(object_id):
            raise ValueError(f"object {object_id.hex()} is already in this object store")
        if self.allocator.rounded(size) > self.capacity:
            raise ObjectStoreFullError(
                f"object {object_id.hex()} is {size} bytes, larger than this node's whole "
                f"object store ({self.capacity} bytes); raise object_store_memory")
        req = Request("create", object_id, size, client, owner, primary, self._tick(now))
        return self._serve(req)

    def seal(self, object_id: bytes, now: int | None = None) -> list:
        """The creator finished writing: the object becomes readable (and spillable)."""
        entry = self.objects[object_id]
        if entry.state != CREATED:
            raise ValueError(f"object {object_id.hex()} is {entry.state}, not being created")
        entry.state, entry.creator = SEALED, None
        entry.last_access = self._tick(now)
        if entry.deleted:
            return self._remove(entry)
        return self._wake_waiters(entry)

    def abort(self, object_id: bytes) -> list:
        """The creator gave up before sealing: free the block."""
        entry = self.objects[object_id]
        if entry.state != CREATED:
            raise ValueError(f"object {object_id.hex()} is {entry.state}, not being created")
        return self._remove(entry)

    def get(self, object_id: bytes, client, now: int | None = None) -> list:
        """Pin the object for ``client``. Effects: ``Ready`` (now, or after seal/restore)."""
        entry = self.objects.get(object_id)
        if entry is None or entry.deleted:
            raise KeyError(f"object {object_id.hex()} is not in this node's object store")
        entry.last_access = self._tick(now)
        if entry.state in (SEALED, SPILLING):  # a spilling object is still in memory
            return [self._pin(entry, client)]
        entry.waiters.append(client)
        if entry.state == SPILLED and not self._queued(object_id):
            req = Request("restore", object_id, entry.size, client, now=entry.last_access)
            return self._serve(req)
        return []

    def release(self, object_id: bytes, client) -> list:
        """One read by ``client`` is over (its last view of the object is gone)."""
        entry = self.objects.get(object_id)
        if entry is None or client not in entry.pins:
            return []  # already dropped, e.g. by disconnect()
        entry.pins[client] -= 1
        if not entry.pins[client]:
            del entry.pins[client]
            entry.asked.discard(client)
            entry.busy.discard(client)
        if entry.deleted and not entry.pinned and entry.state in (SEALED, SPILLED):
            return self._remove(entry)
        if not entry.pinned and self.queue:
            return self._drain()  # a request waiting for room may fit now
        return []

    def give_up(self, object_id: bytes, client) -> list:
        """A create or restore waited too long for room: fail it with ObjectStoreFullError."""
        for req in list(self.queue):
            if req.object_id == object_id and (req.client == client or req.kind == "restore"):
                self.queue.remove(req)
                effects: list = []
                self._fail(req, effects)
                return effects + self._drain()
        return []

    def busy(self, object_id: bytes, client) -> list:
        """``client``, asked for its pin, still reads the object: it keeps the pin (until
        it releases it), and requests waiting for room look elsewhere."""
        entry = self.objects.get(object_id)
        if entry is None or client not in entry.pins:
            return []  # released meanwhile
        entry.busy.add(client)
        return self._drain()

    def delete(self, object_id: bytes) -> list:
        """The owner freed the object: drop it now, or as soon as readers and IO are done."""
        effects = self._drop_queued(object_id)
        entry = self.objects.get(object_id)
        if entry is None or entry.deleted:
            return effects
        entry.deleted = True
        err = ReferenceCountingAssertionError(
            object_id.hex(), entry.owner, message=f"object {object_id.hex()} was freed by its "
            "owner while a get was waiting for it")
        effects += [Failed(object_id, c, err) for c in entry.waiters]
        entry.waiters.clear()
        if not entry.pinned and entry.state in (SEALED, SPILLED):
            effects += self._remove(entry)
        else:
            self._reclaim(entry, effects)  # readers done with it give their pins back now
        return effects  # CREATED, SPILLING, RESTORING: removed when that finishes

    def disconnect(self, client) -> list:
        """A client process is gone: drop its pins, its waits and its unsealed objects."""
        self.queue = deque(r for r in self.queue if r.kind != "create" or r.client != client)
        effects: list = []
        for entry in list(self.objects.values()):
            entry.pins.pop(client, None)
            entry.asked.discard(client)
            entry.busy.discard(client)
            if client in entry.waiters:
                entry.waiters = [c for c in entry.waiters if c != client]
            if entry.state == CREATED and entry.creator == client:
                effects += self._remove(entry)
            elif entry.deleted and not entry.pinned and entry.state in (SEALED, SPILLED):
                effects += self._remove(entry)
        return effects + self._drain()

    # -- events from the raylet's IO threads ----------------------------------

    def spilled(self, object_id: bytes) -> list:
        """The spill file is written: free the block (unless a reader pinned it meanwhile)."""
        entry = self._expect(object_id, SPILLING)
        if entry.deleted and not entry.pinned:
            return self._remove(entry)
        if entry.pinned:
            # A reader pinned it while it was being written out: it stays in
            # memory (and is now on disk too). Waiting requests look elsewhere.
            entry.state = SEALED
            return self._drain()
        self.allocator.free(entry.offset)
        entry.offset, entry.state = None, SPILLED
        return self._drain()

    def spill_failed(self, object_id: bytes) -> list:
        """Writing the spill file failed (disk full?): keep the object in memory."""
        entry = self._expect(object_id, SPILLING)
        effects = [DeleteFile(entry.spill_path)]
        entry.state, entry.spill_path, entry.spill_failed = SEALED, None, True
        if entry.deleted and not entry.pinned:
            effects += self._remove(entry)
        return effects + self._drain()  # waiting requests look for other victims or fail

    def restored(self, object_id: bytes, now: int | None = None) -> list:
        """The spill file is back in memory: serve the gets that waited for it."""
        entry = self._expect(object_id, RESTORING)
        entry.state = SEALED  # the file stays: evicting it again costs no IO
        entry.last_access = self._tick(now)
        if entry.deleted:
            return self._remove(entry)
        return self._wake_waiters(entry)

    def restore_failed(self, object_id: bytes, error: BaseException) -> list:
        """Reading the spill file failed: the waiting gets fail with ``error``."""
        entry = self._expect(object_id, RESTORING)
        self.allocator.free(entry.offset)
        entry.offset, entry.state = None, SPILLED
        effects = [Failed(object_id, c, error) for c in entry.waiters]
        entry.waiters.clear()
        if entry.deleted:
            effects += self._remove(entry)
        return effects + self._drain()

    def shutdown(self) -> list:
        """The node stops: every spill file goes. (The shell then removes the directory.)"""
        effects = [DeleteFile(e.spill_path) for e in self.objects.values() if e.spill_path]
        self.objects.clear()
        self.queue.clear()
        return effects

    # -- views ----------------------------------------------------------------

    def contents(self) -> list[ObjectInfo]:
        return [e.info() for e in self.objects.values() if not e.deleted]

    def usage(self) -> StoreUsage:
        st = self.allocator.stats()
        live = [e for e in self.objects.values() if not e.deleted]
        spilled = [e for e in live if e.state == SPILLED]
        pinned = sum(e.size for e in self.objects.values() if e.pinned)
        return StoreUsage(st.capacity, st.used, st.free, st.largest_free, st.fragmentation,
                          len(live), len(spilled), sum(e.size for e in spilled),
                          pinned, len(self.queue))

    # -- making room ----------------------------------------------------------

    def _serve(self, req: Request) -> list:
        """Queue ``req`` and serve the queue; if ``req`` itself failed, raise its error.

        A request fails in the call that made it only when nothing could be done
        for it (and the requests before it were not ready to move either), so
        raising loses no effects.
        """
        self.queue.append(req)
        effects = self._drain()
        for eff in effects:
            if isinstance(eff, Failed) and eff.object_id == req.object_id \
                    and eff.client == req.client:
                raise eff.error
        return effects

    def _drain(self) -> list:
        """Serve waiting requests in order, as long as room can be found for them."""
        effects: list = []
        while self.queue:
            req = self.queue[0]
            status = self._make_room(req.size, effects)
            if status == WAIT:
                break  # spills are being written; try again when they are done
            self.queue.popleft()
            if status == FITS:
                self._grant(req, effects)
            else:
                self._fail(req, effects)
        return effects

    def _make_room(self, size: int, effects: list) -> str:
        """Evict or start spilling just enough objects for ``size`` bytes to fit."""
        if self.allocator.can_alloc(size):
            return FITS
        # Try it out on a copy first: act only if it can work.
        trial = self.allocator.copy()
        for e in self.objects.values():
            if e.state == SPILLING:
                trial.free(e.offset)  # already on its way out
        chosen = []
        if not trial.can_alloc(size):
            for e in self._victims():
                trial.free(e.offset)
                chosen.append(e)
                if trial.can_alloc(size):
                    break
            else:
                # readers still using objects (or writers) hold what is left: wait for
                # them to let go, unless even that could never be enough (the shell
                # bounds the wait with a timeout)
                for e in self.objects.values():
                    if e.offset is not None and e.state in (SEALED, CREATED) and \
                            e not in chosen and (e.pinned or e.state == CREATED):
                        trial.free(e.offset)
                return WAIT if trial.can_alloc(size) else FULL
        asked = [e for e in chosen if e.pinned]
        if asked:  # their readers answer first: they give the pin back, or still use it
            for e in asked:
                self._reclaim(e, effects)
            return WAIT
        for e in chosen:
            effects.append(self._evict_or_spill(e))
        return FITS if self.allocator.can_alloc(size) else WAIT

    def _victims(self) -> list[Entry]:
        """Objects that may leave memory: replicas first, then primaries; LRU within each.

        An object pinned only by readers that may have finished with it (a client keeps
        its pin a while after its last read) is a victim too: its readers are asked for
        their pins first (``Reclaim``); one that still uses it says so (``busy``).
        """
        ok = [e for e in self.objects.values()
              if e.state == SEALED and not e.busy
              and not (e.primary and e.spill_failed)]
        return sorted(ok, key=lambda e: (e.primary, e.last_access))

    def _evict_or_spill(self, e: Entry):
        if not e.primary:  # a replica: just drop it
            self.allocator.free(e.offset)
            del self.objects[e.object_id]
            return Evict(e.object_id, e.size, False)
        if e.spill_path:  # spilled before and restored: the file is still there
            self.allocator.free(e.offset)
            e.offset, e.state = None, SPILLED
            return Evict(e.object_id, e.size, True)
        e.state, e.spill_path = SPILLING, spill_path(self.spill_dir, e.object_id)
        return Spill(e.object_id, e.offset, e.size, e.spill_path)

    def _grant(self, req: Request, effects: list) -> None:
        offset = self.allocator.alloc(req.size)
        if req.kind == "create":
            self.objects[req.object_id] = Entry(req.object_id, req.size, req.owner, req.primary,
                                                req.client, offset, CREATED, last_access=req.now)
            effects.append(Created(req.object_id, offset, req.size, req.client))
        else:
            entry = self.objects[req.object_id]
            entry.offset, entry.state = offset, RESTORING
            effects.append(Restore(req.object_id, offset, entry.size, entry.spill_path))

    def _fail(self, req: Request, effects: list) -> None:
        err = ObjectStoreFullError(self._full_message(req))
        if req.kind == "create":
            effects.append(Failed(req.object_id, req.client, err))
        else:
            entry = self.objects[req.object_id]
            effects += [Failed(req.object_id, c, err) for c in entry.waiters]
            entry.waiters.clear()

    def _full_message(self, req: Request) -> str:
        st = self.allocator.stats()
        pinned = sum(e.size for e in self.objects.values() if e.pinned)
        writing = sum(e.size for e in self.objects.values() if e.state == CREATED)
        what = "create" if req.kind == "create" else "restore"
        return (f"object store is full: cannot {what} object {req.object_id.hex()} of "
                f"{req.size} bytes. Capacity {st.capacity} bytes, {st.used} in use, largest "
                f"free block {st.largest_free}; {pinned} bytes are pinned by readers (live "
                f"zero-copy values from ray.get, e.g. numpy arrays) and {writing} bytes are "
                "still being written, and nothing else can be evicted or spilled. Drop "
                "references to large values you no longer need, or raise object_store_memory.")

    # -- helpers --------------------------------------------------------------

    def _pin(self, entry: Entry, client) -> Ready:
        entry.pins[client] = entry.pins.get(client, 0) + 1
        return Ready(entry.object_id, entry.offset, entry.size, client)

    def _reclaim(self, entry: Entry, effects: list) -> None:
        """Ask the readers holding ``entry`` (once per pin) to give it back if unused."""
        ask = tuple(c for c in entry.pins if c not in entry.asked)
        if ask:
            entry.asked.update(ask)
            effects.append(Reclaim(entry.object_id, ask))

    def _wake_waiters(self, entry: Entry) -> list:
        effects = [self._pin(entry, c) for c in entry.waiters]
        entry.waiters.clear()
        return effects

    def _remove(self, entry: Entry) -> list:
        """Forget the object: free its block, delete its spill file."""
        del self.objects[entry.object_id]
        effects = [DeleteFile(entry.spill_path)] if entry.spill_path else []
        if entry.offset is not None:
            self.allocator.free(entry.offset)
            effects += self._drain()
        return effects

    def _drop_queued(self, object_id: bytes) -> list:
        """Forget queued requests for a deleted object; waiting creators are told."""
        effects = []
        for r in [r for r in self.queue if r.object_id == object_id]:
            self.queue.remove(r)
            if r.kind == "create":
                effects.append(Failed(object_id, r.client, ValueError(
                    f"object {object_id.hex()} was freed while waiting for room")))
        return effects

    def _queued(self, object_id: bytes) -> bool:
        return any(r.object_id == object_id for r in self.queue)

    def _expect(self, object_id: bytes, state: str) -> Entry:
        entry = self.objects[object_id]
        if entry.state != state:
            raise ValueError(f"object {object_id.hex()} is {entry.state}, expected {state}")
        return entry

    def _tick(self, now: int | None) -> int:
        if now is None:
            self._clock += 1
            return self._clock
        self._clock = max(self._clock, now)
        return now
