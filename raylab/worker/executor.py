"""The task executor: the worker side of "invoke the task function" (Steps 8-9).

Owners push task specs straight to this worker (it holds a lease for them).
The io thread receives them and queues them; the worker's main thread runs
them one at a time: fetch the function from the GCS function table the first
time, resolve the arguments, run the user's code, package the return values
(small ones inline in the reply, large ones into the node's shared-memory
store) and reply to the owner.

Running user code on the main thread means ``ray.cancel`` can interrupt it
with KeyboardInterrupt, as in Ray, and a ``ray.get`` inside a task simply
blocks this thread while the io thread keeps serving.
"""
from __future__ import annotations

import asyncio
import os
import queue
import signal
import sys
import threading
import traceback

import cloudpickle

from raylab import exceptions as exc
from raylab.core_worker.memory_store import ERROR, IN_PLASMA, VALUE
from raylab.core_worker.object_ref import ObjectRef
from raylab.core_worker.serialization import deserialize, serialize
from raylab.core_worker.task_spec import ACTOR_CREATION_TASK, ACTOR_TASK, ARG_REF
from raylab.tracing.emit import TRACER, checkpoint, step
from raylab.transport import DEFERRED


class TaskExecutor:
    def __init__(self, cw):
        self.cw = cw
        self.queue: queue.SimpleQueue = queue.SimpleQueue()
        self.functions: dict[bytes, object] = {}
        self.current = None          # spec running on the main thread
        self.cancel_requested = None
        self.blocked = False
        self.main_ident = threading.get_ident()
        self.exiting = False
        self.cancelled: set = set()
        self.actor = None            # the ActorRuntime, once this worker becomes an actor
        self._holds: dict = {}       # task id -> refs it returns, kept until handed over

    # -- io thread ---------------------------------------------------------------
    def push(self, conn, spec):
        """An owner pushed a task: queue it for the main thread, which replies itself when
        it is done. Calls to a threaded or async actor start at once (max_concurrency)."""
        actor = self.actor
        if actor is not None and actor.concurrent and spec.kind == ACTOR_TASK:
            fut = self.cw.loop.create_future()
            actor.submit(spec, fut)
            return fut
        self.queue.put((spec, conn, conn.current_rid))
        return DEFERRED

    def cancel(self, task_id: bytes, force: bool):
        cur = self.current
        if cur is None or cur.task_id != task_id:
            self.cancelled.add(task_id)  # queued here but not started: it never will be
            return True
        TRACER.on and step("worker", "task", "cancel_task", task=task_id.hex(), detail={"force": force})
        if force:
            os._exit(1)  # force=True: the worker process itself is killed
        self.cancel_requested = task_id
        os.kill(os.getpid(), signal.SIGINT)  # KeyboardInterrupt in the main thread
        return True

    def exit(self, reason: str):
        TRACER.on and step("worker", "task", "worker_exit", detail={"reason": reason})
        self.exiting = True
        if self.actor is not None:
            self.actor.shutdown()
        self.queue.put(None)
        return True

    def on_connection_lost(self, conn) -> None:
        if conn is self.cw.raylet and not self.cw.shutting_down:
            os._exit(0)  # our raylet (our node) is gone: so are we

    # -- blocked in ray.get: lend our CPU back to the raylet ---------------------------
    def notify_blocked(self) -> bool:
        if threading.get_ident() != self.main_ident or self.current is None or self.blocked:
            return False
        self.blocked = True
        self.cw.call_soon(self._send_raylet, "worker_blocked")
        return True

    def notify_unblocked(self) -> None:
        if self.blocked:
            self.blocked = False
            self.cw.call_soon(self._send_raylet, "worker_unblocked")

    def _send_raylet(self, method: str) -> None:
        r = self.cw.raylet
        if r is not None and not r.closed:
            r.send(method, self.cw.worker_id)

    # -- main thread ---------------------------------------------------------------
    def run(self) -> None:
        self.main_ident = threading.get_ident()
        signal.signal(signal.SIGINT, signal.default_int_handler)
        while True:
            try:
                item = self.queue.get()
            except KeyboardInterrupt:  # a cancel that arrived after its task finished
                continue
            if item is None:
                return
            spec, conn, rid = item
            if spec.task_id in self.cancelled:
                self.cancelled.discard(spec.task_id)
                result = self._error_reply(spec, exc.TaskCancelledError(spec.task_id.hex()))
            else:
                try:
                    result = self.execute(spec)
                except KeyboardInterrupt:
                    result = self._error_reply(spec, exc.TaskCancelledError(spec.task_id.hex()))
            if not result[2] and not self.cw.objects.unacked:
                conn.reply_from_thread(rid, (result[0], result[1]))  # straight to the owner
            else:
                self.cw.call_soon(self._finish_rid, spec, result, conn, rid)

    def _finish_rid(self, spec, result, conn, rid) -> None:
        """io thread: the slow path of a reply (borrowers to register first)."""
        fut = self.cw.loop.create_future()
        fut.add_done_callback(lambda f: conn.closed or conn._reply(rid, f.result()))
        self._finish(spec, result, fut)

    def _finish(self, spec, result, fut) -> None:
        """io thread: make sure borrowers are registered, then answer the owner."""
        pending = list(self.cw.objects.unacked)
        if pending or result[2]:
            self.cw.loop.create_task(self._finish_async(spec, result, fut, pending))
        elif not fut.done():
            fut.set_result((result[0], result[1]))

    async def _finish_async(self, spec, result, fut, pending) -> None:
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        for oid, owner in result[2]:  # refs we return inside values: the caller borrows them
            if owner == self.cw.address:
                self.cw.objects.add_borrower(oid, spec.owner_address)
            else:
                try:
                    conn = await self.cw.conn_to(owner)
                    await conn.call("add_borrower", oid, spec.owner_address)
                except OSError:
                    pass
        self._holds.pop(spec.task_id, None)
        if not fut.done():
            fut.set_result((result[0], result[1]))

    def execute(self, spec):
        """Run one task on this thread; returns (status, returns, refs returned inside)."""
        if threading.get_ident() == self.main_ident:
            self.current = spec  # already while its arguments are fetched (may block)
        if spec.kind == ACTOR_CREATION_TASK:
            return self.create_actor(spec)
        if spec.kind == ACTOR_TASK:
            return self.run_one(spec)
        fn = self.function(spec.function_id, spec.name)
        args, kwargs = self.resolve_args(spec)
        return self._call(spec, fn, args, kwargs)

    def _call(self, spec, fn, args, kwargs):
        saved_env = self._begin(spec)
        try:
            value = fn(*args, **kwargs)
        except KeyboardInterrupt:
            if self.cancel_requested == spec.task_id:
                return self._error_reply(spec, exc.TaskCancelledError(spec.task_id.hex()))
            raise
        except Exception as e:
            return self._error_reply(spec, self._task_error(spec, e))
        finally:
            self._end(saved_env)
        return self._returns(spec, value)

    def _begin(self, spec):
        """Make this thread run ``spec``: ids derive from it, its env vars are set."""
        ctx = self.cw.ctx
        ctx.task_id = spec.task_id
        ctx.task_counter = 0
        ctx.put_counter = spec.num_returns
        ctx.name = spec.name
        ctx.attempt = spec.attempt
        if threading.get_ident() == self.main_ident:
            self.current = spec
        saved_env = _apply_env(spec.runtime_env)
        hold = TRACER.on and checkpoint("worker", "task", "execute_task", task=spec.task_id.hex(),
                                        actor=spec.actor_id.hex() if spec.actor_id else None,
                                        detail={"name": spec.name, "attempt": spec.attempt})
        if hold:
            hold.block()
        return saved_env

    def _end(self, saved_env) -> None:
        if threading.get_ident() == self.main_ident:
            self.current = None
            self.cancel_requested = None
        _restore_env(saved_env)
        _flush_output()

    def _returns(self, spec, value):
        try:
            returns, contained = self.package_returns(spec, value)
        except Exception as e:
            return self._error_reply(spec, self._task_error(spec, e))
        if contained:  # hold the refs we return until the caller is registered with owners
            self._holds[spec.task_id] = [ObjectRef(oid, owner) for oid, owner in contained]
        hold = TRACER.on and checkpoint(
            "worker", "task", "task_returned", task=spec.task_id.hex(),
            actor=spec.actor_id.hex() if spec.actor_id else None,
            object=spec.return_ids()[0].hex() if spec.num_returns else None,
            detail={"name": spec.name, "returns": [("inline", "error", "store")[r[0]]
                                                   for r in returns]})
        if hold:
            hold.block()
        return ("ok", returns, contained)

    # -- actors ------------------------------------------------------------------------
    def create_actor(self, spec):
        """The actor creation task: run the constructor; this process is now the actor."""
        from raylab.worker.actor_executor import ActorRuntime
        cls = self.function(spec.function_id, spec.name)
        args, kwargs = self.resolve_args(spec)
        opts = spec.actor_options or {}
        cw = self.cw
        cw.actor_id = spec.actor_id
        cw.actor_name = opts.get("class_name", spec.name)
        cw.actor_restarts = spec.attempt
        cw.ctx.actor_id = spec.actor_id
        _apply_env(spec.runtime_env)  # an actor's environment lasts as long as its process
        self._begin(spec)
        try:
            instance = cls(*args, **kwargs)
        except Exception as e:
            return self._error_reply(spec, self._task_error(spec, e))
        finally:
            self._end(None)
        self.actor = ActorRuntime(self, instance, opts)
        return ("ok", [(VALUE, _NONE, None)], [])

    def run_one(self, spec):
        """One actor method call, on the calling thread (main thread or a pool thread)."""
        try:
            fn = self.actor.method(spec.method_name)
            args, kwargs = self.resolve_args(spec)
        except Exception as e:
            return self._error_reply(spec, self._task_error(spec, e))
        self.cw.ctx.actor_id = spec.actor_id
        return self._call(spec, fn, args, kwargs)

    async def run_one_async(self, spec, fn):
        """One ``async def`` method call on the actor's event loop."""
        try:
            args, kwargs = self.resolve_args(spec)
        except Exception as e:
            return self._error_reply(spec, self._task_error(spec, e))
        saved_env = self._begin(spec)
        try:
            value = await fn(*args, **kwargs)
        except Exception as e:
            return self._error_reply(spec, self._task_error(spec, e))
        finally:
            self._end(saved_env)
        return self._returns(spec, value)

    def finish_future(self, spec, cf, fut) -> None:
        """io thread: a concurrent (threaded/async) call finished."""
        try:
            result = cf.result()
        except BaseException as e:
            result = self._error_reply(spec, self._task_error(spec, e))
        self._finish(spec, result, fut)

    def function(self, fid: bytes, name: str):
        fn = self.functions.get(fid)
        if fn is None:
            entry = self.cw.run_sync(self._fetch_function(fid))
            if entry is None:
                raise exc.RaySystemError(f"function {name} was never exported to the GCS")
            fn = self.functions[fid] = cloudpickle.loads(entry[1])
        return fn

    async def _fetch_function(self, fid: bytes):
        gcs = await self.cw.ensure_gcs()
        blob = await gcs.call("kv_get", "fun", fid, 30.0)
        TRACER.on and step("worker", "task", "fetch_function", 1, function=fid.hex(),
             detail={"from": "GCS function table"})
        return blob

    def resolve_args(self, spec):
        refs = [(a[1], a[2]) for a in spec.args if a[0] == ARG_REF]
        fetched = iter(self.cw.objects.get_by_ids(refs)) if refs else None
        values = [next(fetched) if a[0] == ARG_REF else deserialize(a[1]) for a in spec.args]
        nkw = len(spec.kwargs_names)
        if not nkw:
            return values, {}
        return values[:-nkw], dict(zip(spec.kwargs_names, values[-nkw:]))

    def package_returns(self, spec, value):
        n = spec.num_returns
        if n == 1:
            values = [value]
        elif n == 0:
            values = []
        else:
            try:
                values = list(value)
            except TypeError:
                raise ValueError(f"Task {spec.name} has num_returns={n} but returned a "
                                 f"non-iterable {type(value).__name__}") from None
            if len(values) != n:
                raise ValueError(f"Task {spec.name} returned {len(values)} objects, but "
                                 f"num_returns={n}.")
        out = []
        all_contained = []
        limit = self.cw.store_threshold
        for oid, v in zip(spec.return_ids(), values):
            data, buffers, contained = serialize(v, oob=self.cw.plasma is not None)
            size = len(data) + sum(memoryview(b).nbytes for b in buffers)
            if size >= limit and self.cw.plasma is not None:
                node = self.cw.plasma.put_serialized(oid, data, buffers, spec.owner_address)
                out.append((IN_PLASMA, (size, node), contained or None))
            else:
                if buffers:
                    data, _b, contained = serialize(v)
                out.append((VALUE, data, contained or None))
            all_contained.extend(contained)
        return out, all_contained

    def _task_error(self, spec, e: BaseException):
        tb = e.__traceback__
        if tb is not None and tb.tb_next is not None:
            tb = tb.tb_next  # drop our own frame: the user sees their code
        text = "".join(traceback.format_exception(type(e), e, tb))
        actor = spec.actor_id.hex() if spec.actor_id else None
        return exc.RayTaskError(spec.name, text, e, pid=self.cw.pid,
                                actor_repr=getattr(self.cw, "actor_name", None) if actor else None,
                                actor_id=actor)

    def _error_reply(self, spec, error):
        try:
            payload = cloudpickle.dumps(error)
        except Exception:
            if isinstance(error, exc.RayTaskError):
                error = exc.RayTaskError(error.function_name, error.traceback_str,
                                         exc.RayError(repr(error.cause)), pid=error.pid)
            payload = cloudpickle.dumps(error)
        n = max(len(spec.return_ids()), 1)
        return ("error", [(ERROR, payload, None)] * n, [])


_NONE = cloudpickle.dumps(None)


def _apply_env(runtime_env):
    if not runtime_env:
        return None
    env_vars = runtime_env.get("env_vars") or {}
    saved = {k: os.environ.get(k) for k in env_vars}
    os.environ.update({k: str(v) for k, v in env_vars.items()})
    return saved


def _restore_env(saved):
    if not saved:
        return
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def _flush_output():
    for s in (sys.stdout, sys.stderr):
        if getattr(s, "dirty", True):  # a task that printed nothing has nothing to flush
            try:
                s.flush()
            except Exception:
                pass


__all__ = ["TaskExecutor", "TRACER"]
