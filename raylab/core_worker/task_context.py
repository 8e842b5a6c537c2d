"""The task context: which task is running here, so that new ids derive from it.

Ray derives every id a task creates from the task's own id and a counter: the
n-th task it submits, the n-th object it puts (``ids.py``). So the core worker
must know, at each ``.remote()`` or ``put``, which task is asking.

A worker runs one task at a time on its main thread, but a threaded actor runs
several calls on a pool, an async actor interleaves coroutines on one thread,
and a driver may submit from any number of threads. So the running task is a
*context variable*: each thread and each asyncio task that runs a task sees its
own. Everything else (the driver's threads, threads a task starts itself)
shares the process's *main* context, and its counters are atomic, so two
threads never get the same id.
"""
from __future__ import annotations

import contextvars
import itertools

_RUNNING: contextvars.ContextVar = contextvars.ContextVar("raylab_running_task", default=None)


class TaskContext:
    """One running task (or the driver): its id, and the counters its new ids take."""

    __slots__ = ("task_id", "name", "actor_id", "_tasks", "_puts")

    def __init__(self, task_id: bytes | None, name: str | None = None,
                 actor_id: bytes | None = None, num_returns: int = 0):
        self.task_id = task_id
        self.name = name
        self.actor_id = actor_id
        self._tasks = itertools.count(1)              # next() is atomic under the GIL
        self._puts = itertools.count(num_returns + 1)  # the first indices are its returns

    def next_task_index(self) -> int:
        return next(self._tasks)

    def next_put_index(self) -> int:
        return next(self._puts)


def running() -> TaskContext | None:
    """The context this thread or coroutine runs a task in, if it does."""
    return _RUNNING.get()


def enter(ctx: TaskContext):
    """Run ``ctx`` here until ``leave(token)``."""
    return _RUNNING.set(ctx)


def leave(token) -> None:
    _RUNNING.reset(token)
