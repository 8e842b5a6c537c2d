"""Task cases: startup, throughput, round trip, nesting, wait, dependency chains.

These are the lecture's core claims about tasks: they are cheap (thousands per
second), a single round trip costs about a millisecond, and the owner resolves
dependencies (a chain of 100 tasks) without the driver in the loop.
"""
from __future__ import annotations

from benchmarks.common import median, noop_fn, pc


def init_to_first_result(ctx) -> None:
    """From ``ray.init()`` to the first task's result: what a student waits for.

    Only the first init of an interpreter is honest, so the runner repeats this case
    in several fresh subprocesses and keeps the median.
    """
    ray = ctx.ray
    one = noop_fn(ray)
    t0 = pc()
    ctx.init()
    t1 = pc()
    assert ray.get(one.remote()) == 1
    ctx.metrics["init_to_first_result_s"] = pc() - t0
    ctx.info["init_call_s"] = t1 - t0
    t2 = pc()
    ctx.shutdown()
    ctx.info["shutdown_s"] = pc() - t2


def tiny_tasks(ctx) -> None:
    """Submit N no-op tasks, then get them all: tasks per second."""
    ray = ctx.ray
    n = ctx.size(1000, 5000)
    noop = noop_fn(ray)
    ctx.init()
    ray.get([noop.remote() for _ in range(200)])  # warm-up: start the workers

    def batch():
        assert sum(ray.get([noop.remote() for _ in range(n)])) == n

    times = ctx.timed(batch, ctx.size(3, 5))
    ctx.metrics["tiny_tasks_per_s"] = n / median(times)
    ctx.info["n"] = n
    ctx.sample("batch_s", times)


def task_rtt(ctx) -> None:
    """One ``get(f.remote())`` at a time: the latency of a task, median in µs."""
    ray = ctx.ray
    noop = noop_fn(ray)
    ctx.init()
    for _ in range(50):
        ray.get(noop.remote())
    lat = ctx.timed(lambda: ray.get(noop.remote()), ctx.size(300, 1000))
    ctx.metrics["task_rtt_us"] = median(lat) * 1e6
    ctx.info["p90_us"] = sorted(lat)[int(0.9 * (len(lat) - 1))] * 1e6


def nested_fanout(ctx) -> None:
    """A task that submits 100 child tasks and gets them: ownership by a worker."""
    ray = ctx.ray

    @ray.remote
    def child(i):
        return i

    @ray.remote
    def parent(n):
        return sum(ray.get([child.remote(i) for i in range(n)]))

    ctx.init()
    assert ray.get(parent.remote(100)) == sum(range(100))
    times = ctx.timed(lambda: ray.get(parent.remote(100)), ctx.size(3, 5))
    ctx.metrics["nested_fanout_s"] = median(times)
    ctx.sample("samples_s", times)


def wait_1000(ctx) -> None:
    """``ray.wait`` on 1000 refs that are all ready: the cost of the bookkeeping."""
    ray = ctx.ray
    noop = noop_fn(ray)
    ctx.init()
    ray.get([noop.remote() for _ in range(200)])
    times = []
    for _ in range(ctx.size(3, 5)):
        refs = [noop.remote() for _ in range(1000)]
        ray.get(refs)
        t0 = pc()
        ready, rest = ray.wait(refs, num_returns=1000)
        times.append(pc() - t0)
        assert len(ready) == 1000 and not rest
    ctx.metrics["wait_1000_s"] = median(times)
    ctx.sample("samples_s", times)


def chain_100(ctx) -> None:
    """100 tasks, each taking the previous one's result: dependency resolution."""
    ray = ctx.ray

    @ray.remote
    def inc(x):
        return x + 1

    ctx.init()
    ray.get(inc.remote(0))

    def chain():
        r = inc.remote(0)
        for _ in range(99):
            r = inc.remote(r)
        assert ray.get(r) == 100

    times = ctx.timed(chain, ctx.size(3, 5))
    ctx.metrics["chain_100_s"] = median(times)
    ctx.sample("samples_s", times)
