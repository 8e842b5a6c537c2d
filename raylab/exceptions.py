"""Ray's error classes, with Ray's names and meanings.

A user's exception inside a task travels back to the owner as a
:class:`RayTaskError`; ``ray.get`` raises it as an instance of *both*
``RayTaskError`` and the user's own exception class, so ``except ValueError``
still works, and its message carries the remote traceback.
"""
from __future__ import annotations


class RayError(Exception):
    """Base class of every raylab error."""


class RaySystemError(RayError):
    """Something inside the cluster went wrong (not the user's code)."""

    def __init__(self, client_exc, traceback_str=None):
        super().__init__(client_exc)
        self.client_exc = client_exc
        self.traceback_str = traceback_str

    def __str__(self):
        s = f"System error: {self.client_exc}"
        if self.traceback_str:
            s += f"\ntraceback: {self.traceback_str}"
        return s


# Ray's words when a task (or an actor's creation task) cannot run because one of its
# arguments failed; the GCS reads a creation error's cause by them.
ARGUMENT_NOT_COMPUTED = "At least one of the input arguments for this task could not be computed"


class RayTaskError(RayError):
    """A task or actor method raised; ``cause`` is the original exception.

    Its text is Ray's: the remote traceback, headed by ``ray::f() (pid=..., ip=...)``.
    A task that re-raises a nested task's error (``ray.get`` of a failed child) keeps the
    innermost user exception as ``cause``, so ``except ValueError`` still catches it."""

    def __init__(self, function_name, traceback_str, cause, proctitle=None, pid=None,
                 ip="127.0.0.1", actor_repr=None, actor_id=None):
        if isinstance(cause, RayTaskError):  # no RayTaskError(RayTaskError(...)) nesting
            cause = cause.cause
        self.function_name = function_name
        self.traceback_str = traceback_str
        self.cause = cause
        self.proctitle = proctitle or f"ray::{function_name}"
        self.pid = pid
        self.ip = ip
        self.actor_repr = actor_repr
        self.actor_id = actor_id
        super().__init__(function_name, traceback_str, cause, proctitle, pid, ip)

    def _header(self) -> str:
        head = f"{self.proctitle}() (pid={self.pid}, ip={self.ip}"
        if self.actor_repr:
            head += f", actor_id={self.actor_id}, repr={self.actor_repr}"
        return head + ")"

    def __str__(self):
        # Ray's form: the traceback with its "Traceback ..." line replaced by the header
        lines = (self.traceback_str or "").strip().split("\n")
        if not any(line.startswith("Traceback ") for line in lines):
            lines.insert(0, "Traceback ")
        return "\n".join(self._header() if line.startswith("Traceback ") else line
                         for line in lines)

    def __reduce__(self):
        return (RayTaskError, (self.function_name, self.traceback_str, self.cause,
                               self.proctitle, self.pid, self.ip, self.actor_repr, self.actor_id))

    def as_instanceof_cause(self):
        """An exception that is both this RayTaskError and an instance of the cause's class
        (``RayTaskError(ValueError)``; for a Ray error raised in the task, such as a nested
        ``GetTimeoutError``, ``RayTaskError(GetTimeoutError)``)."""
        cause_cls = type(self.cause)
        if self.cause is None or issubclass(RayTaskError, cause_cls):
            return self
        message = str(self)
        outer = self

        try:
            class cls(RayTaskError, cause_cls):  # type: ignore[misc, valid-type]
                def __init__(self, cause):
                    self.cause = cause
                    self.args = (cause,)

                def __getattr__(self, name):
                    return getattr(self.cause, name)

                def __str__(self):
                    return message

                def __reduce__(self):
                    return outer.__reduce__()
        except TypeError:  # the cause's class cannot be a base (layout conflict, final)
            return self
        name = f"RayTaskError({cause_cls.__name__})"
        cls.__name__ = name
        cls.__qualname__ = name
        try:
            inst = cls(self.cause)
        except Exception:  # e.g. the cause's class forbids setting args
            return self
        for attr in ("function_name", "traceback_str", "proctitle", "pid", "ip", "actor_repr",
                     "actor_id"):
            object.__setattr__(inst, attr, getattr(self, attr))
        return inst


class UnserializableException(RayError):
    """A task's exception could not be rebuilt on this side (its class cannot be
    unpickled, e.g. an ``__init__`` with required arguments): its original text instead."""

    def __init__(self, original_stack_trace: str):
        self._original_stack_trace = original_stack_trace
        super().__init__(original_stack_trace)

    def __str__(self):
        return ("Failed to deserialize exception. Custom exception classes must be "
                "picklable: keep __init__'s arguments in self.args (call "
                "super().__init__(*args)) or define __reduce__.\n"
                "Original exception:\n"
                f"{self._original_stack_trace}")


class WorkerCrashedError(RayError):
    """The worker running the task died unexpectedly (and retries ran out)."""

    def __str__(self):
        return (self.args[0] if self.args else
                "The worker died unexpectedly while executing this task. Check the worker's "
                "output above (os._exit, sys.exit, a signal or running out of memory).")


class TaskCancelledError(RayError):
    """The task was cancelled with ``ray.cancel``."""

    def __init__(self, task_id=None, error_message=None):
        self.task_id = task_id
        self.error_message = error_message
        super().__init__(task_id, error_message)

    def __str__(self):
        msg = f"Task: {self.task_id} was cancelled. " if self.task_id else ""
        return msg + (self.error_message or "")


class GetTimeoutError(RayError, TimeoutError):
    """``ray.get`` or ``ray.wait`` ran out of time."""


class RayActorError(RayError):
    """The actor died, or could not be created; carries the cause when known."""

    def __init__(self, message: str = "The actor died unexpectedly before finishing this task.",
                 cause=None, actor_id=None):
        self.error_msg = message
        self.actor_id = actor_id
        self.cause = cause
        super().__init__(message)

    def __str__(self):
        return self.error_msg

    def __reduce__(self):
        return (type(self), (self.error_msg, self.cause, self.actor_id))


class ActorDiedError(RayActorError):
    """The actor is dead (killed, crashed without restarts left, or out of scope)."""


class ActorUnavailableError(RayActorError):
    """The actor is temporarily unreachable (for instance, restarting)."""


class ActorUnschedulableError(RayError):
    """The actor cannot be placed (e.g. its placement group was removed)."""


class TaskUnschedulableError(RayError):
    """The task cannot be placed (e.g. its node affinity target is dead)."""


class ObjectLostError(RayError):
    """Every copy of the object is gone and it cannot be (or was not) reconstructed."""

    def __init__(self, object_ref_hex: str = "", owner_address=None, call_site="", message=None):
        self.object_ref_hex = object_ref_hex
        self.owner_address = owner_address
        self.call_site = call_site
        super().__init__(message or self._base())

    def _base(self):
        return (f"Failed to retrieve object {self.object_ref_hex}. All copies of "
                f"{self.object_ref_hex} have been lost due to node failure. Objects created by "
                "ray.put cannot be reconstructed; task outputs are rebuilt from lineage while "
                "retries remain.")

    def __reduce__(self):
        return (type(self), (self.object_ref_hex, self.owner_address, self.call_site,
                             self.args[0] if self.args else None))


class ObjectFetchTimedOutError(ObjectLostError):
    """The object could not be fetched from a remote node in time."""


class OwnerDiedError(ObjectLostError):
    """The process that owned the object died, so the object is gone with it."""

    def _base(self):
        return (f"Failed to retrieve object {self.object_ref_hex}. The object's owner has "
                "exited: the process that created its ObjectRef (by .remote() or ray.put) "
                "died, and an object cannot outlive its owner.")


class ObjectReconstructionFailedError(ObjectLostError):
    """Lineage reconstruction was attempted and failed."""

    def _base(self):
        return (f"Failed to retrieve object {self.object_ref_hex}. It was lost and its "
                "reconstruction failed (the task that created it failed or ran out of retries).")


class ObjectReconstructionFailedMaxAttemptsExceededError(ObjectReconstructionFailedError):
    """The creating task was re-run as often as ``max_retries`` allows."""


class ObjectReconstructionFailedLineageEvictedError(ObjectReconstructionFailedError):
    """The task that created the object is no longer known to its owner."""


class ReferenceCountingAssertionError(ObjectLostError):
    """The object was freed while a reference to it still existed."""


class ObjectStoreFullError(RayError):
    """The node's shared-memory store is full and nothing could be spilled."""


class OutOfDiskError(RayError):
    """Spilling needed disk space that was not there."""


class OutOfMemoryError(RayError):
    """A worker was killed because the node ran out of memory."""


class NodeDiedError(RayError):
    """The node running the task died."""


class RuntimeEnvSetupError(RayError):
    """The task's runtime_env could not be applied."""


class PendingCallsLimitExceeded(RayError):
    """Too many calls are queued for an actor."""


class CrossLanguageError(RayError):
    pass


RAY_EXCEPTION_TYPES = [
    RayError, RaySystemError, RayTaskError, WorkerCrashedError, TaskCancelledError,
    GetTimeoutError, RayActorError, ActorDiedError, ActorUnavailableError, ObjectLostError,
    ObjectFetchTimedOutError, OwnerDiedError, ObjectReconstructionFailedError,
    ObjectStoreFullError, OutOfMemoryError, NodeDiedError, RuntimeEnvSetupError,
    TaskUnschedulableError, ActorUnschedulableError,
]


class ActorAlreadyExistsError(ValueError, RayError):
    """An actor with this name already exists in the namespace (as in Ray: a ValueError)."""
