"""``@ray.remote`` functions: calling one submits a task.

``f.remote(*args)`` exports the function to the GCS function table the first
time (the lecture's Step 0), then asks the core worker to submit a task and
returns ObjectRefs at once. ``f.options(...)`` overrides the defaults for one
call. Calling ``f(...)`` directly is an error, as in Ray.
"""
from __future__ import annotations

import inspect

from raylab import options as opt
from raylab.core_worker.serialization import export_function
from raylab.tracing.emit import TRACER, step


class RemoteFunction:
    def __init__(self, fn, task_options: dict):
        _check_function(fn)
        opt.check_keys(task_options, opt.TASK_OPTIONS, "remote functions")
        self._function = fn
        self._options = dict(task_options)
        self._function_name = f"{fn.__module__}.{fn.__qualname__}"
        self._name = fn.__name__
        self.__name__ = fn.__name__
        self.__qualname__ = fn.__qualname__
        self.__module__ = fn.__module__
        self.__doc__ = fn.__doc__
        self._blob = None
        self._fid = None
        self._exported_to = None
        self._compiled = _compile(self._options, self._name)  # validate now, fail early
        self._signature = Arity(fn)

    def __call__(self, *args, **kwargs):
        raise TypeError(f"Remote functions cannot be called directly. Instead of running "
                        f"'{self._function_name}()', try '{self._function_name}.remote()'.")

    def __repr__(self):
        return f"<raylab remote function {self._function_name}>"

    def remote(self, *args, **kwargs):
        return self._remote(args, kwargs, self._compiled)

    def __reduce__(self):
        # a task that calls another remote function carries just the function and options
        return (RemoteFunction, (self._function, self._options))

    def options(self, **task_options):
        opt.check_keys(task_options, opt.TASK_OPTIONS, "remote functions")
        merged = dict(self._options)
        merged.update(task_options)
        compiled = _compile(merged, self._name)
        parent = self

        class FuncWithOptions:
            def remote(self, *args, **kwargs):
                return parent._remote(args, kwargs, compiled)

            def __repr__(self):
                return f"<{parent._function_name} with options {task_options}>"

        return FuncWithOptions()

    def _export(self, cw) -> bytes:
        if self._blob is None:
            self._blob, self._fid = export_function(self._function)
        if self._exported_to is not cw and self._fid not in cw.exported:
            cw.exported.add(self._fid)
            TRACER.on and step("core_worker", "task", "export_function", function=self._fid.hex(),
                 detail={"name": self._name, "bytes": len(self._blob)})
            cw.export(self._fid, self._name, self._blob)
        self._exported_to = cw
        return self._fid

    def _remote(self, args, kwargs, c):
        from raylab.api import _core_worker_or_autoinit
        self._signature.check(args, kwargs, self._function_name)
        cw = _core_worker_or_autoinit()
        fid = self._export(cw)
        refs = cw.task_manager.submit(fid, c["name"], args, kwargs, c["num_returns"],
                                      c["resources"], c["strategy"], c["max_retries"],
                                      c["retry_exceptions"], c["runtime_env"])
        n = c["num_returns"]
        if n == 1:
            return refs[0]
        if n == 0:
            return None
        return refs


def _check_function(fn) -> None:
    """What Ray refuses to make a remote function, refused at the decorator."""
    if inspect.iscoroutinefunction(fn):
        raise ValueError("'async def' should not be used for remote tasks. You can wrap the "
                         "async function with `asyncio.run(f())`, or use an async actor "
                         "(a class with async methods).")
    if inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn):
        raise NotImplementedError(
            f"{getattr(fn, '__qualname__', fn)} is a generator function: generator tasks "
            "(num_returns=\"dynamic\"/\"streaming\") are not supported by raylab; return a "
            "list, or use num_returns=N")


class Arity:
    """The function's signature, checked at ``.remote()`` as Ray binds it: a call with the
    wrong arguments fails at the call site, not at ``get``. The common call (positional
    arguments only) costs two comparisons; anything else is bound by ``inspect``."""

    __slots__ = ("sig", "lo", "hi")

    def __init__(self, fn):
        try:
            self.sig = inspect.signature(fn)
        except (TypeError, ValueError):  # some builtins have none: nothing to check
            self.sig, self.lo, self.hi = None, 0, float("inf")
            return
        params = self.sig.parameters.values()
        pos = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        self.lo = sum(1 for p in pos if p.default is p.empty)
        self.hi = float("inf") if any(p.kind == p.VAR_POSITIONAL for p in params) else len(pos)
        if any(p.kind == p.KEYWORD_ONLY and p.default is p.empty for p in params):
            self.lo = self.hi + 1  # a required keyword-only argument: always bind

    def check(self, args: tuple, kwargs: dict, name: str) -> None:
        if not kwargs and self.lo <= len(args) <= self.hi:
            return
        if self.sig is None:
            return
        try:
            self.sig.bind(*args, **kwargs)
        except TypeError as e:
            raise TypeError(f"{name}{self.sig}: {e}") from None


def _compile(o: dict, default_name: str) -> dict:
    """Turn user options into what a task spec needs (raising on anything wrong)."""
    name = o.get("name") or default_name
    if not isinstance(name, str):
        raise TypeError(f"The option name must be a string, got {name!r}")
    return {
        "name": name,
        "num_returns": opt.num_returns_of(o),
        "resources": opt.resources_of(o, 1),
        "strategy": opt.strategy_of(o),
        "max_retries": opt.max_retries_of(o),
        "retry_exceptions": opt.retry_exceptions_of(o),
        "runtime_env": opt.runtime_env_of(o),
    }
