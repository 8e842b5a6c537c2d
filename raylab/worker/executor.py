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

from raylab.core_worker import current
from raylab import exceptions as exc
from raylab.core_worker.memory_store import ERROR, IN_PLASMA, VALUE
from raylab.core_worker.object_ref import ObjectRef
from raylab.core_worker import task_context
from raylab.core_worker.serialization import deserialize, serialize
from raylab.core_worker.task_context import TaskContext
from raylab.core_worker.task_spec import ACTOR_CREATION_TASK, ACTOR_TASK, ARG_REF
from raylab.tracing import cause
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
        self.gpu_ids: list = []      # the GPUs the running task's lease holds

    # -- io thread ---------------------------------------------------------------
    def push(self, conn, spec):
        """An owner pushed a task: queue it for the main thread, which replies itself when
        it is done. Calls to a threaded or async actor start at once (max_concurrency)."""
        actor = self.actor
        if actor is not None and actor.concurrent and spec.kind == ACTOR_TASK:
            fut = self.cw.loop.create_future()
            actor.submit(spec, fut)
            return fut
        self.queue.put((spec, conn, conn.current_rid, cause.current()))  # the owner's push_task
        return DEFERRED

    def cancel(self, task_id: bytes, force: bool, recursive: bool = True):
        cur = self.current
        if cur is None or cur.task_id != task_id:
            self.cancelled.add(task_id)  # queued here but not started: it never will be
            return True
        TRACER.on and step("worker", "task", "cancel_task", task=task_id.hex(),
                           detail={"force": force, "recursive": recursive})
        if recursive:  # first the tasks it submitted (this process owns them)
            self.cw.submitter.cancel_children(task_id, force)
        if force:
            os._exit(1)  # force=True: the worker process itself is killed
        self.cancel_requested = task_id
        os.kill(os.getpid(), signal.SIGINT)  # KeyboardInterrupt in the main thread
        return True

    def exit(self, reason: str, force: bool = False):
        """Leave the cluster. ``force`` (ray.kill): at once, whatever runs or waits here
        fails with the actor's death. Otherwise after the calls already queued (an actor
        out of scope, as Ray's ``__ray_terminate__``)."""
        TRACER.on and step("worker", "task", "worker_exit", detail={"reason": reason})
        if force:
            TRACER.on and TRACER.flush()
            _flush_output()
            os._exit(1)
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
            spec, conn, rid, pushed = item
            cause.enter(pushed)  # this thread now carries out what the owner pushed
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
            if spec.resources.get("GPU"):
                self._take_gpus()  # an actor keeps its GPUs for its whole life
            return self.create_actor(spec)
        if spec.kind == ACTOR_TASK:
            return self.run_one(spec)
        fn = self.function(spec.function_id, spec.name)
        args, kwargs = self.resolve_args(spec)
        if not spec.resources.get("GPU"):
            return self._call(spec, fn, args, kwargs)
        saved = self._take_gpus()
        try:
            return self._call(spec, fn, args, kwargs)
        finally:
            self.gpu_ids = []
            _restore_env(saved)

    def _take_gpus(self):
        """Ask our raylet which GPUs the lease holds; the task sees them as Ray's tasks do
        (``ray.get_gpu_ids()``, ``CUDA_VISIBLE_DEVICES``). Returns the env to restore."""
        async def ask():
            return await self.cw.raylet.call("lease_gpu_ids", self.cw.worker_id)
        self.gpu_ids = list(self.cw.run_sync(ask(), 30))
        return _apply_env({"env_vars": {
            "CUDA_VISIBLE_DEVICES": ",".join(str(i) for i in self.gpu_ids)}})

    def _call(self, spec, fn, args, kwargs):
        begun = self._begin(spec)
        try:
            value = fn(*args, **kwargs)
        except KeyboardInterrupt:
            if self.cancel_requested == spec.task_id:
                return self._error_reply(spec, exc.TaskCancelledError(spec.task_id.hex()))
            raise
        except Exception as e:
            return self._error_reply(spec, self._task_error(spec, e))
        finally:
            self._end(begun)
        return self._returns(spec, value)

    def _begin(self, spec):
        """Make this thread (or coroutine) run ``spec``: ids derive from it, its env vars
        are set. Returns what ``_end`` needs to undo that."""
        ctx = TaskContext(spec.task_id, spec.name, spec.actor_id, spec.num_returns)
        token = task_context.enter(ctx)
        if threading.get_ident() == self.main_ident:
            self.current = spec
            self.cw.main_ctx = ctx  # threads the task starts itself run as the task
        saved_env = _apply_env(spec.runtime_env)
        hold = TRACER.on and checkpoint("worker", "task", "execute_task", task=spec.task_id.hex(),
                                        actor=spec.actor_id.hex() if spec.actor_id else None,
                                        detail=self._execute_detail(spec))
        if hold:
            hold.block()
        return token, saved_env

    def _execute_detail(self, spec) -> dict:
        detail = {"name": spec.name, "attempt": spec.attempt}
        if self.cw.lecture_mode:  # the lecture's Step 9 names the stored objects it reads
            detail["stored_args"] = [oid.hex() for oid in spec.ref_args()]
        return detail

    def _end(self, begun) -> None:
        token, saved_env = begun
        task_context.leave(token)
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
        """The actor creation task: run the constructor; this process is now the actor.
        Whatever fails on the way (loading the class, an argument whose task failed, the
        constructor) is the creation task's error: the GCS marks the actor DEAD with it."""
        from raylab.core_worker.actor_submitter import creation_argument_error
        from raylab.worker.actor_executor import ActorRuntime
        opts = spec.actor_options or {}
        cw = self.cw
        cw.actor_id = spec.actor_id
        cw.actor_name = opts.get("class_name", spec.name)
        cw.actor_restarts = spec.attempt
        try:
            cls = self.function(spec.function_id, spec.name)
        except Exception as e:
            return self._error_reply(spec, self._task_error(spec, e))
        try:
            args, kwargs = self.resolve_args(spec)
        except exc.RayError as e:  # an argument's task failed, or its object is lost
            return self._error_reply(spec, creation_argument_error(spec, e, self.cw.pid))
        except Exception as e:
            return self._error_reply(spec, self._task_error(spec, e))
        _apply_env(spec.runtime_env)  # an actor's environment lasts as long as its process
        begun = self._begin(spec)
        try:
            instance = cls(*args, **kwargs)
        except Exception as e:
            return self._error_reply(spec, self._task_error(spec, e))
        finally:
            self._end((begun[0], None))
        if any(a[0] == ARG_REF for a in spec.args) or _holds_refs(spec):
            # refs it was given (handles, say) are borrowed from now on: their owners must
            # know before the actor is ALIVE, when the creator lets its own hold go
            cw.run_sync(self._borrows_registered(), 30)
        self.actor = ActorRuntime(self, instance, opts)
        return ("ok", [(VALUE, _NONE, None)], [])

    async def _borrows_registered(self) -> None:
        """io thread: the owners of refs this process just received (and may keep: an
        actor stores a handle) know it as a borrower, before the sender's hold goes."""
        pending = list(self.cw.objects.unacked)  # registrations queued before this ran
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)

    def run_one(self, spec):
        """One actor method call, on the calling thread (main thread or a pool thread)."""
        try:
            fn = self.actor.method(spec.method_name)
            args, kwargs = self.resolve_args(spec)
        except Exception as e:
            return self._error_reply(spec, self._task_error(spec, e))
        result = self._call(spec, fn, args, kwargs)
        if spec.args and _holds_refs(spec):
            self.cw.run_sync(self._borrows_registered(), 30)
        return result

    async def run_one_async(self, spec, fn):
        """One ``async def`` method call on the actor's event loop."""
        try:
            args, kwargs = self.resolve_args(spec)
        except Exception as e:
            return self._error_reply(spec, self._task_error(spec, e))
        begun = self._begin(spec)
        try:
            value = await fn(*args, **kwargs)
        except Exception as e:
            return self._error_reply(spec, self._task_error(spec, e))
        finally:
            self._end(begun)
        if spec.args and _holds_refs(spec):
            await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(
                self._borrows_registered(), self.cw.loop))
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
        actor = spec.actor_id.hex() if spec.actor_id else None
        return exc.RayTaskError(spec.name, remote_traceback(e), e, pid=self.cw.pid,
                                actor_repr=getattr(self.cw, "actor_name", None) if actor else None,
                                actor_id=actor)

    def _error_reply(self, spec, error):
        try:
            payload = cloudpickle.dumps(error)
        except Exception as e:
            if isinstance(error, exc.RayTaskError):  # as Ray: the cause becomes its text
                cause = error.cause
                error = exc.RayTaskError(error.function_name, error.traceback_str, exc.RayError(
                    f"Exception {type(cause).__module__}.{type(cause).__name__} isn't "
                    f"serializable: {e}.\nOriginal exception details:\n"
                    f"{error.traceback_str}"), pid=error.pid)
            payload = cloudpickle.dumps(error)
        try:  # the error path only: can the owner rebuild it? If not, send its text
            cloudpickle.loads(payload)
        except Exception:
            text = "".join(traceback.format_exception_only(type(error), error))
            payload = cloudpickle.dumps(exc.UnserializableException(text))
        n = max(len(spec.return_ids()), 1)
        return ("error", [(ERROR, payload, None)] * n, [])


_RAYLAB_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
_USER_DIRS = (os.path.join(_RAYLAB_DIR, "demo") + os.sep,)  # the demos' tasks are user code


def _internal(frame) -> bool:
    f = frame.filename
    return f.startswith(_RAYLAB_DIR) and not f.startswith(_USER_DIRS)


def remote_traceback(e: BaseException) -> str:
    """The traceback a user sees for an error raised in their task: their frames only
    (raylab's own, such as ray.get's inside a task, are left out, as Ray leaves out its)."""
    te = traceback.TracebackException(type(e), e, e.__traceback__)
    seen = set()
    stack = [te]
    while stack:
        t = stack.pop()
        if id(t) in seen:
            continue
        seen.add(id(t))
        t.stack = traceback.StackSummary.from_list([f for f in t.stack if not _internal(f)])
        stack.extend(x for x in (t.__cause__, t.__context__) if x is not None)
    return "".join(te.format())


_NONE = cloudpickle.dumps(None)


def _holds_refs(spec) -> bool:
    """Did refs come inside the argument values (a handle, a list of refs)?"""
    for a in spec.args:
        if a[0] != ARG_REF and a[2]:
            return True
    return False


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
    printed = False
    for s in (sys.stdout, sys.stderr):
        if getattr(s, "dirty", True):  # a task that printed nothing has nothing to flush
            printed = True
            try:
                s.flush()
            except Exception:
                pass
    flush_logs = printed and getattr(current.CORE_WORKER, "flush_logs", None)
    if flush_logs:
        flush_logs()


__all__ = ["TaskExecutor", "TRACER"]
