"""What other processes may ask of a core worker: its RPC handler.

Owners are asked about the objects they own and their borrowers; workers are
pushed tasks; the driver receives trace events and worker output; everyone
hears the GCS's pubsub (nodes added and dead). Each message is handed to the
part of the core worker that owns that protocol.
"""
from __future__ import annotations

import sys

from raylab.core_worker.current import DRIVER, WORKER
from raylab.tracing.emit import TRACER, step


class CoreWorkerHandler:
    """What other processes may ask of this core worker."""

    def __init__(self, cw):
        self.cw = cw

    def connection_lost(self, conn, exc):
        self.cw.peer_lost(conn)
        ex = self.cw.executor
        if ex is not None:
            ex.on_connection_lost(conn)

    def rpc_hello(self, conn, address):
        conn.peer = address
        self.cw.conns.setdefault(address, conn)

    # owner side: status of objects we own, and their borrowers
    def rpc_get_object_status(self, conn, oid):
        return self.cw.objects.object_status(oid)

    def rpc_adopt_object(self, conn, oid, entry, node, contained):
        return self.cw.objects.adopt(oid, entry, node, contained)

    def rpc_recover_object(self, conn, oid, tried):
        return self.cw.objects.recover_owned(oid, tried)

    def rpc_get_object_locations(self, conn, oid):
        return self.cw.objects.object_locations(oid)

    def rpc_add_borrower(self, conn, oid, address):
        return self.cw.objects.add_borrower(oid, address)

    def rpc_borrow_released(self, conn, oid, address):
        self.cw.objects.borrow_released(oid, address)

    def rpc_object_location(self, conn, oid, node_id, size, added):
        self.cw.objects.on_location(oid, node_id, size, added)

    def rpc_store_reclaim(self, conn, oid):
        if self.cw.plasma is not None:
            self.cw.plasma.reclaim(oid)

    # worker side: tasks pushed to us by owners (see worker/executor.py)
    def rpc_push_task(self, conn, spec):
        return self.cw.executor.push(conn, spec)

    def rpc_cancel_task(self, conn, task_id, force, recursive=True):
        return self.cw.executor.cancel(task_id, force, recursive)

    def rpc_exit_worker(self, conn, reason, force=False):
        return self.cw.executor.exit(reason, force)

    # the driver: trace events and worker output stream in
    def rpc_trace_hello(self, conn, pid):
        from raylab.tracing import recorder
        recorder.COLLECTOR.add_uplink(pid, conn)

    def rpc_trace_events(self, conn, batch):
        from raylab.tracing import recorder
        recorder.COLLECTOR.add_batch(batch)

    def rpc_log_lines(self, conn, lines):
        cb = self.cw.on_log
        if cb is not None:
            cb(lines)

    # pubsub from the GCS
    def rpc_node_added(self, conn, info):
        self.cw._learn_node(info)
        self.cw.notify("node_added", info)

    def rpc_node_dead(self, conn, node_id, label, cause):
        TRACER.on and step("core_worker", "failure", "node_dead_received",
                           0 if self.cw.mode == DRIVER else 1, node=node_id.hex(),
                           detail={"label": label, "cause": cause})
        n = self.cw.nodes.get(node_id)
        if n is not None:
            n["Alive"] = False
        self.cw.submitter.on_node_dead(node_id)
        self.cw.objects.on_node_dead(node_id)
        self.cw.actors.on_node_dead(node_id)
        self.cw.notify("node_dead", node_id, label, cause)

    def rpc_worker_failure(self, conn, address):
        if address != self.cw.address:
            self.cw.objects.on_peer_lost(address)

    def rpc_trace_config(self, conn, on, rules, collector):
        if self.cw.mode == WORKER:
            self.cw.trace_uplink.configure(on, rules, collector)
        return True

    def rpc_trace_flush(self, conn):
        TRACER.flush()
        return {TRACER.pid: TRACER.last_seq()}

    def rpc_resource_view(self, conn, snapshot):
        pass

    def rpc_lease_infeasible(self, conn, name, resources, why):
        # raylets retry an infeasible request at every resource broadcast; warn once per
        # shape, as Ray does
        shape = tuple(sorted(resources.items()))
        if shape in self.cw.infeasible_warned:
            return
        self.cw.infeasible_warned.add(shape)
        TRACER.on and step("core_worker", "task", "infeasible_warning", detail={"name": name, "why": why})
        print(f"Warning: the task or actor {name} requests {resources}, which no node in "
              f"the cluster can provide ({why}). It stays pending until a node that fits it "
              "joins the cluster (raylab.cluster_utils.Cluster.add_node).",
              file=sys.stderr, flush=True)

    def __getattr__(self, name):
        # actor protocol messages are handled by the actor submitter / actor executor
        if name.startswith("rpc_"):
            for part in (self.cw.actors, self.cw.executor):
                fn = getattr(part, name, None) if part is not None else None
                if fn is not None:
                    return fn
        raise AttributeError(name)


def print_worker_lines(lines) -> None:
    """Driver side: worker output, prefixed like Ray's ``(add pid=1234) ...``."""
    out = sys.stdout
    err = sys.stderr
    for stream, prefix, text in lines:
        target = err if stream == 2 else out
        try:
            target.write("".join(f"({prefix}) {line}\n" for line in text.splitlines()))
            target.flush()
        except Exception:
            pass
