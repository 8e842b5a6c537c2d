"""Step mode: the real cluster pauses at trace points until the driver releases it."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest

import raylab as ray
from raylab.state import cluster_snapshot
from raylab.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from conftest import assert_clean, wait_for


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
        ("submit_task", "N1", "driver"),       # shown, but it never held the caller's thread
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


# -- which step is current: next() lets happen the step it showed ------------------------------

@ray.remote
def after_fifo(path):
    """Blocks on a named pipe until the test writes to it (no messages, so this worker's
    Lamport clock stays where it was), then submits a task of its own."""
    with open(path) as f:
        f.read()
    return ray.get(add.remote(1, 1))


def test_next_releases_the_step_it_showed_not_an_earlier_one(stepper, tmp_path):
    """A step that pauses after the one shown, with an earlier clock, is shown next; the
    shown one is the one released (before: next() released the other and showed the same
    step again)."""
    import os
    fifo = str(tmp_path / "go")
    os.mkfifo(fifo)
    late = after_fifo.remote(fifo)
    wait_for(lambda: any(w.running == "after_fifo" for n in cluster_snapshot().nodes
                         for w in n.workers), what="after_fifo to start")
    for i in range(20):   # the driver's clock runs far ahead (one at a time: no lease
        ray.get(add.remote(i, i))  # request is left in flight)
    stepper.break_at(step="request_lease")
    ref = on_n2().remote(2, 3)                       # a new lease (no lingering one to reuse)
    shown = stepper.wait(10)
    assert shown.step == "request_lease" and shown.proc == "driver" and shown.held
    assert shown.ids["task"] == ref.task_id().hex()
    assert stepper.current is shown
    with open(fifo, "w") as f:                       # the waiting task goes on
        f.write("go")
    wait_for(lambda: len(stepper.paused) == 2, what="the task's own request_lease to pause")
    other = next(e for e in stepper.paused if e.key != shown.key)
    assert other.sort_key() < shown.sort_key()       # earlier in causal order, shown later
    ev = stepper.next(10)
    assert ev is not None and ev.key == other.key and stepper.current is ev
    assert shown.key not in {e.key for e in stepper.paused}
    assert ray.get(ref, timeout=10) == 5             # the shown step really was released
    assert [e.key for e in stepper.paused] == [other.key]
    stepper.off()
    assert ray.get(late, timeout=10) == 2
    assert len({e.key for e in stepper.history}) == len(stepper.history)


# -- breakpoints: clearing, removing, replacing ------------------------------------------------

def test_clearing_breakpoints_keeps_the_current_pause(stepper):
    stepper.blocking_get = "wait"                    # this test does the stepping
    stepper.break_at(step="lease_granted")
    ref = on_n2().remote(3, 4)   # not add's key: the warm-up's lease may linger for reuse
    ev = stepper.wait(10)
    assert ev.step == "lease_granted"
    stepper.clear_breakpoints()
    assert stepper.breakpoints == [] and stepper.active   # a step is still paused
    # still paused (before: clearing released everything, and ray.get gave 7 at once)
    assert ray.wait([ref], timeout=1.0)[0] == []
    assert [e.key for e in stepper.paused] == [ev.key] and stepper.current is ev
    assert stepper.next(1.0) is None                 # nothing else pauses now
    assert ray.get(ref, timeout=10) == 7
    assert stepper.paused == [] and stepper.current is None
    assert stepper.wait(0.5) is None                 # not the stale lease_granted


def test_removing_one_breakpoint_keeps_the_others(stepper):
    grant = stepper.break_at(step="lease_granted")
    execute = stepper.break_at(step="execute_task")
    stepper.remove(grant)
    assert stepper.breakpoints == [{"step": "execute_task"}]
    ref = add.remote(1, 1)
    ev = stepper.wait(10)
    assert ev.step == "execute_task" and ev.held
    stepper.continue_()
    assert ray.get(ref, timeout=10) == 2
    assert [e.step for e in stepper.history] == ["execute_task"]
    stepper.remove(execute)
    assert not stepper.active
    with pytest.raises(ValueError, match="not a breakpoint"):
        stepper.remove(execute)


def test_replacing_a_breakpoint_while_paused(stepper):
    grant = stepper.break_at(step="lease_granted")
    ref = on_n2().remote(5, 5)
    assert stepper.wait(10).step == "lease_granted"
    stepper.remove(grant)
    stepper.break_at(step="task_finished")
    ev = stepper.next(10)                            # lets the grant happen; stops at the end
    assert ev is not None and ev.step == "task_finished" and ev.held
    assert ray.wait([ref], timeout=0)[0] == []       # the owner has not stored the result yet
    stepper.continue_()
    assert ray.get(ref, timeout=10) == 10
    assert stepper.paused == [] and stepper.breakpoints == [{"step": "task_finished"}]
    assert [e.step for e in stepper.history] == ["lease_granted", "task_finished"]


# -- breakpoints by flow, component, task and object ----------------------------------------------

def test_breakpoint_by_flow_shows_the_drivers_get_steps(stepper):
    """The driver's own get steps are shown (as passed steps: the user's thread never
    blocks on them), in order, and nothing of other flows."""
    ref = on_n2().remote(2, 2)
    ray.wait([ref])
    stepper.break_at(flow="get")
    assert ray.get(ref, timeout=10) == 4
    ev = stepper.wait(10)
    assert (ev.step, ev.held) == ("get_object", False)
    assert [e.step for e in stepper.pending] == ["get_returned"] and stepper.paused == []
    assert stepper.next(2.0).step == "get_returned"
    assert stepper.next(0.5) is None
    assert {e.flow for e in stepper.history} == {"get"}


def test_breakpoint_by_component_pauses_the_gcs(stepper):
    @ray.remote
    def first_use(x):      # a function the cluster has never seen: the GCS registers it
        return x * 3

    stepper.blocking_get = "wait"                    # this test does the stepping
    stepper.break_at(component="gcs")
    ref = first_use.remote(3)
    ev = stepper.wait(10)
    assert (ev.step, ev.component, ev.held) == ("register_function", "gcs", True)
    assert ray.wait([ref], timeout=1.0)[0] == []     # workers wait for the function table
    stepper.continue_()
    assert ray.get(ref, timeout=10) == 9
    assert {e.component for e in stepper.history} == {"gcs"}


def test_breakpoint_by_task_pauses_only_that_task(stepper):
    first = stepper.break_at(step="request_lease")
    ref = on_n2().remote(1, 1)
    tid = stepper.wait(10).ids["task"]
    assert tid == ref.task_id().hex()
    stepper.remove(first)
    stepper.break_at(task=tid)
    assert ray.get(big.remote(8), timeout=10).sum() == 8   # other tasks run on
    shown = []
    ev = stepper.next(10)
    while ev is not None:
        shown.append(ev)
        ev = stepper.next(1.0)
    assert {e.ids.get("task") for e in shown} == {tid}
    assert [e.step for e in shown if e.held][-4:] == [
        "push_task", "execute_task", "task_returned", "task_finished"]
    assert ray.get(ref, timeout=10) == 2


def test_breakpoint_by_object_pauses_its_transfer(stepper):
    n2 = next(n["NodeID"] for n in ray.nodes() if n["NodeName"] == "N2")
    ref = big.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n2, soft=False)
                      ).remote(1 << 20)
    ray.wait([ref], fetch_local=False)
    stepper.blocking_get = "wait"                    # this test does the stepping
    stepper.break_at(object=ref.hex())
    got = []
    getter = threading.Thread(target=lambda: got.append(ray.get(ref, timeout=30)))
    getter.start()
    shown = []
    ev = stepper.wait(10)
    while ev is not None:
        shown.append(ev)
        ev = stepper.next(1.0)
    getter.join(30)
    assert got and got[0].nbytes == 1 << 20
    assert {e.ids.get("object") for e in shown} == {ref.hex()}
    held = [e.step for e in shown if e.held]
    assert "pull_object" in held, [e.step for e in shown]
    names = [e.step for e in shown]
    # the owner records N1's new copy when N1's raylet tells it, concurrently with the get
    # returning: that one step may come on either side of get_returned
    story = [n for n in names if n != "location_recorded"]
    assert story[0] == "get_object" and story[-1] == "get_returned"
    assert names.index("pull_object") < names.index("get_returned")


def test_get_timeout_covers_a_transfer_that_does_not_finish(stepper):
    """The object is ready on N2, but its pull to N1 is held: get(timeout=) still raises
    GetTimeoutError on time, and the object is fine once the pull may go on."""
    n2 = next(n["NodeID"] for n in ray.nodes() if n["NodeName"] == "N2")
    ref = big.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n2, soft=False)
                      ).remote(1 << 20)
    ray.wait([ref], fetch_local=False)                 # ready, and only on N2
    stepper.blocking_get = "wait"
    stepper.break_at(step="pull_object")
    started = time.monotonic()
    with pytest.raises(ray.exceptions.GetTimeoutError, match="still being fetched"):
        ray.get(ref, timeout=1.0)
    assert time.monotonic() - started < 10
    assert stepper.wait(10).step == "pull_object"      # the transfer is what held it
    stepper.off()
    assert ray.get(ref, timeout=30).nbytes == 1 << 20


# -- step mode shows every lecture step, the driver's too ----------------------------------------

def test_step_mode_shows_the_drivers_steps_in_order_without_blocking_it(stepper):
    @ray.remote
    def fresh_add(a, b):
        return a + b

    stepper.on()
    t0 = time.monotonic()
    ref = fresh_add.remote(1, 2)                      # the user's thread is never held
    assert time.monotonic() - t0 < 5.0
    shown = []
    ev = stepper.wait(10)
    while ev is not None and ev.step != "task_finished":
        shown.append(ev)
        ev = stepper.next(5.0)
    assert ev is not None
    stepper.next(0.5)
    assert ray.get(ref, timeout=10) == 3
    names = [e.step for e in shown]
    for before, after in [("export_function", "register_function"),
                          ("export_function", "submit_task"),
                          ("submit_task", "request_lease"), ("request_lease", "lease_granted"),
                          ("lease_granted", "push_task"), ("push_task", "execute_task"),
                          ("execute_task", "task_returned")]:
        assert names.index(before) < names.index(after), names
    passed = {e.step for e in shown if not e.held}
    assert {"export_function", "submit_task"} <= passed
    assert len({e.key for e in shown}) == len(shown)  # no step shown twice


def test_task_demo_in_step_mode_shows_every_lecture_step(stepper):
    """`python -m raylab demo task --step`: one Enter per step, the same steps as the
    traced demo, Step 0 (export_function) and submit_task included."""
    import io
    from rich.console import Console
    from raylab.demo import runner, task
    a, b = task.setup()
    presses = []
    runner.step_through(lambda: task.scenario(a, b), "add(a, b)",
                        out=Console(file=io.StringIO(), width=runner.WIDTH),
                        prompt=lambda _: presses.append(ray.stepper.current.step))
    lecture = ["export_function", "register_function", "submit_task", "resolve_dependencies",
               "request_lease", "schedule_decision", "check_local_args", "locate_object",
               "pull_object", "object_replicated", "lease_granted", "push_task",
               "execute_task", "store_object", "task_returned", "task_finished"]
    seen = [s for s in presses if s in lecture]
    assert sorted(seen) == sorted(lecture), presses       # each lecture step, once
    assert seen[0] == "export_function"                   # Step 0 first
    # in causal order; only registering the function runs beside the submission in step
    # mode (the export does not wait for the GCS: a paused GCS would hold the caller)
    chain = [s for s in lecture if s != "register_function"]
    assert [s for s in seen if s != "register_function"] == chain, presses
    assert not ray.stepper.active
