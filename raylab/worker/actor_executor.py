"""The actor side of a worker: one worker process *is* one actor.

The creation task runs the class's constructor and keeps the instance; from
then on, method calls pushed straight from callers run against it. How they
run depends on the actor's kind, as in Ray:

- a plain actor runs one call at a time, in the order each caller sent them
  (on the worker's main thread, like normal tasks);
- a *threaded* actor (``max_concurrency=N`` with plain methods) runs up to N
  calls at once on a thread pool;
- an *async* actor (any ``async def`` method) runs calls as coroutines on its
  own event loop, up to ``max_concurrency`` at once (1000 by default), so an
  ``await asyncio.sleep(1)`` lets other calls proceed.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import inspect
import threading

from raylab.transport import new_event_loop


def _ready() -> bool:
    return True


class ActorRuntime:
    """The instance, and the machinery that runs its methods concurrently (if any)."""

    def __init__(self, executor, instance, options: dict):
        self.executor = executor
        self.instance = instance
        self.class_name = options.get("class_name", type(instance).__name__)
        self.is_async = bool(options.get("is_async"))
        default = 1000 if self.is_async else 1
        self.max_concurrency = int(options.get("max_concurrency") or default)
        self.loop = None
        self.pool = None
        if self.is_async:
            self._start_loop()
        elif self.max_concurrency > 1:
            self.pool = concurrent.futures.ThreadPoolExecutor(
                max_workers=self.max_concurrency, thread_name_prefix="actor")

    @property
    def concurrent(self) -> bool:
        """Calls bypass the main thread's FIFO queue (threaded and async actors)."""
        return self.loop is not None or self.pool is not None

    def _start_loop(self) -> None:
        ready = threading.Event()

        def run():
            self.loop = new_event_loop()
            asyncio.set_event_loop(self.loop)
            self.sem = asyncio.Semaphore(self.max_concurrency)
            ready.set()
            self.loop.run_forever()

        threading.Thread(target=run, name="actor-loop", daemon=True).start()
        ready.wait()

    def method(self, name: str):
        if name == "__ray_ready__":  # every actor answers this once it is ALIVE
            return _ready
        fn = getattr(self.instance, name, None)
        if fn is None:
            raise AttributeError(f"'{self.class_name}' object has no attribute '{name}'")
        return fn

    # -- io thread: a call arrived ----------------------------------------------------
    def submit(self, spec, fut) -> None:
        """Start a call concurrently; ``fut`` (on the io loop) gets the reply."""
        cw = self.executor.cw
        if self.loop is not None:
            cf = asyncio.run_coroutine_threadsafe(self._run_async(spec), self.loop)
        else:
            # in a copy of this context: the call runs as caused by the caller's step
            cf = self.pool.submit(contextvars.copy_context().run, self.executor.run_one, spec)
        cf.add_done_callback(lambda f: cw.call_soon(self.executor.finish_future, spec, f, fut))

    async def _run_async(self, spec):
        async with self.sem:
            fn = self.method(spec.method_name)
            if inspect.iscoroutinefunction(fn):
                return await self.executor.run_one_async(spec, fn)
            return self.executor.run_one(spec)  # a plain method of an async actor

    def shutdown(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=False, cancel_futures=True)
        if self.loop is not None:
            self.loop.call_soon_threadsafe(self.loop.stop)
