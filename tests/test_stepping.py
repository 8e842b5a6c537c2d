"""Step mode: the real cluster pauses at trace points until the driver releases it."""
from __future__ import annotations

import time

import numpy as np
import pytest

import raylab as ray
from raylab.state import cluster_snapshot
from raylab.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from conftest import assert_clean


@ray.remote
def add(a, b):
    return a + b


def on_n2():
    n2 = next(n["NodeID"] for n in ray.nodes() if n["NodeName"] == "N2")
    return add.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n2, soft=False))


@pytest.fixture
def stepper(cluster2):
    ray.get(add.remote(0, 0))  # export and warm up outside the steps we look at
    pace, mode = ray.stepper.pace, ray.stepper.blocking_get
    yield ray.stepper
    ray.stepper.off()
    ray.stepper.reset()
    ray.stepper.pace, ray.stepper.blocking_get = pace, mode


def test_pause_at_lease_grant_inspect_then_continue(stepper):
    stepper.break_at(step="lease_granted", node="N2")
    ref = on_n2().remote(1, 2)
    ev = stepper.wait(10)
    assert ev is not None and ev.step == "lease_granted" and ev.node == "N2"
    assert ev.component == "raylet"
    ready, _ = ray.wait([ref], timeout=0)
    assert ready == []  # the task has not run: the cluster really is paused
    n2 = cluster_snapshot().node("N2")
    assert n2.available["CPU"] == 1  # the raylet has decided; its answer is held
    assert any(w.state == "LEASED" and w.running == "add" for w in n2.workers)
    stepper.continue_()
    assert ray.get(ref, timeout=10) == 3


def test_breakpoint_stops_there_and_nowhere_else(stepper):
    stepper.break_at(step="execute_task")
    refs = [on_n2().remote(i, 1) for i in range(3)]
    seen = []
    while len(seen) < 3:
        ev = stepper.wait(10)
        assert ev is not None
        seen.append(ev)
        stepper.next(0.01)
    assert ray.get(refs, timeout=10) == [1, 2, 3]
    assert [e.step for e in stepper.history] == ["execute_task"] * 3
    assert {e.component for e in stepper.history} == {"worker"}


def test_step_through_a_task_across_nodes(stepper):
    stepper.on()
    ref = on_n2().remote(1, 2)
    ev = stepper.wait(10)
    steps = []
    while ev is not None:
        steps.append((ev.step, ev.node, ev.component))
        ev = stepper.next(1.0)
    assert steps == [
        ("request_lease", "N1", "driver"),
        ("schedule_decision", "N2", "raylet"),
        ("lease_granted", "N2", "raylet"),
        ("push_task", "N1", "driver"),
        ("execute_task", "N2", "worker"),
        ("task_returned", "N2", "worker"),
        ("task_finished", "N1", "driver"),
    ]
    assert ray.get(ref, timeout=5) == 3


@ray.remote
def big(n):
    return np.ones(n, dtype=np.uint8)


def test_blocking_get_of_a_large_object_pulled_from_n2_advances_through_pauses(stepper):
    """The pull from N2's store goes through the same pause-aware wait as a small get."""
    n2 = next(n["NodeID"] for n in ray.nodes() if n["NodeName"] == "N2")
    ref = big.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n2, soft=False)
                      ).remote(1 << 20)
    stepper.pace, stepper.blocking_get = 0.02, "advance"
    stepper.on()
    value = ray.get(ref, timeout=60)
    assert value.nbytes == 1 << 20 and value.sum() == 1 << 20
    steps = [e.step for e in stepper.history]
    assert "pull_object" in steps or "fetch_object" in steps, steps


def test_await_ref_and_future(stepper):
    ref = add.remote(20, 22)
    assert ref.future().result(timeout=10) == 42

    async def main():
        return await add.remote(1, 2)
    import asyncio
    import concurrent.futures
    with concurrent.futures.ThreadPoolExecutor(1) as pool:  # a loop of its own, as a user has
        assert pool.submit(asyncio.run, main()).result(timeout=30) == 3


def test_bad_breakpoint_is_a_clear_error(stepper):
    with pytest.raises(ValueError, match="unknown breakpoint criteria"):
        stepper.break_at(stp="lease_granted")
    with pytest.raises(ValueError, match="at least one"):
        stepper.break_at()


def test_shutdown_while_paused_returns_promptly(fresh):
    ctx = ray.init(num_nodes=2, num_cpus=1)
    ray.stepper.on()
    ref = add.remote(1, 2)
    assert ray.stepper.wait(10) is not None
    t0 = time.monotonic()
    ray.shutdown()
    assert time.monotonic() - t0 < 1.0
    assert_clean(ctx["session_dir"])
    del ref
    assert not ray.stepper.active


def test_a_trace_started_and_stopped_across_cells(cluster2):
    t = ray.trace().start()                    # a notebook records across several cells
    ref = add.remote(1, 2)
    assert ray.get(ref) == 3
    t.stop()
    after = add.remote(3, 4)
    assert ray.get(after) == 7
    tasks = {e.ids.get("task") for e in t.steps(step="execute_task")}
    assert len(tasks) == 1                     # the task after stop() was not recorded
    assert t.stop() is t                       # stopping twice is harmless
