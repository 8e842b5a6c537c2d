"""The driver joins a cluster: check the arguments, start the processes, connect.

``ray.init()`` plans a cluster (every argument checked before anything starts, so a
bad one leaves nothing behind), starts the GCS and one raylet per node, then
connects the driver's core worker: it registers the job with the GCS and waits until
it, and every raylet, knows every live node. ``raylab.cluster_utils.Cluster``
starts a cluster without a driver (it *stands*) and ``ray.init(address=...)``
connects to it later, as in Ray's tests.
"""
from __future__ import annotations

import os
import threading

from raylab import exceptions as exc
from raylab import options as opt
from raylab.cluster import LocalCluster, machine_memory
from raylab.config import Config
from raylab.core_worker.core_worker import DRIVER, CoreWorker, print_worker_lines

CONTROL_PLANES = ("ownership", "centralized")


# clusters started by raylab.cluster_utils.Cluster in this process: address -> LocalCluster
STANDING: dict[str, LocalCluster] = {}


def existing_cluster(address) -> LocalCluster | None:
    if address in (None, "local"):
        return None
    if address == "auto" and STANDING:
        return next(reversed(STANDING.values()))
    if address in STANDING:
        return STANDING[address]
    if address == "auto":
        raise ConnectionError("Could not find any running raylab cluster in this process: "
                              "start one with ray.init() or raylab.cluster_utils.Cluster")
    raise NotImplementedError(f"raylab starts its clusters itself: address={address!r} is not "
                              "one of this process's clusters (ray.init() starts one; "
                              "ray.init(address=cluster.address) joins a "
                              "raylab.cluster_utils.Cluster)")


def check_connect_args(num_nodes, num_cpus, num_gpus, resources, object_store_memory,
                        control_plane, system_config) -> None:
    """As Ray: a cluster that already runs has its nodes; the driver cannot resize them."""
    given = [name for name, v in (("num_cpus", num_cpus), ("num_gpus", num_gpus),
                                  ("resources", resources),
                                  ("object_store_memory", object_store_memory),
                                  ("control_plane", control_plane),
                                  ("_system_config", system_config)) if v is not None]
    if num_nodes != 1:
        given.insert(0, "num_nodes")
    if given:
        raise ValueError(f"When connecting to an existing cluster, {', '.join(given)} must not "
                         "be provided (add nodes with the Cluster's add_node instead).")


def plan_cluster(num_nodes, num_cpus, num_gpus, resources, object_store_memory, control_plane,
                 system_config) -> tuple:
    """Check a cluster's arguments (raising on anything wrong) before anything starts."""
    if control_plane is None:  # the test suite runs everything under both
        control_plane = os.environ.get("RAYLAB_CONTROL_PLANE", "ownership")
    if control_plane not in CONTROL_PLANES:
        raise ValueError(f"invalid value for control_plane, expected one of "
                         f"{CONTROL_PLANES} (not {control_plane!r})")
    if isinstance(num_nodes, bool) or not isinstance(num_nodes, int) or num_nodes < 1:
        raise ValueError(f"num_nodes must be an integer >= 1, got {num_nodes!r}")
    node_resources = node_resources_of(num_cpus, num_gpus, resources)
    object_store_memory = _store_memory(object_store_memory, num_nodes)
    if system_config is not None and not isinstance(system_config, dict):
        raise TypeError(f"_system_config must be a dict, not {type(system_config).__name__}")
    cfg = Config.from_env(control_plane=control_plane, **(system_config or {}))
    return cfg, num_nodes, node_resources, object_store_memory


def _store_memory(object_store_memory, num_nodes: int) -> int:
    if object_store_memory is None:
        return int(machine_memory() * 0.3 / num_nodes)
    if isinstance(object_store_memory, bool) or not isinstance(object_store_memory, int) \
            or object_store_memory < 1024 * 1024:
        raise ValueError("object_store_memory must be an integer number of bytes >= 1 MiB, "
                         f"got {object_store_memory!r}")
    return object_store_memory


def start_cluster(cfg: Config, num_nodes: int, node_resources: dict,
                  store_memory: int) -> LocalCluster:
    """Start the GCS and the nodes' raylets (no driver yet: ``_connect`` adds it)."""
    cluster = LocalCluster(cfg, cfg.control_plane)
    try:
        cluster.start_gcs()
        for _ in range(num_nodes):
            cluster.add_node(dict(node_resources), store_memory)
    except BaseException:
        cluster.shutdown()
        raise
    return cluster


def node_resources_of(num_cpus, num_gpus, resources) -> dict:
    out = opt.resources_of({"num_cpus": num_cpus, "num_gpus": num_gpus,
                            "resources": resources or {}},
                           float(os.cpu_count() or 1))
    mem = machine_memory()
    out.setdefault("memory", float(int(mem * 0.7)))
    return out


def connect(cluster: LocalCluster, namespace: str | None) -> CoreWorker:
    """The driver joins the cluster: its core worker registers the job with the GCS and
    waits until it, and every raylet, knows every live node."""
    session = cluster.session
    from raylab import ids
    cw = CoreWorker(session, DRIVER, ids.node_id(1), "N1", session.socket("r1"),
                    b"", session.socket("driver"))
    cw.namespace = namespace or "anonymous_namespace"
    cw.on_log = print_worker_lines
    registered = threading.Event()
    num_alive = len(cluster.alive_nodes())

    def on_node(_info):
        if sum(1 for n in cw.nodes.values() if n["Alive"]) >= num_alive:
            registered.set()

    cw.listeners.setdefault("node_added", []).append(on_node)
    try:
        cw.start()
        cw.attach_plasma(cluster.procs.head_arena)
        cw.worker_id = ids.driver_worker_id(cw.job_id)
        _attach_tracing(cw)
        on_node(None)
        if not registered.wait(60):
            raise exc.RaySystemError(f"the cluster's {num_alive} node(s) did not all start; "
                                     f"see the logs in {session.dir}/logs")
        for n in [n for n in cw.nodes.values() if n["Alive"]]:  # raylets know each other
            conn = cw.run_sync(cw.conn_to(n["RayletSocketName"]), 30)
            cw.rpc_sync(conn, "wait_for_nodes", num_alive, timeout=30)
    except BaseException:
        from raylab.tracing import recorder
        recorder.COLLECTOR.detach(cw)
        cw.shutdown()
        raise
    cw.cluster = cluster
    return cw


def _attach_tracing(cw: CoreWorker) -> None:
    from raylab.tracing import recorder
    recorder.COLLECTOR.attach(cw)
