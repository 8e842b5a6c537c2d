"""The task specification: everything a worker needs to run one task.

The owner builds a spec when ``f.remote()`` is called, keeps it as the
object's *lineage* (so a lost return value can be rebuilt by running the spec
again), and pushes it to a leased worker. Arguments are either values
(serialized bytes, inlined by the owner) or references (resolved before the
task runs, fetched from the object store when large).
"""
from __future__ import annotations

import operator

from raylab import ids

NORMAL_TASK = 0
ACTOR_CREATION_TASK = 1
ACTOR_TASK = 2

# argument kinds
ARG_VALUE = 0   # (ARG_VALUE, serialized bytes, contained refs)
ARG_REF = 1     # (ARG_REF, object id, owner address)

# scheduling strategies, as plain tuples
DEFAULT = ("DEFAULT",)
SPREAD = ("SPREAD",)


class TaskSpec:
    __slots__ = (
        "task_id", "job_id", "kind", "function_id", "name", "args", "kwargs_names",
        "num_returns", "resources", "placement_resources", "strategy", "max_retries",
        "retry_exceptions", "runtime_env", "owner_address", "owner_worker_id",
        "parent_task_id", "depth", "actor_id", "actor_counter", "actor_options", "attempt",
        "method_name", "concurrency_group", "trace_parent", "submitter_address",
        "_returns", "_key", "_pinned",  # owner-side only, not sent
    )

    def __init__(self, task_id: bytes, job_id: bytes, kind: int, function_id: bytes, name: str,
                 args: list, kwargs_names: tuple, num_returns: int, resources: dict,
                 placement_resources: dict | None, strategy: tuple, max_retries: int,
                 retry_exceptions, runtime_env, owner_address: str, owner_worker_id: bytes,
                 parent_task_id: bytes, depth: int = 0, actor_id: bytes | None = None,
                 actor_counter: int = 0, actor_options: dict | None = None, attempt: int = 0,
                 method_name: str | None = None, concurrency_group=None, trace_parent=None,
                 submitter_address: str | None = None):
        self.task_id = task_id
        self.job_id = job_id
        self.kind = kind
        self.function_id = function_id
        self.name = name
        self.args = args
        self.kwargs_names = kwargs_names
        self.num_returns = num_returns
        self.resources = resources
        self.placement_resources = placement_resources
        self.strategy = strategy
        self.max_retries = max_retries
        self.retry_exceptions = retry_exceptions
        self.runtime_env = runtime_env
        self.owner_address = owner_address
        self.owner_worker_id = owner_worker_id
        self.parent_task_id = parent_task_id
        self.depth = depth
        self.actor_id = actor_id
        self.actor_counter = actor_counter
        self.actor_options = actor_options
        self.attempt = attempt
        self.method_name = method_name
        self.concurrency_group = concurrency_group
        self.trace_parent = trace_parent
        self.submitter_address = submitter_address
        self._returns = None
        self._key = None
        self._pinned = False   # its by-ref arguments are pinned as lineage

    def __reduce__(self):
        state = _wire_fields(self)
        if self.retry_exceptions and self.retry_exceptions is not True:
            # it may name classes only the owner can import; the owner decides retries
            state = state[:_RETRY_EXC] + (True,) + state[_RETRY_EXC + 1:]
        return (TaskSpec, state)

    # -- derived ----------------------------------------------------------
    def return_ids(self) -> list[bytes]:
        r = self._returns
        if r is None:
            n = self.num_returns
            if n == 0 and self.kind == ACTOR_CREATION_TASK:
                n = 1  # the creation task's return marks the actor as created
            r = self._returns = [ids.object_id(self.task_id, i + 1) for i in range(max(n, 0))]
        return r

    def scheduling_key(self) -> tuple:
        """Tasks with the same key can reuse each other's leased workers."""
        k = self._key
        if k is None:
            k = self._key = (self.function_id, tuple(sorted(self.resources.items())),
                             self.strategy, _env_key(self.runtime_env))
        return k

    def ref_args(self) -> list[bytes]:
        return [a[1] for a in self.args if a[0] == ARG_REF]

    def is_actor_task(self) -> bool:
        return self.kind == ACTOR_TASK

    def __repr__(self):
        return f"TaskSpec({self.name}, {self.task_id.hex()[:8]}, attempt={self.attempt})"


_WIRE = TaskSpec.__slots__[:-3]
_wire_fields = operator.attrgetter(*_WIRE)
_RETRY_EXC = _WIRE.index("retry_exceptions")


def _env_key(env):
    if not env:
        return None
    try:
        return repr(sorted(env.get("env_vars", {}).items()))
    except AttributeError:
        return repr(env)
