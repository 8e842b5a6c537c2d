"""The GCS process: the cluster's control plane on the head node.

This shell owns the socket and the clocks; the tables beside it hold the
logic. It serves raylets (register, health checks, resource reports), drivers
and workers (jobs, the function table, node and actor info, subscriptions),
pulls every raylet's resources each 100 ms and broadcasts the view, and
health-checks every raylet.

Run as ``python -m raylab.gcs.server --session DIR --lifeline-fd N``.
"""
from __future__ import annotations

import asyncio
import os
import sys

from raylab.effects import Publish, Reply, Send
from raylab.gcs.actor_scheduler import ActorScheduler
from raylab.gcs.function_table import KeyValueStore
from raylab.gcs.global_scheduler import GlobalScheduler
from raylab.gcs.job_table import JobTable
from raylab.gcs.node_table import NodeInfo, NodeTable
from raylab.gcs.object_table import ObjectTable
from raylab.gcs.pubsub import PubSub
from raylab.gcs.resource_view import ResourceView
from raylab.process_shell import TraceUplink, common_args, on_signals, run_effects, watch_lifeline
from raylab.session import SessionInfo
from raylab.tracing.emit import TRACER, checkpoint, step
from raylab.transport import ConnectionLost, serve
from raylab.transport import run as run_loop


class GcsServer:
    def __init__(self, session: SessionInfo):
        self.session = session
        cfg = session.config
        self.cfg = cfg
        self.nodes = NodeTable(cfg.health_check_failure_threshold)
        self.view = ResourceView()
        self.kv = KeyValueStore()
        self.jobs = JobTable()
        self.pubsub = PubSub()
        self.actors = ActorScheduler(self)
        self.objects = ObjectTable()
        self.objects.run = self.run
        self.objects.send_to_node = lambda node, method, *args: self.apply(
            Send(node, method, args))
        self.scheduler = GlobalScheduler(self.view, self.objects, self.nodes, cfg)
        self.scheduler.run = self.run
        self.scheduler.call_node = self.call_node
        self.control_plane = cfg.control_plane
        self.raylet_conns: dict[bytes, object] = {}
        self.trace_config = (False, None, None)  # on, pause rules, collector address
        self._traced_version = -1
        self.stopping = asyncio.Event()
        self.loop = asyncio.get_running_loop()
        self.uplink = TraceUplink(self.loop, session.token, "N1", "gcs", "gcs")

    # -- effects ----------------------------------------------------------
    def apply(self, e):
        if type(e) is Publish:
            self.pubsub.publish(e.channel, e.method, e.args)
        elif type(e) is Reply:  # a registered callback fires: the waiting lookup answers
            if not e.key.done():
                e.key.set_result(e.value)
        elif type(e) is Send:
            conn = e.to if hasattr(e.to, "send") else self.raylet_conns.get(e.to)
            if conn is not None and not conn.closed:
                conn.send(e.method, *e.args)
        else:
            return self.actors.apply(e)

    async def run(self, effects) -> None:
        await run_effects(effects, self.apply)

    async def call_node(self, node_id: bytes, method: str, *args):
        """A request to a node's raylet (the global scheduler schedules tasks there)."""
        conn = self.raylet_conns.get(node_id)
        if conn is None or conn.closed:
            raise ConnectionLost(f"no connection to node {node_id.hex()[:8]}")
        return await conn.call(method, *args)

    # -- periodic loops ---------------------------------------------------
    async def pull_resources(self) -> None:
        """Every 100 ms: ask each raylet for its resources, broadcast the view if it changed."""
        period = self.cfg.resource_broadcast_period_ms / 1000
        ticks = 0
        while not self.stopping.is_set():
            await asyncio.sleep(period)
            ticks += 1
            changed = ticks % 5 == 0  # a periodic refresh corrects raylets' local guesses
            for node_id, conn in list(self.raylet_conns.items()):
                if conn.closed:
                    continue
                try:
                    avail, total = await asyncio.wait_for(conn.call("get_resources"), period * 5)
                except (asyncio.TimeoutError, ConnectionLost, OSError):
                    continue
                changed |= self.view.update(node_id, avail, total)
            if changed:
                self.broadcast_view()

    def broadcast_view(self) -> None:
        self.pubsub.publish("resources", "resource_view", (self.view.snapshot(),))
        if self.view.version != self._traced_version:
            self._traced_version = self.view.version
            TRACER.on and step("gcs", "scheduling", "resource_view_broadcast", 1,
                 detail={"version": self.view.version})

    async def health_checks(self) -> None:
        period = self.cfg.health_check_period_ms / 1000
        timeout = self.cfg.health_check_timeout_ms / 1000
        while not self.stopping.is_set():
            await asyncio.sleep(period)
            checks = [(n.node_id, self.raylet_conns.get(n.node_id)) for n in self.nodes.alive()]
            results = await asyncio.gather(*(self._ping(c, timeout) for _, c in checks))
            for (node_id, _), ok in zip(checks, results):
                if ok:
                    self.nodes.health_ok(node_id)
                else:
                    effects = self.nodes.health_missed(node_id)
                    if any(type(e) is Publish and e.method == "node_dead" for e in effects):
                        effects += self.on_node_dead(node_id)
                    await self.run(effects)

    async def _ping(self, conn, timeout: float) -> bool:
        if conn is None or conn.closed:
            return False
        try:
            await asyncio.wait_for(conn.call("ping"), timeout)
            return True
        except (asyncio.TimeoutError, ConnectionLost, OSError):
            return False

    def on_node_dead(self, node_id: bytes) -> list:
        self.view.remove_node(node_id)
        self.broadcast_view()
        conn = self.raylet_conns.pop(node_id, None)
        if conn is not None and conn.transport is not None:
            # abort, not close: a hung raylet never drains what is queued for it, and a
            # DEAD node is dropped now (if it wakes up, it finds itself cut off and exits)
            conn.transport.abort()
        return self.actors.on_node_dead(node_id) + self.objects.on_node_dead(node_id)

    async def shutdown(self) -> None:
        self.stopping.set()


class GcsHandler:
    """One peer's view of the GCS (a raylet, a driver or a worker)."""

    def __init__(self, gcs: GcsServer):
        self.gcs = gcs
        self.node_id = None

    def connection_lost(self, conn, exc):
        self.gcs.pubsub.unsubscribe_all(conn)
        self.gcs.actors.on_connection_lost(conn)

    # -- nodes ------------------------------------------------------------
    async def rpc_register_node(self, conn, node_id, label, address, resources, pid, is_head):
        g = self.gcs
        self.node_id = node_id
        g.raylet_conns[node_id] = conn
        g.view.add_node(node_id, label, resources)
        for ch in ("node", "resources", "trace", "worker"):
            g.pubsub.subscribe(ch, conn)
        g.objects.labels[node_id] = label
        await g.run(g.nodes.register(NodeInfo(node_id, label, address, resources, pid, is_head)))
        g.broadcast_view()
        g.actors.on_node_added(node_id)
        return ([n.public() for n in g.nodes.nodes.values()], g.view.snapshot(), g.trace_config)

    def rpc_mark_node_dead(self, conn, node_id, cause):
        g = self.gcs
        effects = g.nodes.mark_dead(node_id, cause)
        if effects:
            effects += g.on_node_dead(node_id)
        return g.run(effects)

    def rpc_get_message_stats(self, conn):
        """How busy the GCS has been: protocol messages received, by method, and CPU time."""
        import time
        from raylab.transport import RECEIVED
        return dict(RECEIVED), time.process_time()

    def rpc_get_nodes(self, conn):
        # Nodes register concurrently; list them N1, N2, ... so every run reads the same.
        nodes = sorted(self.gcs.nodes.nodes.values(), key=lambda n: (len(n.label), n.label))
        return [n.public() for n in nodes]

    def rpc_get_resource_view(self, conn):
        return self.gcs.view.snapshot()

    def rpc_ping(self, conn):
        return True

    # -- jobs -------------------------------------------------------------
    def rpc_register_job(self, conn, driver_address, pid, namespace):
        g = self.gcs
        job = g.jobs.add(driver_address, pid, namespace)
        for ch in ("node", "actor", "trace", "worker"):
            g.pubsub.subscribe(ch, conn)
        return (job.job_id, [n.public() for n in g.nodes.nodes.values()], g.trace_config)

    def rpc_finish_job(self, conn, job_id):
        self.gcs.jobs.finish(job_id)
        return self.gcs.actors.on_job_finished(job_id)

    def rpc_subscribe(self, conn, channels):
        for ch in channels:
            self.gcs.pubsub.subscribe(ch, conn)
        return True

    def rpc_chaos_note(self, conn, kind, target):
        pass  # it only carries the injector's clock (see raylab.chaos)

    def rpc_report_worker_failure(self, conn, address):
        """A raylet saw one of its workers die: everyone learns that its objects are gone."""
        self.gcs.pubsub.publish("worker", "worker_failure", (address,))

    # -- key-value store and function table ---------------------------------
    async def rpc_kv_put(self, conn, namespace, key, value, overwrite=True):
        if namespace == "fun" and TRACER.on:
            hold = checkpoint("gcs", "task", "register_function", function=key.hex())
            if hold:
                await hold
        return self.gcs.kv.put(namespace, key, value, overwrite)

    async def rpc_kv_get(self, conn, namespace, key, wait_s=0.0):
        if wait_s:
            return await self.gcs.kv.wait_get(namespace, key, wait_s)
        return self.gcs.kv.get(namespace, key)

    def rpc_get_tables(self, conn):
        """The GCS tables the views show: actors, functions, and (lecture mode) objects."""
        g = self.gcs
        functions = [(k.hex(), v[0]) for (ns, k), v in g.kv.data.items() if ns == "fun"]
        return {"control_plane": g.control_plane, "actors": g.actors.table_rows(),
                "functions": functions, "object_table": g.objects.table_rows()}

    def rpc_kv_del(self, conn, namespace, key):
        return self.gcs.kv.delete(namespace, key)

    def rpc_kv_keys(self, conn, namespace, prefix=b""):
        return self.gcs.kv.keys(namespace, prefix)

    # -- tracing ------------------------------------------------------------
    async def rpc_set_trace_config(self, conn, on, rules, collector):
        """Turn tracing on/off everywhere; answers once every raylet and worker has it."""
        g = self.gcs
        g.trace_config = (on, rules, collector)
        g.uplink.configure(on, rules, collector)
        await _all_raylets(g, "trace_config", on, rules, collector)
        return True

    async def rpc_trace_flush(self, conn):
        """Send every buffered event; returns {pid: last sequence number sent}."""
        TRACER.flush()
        out = {TRACER.pid: TRACER.last_seq()}
        for part in await _all_raylets(self.gcs, "trace_flush"):
            if isinstance(part, dict):
                out.update(part)
        return out

    # -- actors, objects, placement: actor_manager.py, object_table.py, global_scheduler.py
    def __getattr__(self, name):
        if name.startswith("rpc_"):
            for core in (self.gcs.actors, self.gcs.objects, self.gcs.scheduler):
                fn = getattr(core, name, None)
                if fn is not None:
                    return lambda conn, *a: fn(conn, *a)
        raise AttributeError(name)


async def _all_raylets(g: GcsServer, method: str, *args) -> list:
    conns = [c for c in g.raylet_conns.values() if not c.closed]
    results = await asyncio.gather(*(asyncio.wait_for(c.call(method, *args), 5) for c in conns),
                                   return_exceptions=True)
    return list(results)


async def main(argv=None) -> None:
    args = common_args("raylab GCS").parse_args(argv)
    session = SessionInfo.load(args.session)
    gcs = GcsServer(session)
    loop = asyncio.get_running_loop()
    server = await serve(session.gcs_address, session.token, lambda: GcsHandler(gcs), name="gcs")
    orphaned = asyncio.Event()

    def driver_died():
        orphaned.set()
        gcs.stopping.set()

    watch_lifeline(loop, args.lifeline_fd, driver_died)
    on_signals(loop, gcs.stopping.set)
    tasks = [loop.create_task(gcs.pull_resources()), loop.create_task(gcs.health_checks())]
    await gcs.stopping.wait()
    TRACER.on = False
    for t in tasks:
        t.cancel()
    server.close()
    if orphaned.is_set():
        await _clean_up_after_driver(gcs)


async def _clean_up_after_driver(gcs: GcsServer) -> None:
    """The driver died without shutdown(): once the raylets are gone, remove the session."""
    import shutil
    for _ in range(40):
        if all(c.closed for c in gcs.raylet_conns.values()):
            break
        await asyncio.sleep(0.05)
    shutil.rmtree(gcs.session.dir, ignore_errors=True)


if __name__ == "__main__":
    try:
        run_loop(main())
    finally:
        sys.stdout.flush()
        os._exit(0)
