"""The task manager: the owner's record of the tasks it submitted.

``submit`` turns ``f.remote(*args)`` into a task spec and return refs (on the
caller's thread, quickly), and hands the spec to the submitter. When the
worker replies, ``complete_task`` stores the return values (small ones
inline in the memory store, large ones as locations in shared memory) and
keeps the spec as the returns' lineage. ``fail_task`` stores the error in
every return, so ``ray.get`` raises it.
"""
from __future__ import annotations

import cloudpickle

from raylab import exceptions as exc
from raylab.core_worker.memory_store import ERROR, IN_PLASMA, VALUE
from raylab.core_worker.object_ref import ObjectRef
from raylab.core_worker.reference_table import lineage_args
from raylab.core_worker.serialization import SerializationError, serialize
from raylab.core_worker.task_spec import ARG_REF, ARG_VALUE, NORMAL_TASK, TaskSpec
from raylab.states import FAILED, FINISHED
from raylab.tracing.emit import TRACER, checkpoint, step


class TaskManager:
    def __init__(self, cw):
        self.cw = cw
        self.held_args: dict[bytes, list] = {}  # task id -> arg object ids it keeps alive

    # -- submission (caller's thread) ------------------------------------------------
    def build_args(self, args: tuple, kwargs: dict, name: str):
        """Serialize arguments. Top-level refs stay refs (resolved before the task runs);
        refs nested inside values travel inside them (the worker borrows them)."""
        out = []
        nested = []
        values = list(args) + list(kwargs.values())
        limit = self.cw.cfg.max_direct_call_object_size
        plasma = self.cw.plasma
        for v in values:
            if type(v) is ObjectRef:
                out.append((ARG_REF, v._id, v._owner))
                continue
            try:
                data, buffers, contained = serialize(v, oob=plasma is not None)
            except SerializationError as e:
                raise TypeError(f"Could not serialize the argument {_short(v)} for a task or "
                                f"actor {name}: {e}") from None
            size = len(data) + sum(memoryview(b).nbytes for b in buffers)
            if size >= limit and plasma is not None:
                # a large argument is put into the object store once, and passed by ref
                ref = self.cw.objects.put_serialized(data, buffers, contained, size)
                out.append((ARG_REF, ref._id, ref._owner))
                nested.append(ref)  # keep the ref alive until the task is submitted
                continue
            if buffers:
                data, _b, contained = serialize(v)
            out.append((ARG_VALUE, data, contained or None))
            if contained:
                nested.extend(contained)
        return out, tuple(kwargs), nested

    def submit(self, function_id: bytes, name: str, args: tuple, kwargs: dict, num_returns: int,
               resources: dict, strategy: tuple, max_retries: int, retry_exceptions,
               runtime_env) -> list[ObjectRef]:
        cw = self.cw
        arg_list, kw_names, nested = self.build_args(args, kwargs, name)
        tid = cw.next_task_id()
        ctx = cw.ctx
        spec = TaskSpec(tid, cw.current_job(), NORMAL_TASK, function_id, name, arg_list,
                        kw_names, num_returns, resources, None, strategy, max_retries,
                        retry_exceptions, self._env(runtime_env), cw.address, cw.worker_id,
                        ctx.task_id)
        refs = self.register_task(spec, arg_list, nested)
        TRACER.on and step("core_worker", "task", "submit_task", task=tid.hex(), detail={
            "name": name, "returns": [r.hex() for r in refs],
            "arg_refs": [a[1].hex() for a in arg_list if a[0] == ARG_REF]})
        cw.call_soon(cw.submitter.submit, spec)
        return refs

    def register_task(self, spec, arg_list, nested) -> list[ObjectRef]:
        """Own the task's return objects (with the spec as lineage) and keep its arguments
        alive until it finishes. Returns the refs handed to the caller."""
        cw = self.cw
        return_ids = spec.return_ids()
        held = [a[1] for a in arg_list if a[0] == ARG_REF]
        held += [r[0] for r in nested if isinstance(r, tuple)]
        with cw.lock:
            for oid in return_ids:
                cw.refs.add_owned(oid, lineage=spec)
            cw.refs.add_submitted(held)
        self.held_args[spec.task_id] = held
        return [ObjectRef(oid, cw.address) for oid in return_ids]

    def _env(self, runtime_env):
        job_env = getattr(self.cw, "job_runtime_env", None)
        if not job_env:
            return runtime_env
        merged = {"env_vars": dict(job_env.get("env_vars", {}))}
        merged["env_vars"].update((runtime_env or {}).get("env_vars", {}))
        return merged

    # -- completion (io thread) -------------------------------------------------------
    def complete_task(self, spec, reply, node_id: bytes) -> None:
        cw = self.cw
        if cw._deleted:  # awake anyway: count the refs dropped since (see remove_local_ref)
            cw._process_deleted()
        status, returns = reply
        if status == "error" and spec.kind == NORMAL_TASK and \
                self._should_retry_exception(spec, returns):
            # with no retry left, the task's own error is its result (not a crash)
            if cw.submitter.retry(spec, "application error (retry_exceptions)"):
                return
        hold = TRACER.on and checkpoint(
            "core_worker", "task", "task_finished", task=spec.task_id.hex(),
            node=node_id.hex() if node_id else None,
            object=spec.return_ids()[0].hex() if spec.num_returns else None,
            detail={"name": spec.name, "status": FINISHED if status == "ok" else FAILED,
                    "returns": [("inline", "error", "store")[r[0]] for r in returns],
                    "where": cw.label_of(node_id) if returns and returns[0][0] == IN_PLASMA
                    else None})
        cw.submitter.after(hold, self._store_returns, spec, status, returns)

    def _store_returns(self, spec, status, returns) -> None:
        cw = self.cw
        store = cw.store
        out: list = []
        with cw.lock:
            for oid, (kind, payload, contained) in zip(spec.return_ids(), returns):
                e = cw.refs.entries.get(oid)
                if e is not None:
                    e.pending = False
                    if contained:
                        cw.refs.set_contains(oid, contained)
                    if kind == IN_PLASMA:
                        e.size = payload[0]
                        e.locations.add(payload[1])
                        e.primary_node = payload[1]
            if status == "ok" and not spec._pinned and spec.kind == NORMAL_TASK:
                # keep this spec as the lineage of its outputs: its by-ref arguments stay
                # known (if lost, they can be rebuilt in turn)
                spec._pinned = True
                cw.refs.add_lineage(lineage_args(spec))
            cw.refs.remove_submitted(self.held_args.pop(spec.task_id, ()), out)
        for oid, (kind, payload, _contained) in zip(spec.return_ids(), returns):
            if kind == ERROR:
                payload = _load_error(payload)
            store.put(oid, (kind, payload))
        cw.submitter.task_done(spec.task_id, status != "ok")
        if out:
            cw.release(out)

    def reconstruct(self, spec, lost: bytes):
        """Lineage reconstruction: run ``spec`` again to rebuild its lost output ``lost``.
        It counts against the task's max_retries."""
        cw = self.cw
        if spec.max_retries != -1 and spec.attempt >= spec.max_retries:
            err = exc.ObjectReconstructionFailedMaxAttemptsExceededError(
                lost.hex(), cw.address, message=(
                    f"Failed to retrieve object {lost.hex()}: it was lost and rebuilding it "
                    f"would re-run {spec.name} beyond its max_retries={spec.max_retries}."))
            for oid in spec.return_ids():
                cw.store.put(oid, (ERROR, err))
            return err
        spec.attempt += 1
        hold = TRACER.on and checkpoint("core_worker", "failure", "reconstruct_object",
                                        object=lost.hex(), task=spec.task_id.hex(),
                                        detail={"name": spec.name, "attempt": spec.attempt})
        held = lineage_args(spec)
        with cw.lock:
            for oid in spec.return_ids():
                cw.store.delete(oid)
                e = cw.refs.entries.get(oid)
                if e is not None:
                    e.pending = True
                    e.locations.clear()
                    e.value_freed = False
            cw.refs.add_submitted(held)
        self.held_args[spec.task_id] = held
        cw.submitter.after(hold, cw.submitter.submit, spec)  # (step mode may pause here)
        return "recovering"

    def fail_task(self, spec, error) -> None:
        cw = self.cw
        out: list = []
        with cw.lock:
            for oid in spec.return_ids():
                e = cw.refs.entries.get(oid)
                if e is not None:
                    e.pending = False
            cw.refs.remove_submitted(self.held_args.pop(spec.task_id, ()), out)
        for oid in spec.return_ids():
            cw.store.put(oid, (ERROR, error))
        cw.submitter.task_done(spec.task_id, True)
        TRACER.on and step("core_worker", "task", "task_failed", task=spec.task_id.hex(),
             detail={"name": spec.name, "error": type(error).__name__})
        if out:
            cw.release(out)

    @staticmethod
    def _should_retry_exception(spec, returns) -> bool:
        rx = spec.retry_exceptions
        if not rx or not returns:
            return False
        if rx is True:
            return True
        try:
            err = _load_error(returns[0][1])
            cause = getattr(err, "cause", err)
            return isinstance(cause, tuple(rx))
        except Exception:
            return False


def _load_error(payload):
    if isinstance(payload, (bytes, bytearray)):
        try:
            return cloudpickle.loads(payload)
        except Exception as e:
            return exc.RaySystemError(f"could not deserialize the task's error: {e!r}")
    return payload


def _short(v) -> str:
    r = repr(v)
    return r if len(r) <= 60 else r[:57] + "..."


__all__ = ["TaskManager", "VALUE", "ERROR", "IN_PLASMA"]
