"""raylab only: what tracing costs on the tiny-task benchmark.

The issue's targets: "with nobody listening, tracing costs under 5% on the
tiny-task benchmark; with a recorder on, under 2x".

* With a recorder on: tiny-task batches are timed alternately outside and inside
  ``with raylab.trace():`` (alternating, so drift on a shared machine hits both);
  the slowdown is the ratio of the medians. Entering and leaving the block (the
  cluster-wide switch and the final flush) is not timed: it is paid once per
  block, not per task.
* With nobody listening the trace points cannot be switched off to compare, so
  the cost is computed from its parts: a trace point is a call to
  ``raylab.tracing.emit.step(...)`` or ``checkpoint(...)`` that returns at once
  when ``TRACER.on`` is False. Recording a batch of tasks and counting the events
  (from every process) gives the number of trace-point calls per task; ``timeit``
  gives the cost of one disabled call with typical arguments; their product over
  the untraced time per task is the overhead. The call is timed *unguarded*, with
  its keyword arguments built (an upper bound: most call sites are written
  ``TRACER.on and step(...)`` and skip even that), and the guarded figure is kept
  in the JSON output.
"""
from __future__ import annotations

import gc
import timeit
from collections import Counter

from benchmarks.common import median, noop_fn, pc


def tracing_cost(ctx) -> None:
    """Tiny-task slowdown with a recorder on, and the cost of trace points nobody hears."""
    import raylab
    ray = ctx.ray
    noop = noop_fn(ray)
    n = ctx.size(1000, 5000)
    ctx.init()
    ray.get([noop.remote() for _ in range(200)])  # warm-up: start the workers
    off, on = _recorder_slowdown(ray, noop, n, ctx.size(3, 5))
    ctx.metrics["tracing_recorder_slowdown_x"] = median(on) / median(off)
    ctx.sample("off_batch_s", off)
    ctx.sample("on_batch_s", on)
    per_task = _calls_per_task(raylab, ray, noop, ctx)
    unguarded, guarded = _disabled_call_cost()
    task_s = median(off) / n
    ctx.metrics["tracing_off_overhead_pct"] = 100 * per_task * unguarded / task_s
    ctx.info.update(
        trace_points_per_task=per_task, disabled_call_ns=unguarded * 1e9,
        guarded_call_ns=guarded * 1e9, untraced_task_us=task_s * 1e6,
        guarded_overhead_pct=100 * per_task * guarded / task_s)
    ctx.info["note"] = (
        f"{per_task:.1f} trace points/task x {unguarded * 1e9:.0f} ns per disabled call "
        f"(guarded form {guarded * 1e9:.0f} ns) over {task_s * 1e6:.0f} us/task untraced")


def _recorder_slowdown(ray, noop, n: int, reps: int):
    """Alternate untraced and traced batches; their wall times."""
    import raylab
    off, on = [], []
    for _ in range(reps):
        t0 = pc()
        ray.get([noop.remote() for _ in range(n)])
        off.append(pc() - t0)
        with raylab.trace():
            t0 = pc()
            ray.get([noop.remote() for _ in range(n)])
            on.append(pc() - t0)
    return off, on


def _calls_per_task(raylab, ray, noop, ctx) -> float:
    """Trace-point calls per tiny task, across every process (= events recorded)."""
    k = 200
    gc.collect()
    with raylab.trace() as t:
        ray.get([noop.remote() for _ in range(k)])
    events = t.events
    ctx.info["events_by_step"] = dict(Counter(f"{e.proc}:{e.step}" for e in events))
    with raylab.trace() as one:
        ray.get(noop.remote())
    ctx.info["events_for_one_isolated_task"] = len(one.events)
    return len(events) / k


def _disabled_call_cost():
    """Seconds per disabled trace-point call: (unguarded, guarded), median of 5 runs."""
    from raylab.tracing import emit
    assert not emit.TRACER.on, "tracing is still on: nobody should be listening here"
    env = {"step": emit.step, "TRACER": emit.TRACER, "tid": bytes(range(28))}
    call = ('step("core_worker", "task", "submit_task", task=tid.hex(), '
            'detail={"name": "noop", "num_returns": 1})')
    number = 200_000
    unguarded = timeit.repeat(call, globals=env, number=number, repeat=5)
    guarded = timeit.repeat("TRACER.on and " + call, globals=env, number=number, repeat=5)
    return median(unguarded) / number, median(guarded) / number
