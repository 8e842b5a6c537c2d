"""The in-process memory store: the owner's home for small objects.

Objects under ``max_direct_call_object_size`` (100 KiB) never touch shared
memory: a task's small return value travels inline in the reply to its owner
and waits here; ``ray.put`` of a small value lands here directly. For large
objects this store only records that the value is in the node's shared-memory
store (``IN_PLASMA``). ``ray.get`` and dependency resolution wait here.

Entries are ``(kind, payload)``: ``VALUE`` with the serialized bytes (each
``get`` deserializes afresh, so callers never share mutable state), ``ERROR``
with the exception, ``IN_PLASMA`` with the size.
"""
from __future__ import annotations

import threading
from _thread import allocate_lock

VALUE = 0
ERROR = 1
IN_PLASMA = 2


class Waiter:
    """Lets a user thread sleep until ``remaining`` objects are ready."""

    __slots__ = ("remaining", "_lock", "_fired")

    def __init__(self, remaining: int):
        self.remaining = remaining
        self._lock = allocate_lock()
        self._lock.acquire()
        self._fired = False

    def ready_one(self) -> None:
        self.remaining -= 1
        if self.remaining <= 0 and not self._fired:
            self._fired = True
            self._lock.release()

    def fire(self) -> None:
        if not self._fired:
            self._fired = True
            self._lock.release()

    def wait(self, timeout: float | None) -> bool:
        if timeout is None:
            return self._lock.acquire()
        return self._lock.acquire(timeout=max(timeout, 0.0))


class MemoryStore:
    def __init__(self, call_on_loop):
        self.objects: dict[bytes, tuple] = {}
        self._waiters: dict[bytes, list] = {}
        self._callbacks: dict[bytes, list] = {}
        self._lock = threading.Lock()
        self._call_on_loop = call_on_loop  # runs a callback on the core worker's loop

    def get(self, oid: bytes):
        return self.objects.get(oid)

    def contains(self, oid: bytes) -> bool:
        return oid in self.objects

    def put(self, oid: bytes, entry: tuple) -> None:
        """Store an object and wake everything waiting for it."""
        with self._lock:
            self.objects[oid] = entry
            waiters = self._waiters.pop(oid, None)
            callbacks = self._callbacks.pop(oid, None)
        if waiters:
            for w in waiters:
                w.ready_one()
        if callbacks:
            for cb in callbacks:
                self._call_on_loop(cb, oid, entry)

    def delete(self, oid: bytes) -> None:
        self.objects.pop(oid, None)

    def add_waiter(self, oids, waiter: Waiter) -> int:
        """Register ``waiter`` on each missing object; returns how many were already here."""
        present = 0
        with self._lock:
            objects = self.objects
            for oid in oids:
                if oid in objects:
                    present += 1
                else:
                    self._waiters.setdefault(oid, []).append(waiter)
        return present

    def remove_waiter(self, oids, waiter: Waiter) -> None:
        with self._lock:
            for oid in oids:
                ws = self._waiters.get(oid)
                if ws and waiter in ws:
                    ws.remove(waiter)
                    if not ws:
                        del self._waiters[oid]

    def when_ready(self, oid: bytes, callback) -> None:
        """Run ``callback(oid, entry)`` on the loop once the object is here (maybe now)."""
        with self._lock:
            entry = self.objects.get(oid)
            if entry is None:
                self._callbacks.setdefault(oid, []).append(callback)
                return
        self._call_on_loop(callback, oid, entry)

    def fail_all_waiters(self) -> None:
        """Wake every sleeping get (used at shutdown so nothing hangs)."""
        with self._lock:
            waiters = [w for ws in self._waiters.values() for w in ws]
            self._waiters.clear()
        for w in waiters:
            w.fire()
