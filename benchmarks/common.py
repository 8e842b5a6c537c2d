"""What every case gets: the runtime module, sizes, timing helpers, init/shutdown.

Cases are written against Ray's public API only (``ray.init``, ``remote``,
``get``, ``put``, ``wait``, ``options``, ``kill``, ``shutdown``), with ``ray`` being
whichever module is under test, so one function measures both implementations.
"""
from __future__ import annotations

import statistics
import time

from benchmarks import procs

MB = 10 ** 6   # sizes are decimal, as in the shared yardstick: 1 MB = 1e6 bytes
GB = 10 ** 9   # GB/s = 1e9 bytes per second

pc = time.perf_counter


def median(xs):
    return statistics.median(xs) if xs else None


class Ctx:
    """One case run: the module under test, quick or full sizes, and process tracking.

    ``metrics`` are the figures the table compares; ``info`` is detail kept in the
    JSON output only (samples, first-run figures, sanity checks).
    """

    def __init__(self, ray, impl: str, quick: bool, pidfile: str | None):
        self.ray = ray
        self.impl = impl
        self.quick = quick
        self.pidfile = pidfile
        self.metrics: dict = {}
        self.info: dict = {}
        self._before: dict | None = None
        self._tracked: dict = {}

    def size(self, quick, full):
        """``quick`` under --quick, else ``full`` (repetitions, task counts)."""
        return quick if self.quick else full

    def init(self, **extra) -> None:
        """``ray.init(num_cpus=2)``, quiet where the implementation allows it."""
        self._before = procs.snapshot()
        kwargs = dict(num_cpus=2, include_dashboard=False, logging_level="ERROR", **extra)
        try:
            self.ray.init(**kwargs)
        except TypeError:  # an implementation without the quiet-mode arguments
            self.ray.shutdown()
            kwargs = dict(num_cpus=2, **extra)
            self.ray.init(**kwargs)
        self.info["init_kwargs"] = kwargs
        self.track()

    def track(self) -> None:
        """Record the processes started so far (the parent ends any left behind)."""
        if self._before is None:
            return
        self._tracked.update(procs.started_since(self._before))
        procs.write_pidfile(self.pidfile, self._tracked)

    def shutdown(self) -> None:
        if self._before is None:
            return
        self.track()
        self._before = None
        self.ray.shutdown()

    def timed(self, fn, reps: int) -> list:
        """Run ``fn()`` ``reps`` times; the wall time of each run, in seconds."""
        out = []
        for _ in range(reps):
            t0 = pc()
            fn()
            out.append(pc() - t0)
        return out

    def sample(self, key: str, xs: list, scale: float = 1.0) -> None:
        self.info[key] = [round(x * scale, 9) for x in xs]


def noop_fn(ray):
    @ray.remote
    def noop():
        return 1
    return noop
