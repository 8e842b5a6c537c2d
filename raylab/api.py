"""The public API, with Ray's names: ``init``, ``remote``, ``get``, ``put``, ``wait``, ...

``import raylab as ray`` and write the program you would write for Ray.
"""
from __future__ import annotations

import atexit
import inspect
import os
import threading

from raylab import exceptions as exc
from raylab import options as opt
from raylab.cluster import LocalCluster, machine_memory
from raylab.config import Config
from raylab.core_worker import current
from raylab.core_worker.core_worker import DRIVER, CoreWorker, print_worker_lines
from raylab.core_worker.object_ref import ObjectRef
from raylab.remote_function import RemoteFunction
from raylab.runtime_context import RuntimeContext

_lock = threading.RLock()
_cluster: LocalCluster | None = None
_IGNORED_INIT_ARGS = {"include_dashboard", "dashboard_host", "dashboard_port", "logging_level",
                      "logging_format", "log_to_driver", "configure_logging", "job_config",
                      "_temp_dir", "_metrics_export_port", "_node_ip_address"}
CONTROL_PLANES = ("ownership", "centralized")


class RayContext(dict):
    """What ``init`` returns (address info, as Ray's context does)."""

    def __getattr__(self, k):
        try:
            return self[k]
        except KeyError:
            raise AttributeError(k) from None

    def __enter__(self):
        return self

    def __exit__(self, *a):
        shutdown()


def is_initialized() -> bool:
    return current.CORE_WORKER is not None and _cluster is not None


def init(address: str | None = None, *, num_nodes: int = 1, num_cpus: float | None = None,
         num_gpus: float | None = None, resources: dict | None = None,
         object_store_memory: int | None = None, namespace: str | None = None,
         ignore_reinit_error: bool = False, runtime_env: dict | None = None,
         local_mode: bool = False, control_plane: str | None = None,
         _system_config: dict | None = None, **kwargs) -> RayContext:
    """Start a local teaching cluster: a GCS, ``num_nodes`` raylets (N1 is the head) and workers.

    ``control_plane="centralized"`` runs the lecture's design (a GCS object table and a
    global scheduler) instead of Ray 2's (owners and raylet leases, the default).

    Each simulated node gets ``num_cpus`` CPUs (default: this machine's count),
    ``num_gpus`` GPUs, the custom ``resources`` and ``object_store_memory`` bytes
    of shared memory (default: 30% of RAM, divided among the nodes).
    """
    global _cluster
    unknown = set(kwargs) - _IGNORED_INIT_ARGS
    if unknown:
        raise TypeError(f"init() got unexpected keyword argument(s): {sorted(unknown)}")
    with _lock:
        if is_initialized():
            if ignore_reinit_error:
                return _context()
            raise RuntimeError("Maybe you called ray.init twice by accident? This error can be "
                               "suppressed by passing in 'ignore_reinit_error=True' or by "
                               "calling 'ray.shutdown()' prior to 'ray.init()'.")
        if address not in (None, "local"):
            raise NotImplementedError("raylab always starts its own local cluster; connecting "
                                      f"to an existing cluster (address={address!r}) is not "
                                      "supported")
        if local_mode:
            raise NotImplementedError("local_mode is not supported (it is deprecated in Ray too)")
        if control_plane is None:  # the test suite runs everything under both
            control_plane = os.environ.get("RAYLAB_CONTROL_PLANE", "ownership")
        if control_plane not in CONTROL_PLANES:
            raise ValueError(f"invalid value for control_plane, expected one of "
                             f"{CONTROL_PLANES} (not {control_plane!r})")
        if isinstance(num_nodes, bool) or not isinstance(num_nodes, int) or num_nodes < 1:
            raise ValueError(f"num_nodes must be an integer >= 1, got {num_nodes!r}")
        node_resources = _node_resources(num_cpus, num_gpus, resources)
        if object_store_memory is None:
            object_store_memory = int(machine_memory() * 0.3 / num_nodes)
        elif isinstance(object_store_memory, bool) or not isinstance(object_store_memory, int) \
                or object_store_memory < 1024 * 1024:
            raise ValueError("object_store_memory must be an integer number of bytes >= 1 MiB, "
                             f"got {object_store_memory!r}")
        cfg = Config.from_env(control_plane=control_plane, **(_system_config or {}))
        cluster = LocalCluster(cfg, control_plane)
        try:
            cw = _start(cluster, num_nodes, node_resources, object_store_memory, namespace)
        except BaseException:
            cluster.shutdown()
            raise
        _cluster = cluster
        cw.job_runtime_env = opt.runtime_env_of({"runtime_env": runtime_env})
        if kwargs.get("log_to_driver") is False:
            cw.on_log = None  # worker output stays in the session's log files
        atexit.register(shutdown)
        return _context()


def _node_resources(num_cpus, num_gpus, resources) -> dict:
    out = opt.resources_of({"num_cpus": num_cpus, "num_gpus": num_gpus,
                            "resources": resources or {}},
                           float(os.cpu_count() or 1))
    mem = machine_memory()
    out.setdefault("memory", float(int(mem * 0.7)))
    return out


def _start(cluster: LocalCluster, num_nodes: int, node_resources: dict, store_memory: int,
           namespace: str | None) -> CoreWorker:
    cluster.start_gcs()
    for _ in range(num_nodes):
        cluster.add_node(dict(node_resources), store_memory)
    head = cluster.nodes["N1"]
    session = cluster.session
    from raylab import ids
    cw = CoreWorker(session, DRIVER, ids.node_id(1), "N1", session.socket("r1"),
                    b"", session.socket("driver"))
    cw.namespace = namespace or "anonymous_namespace"
    cw.on_log = print_worker_lines
    registered = threading.Event()

    def on_node(_info):
        if sum(1 for n in cw.nodes.values() if n["Alive"]) >= num_nodes:
            registered.set()

    cw.listeners.setdefault("node_added", []).append(on_node)
    cw.start()
    cw.attach_plasma(cluster.procs.head_arena)
    cw.worker_id = ids.driver_worker_id(cw.job_id)
    _attach_tracing(cw)
    on_node(None)
    if not registered.wait(60):
        raise exc.RaySystemError(f"the cluster's {num_nodes} node(s) did not all start; see "
                                 f"the logs in {session.dir}/logs")
    for n in list(cw.nodes.values()):  # and every raylet has heard of every other
        conn = cw.run_sync(cw.conn_to(n["RayletSocketName"]), 30)
        cw.rpc_sync(conn, "wait_for_nodes", num_nodes, timeout=30)
    cw.cluster = cluster
    del head
    return cw


def _attach_tracing(cw: CoreWorker) -> None:
    from raylab.tracing import recorder
    recorder.COLLECTOR.attach(cw)


def _context() -> RayContext:
    c = _cluster
    return RayContext(address_info={"session_dir": c.session.dir,
                                    "gcs_address": c.session.gcs_address},
                      session_dir=c.session.dir, nodes=[n.label for n in c.nodes.values()],
                      dashboard_url=None, control_plane=c.control_plane)


def shutdown(_exiting_interpreter: bool = False) -> None:
    """Stop the cluster: every process this session started, its sockets and files."""
    global _cluster
    with _lock:
        cw = current.CORE_WORKER
        cluster = _cluster
        _cluster = None
        if cw is not None:
            from raylab.tracing import control, recorder, stepper
            stepper.STEPPER.reset()   # nothing may stay paused: shutdown must not hang
            control.reset()
            recorder.COLLECTOR.detach(cw)
            cw.shutdown()
        if cluster is not None:
            cluster.shutdown()
        try:
            atexit.unregister(shutdown)
        except Exception:
            pass


def _core_worker():
    cw = current.CORE_WORKER
    if cw is None:
        raise exc.RaySystemError("raylab is not initialized: call ray.init() first")
    return cw


def _core_worker_or_autoinit():
    cw = current.CORE_WORKER
    if cw is None:
        init()
        cw = current.CORE_WORKER
    return cw


# -- remote ------------------------------------------------------------------------
def remote(*args, **kwargs):
    """Make a function a remote function (``f.remote()`` runs it as a task) or a class an actor."""
    if len(args) == 1 and not kwargs and callable(args[0]):
        return _make_remote(args[0], {})
    if args:
        raise TypeError("The @ray.remote decorator must be applied either with no arguments "
                        "and no parentheses, for example '@ray.remote', or it must be applied "
                        "using some of the arguments in the list ['num_cpus', 'num_gpus', "
                        "'resources', 'max_retries', ...], for example "
                        "'@ray.remote(num_returns=2, resources={\"CustomResource\": 1})'.")
    return lambda fn: _make_remote(fn, kwargs)


def _make_remote(obj, options: dict):
    if inspect.isclass(obj):
        from raylab.actor import ActorClass
        return ActorClass(obj, options)
    if not callable(obj):
        raise TypeError(f"@ray.remote must decorate a function or a class, not {obj!r}")
    return RemoteFunction(obj, options)


def method(**options):
    """Set per-method options on an actor method, e.g. ``@ray.method(num_returns=2)``."""
    opt.check_keys(options, opt.METHOD_OPTIONS, "actor methods")

    def deco(fn):
        fn.__ray_method_options__ = dict(options)
        return fn
    return deco


# -- objects --------------------------------------------------------------------
def put(value, *, _owner=None) -> ObjectRef:
    """Store ``value`` in the object store and return a ref to it (this process owns it,
    or the actor ``_owner``)."""
    cw = _core_worker_or_autoinit()
    if _owner is not None:
        from raylab.actor import ActorHandle
        if not isinstance(_owner, ActorHandle):
            raise TypeError(f"_owner must be an actor handle, not {type(_owner).__name__}")
        return cw.objects.put_for_owner(value, _owner)
    return cw.objects.put(value)


def get(object_refs, *, timeout: float | None = None):
    """Wait for the value(s) behind ObjectRef(s) and return them (raising a task's error)."""
    cw = _core_worker()
    if isinstance(object_refs, ObjectRef):
        return cw.objects.get([object_refs], _check_timeout(timeout))[0]
    if isinstance(object_refs, (list, tuple)):
        for r in object_refs:
            if not isinstance(r, ObjectRef):
                raise TypeError(f"'object_refs' must either be an ObjectRef or a list of "
                                f"ObjectRefs, but the list contains {type(r).__name__} {r!r}")
        return cw.objects.get(list(object_refs), _check_timeout(timeout))
    if hasattr(object_refs, "_actor_ref_for_get"):
        return get(object_refs._actor_ref_for_get(), timeout=timeout)
    raise ValueError(f"Invalid type of object refs, {type(object_refs)}, is given. "
                     "'object_refs' must either be an ObjectRef or a list of ObjectRefs.")


def _check_timeout(timeout):
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout < 0:
        raise ValueError(f"'timeout' must be a non-negative number or None, got {timeout!r}")
    return float(timeout)


def wait(object_refs, *, num_returns: int = 1, timeout: float | None = None,
         fetch_local: bool = True):
    """Return ``(ready, not_ready)``: the first ``num_returns`` ready refs, in input order."""
    cw = _core_worker()
    if isinstance(object_refs, ObjectRef):
        raise TypeError("wait() expected a list of ray.ObjectRef, got a single ray.ObjectRef")
    if not isinstance(object_refs, (list, tuple)):
        raise TypeError(f"wait() expected a list of ray.ObjectRef, got {type(object_refs)}")
    for r in object_refs:
        if not isinstance(r, ObjectRef):
            raise TypeError(f"wait() expected a list of ray.ObjectRef, got list containing "
                            f"{type(r)}")
    if len(set(object_refs)) != len(object_refs):
        raise ValueError("Wait requires a list of unique object refs.")
    if isinstance(num_returns, bool) or not isinstance(num_returns, int) or num_returns < 0:
        raise ValueError(f"Invalid number of objects to return {num_returns}.")
    if num_returns > len(object_refs):
        raise ValueError("num_returns cannot be greater than the number of objects provided to "
                         "ray.wait.")
    return cw.objects.wait(list(object_refs), num_returns, _check_timeout(timeout), fetch_local)


def cancel(object_ref: ObjectRef, *, force: bool = False, recursive: bool = True) -> None:
    """Cancel the task that makes ``object_ref``: queued tasks never run; a running one gets
    KeyboardInterrupt (``force=True`` kills its worker). ``get`` then raises TaskCancelledError."""
    cw = _core_worker()
    if not isinstance(object_ref, ObjectRef):
        raise TypeError(f"ray.cancel() only supported for object refs. For actors, try "
                        f"ray.kill(). Got: {type(object_ref)}.")
    e = cw.refs.get(object_ref._id)
    if e is None or not e.owned:
        raise ValueError("ray.cancel() can only cancel tasks submitted by this process (the "
                         "owner of the ref)")
    from raylab import ids
    tid = ids.task_of_object(object_ref._id)
    if getattr(cw, "actors", None) is not None and cw.actors.owns_task(tid):
        raise NotImplementedError("cancelling actor tasks is not supported; use ray.kill")
    cw.call_soon(cw.submitter.cancel, tid, force)


# -- the cluster ---------------------------------------------------------------------
def nodes() -> list[dict]:
    cw = _core_worker()
    return cw.rpc_sync(cw.gcs, "get_nodes", timeout=10)


def cluster_resources() -> dict:
    return _resources(available=False)


def available_resources() -> dict:
    return _resources(available=True)


def _resources(available: bool) -> dict:
    cw = _core_worker()
    snapshot = cw.rpc_sync(cw.gcs, "get_resource_view", timeout=10)
    out: dict = {}
    for _nid, _label, total, avail, alive in snapshot:
        if not alive:
            continue
        for k, v in (avail if available else total).items():
            if available and v <= 0:
                continue
            out[k] = out.get(k, 0.0) + v
    return out


def get_runtime_context() -> RuntimeContext:
    return RuntimeContext(_core_worker())


def kill(actor, *, no_restart: bool = True) -> None:
    from raylab.actor import kill_actor
    kill_actor(actor, no_restart)


def get_actor(name: str, namespace: str | None = None):
    from raylab.actor import get_actor_handle
    return get_actor_handle(name, namespace)


def timeline(filename: str | None = None):
    from raylab.tracing.timeline import timeline as _timeline
    return _timeline(filename)


def get_gpu_ids() -> list:
    return []


def cluster():
    """raylab extra: the driver's handle on the local cluster (nodes, processes)."""
    if _cluster is None:
        raise exc.RaySystemError("raylab is not initialized: call ray.init() first")
    return _cluster
