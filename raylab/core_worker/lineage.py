"""Lineage reconstruction: rebuilding an object whose every copy is gone.

An owner keeps, for each task output it owns, the task spec that made it (its
*lineage*, see ``reference_table.py``). When a reader finds no live copy of an
object (its node died), it asks the owner to recover it. The owner checks that
no copy is left, then re-runs the task that made it; that task may find its own
arguments lost and ask for them in turn, so the rebuild goes as deep as the loss.
Objects made by ``ray.put`` have no lineage: their loss raises ObjectLostError.
Each rebuild counts against the task's ``max_retries``.
"""
from __future__ import annotations

import time

from raylab import exceptions as exc
from raylab.core_worker.memory_store import ERROR, IN_PLASMA
from raylab.tracing.emit import TRACER, step
from raylab.transport import ConnectionLost


class LineageRecovery:
    """The ``ObjectApi`` methods that read from shared memory and recover lost objects."""

    def _from_plasma(self, oid: bytes, owner: str, deadline: float | None = None):
        """Read a large object from this node's store (pulled here first if elsewhere).
        If every copy is gone, ask its owner to rebuild it from lineage, then read again.
        A get's timeout (``deadline``) covers the pull and the rebuild too."""
        cw = self.cw
        owner = owner or cw.address
        e = cw.refs.entries.get(oid)
        alive = cw.alive_nodes()
        hints = sorted(n for n in e.locations if n in alive) if e is not None else []
        for _attempt in range(64):
            try:
                return cw.plasma.get(oid, owner, hints, deadline)
            except (exc.OwnerDiedError, exc.ObjectReconstructionFailedError):
                raise
            except exc.ObjectLostError:
                hints = self._recover(oid, owner, hints, deadline)
            except TimeoutError:
                raise exc.GetTimeoutError(
                    f"Get timed out: object {oid.hex()} is ready, but it did not reach "
                    f"{cw.node_label}'s object store in time (it is still being fetched)."
                ) from None
            except ConnectionLost as err:
                raise exc.RaySystemError(f"lost the connection to this node's raylet: {err}")
        raise exc.ObjectReconstructionFailedError(oid.hex(), owner)

    def _recover(self, oid: bytes, owner: str, tried: list, deadline=None) -> list:
        """Every copy we tried (``tried``; none means all the owner knew) failed: the owner
        rebuilds the object (or says it cannot). Wait until it is ready again; returns where
        its copies are now. A worker lends its CPU back meanwhile: the rebuild may need it."""
        cw = self.cw
        blocked = cw.executor is not None and cw.executor.notify_blocked()
        try:
            return self._recover_and_wait(oid, owner, tried, deadline)
        finally:
            if blocked:
                cw.executor.notify_unblocked()

    def _recover_and_wait(self, oid: bytes, owner: str, tried: list, deadline=None) -> list:
        cw = self.cw
        if owner == cw.address:
            status = cw.run_sync(self._recover_owned_async(oid, tried), 30)
            if isinstance(status, BaseException):
                raise status
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            self._wait_for([oid], 1, left, "get")
            e = cw.refs.entries.get(oid)
            return sorted(e.locations) if e is not None else []
        try:
            conn = cw.run_sync(cw.conn_to(owner), 30)
            status = cw.rpc_sync(conn, "recover_object", oid, tried, timeout=30)
            if isinstance(status, BaseException):
                raise status
            kind, payload = cw.rpc_sync(conn, "get_object_status", oid)  # waits until ready
        except (ConnectionLost, OSError):
            raise exc.OwnerDiedError(oid.hex(), owner) from None
        if kind == ERROR:
            raise payload
        locations = list(payload[1]) if kind == IN_PLASMA else []
        with cw.lock:  # our copy of its status was stale
            e = cw.refs.entries.get(oid)
            if e is not None:
                e.locations = set(locations)
        return locations

    async def _recover_owned_async(self, oid: bytes, tried: list):
        return self.recover_owned(oid, tried)

    def recover_owned(self, oid: bytes, tried: list):
        """io thread, owner side: is there still a copy? If not, re-run the task that made
        it (lineage reconstruction); a put cannot be rebuilt. Returns a status or an error."""
        cw = self.cw
        e = cw.refs.entries.get(oid)
        if e is None or not e.owned:
            return exc.ReferenceCountingAssertionError(oid.hex())
        # where it was: its copies, or (if the node's death was heard first) its primary
        had = set(e.locations) or ({e.primary_node} if e.primary_node else set())
        e.locations &= cw.alive_nodes()
        e.locations -= set(tried) if tried else set(e.locations)  # those copies failed
        if e.locations and not e.value_freed:
            return "exists"   # another live copy: read that one
        if e.pending:
            return "recovering"
        spec = e.lineage
        TRACER.on and step("core_worker", "failure", "object_lost", object=oid.hex(), detail={
            "where": ", ".join(sorted(cw.label_of(n) for n in had)) or "no live node"})
        if spec is None or e.is_put:
            err = exc.ObjectLostError(oid.hex(), cw.address, message=(
                f"Failed to retrieve object {oid.hex()}: all its copies are lost, and it "
                "was created by ray.put, which cannot be reconstructed (only task outputs "
                "can be rebuilt from lineage)."))
            cw.store.put(oid, (ERROR, err))
            return err
        return cw.task_manager.reconstruct(spec, oid)
