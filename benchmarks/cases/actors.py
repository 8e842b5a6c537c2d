"""Actor cases: call throughput, call round trip, async concurrency.

An actor call skips the raylet entirely (the caller pushes straight to the actor's
worker), so it should be cheaper than a task; an async actor overlaps awaits, so
100 concurrent 0.1 s sleeps should take about 0.1 s, not 10 s.
"""
from __future__ import annotations

from benchmarks.common import median


def _counter(ray):
    @ray.remote
    class Counter:
        def __init__(self):
            self.n = 0

        def inc(self):
            self.n += 1
            return self.n
    return Counter


def actor_calls(ctx) -> None:
    """N calls to one actor's method, then get them all: calls per second."""
    ray = ctx.ray
    n = ctx.size(1000, 5000)
    Counter = _counter(ray)
    ctx.init()
    a = Counter.remote()
    ray.get([a.inc.remote() for _ in range(200)])
    ctx.track()

    def batch():
        out = ray.get([a.inc.remote() for _ in range(n)])
        assert out[-1] - out[0] == n - 1  # in order, none lost

    times = ctx.timed(batch, ctx.size(3, 5))
    ctx.metrics["actor_calls_per_s"] = n / median(times)
    ctx.info["n"] = n
    ctx.sample("batch_s", times)
    ray.kill(a)


def actor_rtt(ctx) -> None:
    """One ``get(a.inc.remote())`` at a time, median in µs."""
    ray = ctx.ray
    Counter = _counter(ray)
    ctx.init()
    a = Counter.remote()
    for _ in range(50):
        ray.get(a.inc.remote())
    ctx.track()
    lat = ctx.timed(lambda: ray.get(a.inc.remote()), ctx.size(300, 1000))
    ctx.metrics["actor_rtt_us"] = median(lat) * 1e6
    ctx.info["p90_us"] = sorted(lat)[int(0.9 * (len(lat) - 1))] * 1e6
    ray.kill(a)


def async_actor(ctx) -> None:
    """100 concurrent ``await asyncio.sleep(0.1)`` calls on one async actor (ideal 0.1 s)."""
    import asyncio
    ray = ctx.ray

    @ray.remote
    class Sleeper:
        async def nap(self, s):
            await asyncio.sleep(s)
            return 1

    ctx.init()
    a = Sleeper.remote()
    ray.get(a.nap.remote(0))
    ctx.track()

    def wave():
        assert sum(ray.get([a.nap.remote(0.1) for _ in range(100)])) == 100

    times = ctx.timed(wave, ctx.size(3, 5))
    ctx.metrics["async_actor_100x0.1s_s"] = median(times)
    ctx.sample("samples_s", times)
    ray.kill(a)
