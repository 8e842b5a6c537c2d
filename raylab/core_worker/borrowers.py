"""The borrower protocol: reference counting across processes.

A process that holds a ref it does not own is a *borrower*. It tells the owner
as soon as it holds the ref (``add_borrower``) and again when it drops its last
one (``borrow_released``); both messages go over the one connection between
the two processes, so they cannot overtake each other. The owner frees the
object only when it has no local refs, no pending tasks using it and no
borrowers left. If a process dies, its borrows end with it, and objects it
owned are lost to everyone else (OwnerDiedError).
"""
from __future__ import annotations

import asyncio

from raylab import exceptions as exc
from raylab.core_worker.memory_store import ERROR
from raylab.tracing.emit import TRACER, step
from raylab.transport import ConnectionLost


class BorrowerProtocol:
    """The ``ObjectApi`` methods of the borrower protocol."""

    # -- the borrower protocol ------------------------------------------------------------
    def register_borrow(self, oid: bytes, owner: str) -> None:
        """io thread: we now hold a ref owned by ``owner``; tell it before we could drop it."""
        fut = self.cw.loop.create_task(self._register_borrow(oid, owner))
        self._borrow_acks[oid] = fut
        self.unacked.add(fut)
        fut.add_done_callback(self.unacked.discard)

    async def _register_borrow(self, oid: bytes, owner: str) -> None:
        try:
            conn = await self.cw.conn_to(owner)
            await conn.call("add_borrower", oid, self.cw.address)
        except (ConnectionLost, OSError):
            pass

    async def borrows_registered(self, oids) -> None:
        """Wait until the owners of ``oids`` have acknowledged us as a borrower."""
        futs = [self._borrow_acks.get(o) for o in oids]
        futs = [f for f in futs if f is not None]
        if futs:
            await asyncio.gather(*futs, return_exceptions=True)

    def add_borrower(self, oid: bytes, address: str) -> bool:
        cw = self.cw
        with cw.lock:
            added = cw.refs.add_borrower(oid, address)
        if added:
            TRACER.on and step("core_worker", "refcount", "borrower_added", 1, object=oid.hex(),
                 detail={"borrower": address})
        return added

    def borrow_released(self, oid: bytes, address: str) -> None:
        cw = self.cw
        out: list = []
        with cw.lock:
            cw.refs.remove_borrower(oid, address, out)
        if out:
            cw.release(out)

    def release_borrow(self, oid: bytes, entry) -> None:
        """io thread: our last ref to a borrowed object is gone; tell its owner (after it
        has heard that we borrow it: a release that overtook the registration would leak)."""
        ack = self._borrow_acks.pop(oid, None)
        if ack is not None and not ack.done():
            ack.add_done_callback(lambda _f: self._release_now(oid, entry))
            return
        self._release_now(oid, entry)

    def _release_now(self, oid: bytes, entry) -> None:
        conn = self.cw.conns.get(entry.owner)
        if conn is not None and not conn.closed:
            conn.send("borrow_released", oid, self.cw.address)
        else:
            self.cw.loop.create_task(self._send_release(oid, entry.owner))

    async def _send_release(self, oid: bytes, owner: str) -> None:
        try:
            conn = await self.cw.conn_to(owner)
            conn.send("borrow_released", oid, self.cw.address)
        except (ConnectionLost, OSError):
            pass

    # -- failures ----------------------------------------------------------------------
    def on_peer_lost(self, address: str) -> None:
        """A process went away: objects it owned are lost to us; its borrows end."""
        cw = self.cw
        out: list = []
        lost = []
        with cw.lock:
            cw.refs.remove_borrower_everywhere(address, out)
            for oid, e in cw.refs.entries.items():
                if not e.owned and e.owner == address:
                    lost.append(oid)  # even a copy we hold is unusable without its owner
        if out:
            cw.release(out)
        for oid in lost:
            if oid in self._fetching:
                continue  # the fetch itself reports OwnerDiedError
            cw.store.put(oid, (ERROR, exc.OwnerDiedError(oid.hex(), address)))
