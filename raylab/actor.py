"""Actors: ``@ray.remote`` classes, their handles, and ``ray.kill`` / ``ray.get_actor``.

``Counter.remote()`` returns a handle at once; the actor is created through the
GCS (see ``gcs/actor_manager.py``). ``handle.method.remote(...)`` sends a call
straight to the actor's process and returns ObjectRefs. Handles can be passed
into tasks and other actors; when every handle is gone, the actor is killed
and its resources released (detached actors live on until killed).
"""
from __future__ import annotations

import inspect

from raylab import ids
from raylab import options as opt
from raylab.core_worker.object_ref import ObjectRef
from raylab.core_worker.serialization import export_function
from raylab.core_worker.task_spec import ACTOR_CREATION_TASK, ACTOR_TASK, TaskSpec
from raylab.tracing.emit import TRACER, step


def _method_table(cls) -> dict:
    """Every public method: name -> (num_returns, is_async, max_task_retries)."""
    table = {}
    for name, fn in inspect.getmembers(cls, predicate=callable):
        if name.startswith("__") and name not in ("__call__",):
            continue
        o = getattr(fn, "__ray_method_options__", {})
        table[name] = {"num_returns": o.get("num_returns", 1),
                       "is_async": inspect.iscoroutinefunction(fn)}
    return table


class ActorClass:
    """What ``@ray.remote`` makes of a class: call ``.remote()`` to create an actor."""

    def __init__(self, cls, options: dict):
        opt.check_keys(options, opt.ACTOR_OPTIONS, "actors")
        self._cls = cls
        self._options = dict(options)
        self._methods = _method_table(cls)
        self._is_async = any(m["is_async"] for m in self._methods.values())
        self.__name__ = cls.__name__
        self.__qualname__ = cls.__qualname__
        self.__module__ = cls.__module__
        self.__doc__ = cls.__doc__
        self._blob = None
        self._fid = None
        self._compiled = _compile(self._options, cls.__name__)

    def __call__(self, *args, **kwargs):
        raise TypeError(f"Actors cannot be instantiated directly. Instead of "
                        f"'{self.__name__}()', use '{self.__name__}.remote()'.")

    def __reduce__(self):
        return (ActorClass, (self._cls, self._options))

    def remote(self, *args, **kwargs) -> "ActorHandle":
        return self._remote(args, kwargs, self._compiled)

    def options(self, **actor_options):
        opt.check_keys(actor_options, opt.ACTOR_OPTIONS, "actors")
        merged = dict(self._options)
        merged.update(actor_options)
        compiled = _compile(merged, self.__name__)
        parent = self

        class ActorClassWithOptions:
            def remote(self, *args, **kwargs):
                return parent._remote(args, kwargs, compiled)

        return ActorClassWithOptions()

    def _remote(self, args, kwargs, c) -> "ActorHandle":
        from raylab.api import _core_worker_or_autoinit
        cw = _core_worker_or_autoinit()
        if self._blob is None:
            self._blob, self._fid = export_function(self._cls)
        if self._fid not in cw.exported:
            cw.exported.add(self._fid)
            TRACER.on and step("core_worker", "actor", "export_function",
                               function=self._fid.hex(),
                               detail={"name": self.__name__, "bytes": len(self._blob)})
            cw.export(self._fid, self.__name__, self._blob)
        namespace = c["namespace"] or cw.namespace  # None in a worker: the GCS uses the job's
        if c["get_if_exists"] and c["name"]:
            existing = _lookup(cw, c["name"], namespace or job_namespace(cw))
            if existing is not None:
                return existing
        arg_list, kw_names, nested = cw.task_manager.build_args(args, kwargs,
                                                                 f"{self.__name__}.__init__")
        ctx = cw.ctx
        actor_id = ids.actor_id(cw.current_job(), ctx.task_id, ctx.next_task_index())
        is_async = self._is_async
        actor_options = {"class_name": self.__name__, "is_async": is_async,
                         "max_concurrency": c["max_concurrency"]}
        spec = TaskSpec(ids.actor_creation_task_id(actor_id), cw.current_job(),
                        ACTOR_CREATION_TASK, self._fid, f"{self.__name__}.__init__", arg_list,
                        kw_names, 1, c["resources"], c["placement"], c["strategy"], 0, False,
                        c["runtime_env"], cw.address, cw.worker_id, ctx.task_id,
                        actor_id=actor_id, actor_options=actor_options)
        handle_oid = spec.return_ids()[0]
        with cw.lock:
            cw.refs.add_owned(handle_oid)
            cw.refs.entries[handle_oid].pending = False
        handle_ref = ObjectRef(handle_oid, cw.address)
        cw.actors.handle_objects[handle_oid] = actor_id
        meta = {"class_name": self.__name__, "name": c["name"], "namespace": namespace,
                "detached": c["detached"], "max_restarts": c["max_restarts"],
                "max_task_retries": c["max_task_retries"], "methods": self._methods,
                "get_if_exists": c["get_if_exists"]}
        existing = cw.actors.register(spec, meta, nested)
        if existing is not None:  # get_if_exists raced with another creator
            return _handle_from_info(existing)
        return ActorHandle(actor_id, self.__name__, self._methods, handle_ref,
                           c["max_task_retries"])


class ActorHandle:
    """A handle to an actor: ``handle.method.remote(...)`` calls it."""

    def __init__(self, actor_id: bytes, class_name: str, methods: dict,
                 handle_ref: ObjectRef | None, max_task_retries: int = 0):
        self._actor_id = actor_id
        self._class_name = class_name
        self._methods = methods
        self._handle_ref = handle_ref
        self._max_task_retries = max_task_retries

    def __getattr__(self, name: str):
        if name == "__ray_ready__":
            return ActorMethod(self, name, 1)
        if name.startswith("_"):
            raise AttributeError(name)
        meta = self._methods.get(name)
        if meta is None:
            raise AttributeError(f"'ActorHandle' object has no attribute '{name}' (the actor "
                                 f"class {self._class_name} has no method {name!r})")
        return ActorMethod(self, name, meta["num_returns"])

    def __repr__(self):
        return f"Actor({self._class_name}, {self._actor_id.hex()})"

    def _repr_html_(self):
        from raylab.views.html import actor_handle_html
        return actor_handle_html(self)

    def __reduce__(self):
        return (ActorHandle, (self._actor_id, self._class_name, self._methods, self._handle_ref,
                              self._max_task_retries))

    def __eq__(self, other):
        return isinstance(other, ActorHandle) and other._actor_id == self._actor_id

    def __hash__(self):
        return hash(self._actor_id)

    @property
    def _actor_id_obj(self) -> ids.ActorID:
        return ids.ActorID(self._actor_id)


class ActorMethod:
    def __init__(self, handle: ActorHandle, name: str, num_returns: int):
        self._handle = handle
        self._name = name
        self._num_returns = num_returns

    def __call__(self, *args, **kwargs):
        raise TypeError(f"Actor methods cannot be called directly. Instead of running "
                        f"'object.{self._name}()', try 'object.{self._name}.remote()'.")

    def remote(self, *args, **kwargs):
        return self._submit(args, kwargs, self._num_returns)

    def options(self, **method_options):
        opt.check_keys(method_options, opt.METHOD_OPTIONS, "actor methods")
        n = opt.num_returns_of(method_options, self._num_returns)
        parent = self

        class MethodWithOptions:
            def remote(self, *args, **kwargs):
                return parent._submit(args, kwargs, n)

        return MethodWithOptions()

    def _submit(self, args, kwargs, num_returns):
        from raylab.api import _core_worker
        cw = _core_worker()
        h = self._handle
        name = f"{h._class_name}.{self._name}"
        arg_list, kw_names, _nested = cw.task_manager.build_args(args, kwargs, name)
        ctx = cw.ctx
        tid = ids.actor_task_id(h._actor_id, ctx.task_id, ctx.next_task_index())
        spec = TaskSpec(tid, cw.current_job(), ACTOR_TASK, b"", name, arg_list, kw_names,
                        num_returns, {}, None, ("DEFAULT",), 0, False, None, cw.address,
                        cw.worker_id, ctx.task_id, actor_id=h._actor_id,
                        method_name=self._name)
        refs = cw.task_manager.register_task(spec, arg_list, _nested)
        TRACER.on and step("core_worker", "actor", "submit_actor_task", task=tid.hex(),
                           actor=h._actor_id.hex(), detail={"name": name,
                                                            "method": self._name})
        cw.actors.queue(h._actor_id, h._max_task_retries)
        if not cw.actors.send_now(spec):
            cw.actors.enqueue(spec)
        if num_returns == 1:
            return refs[0]
        if num_returns == 0:
            return None
        return refs


def _compile(o: dict, class_name: str) -> dict:
    lifetime = o.get("lifetime")
    if lifetime not in (None, "detached", "non_detached"):
        raise ValueError(f"invalid value for lifetime, expected None, \"detached\" or "
                         f"\"non_detached\" (not {lifetime!r})")
    name = o.get("name")
    if name is not None and (not isinstance(name, str) or not name):
        raise TypeError(f"The actor name must be a non-empty string, got {name!r}")
    ns = o.get("namespace")
    if ns is not None and (not isinstance(ns, str) or not ns):
        raise TypeError(f"The namespace must be a non-empty string, got {ns!r}")
    explicit_cpus = o.get("num_cpus") is not None
    running = opt.resources_of(o, 0)
    placement = dict(running)
    if not explicit_cpus:
        placement["CPU"] = 1  # Ray: 1 CPU to place an actor, 0 while it runs
        running.pop("CPU", None)
    max_conc = o.get("max_concurrency")
    if max_conc is not None:
        opt._number("max_concurrency", max_conc, allow_none=False, integer=True, minimum=1)
    return {
        "name": name, "namespace": ns, "detached": lifetime == "detached",
        "get_if_exists": bool(o.get("get_if_exists")),
        "resources": running, "placement": placement, "strategy": opt.strategy_of(o),
        "max_restarts": int(opt._number("max_restarts", o.get("max_restarts", 0),
                                        allow_none=False, integer=True, minimum=-1)),
        "max_task_retries": int(opt._number("max_task_retries", o.get("max_task_retries", 0),
                                            allow_none=False, integer=True, minimum=-1)),
        "max_concurrency": max_conc, "runtime_env": opt.runtime_env_of(o),
    }


def _handle_from_info(info: dict) -> ActorHandle:
    oid = ids.object_id(ids.actor_creation_task_id(info["actor_id"]), 1)
    ref = ObjectRef(oid, info["owner"]) if info.get("owner") else None
    return ActorHandle(info["actor_id"], info["class_name"], info["methods"], ref,
                       info.get("max_task_retries", 0))


def job_namespace(cw) -> str | None:
    """The job's namespace: a driver has it from ``init``; a worker asks the GCS once."""
    if cw.namespace is None:
        cw.namespace = cw.rpc_sync(cw.gcs_for_user(), "get_job_namespace", cw.current_job(),
                                   timeout=30)
    return cw.namespace


def _lookup(cw, name: str, namespace: str):
    info = cw.rpc_sync(cw.gcs_for_user(), "get_named_actor", name, namespace, timeout=30)
    return _handle_from_info(info) if info is not None else None


def get_actor_handle(name: str, namespace: str | None = None) -> ActorHandle:
    from raylab.api import _core_worker
    cw = _core_worker()
    if not isinstance(name, str) or not name:
        raise ValueError("Please supply a non-empty value to get_actor")
    ns = namespace or job_namespace(cw)
    handle = _lookup(cw, name, ns)
    if handle is None:
        raise ValueError(f"Failed to look up actor with name '{name}'. This could because 1. "
                         f"You are trying to look up a named actor you didn't create. 2. The "
                         f"named actor died. 3. You did not use a namespace matching the "
                         f"namespace of the actor (namespace={ns!r}).")
    return handle


def kill_actor(actor, no_restart: bool = True) -> None:
    from raylab.api import _core_worker
    if not isinstance(actor, ActorHandle):
        raise ValueError(f"ray.kill() only supported for actors. For tasks, try ray.cancel(). "
                         f"Got: {type(actor)}.")
    cw = _core_worker()
    cw.rpc_sync(cw.gcs_for_user(), "kill_actor", actor._actor_id, bool(no_restart),
                "killed by ray.kill", timeout=30)


def exit_actor() -> None:
    """Inside an actor method: end this actor (its pending calls fail with RayActorError)."""
    from raylab.api import _core_worker
    cw = _core_worker()
    actor_id = getattr(cw, "actor_id", None)
    if actor_id is None:
        raise TypeError("exit_actor API is called on a non-actor worker")
    cw.rpc_sync(cw.gcs_for_user(), "kill_actor", actor_id, True, "exit_actor() called",
                timeout=30)
