"""Failures of normal tasks, on the owner's side: a worker dies, a node is declared dead.

A worker that dies mid-task makes its push fail: the task is retried up to
``max_retries`` times (``-1``: forever), then fails with ``WorkerCrashedError``.
An application error is retried only with ``retry_exceptions``; once those
retries run out, the task's own error is its result.

A node the GCS declares DEAD (it missed its health checks) may not have closed
anything: a hung node keeps our connections open and silent. So the owner fails
over at once: lease requests waiting on its raylet fail (and ask elsewhere),
tasks pushed to its workers are retried, and whatever the node still answers
later is ignored (*fenced*: those tasks are no longer in flight there).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from raylab import exceptions as exc
from raylab.tracing.emit import TRACER, step
from raylab.transport import ConnectionLost

if TYPE_CHECKING:
    from raylab.core_worker.submitter import LeasedWorker


class TaskFailures:
    """The ``NormalTaskSubmitter`` methods that handle failures."""

    def _on_worker_failed(self, lw: LeasedWorker, q) -> None:
        if lw.dead:
            return
        lw.dead = True
        TRACER.on and step("core_worker", "failure", "worker_died", task=None,
                           node=lw.node_id.hex(),
                           detail={"worker": lw.worker_id.hex()[:8], "pid": lw.pid})
        if q is not None and lw in q.leases:
            q.leases.remove(lw)
        self._send_return(lw, disconnect=True)

    def _retry_or_fail(self, spec, why: str, error=None) -> bool:
        """Resubmit the task if it has retries left; otherwise fail its returns."""
        tid = spec.task_id
        if tid in self.cancelled:
            self._finish_failed(spec, exc.TaskCancelledError(tid.hex()))
            return False
        if self.retry(spec, why):
            return True
        if error is None:
            error = exc.WorkerCrashedError(
                f"The worker executing {spec.name} died unexpectedly (attempt "
                f"{spec.attempt + 1} of {spec.max_retries + 1}): {why}. It may have called "
                "os._exit or sys.exit, been killed by a signal, or run out of memory.")
        self._finish_failed(spec, error)
        return False

    def retry(self, spec, why: str) -> bool:
        """Resubmit the task if it has retries left (and was not cancelled); False if not,
        and the caller records the failure it has (a crash, or the task's own error)."""
        left = spec.max_retries
        if spec.task_id in self.cancelled or not (left == -1 or spec.attempt < left):
            return False
        spec.attempt += 1
        TRACER.on and step("core_worker", "failure", "retry_task", task=spec.task_id.hex(),
                           detail={"attempt": spec.attempt, "why": why, "name": spec.name,
                                   "max_retries": left})
        self.submit(spec)
        return True

    def on_node_dead(self, node_id: bytes) -> None:
        """The GCS declared a node DEAD. A killed node's connections drop by themselves, but
        a hung one's stay open and silent: fail over now. Lease requests waiting on its
        raylet fail (and ask elsewhere); tasks pushed to its workers are retried."""
        why = f"node {self.cw.label_of(node_id)} died"
        for fut in self.asking.pop(node_id, ()):
            if not fut.done():
                fut.set_exception(ConnectionLost(why))
        dead = {id(lw): lw for lw in self.running_on.values() if lw.node_id == node_id}
        for q in self.queues.values():
            dead.update((id(lw), lw) for lw in q.leases if lw.node_id == node_id)
        for lw in dead.values():
            self._fail_over(lw, why)
        address = self.cw.nodes.get(node_id, {}).get("RayletSocketName")
        drop_connection(self.cw.conns.get(address))
        for q in list(self.queues.values()):
            self._pump(q)

    def _fail_over(self, lw: LeasedWorker, why: str) -> None:
        """Give up on a leased worker of a dead node: its tasks are retried elsewhere (or
        fail), and any reply it still sends is ignored (its tasks are no longer in flight)."""
        lw.dead = True
        for q in self.queues.values():
            if lw in q.leases:
                q.leases.remove(lw)
        specs = list(lw.in_flight.values())
        lw.in_flight.clear()
        for spec in specs:
            self.running_on.pop(spec.task_id, None)
            self._retry_or_fail(spec, why)
        drop_connection(lw.conn)


def drop_connection(conn) -> None:
    """Close a connection to a dead node's process at once (abort: a frozen peer never
    drains what we queued), so every call still waiting on it fails now."""
    if conn is not None and not conn.closed and conn.transport is not None:
        conn.transport.abort()
