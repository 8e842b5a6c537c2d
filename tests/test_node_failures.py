"""Node failures: a node killed or hung is found by the GCS's health checks, marked DEAD and
broadcast; its tasks are retried elsewhere, its actors restarted (or dead), its leases
released."""
from __future__ import annotations

import os
import time

import pytest

import raylab as ray
from raylab import chaos
from raylab import exceptions as exc
from raylab.state import cluster_snapshot
from raylab.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from conftest import group_processes, node_processes_gone, wait_for


def node_id(label):
    return next(n["NodeID"] for n in ray.nodes() if n["NodeName"] == label)


# fast health checks: a ping every 200 ms, answered within 300 ms, three misses -> DEAD
FAST_HEALTH = {"health_check_period_ms": 200, "health_check_timeout_ms": 300,
               "health_check_failure_threshold": 3}


def detection_window(slack: float = 1.5) -> float:
    """The longest the GCS may take to declare a node DEAD, from the session's config: a
    round waits one period, then up to one timeout for each ping, ``threshold`` rounds in
    a row; the failure may land just after a round began (one more period). Plus slack
    for a busy machine."""
    cfg = ray.api.cluster().session.config
    period, timeout = cfg.health_check_period_ms / 1000, cfg.health_check_timeout_ms / 1000
    return cfg.health_check_failure_threshold * (period + timeout) + period + slack


def alive(label):
    return {n["NodeName"]: n["Alive"] for n in ray.nodes()}[label]


@ray.remote(max_retries=3)
def hold_on(node, started, release):
    """On ``node`` it runs until ``release`` exists (it never does before that node fails,
    so timing cannot end the first attempt early); anywhere else it returns at once."""
    here = ray.get_runtime_context().get_node_id()
    open(started, "a").write(here + "\n")
    while here == node and not os.path.exists(release):
        time.sleep(0.01)
    return here


def start_on_n2(tmp_path):
    n2 = node_id("N2")
    started, release = tmp_path / "started", tmp_path / "release"
    ref = hold_on.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n2, soft=True)) \
        .remote(n2, str(started), str(release))
    wait_for(lambda: started.exists(), 30, "the task to start on N2")
    return ref, release


def test_node_death_detected_within_the_window(fresh):
    ray.init(num_nodes=2, num_cpus=1, _system_config=FAST_HEALTH)
    with ray.trace() as t:
        t0 = time.monotonic()
        chaos.kill_node("N2")   # the whole process group, at once:
        wait_for(lambda: node_processes_gone("N2"), 5, "N2's processes to exit")
        wait_for(lambda: not alive("N2"), 30, "N2 to be marked dead")
        elapsed = time.monotonic() - t0
    assert elapsed < detection_window()
    dead = t.steps(step="node_marked_dead")
    assert len(dead) == 1 and dead[0].detail["label"] == "N2"
    assert "N2" not in [n.label for n in cluster_snapshot().nodes if n.alive]
    # the GCS broadcasts the death: every live raylet and the driver (an owner) hear it
    heard = [e for e in t.steps(step="node_dead_received")]
    assert sorted(e.narrative for e in heard) == [
        "Driver learns from the GCS that N2 is dead",
        "N1's raylet learns from the GCS that N2 is dead"]
    assert all(t.events.index(dead[0]) < t.events.index(e) for e in heard)


def test_hung_node_detected_within_the_window(fresh):
    # a node that stops answering (SIGSTOP: nothing dies, no connection drops) is found
    # only by the health checks: each ping times out
    ray.init(num_nodes=2, num_cpus=1, _system_config=FAST_HEALTH)
    try:
        with ray.trace() as t:
            t0 = time.monotonic()
            chaos.freeze_node("N2")
            wait_for(lambda: not alive("N2"), 30, "N2 to be marked dead")
            elapsed = time.monotonic() - t0
        assert elapsed < detection_window()
        missed = [e.detail["missed"] for e in t.steps(step="health_check_missed", level=None)]
        assert missed == [1, 2, 3]
        assert [e.detail["label"] for e in t.steps(step="node_marked_dead")] == ["N2"]
    finally:
        chaos.thaw_node("N2")
    # declared DEAD, it learns so when it wakes (the GCS dropped it) and ends itself
    wait_for(lambda: node_processes_gone("N2"), 30, "the thawed N2 to exit")


def test_tasks_on_a_dead_node_are_retried_elsewhere(fresh, tmp_path):
    ray.init(num_nodes=2, num_cpus=1, _system_config=FAST_HEALTH)
    ref, _release = start_on_n2(tmp_path)
    with ray.trace() as t:
        chaos.kill_node("N2")
        assert ray.get(ref, timeout=30) == node_id("N1")
    assert [e.detail["attempt"] for e in t.steps(step="retry_task")] == [1]


def test_tasks_on_a_hung_node_are_retried_elsewhere_and_its_late_reply_ignored(
        fresh, tmp_path):
    # the node never drops a connection: only the GCS's verdict can fail the task over
    ray.init(num_nodes=2, num_cpus=1, _system_config=FAST_HEALTH)
    ref, release = start_on_n2(tmp_path)
    n1 = node_id("N1")
    with ray.trace() as t:
        chaos.freeze_node("N2")
        try:
            assert ray.get(ref, timeout=detection_window() + 15) == n1
        finally:
            release.write_text("go")     # the first attempt returns as soon as N2 wakes...
            chaos.thaw_node("N2")
        wait_for(lambda: node_processes_gone("N2"), 30, "the thawed N2 to exit")
    assert ray.get(ref) == n1            # ... and whatever it still sent changed nothing
    retries = t.steps(step="retry_task")
    assert [(e.detail["attempt"], e.detail["why"]) for e in retries] == [(1, "node N2 died")]
    assert len([e for e in t.steps(step="task_finished")
                if e.ids.get("task") == retries[0].ids["task"]]) == 1
    assert not alive("N2")


def test_lease_request_to_a_hung_node_fails_over(fresh, tmp_path):
    # the owner asks a hung raylet for a lease: no reply ever comes; once the GCS declares
    # the node DEAD, the request fails and the owner asks elsewhere
    ray.init(num_nodes=2, num_cpus=1, _system_config=FAST_HEALTH)
    n2 = node_id("N2")
    ray.get(hold_on.remote(n2, str(tmp_path / "warm"), ""))  # export the function first
    with ray.trace() as t:
        chaos.freeze_node("N2")
        try:
            ref = hold_on.options(scheduling_strategy=NodeAffinitySchedulingStrategy(
                n2, soft=True)).remote(n2, str(tmp_path / "started"), "")
            assert ray.get(ref, timeout=detection_window() + 15) == node_id("N1")
        finally:
            chaos.thaw_node("N2")
    asked = [e.detail["raylet"] for e in t.steps(step="request_lease")]
    assert asked[0] == "N2" and asked[-1] == "N1"
    assert len(t.steps(step="lease_request_failed", level=None)) == 1
    assert not (tmp_path / "started").read_text().startswith(n2)  # it never ran on N2


def test_shutdown_ends_a_frozen_node(fresh):
    ctx = ray.init(num_nodes=2, num_cpus=1)
    fresh.append(ctx["session_dir"])   # checked for leftovers after the test
    pgid = ray.api.cluster().procs.procs["raylet_N2"].pid
    chaos.freeze_node("N2")
    wait_for(lambda: all(p.status() == "stopped" for p in group_processes(pgid)), 10,
             "N2's processes to stop")
    ray.shutdown()   # SIGKILL ends stopped processes too
    wait_for(lambda: not group_processes(pgid), 5, "the frozen N2's processes to exit")


@ray.remote
class Where:
    def node(self):
        return ray.get_runtime_context().get_node_id()


def actor_on_n2(max_restarts: int):
    """A Where actor running on N2 (soft affinity: it may restart elsewhere)."""
    ray.init(num_nodes=2, num_cpus=1, _system_config=FAST_HEALTH)
    a = Where.options(max_restarts=max_restarts, scheduling_strategy=NodeAffinitySchedulingStrategy(
        node_id("N2"), soft=True)).remote()
    assert ray.get(a.node.remote()) == node_id("N2")
    return a


def test_actor_on_a_dead_node_restarts_on_another(fresh):
    a = actor_on_n2(max_restarts=1)
    chaos.kill_node("N2")
    assert wait_for(lambda: _try_node(a), 20, "the actor to restart") == node_id("N1")


def _try_node(a):
    try:
        return ray.get(a.node.remote(), timeout=5)
    except exc.RayActorError:
        return None


def test_actor_without_restarts_on_a_dead_node_is_dead(fresh):
    a = actor_on_n2(max_restarts=0)
    with ray.trace() as t:
        chaos.kill_node("N2")
        chaos.wait_until_dead("N2")
        with pytest.raises(exc.RayActorError):
            ray.get(a.node.remote(), timeout=30)
    assert t.steps(step="actor_restart") == []
    assert [e.detail["will_restart"] for e in t.steps(step="actor_died")] == [False]


def test_leases_are_released_and_resources_restored_after_a_node_death(fresh, tmp_path):
    ray.init(num_nodes=2, num_cpus=2, _system_config=FAST_HEALTH)
    n2 = node_id("N2")
    ref_one, _ = start_on_n2(tmp_path)
    started = tmp_path / "started2"
    ref_two = hold_on.options(scheduling_strategy=NodeAffinitySchedulingStrategy(
        n2, soft=True)).remote(n2, str(started), str(tmp_path / "never"))
    wait_for(lambda: started.exists(), 30, "the second task to start on N2")
    wait_for(lambda: ray.available_resources().get("CPU") == 2, 30,  # N2's two are leased
             "the resource view to show N2's CPUs in use")
    chaos.kill_node("N2")
    assert ray.get([ref_one, ref_two], timeout=30) == [node_id("N1")] * 2
    # N2 left the cluster's resources; N1 got back every CPU its retries leased
    wait_for(lambda: ray.cluster_resources().get("CPU") == 2, 30, "N2's CPUs to be gone")
    wait_for(lambda: ray.available_resources().get("CPU") == 2, 30, "N1's leases to return")
    n1 = next(n for n in cluster_snapshot().nodes if n.label == "N1")
    assert [w.label for w in n1.workers if w.state == "LEASED"] == []
    assert {n["NodeName"]: n["Resources"] for n in ray.nodes()}["N2"] == {}
