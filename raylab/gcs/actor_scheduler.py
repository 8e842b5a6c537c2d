"""GCS actor scheduling: place an actor, lease a worker for it, run its constructor.

The lecture's Steps 2-3 of actor creation happen here: "the global scheduler
selects a raylet, enqueues the actor creation request, and waits for the
raylet to grant a resource lease. Once the resource is granted, the GCS
schedules the actor creation task" on the leased worker, which from then on
*is* the actor.

The GCS keeps a connection to every actor process; when it drops, the actor
died, and the actor table decides: restart (run the constructor again on a
new lease) or DEAD. Owners that die take their (non-detached) actors with them.
``ray.kill`` ends the actor's process at once; an actor killed before it has one
withdraws its lease request, and a lease granted to it anyway goes back.
"""
from __future__ import annotations

import asyncio

from raylab import exceptions as exc
from raylab.effects import Call, Trace
from raylab.gcs.actor_manager import ActorEntry, ActorTable
from raylab.process_shell import run_effects
from raylab.scheduling import policies
from raylab.states import ALIVE, DEAD, RESTARTING
from raylab.tracing.emit import TRACER, checkpoint
from raylab.transport import ConnectionLost, connect


class ActorScheduler:
    def __init__(self, gcs):
        self.gcs = gcs
        self.table = ActorTable()
        self.worker_conns: dict[bytes, object] = {}   # actor id -> connection to its process
        self.owner_conns: dict[object, str] = {}      # GCS connection -> owner address
        self._changed = asyncio.Condition()
        self._killing: dict = {}   # actor id -> why it is being killed (no restart)

    # -- effects -----------------------------------------------------------------------
    def apply(self, e):
        if type(e) is Call:
            if e.action == "schedule_actor":
                self.gcs.loop.create_task(self.schedule(*e.args))
            elif e.action == "release_lease":
                self.release_lease(*e.args)
            return None
        raise TypeError(f"unknown effect {e!r}")

    async def run(self, effects) -> None:
        await run_effects(effects, self.gcs.apply)
        async with self._changed:
            self._changed.notify_all()

    # -- registration (Step 1) -------------------------------------------------------------
    async def rpc_register_actor(self, conn, spec, meta):
        t = self.table
        # an actor made inside a task lives in its job's namespace, as the driver's do
        name, ns = meta.get("name"), meta["namespace"] or self.job_namespace(spec.job_id)
        if name:
            existing = t.name_taken(name, ns)
            if existing is not None:
                if meta.get("get_if_exists"):
                    return ("exists", t.actors[existing].info())
                raise exc.ActorAlreadyExistsError(
                    f"The name {name} (namespace={ns}) is already taken. Please use a "
                    f"different name or get the existing actor using "
                    f"ray.get_actor('{name}', namespace='{ns}')")
        e = ActorEntry(spec.actor_id, meta["class_name"], spec, spec.owner_address, name, ns,
                       meta.get("detached", False), meta.get("max_restarts", 0),
                       meta.get("max_task_retries", 0), spec.job_id,
                       methods=meta.get("methods", {}), owner_node=meta.get("owner_node"))
        self.owner_conns[conn] = spec.owner_address
        effects = t.register(e)
        if meta.get("deps_ready", True):
            effects += t.pending_creation(e)
            self.gcs.loop.create_task(self.schedule(e.actor_id))
        else:
            effects += t.set_state(e, "DEPENDENCIES_UNREADY")
        await self.run(effects)
        return ("ok", e.info())

    def job_namespace(self, job_id) -> str | None:
        job = self.gcs.jobs.jobs.get(job_id)
        return job.namespace if job is not None else None

    def rpc_get_job_namespace(self, conn, job_id):
        """A worker asks which namespace its job's named actors live in (once per job)."""
        return self.job_namespace(job_id)

    async def rpc_actor_dependencies_ready(self, conn, actor_id, spec):
        """The owner resolved the constructor's arguments: now the actor can be placed."""
        e = self.table.actors.get(actor_id)
        if e is None or e.state != "DEPENDENCIES_UNREADY":
            return False
        e.spec = spec
        await self.run(self.table.pending_creation(e))
        self.gcs.loop.create_task(self.schedule(actor_id))
        return True

    async def rpc_actor_dependencies_failed(self, conn, actor_id, error_payload):
        """An argument of the constructor failed: the creation task cannot run, so (as in
        Ray) the actor is DEAD and every call raises the creation task's error."""
        import cloudpickle
        e = self.table.actors.get(actor_id)
        if e is None or e.state != "DEPENDENCIES_UNREADY":
            return False
        error = cloudpickle.loads(error_payload)
        await self.run(self.table.creation_failed(e, error, _creation_cause(error)))
        return True

    # -- scheduling (Steps 2-3) -------------------------------------------------------------
    async def schedule(self, actor_id: bytes) -> None:
        e = self.table.actors.get(actor_id)
        if e is None or e.state not in ("PENDING_CREATION", RESTARTING):
            return
        spec = e.spec
        attempt = e.restarts
        try:
            grant = await self._lease(e)
        except exc.TaskUnschedulableError as err:
            if e.state != DEAD:
                await self.run(self.table.creation_failed(
                    e, exc.ActorUnschedulableError(str(err)), f"cannot be scheduled: {err}"))
            return
        if grant is None:
            return
        raylet_addr, lease_id, worker_id, waddr, node_id, pid = grant
        e.lease = (raylet_addr, lease_id)
        if self._overtaken(e, attempt):  # killed while the raylet was granting the lease
            return
        label = self.gcs.view.nodes[node_id].label if node_id in self.gcs.view.nodes else "?"
        hold = TRACER.on and checkpoint("gcs", "actor", "create_actor", actor=e.actor_id.hex(),
                                        node=node_id.hex(),
                                        detail={"class_name": e.class_name, "to": label})
        if hold:
            await hold
            if self._overtaken(e, attempt):
                return
        spec.attempt = e.restarts
        try:
            conn = await connect(waddr, self.gcs.session.token, _ActorProcess(self, actor_id),
                                 name=f"actor-{actor_id.hex()[:8]}", retry=True, timeout=10)
        except OSError as err:
            await self.on_process_died(actor_id, f"could not reach the actor's worker ({err})")
            return
        self.worker_conns[actor_id] = conn
        try:
            status, returns = await conn.call("push_task", spec)
        except (ConnectionLost, OSError):
            return  # the connection's loss reports the death (see _ActorProcess)
        if status != "ok":
            import cloudpickle
            error = cloudpickle.loads(returns[0][1])
            await self.run(self.table.creation_failed(e, error, _creation_cause(error)))
            conn.send("exit_worker", "constructor failed")
            return
        if e.state == DEAD:  # killed while it was being created
            conn.send("exit_worker", "killed", True)
            return
        await self.run(self.table.created(e, node_id, label, worker_id, waddr, pid))

    def _overtaken(self, e: ActorEntry, attempt: int) -> bool:
        """A lease arrived for a creation that no longer stands (the actor was killed, or
        is being created again): give the worker back, or it would idle as this actor."""
        if e.state != DEAD and e.restarts == attempt:
            return False
        self.release_lease(e.actor_id)
        return True

    async def _lease(self, e: ActorEntry):
        """Pick a node and lease a worker there; a raylet that vanished meanwhile (its node
        is dying) is skipped, and the choice is made again."""
        for attempt in range(100):
            try:
                return await self._lease_once(e)
            except (ConnectionLost, OSError):
                if e.state == DEAD:
                    return None
                await asyncio.sleep(0.1)
        raise exc.TaskUnschedulableError("no raylet answered the actor's lease requests")

    async def _lease_once(self, e: ActorEntry):
        """Pick a node with the GCS's resource view, then ask its raylet, following spillback."""
        spec = e.spec
        reachable = {nid for nid, c in self.gcs.raylet_conns.items() if not c.closed}
        view = sorted((n for n in self.gcs.view.nodes.values() if n.node_id in reachable),
                      key=lambda n: n.node_id)
        owner_node = self._owner_node(e)
        strategy = spec.strategy
        if strategy[0] == "NODE_AFFINITY":
            d = policies.node_affinity(spec.placement_resources, view, strategy[1], strategy[2],
                                       owner_node, self.gcs.cfg)
        elif strategy[0] == "SPREAD":
            d = policies.spread(spec.placement_resources, view, len(self.table.actors))
        else:
            d = policies.hybrid(spec.placement_resources, view, owner_node, self.gcs.cfg)
        if d.status == policies.UNSCHEDULABLE:
            raise exc.TaskUnschedulableError(d.reason)
        if d.node is None:  # infeasible now: ask the owner's node, which queues and warns
            d.node = owner_node or view[0].node_id
        address = self._raylet_address(d.node)
        label = self.gcs.view.nodes[d.node].label if d.node in self.gcs.view.nodes else "?"
        hold = TRACER.on and checkpoint(
            "gcs", "actor", "schedule_actor", actor=e.actor_id.hex(), node=d.node.hex(),
            detail={"class_name": e.class_name, "to": label, "why": d.reason})
        if hold:
            await hold
        spilled = False
        for _ in range(16):
            conn = self.gcs.raylet_conns.get(d.node)
            if address is None or conn is None:
                raise ConnectionLost("the chosen node's raylet is gone")
            if e.state == DEAD:  # killed meanwhile (in step mode, say): ask nobody
                return None
            e.asking = d.node  # so that a kill can withdraw the request
            try:
                reply = await conn.call("request_worker_lease", spec.resources,
                                        spec.placement_resources, spec.strategy, spilled,
                                        self.gcs.session.gcs_address, spec.task_id,
                                        e.class_name, e.actor_id)
            finally:
                e.asking = None
            if reply[0] == "granted":
                return (address,) + tuple(reply[1:])
            if reply[0] == "spillback":
                d.node, address, spilled = reply[1], reply[2], True
                continue
            if reply[0] == "unschedulable":
                raise exc.TaskUnschedulableError(reply[1])
            return None
        return None

    def _owner_node(self, e: ActorEntry):
        for n in self.gcs.nodes.alive():
            if n.node_id == e.owner_node:
                return n.node_id
        head = next((n for n in self.gcs.nodes.alive() if n.is_head), None)
        return head.node_id if head is not None else None

    def _raylet_address(self, node_id):
        info = self.gcs.nodes.nodes.get(node_id)
        return info.address if info is not None and info.state == "ALIVE" else None

    def cancel_lease_request(self, e: ActorEntry) -> None:
        """The actor will not be created: the raylet drops its queued (or infeasible) request,
        instead of granting it later to nobody."""
        conn = self.gcs.raylet_conns.get(e.asking) if e.asking is not None else None
        if conn is not None and not conn.closed:
            conn.send("cancel_worker_lease", e.spec.task_id)

    def release_lease(self, actor_id: bytes) -> None:
        e = self.table.actors.get(actor_id)
        if e is None or e.lease is None:
            return
        raylet_addr, lease_id = e.lease
        e.lease = None
        for nid, conn in self.gcs.raylet_conns.items():
            info = self.gcs.nodes.nodes.get(nid)
            if info is not None and info.address == raylet_addr and not conn.closed:
                conn.send("return_worker", lease_id, True)

    # -- deaths, kills, owners ----------------------------------------------------------------
    async def on_process_died(self, actor_id: bytes, cause: str) -> None:
        e = self.table.actors.get(actor_id)
        self.worker_conns.pop(actor_id, None)
        if e is None or e.state == DEAD:
            return
        e.lease = None
        reason, no_restart = self._killing.pop(actor_id, (cause, False))
        await self.run(self.table.process_died(e, reason, allow_restart=not no_restart))

    async def rpc_kill_actor(self, conn, actor_id, no_restart, reason="killed by ray.kill",
                             force=True):
        """ray.kill (``force``): the actor's process ends at once, the call it runs and those
        queued fail. Out of scope (not ``force``): it exits after the calls it has."""
        e = self.table.actors.get(actor_id)
        if e is None or e.state == DEAD:
            return False
        await self.run([Trace("gcs", "actor", "kill_actor", {"actor": actor_id.hex()},
                              {"class_name": e.class_name, "no_restart": no_restart,
                               "reason": reason})])
        wconn = self.worker_conns.get(actor_id)
        if wconn is not None and not wconn.closed:
            self._killing[actor_id] = (reason, no_restart)  # the cause, once it is gone
            wconn.send("exit_worker", reason, force)
            return True
        # not created yet (or being restarted): it simply never becomes ALIVE
        self.cancel_lease_request(e)
        await self.run(self.table.process_died(e, reason, allow_restart=not no_restart))
        return True

    async def rpc_get_actor_info(self, conn, actor_id, wait_ready: bool = False,
                                 not_at: str | None = None):
        """An actor's state and address. With ``wait_ready``, wait until it is DEAD or ALIVE
        (at an address other than ``not_at``: the caller saw that process go away)."""
        e = self.table.actors.get(actor_id)
        if e is None and wait_ready:  # a handle can arrive before its creator registers it
            e = await self._registered(actor_id)
        if e is None:
            return None
        if wait_ready:
            async with self._changed:
                await self._changed.wait_for(
                    lambda: e.state == DEAD or (e.state == ALIVE and e.address != not_at))
        return e.info()

    async def _registered(self, actor_id: bytes, timeout: float = 10.0):
        """Wait (a while: its owner may have died first) for the actor's registration."""
        try:
            async with self._changed:
                await asyncio.wait_for(self._changed.wait_for(
                    lambda: actor_id in self.table.actors), timeout)
        except asyncio.TimeoutError:
            return None
        return self.table.actors[actor_id]

    def rpc_get_named_actor(self, conn, name, namespace):
        aid = self.table.name_taken(name, namespace)
        return self.table.actors[aid].info() if aid is not None else None

    def rpc_list_named_actors(self, conn, all_namespaces, namespace):
        return [{"name": n, "namespace": ns} for (ns, n), aid in self.table.names.items()
                if (all_namespaces or ns == namespace) and self.table.actors[aid].state != DEAD]

    def on_connection_lost(self, conn) -> None:
        owner = self.owner_conns.pop(conn, None)
        if owner is None:
            return
        for e in self.table.owned_by(owner):
            if owner in self.owner_conns.values():
                continue
            self.gcs.loop.create_task(self.rpc_kill_actor(None, e.actor_id, True,
                                                          "its owner died"))

    def on_node_dead(self, node_id: bytes) -> list:
        for e in self.table.on_node(node_id):
            self.gcs.loop.create_task(self.on_process_died(
                e.actor_id, "the node it ran on died"))
        return []

    def on_node_added(self, node_id: bytes) -> None:
        pass

    def on_job_finished(self, job_id):
        return None

    def table_rows(self) -> list:
        return self.table.rows()


class _ActorProcess:
    """The GCS's end of its connection to an actor process."""

    def __init__(self, sched: ActorScheduler, actor_id: bytes):
        self.sched = sched
        self.actor_id = actor_id

    def connection_lost(self, conn, exc_):
        if self.sched.worker_conns.get(self.actor_id) is conn:
            self.sched.gcs.loop.create_task(self.sched.on_process_died(
                self.actor_id, "the actor's worker process died"))

    def rpc_trace_release(self, conn, key):
        TRACER.release(key)


def _creation_cause(error) -> str:
    cause = getattr(error, "cause", error)
    if str(getattr(error, "traceback_str", "")).startswith(exc.ARGUMENT_NOT_COMPUTED):
        return ("its creation task failed: an input argument could not be computed "
                f"({type(cause).__name__})")  # see actor_submitter.creation_argument_error
    return f"the actor's constructor raised {type(cause).__name__}"
