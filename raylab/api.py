"""The public API, with Ray's names: ``init``, ``remote``, ``get``, ``put``, ``wait``, ...

``import raylab as ray`` and write the program you would write for Ray.
"""
from __future__ import annotations

import atexit
import inspect
import threading

from raylab import exceptions as exc
from raylab import options as opt
from raylab.cluster import LocalCluster
from raylab.core_worker import current
from raylab.core_worker.object_ref import ObjectRef
from raylab.driver import STANDING, check_connect_args, connect, existing_cluster, plan_cluster, \
    start_cluster
from raylab.remote_function import RemoteFunction
from raylab.runtime_context import RuntimeContext

_lock = threading.RLock()
_cluster: LocalCluster | None = None
_IGNORED_INIT_ARGS = {"include_dashboard", "dashboard_host", "dashboard_port", "logging_level",
                      "logging_format", "log_to_driver", "configure_logging", "job_config",
                      "_temp_dir", "_metrics_export_port", "_node_ip_address"}


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

    def _repr_html_(self) -> str:
        """In a notebook: the cluster that init started, a row per node."""
        from raylab.views.html import escape, table
        if not is_initialized():
            return "<b>raylab</b>: shut down"
        sizes = {n.label: n.object_store_memory for n in _cluster.nodes.values()}
        rows = [[n["NodeName"], "ALIVE" if n["Alive"] else "DEAD",
                 f"{n['Resources'].get('CPU', 0):g}",
                 f"{(sizes.get(n['NodeName']) or 0) / 2**20:,.0f} MiB"] for n in nodes()]
        return (f"<b>raylab</b> cluster ({escape(self.get('control_plane', ''))} control "
                f"plane)" + table(["node", "state", "CPUs", "object store"], rows))


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

    ``address=cluster.address`` (or ``"auto"``) connects to a cluster that a
    ``raylab.cluster_utils.Cluster`` of this process started, as in Ray's tests.
    Every argument is checked before anything starts: a bad one leaves nothing behind.
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
        if local_mode:
            raise NotImplementedError("local_mode is not supported (it is deprecated in Ray too)")
        if namespace is not None and not isinstance(namespace, str):
            raise TypeError(f"namespace must be a string or None, not {namespace!r}")
        job_env = opt.runtime_env_of({"runtime_env": runtime_env})
        existing = existing_cluster(address)
        if existing is not None:
            check_connect_args(num_nodes, num_cpus, num_gpus, resources, object_store_memory,
                                control_plane, _system_config)
            cluster = existing
        else:
            plan = plan_cluster(num_nodes, num_cpus, num_gpus, resources, object_store_memory,
                                control_plane, _system_config)
            cluster = start_cluster(*plan)
        try:
            cw = connect(cluster, namespace)
        except BaseException:
            if existing is None:
                cluster.shutdown()
            raise
        _cluster = cluster
        cw.job_runtime_env = job_env
        if kwargs.get("log_to_driver") is False:
            cw.on_log = None  # worker output stays in the session's log files
        atexit.register(shutdown)
        return _context()


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
        if cluster is not None and cluster not in STANDING.values():
            cluster.shutdown()  # a cluster_utils.Cluster's cluster stays up until its shutdown
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
    timeout = _check_timeout(timeout)
    if not object_refs:
        return [], []
    if len(set(object_refs)) != len(object_refs):
        raise ValueError("Wait requires a list of unique object refs.")
    if isinstance(num_returns, bool) or not isinstance(num_returns, int) or num_returns <= 0:
        raise ValueError(f"Invalid number of objects to return {num_returns}.")
    if num_returns > len(object_refs):
        raise ValueError("num_returns cannot be greater than the number of objects provided to "
                         "ray.wait.")
    return cw.objects.wait(list(object_refs), num_returns, timeout, fetch_local)


def cancel(object_ref: ObjectRef, *, force: bool = False, recursive: bool = True) -> None:
    """Cancel the task that makes ``object_ref``: queued tasks never run; a running one gets
    KeyboardInterrupt (``force=True`` kills its worker). ``get`` then raises TaskCancelledError.
    With ``recursive=True`` (the default, as in Ray) the tasks it submitted that are still
    pending or running are cancelled too."""
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
    # recursive: the worker running the task cancels the tasks it submitted, and so on down
    cw.call_soon(cw.submitter.cancel, tid, force, bool(recursive))


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
    """The GPU indices the running task or actor holds (``[]`` in the driver), as Ray."""
    cw = current.CORE_WORKER
    ex = cw.executor if cw is not None else None
    return list(ex.gpu_ids) if ex is not None else []


def cluster():
    """raylab extra: the driver's handle on the local cluster (nodes, processes)."""
    if _cluster is None:
        raise exc.RaySystemError("raylab is not initialized: call ray.init() first")
    return _cluster
