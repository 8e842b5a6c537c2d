"""Failures: worker crashes and retries, node death, actors restarted elsewhere."""
from __future__ import annotations

import os
import sys
import time

import pytest

import raylab as ray
from raylab import chaos
from raylab import exceptions as exc
from raylab.state import cluster_snapshot
from raylab.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from conftest import wait_for


def node_id(label):
    return next(n["NodeID"] for n in ray.nodes() if n["NodeName"] == label)


def counter_file(tmp_path, name):
    path = tmp_path / name
    path.write_text("0")
    return str(path)


@ray.remote(max_retries=3)
def die_until(path, fatal_times, how):
    """Dies the first ``fatal_times`` attempts (as the worker process), then succeeds."""
    n = int(open(path).read()) + 1
    open(path, "w").write(str(n))
    if n <= fatal_times:
        if how == "os._exit":
            os._exit(1)
        sys.exit(1)
    return n


def test_worker_crash_is_retried(cluster2, tmp_path):
    path = counter_file(tmp_path, "a")
    assert ray.get(die_until.remote(path, 2, "os._exit"), timeout=30) == 3


def test_sys_exit_is_retried_until_it_succeeds(cluster2, tmp_path):
    # the seed notebook's second flaky task: sys.exit kills the worker, Ray retries
    path = counter_file(tmp_path, "b")
    assert ray.get(die_until.remote(path, 3, "sys.exit"), timeout=30) == 4


def test_retries_run_out_then_worker_crashed_error(cluster2, tmp_path):
    path = counter_file(tmp_path, "c")
    with pytest.raises(exc.WorkerCrashedError):
        ray.get(die_until.options(max_retries=1).remote(path, 5, "os._exit"), timeout=30)
    assert open(path).read() == "2"  # the first attempt and one retry


def test_application_errors_are_not_retried_by_default(cluster2, tmp_path):
    # the seed notebook's first flaky task: an exception in user code is not retried
    path = counter_file(tmp_path, "d")

    @ray.remote
    def flaky(path):
        n = int(open(path).read()) + 1
        open(path, "w").write(str(n))
        raise ValueError(f"attempt {n} failed")

    with pytest.raises(ValueError, match="attempt 1 failed"):
        ray.get(flaky.remote(path))
    assert open(path).read() == "1"


def test_retry_exceptions_true_and_by_type(cluster2, tmp_path):
    @ray.remote(max_retries=2)
    def flaky(path, exc_type):
        n = int(open(path).read()) + 1
        open(path, "w").write(str(n))
        if n < 3:
            raise exc_type(f"attempt {n}")
        return n

    p1 = counter_file(tmp_path, "e")
    assert ray.get(flaky.options(retry_exceptions=True).remote(p1, KeyError)) == 3
    p2 = counter_file(tmp_path, "f")
    assert ray.get(flaky.options(retry_exceptions=[KeyError]).remote(p2, KeyError)) == 3
    p3 = counter_file(tmp_path, "g")
    with pytest.raises(ValueError):  # not in the list: not retried
        ray.get(flaky.options(retry_exceptions=[KeyError]).remote(p3, ValueError))
    assert open(p3).read() == "1"


def test_killed_worker_running_a_task_is_detected_and_retried(cluster2, tmp_path):
    marker = tmp_path / "started"

    @ray.remote(max_retries=2)
    def long_task(marker):
        first = not os.path.exists(marker)
        open(marker, "a").write("x")
        if first:
            time.sleep(30)
        return ray.get_runtime_context().get_worker_id()

    ref = long_task.remote(str(marker))
    wait_for(lambda: marker.exists(), 10, "the task to start")
    running = [w for n in cluster_snapshot().nodes for w in n.workers
               if w.running == "long_task"]
    assert len(running) == 1
    with ray.trace() as t:
        chaos.kill_worker(running[0].label)
        assert ray.get(ref, timeout=30) != running[0].worker_id
    names = t.names(level=None)
    assert "worker_died" in names and "retry_task" in names


def test_node_death_detected_within_the_window(fresh):
    ray.init(num_nodes=2, num_cpus=1, _system_config={
        "health_check_period_ms": 200, "health_check_failure_threshold": 3})
    with ray.trace() as t:
        t0 = time.monotonic()
        chaos.kill_node("N2")
        wait_for(lambda: not {n["NodeName"]: n["Alive"] for n in ray.nodes()}["N2"], 10,
                 "N2 to be marked dead")
        elapsed = time.monotonic() - t0
    assert elapsed < 0.2 * 3 + 1.0  # three missed checks, plus a little slack
    dead = t.steps(step="node_marked_dead")
    assert len(dead) == 1 and dead[0].detail["label"] == "N2"
    assert "N2" not in [n.label for n in cluster_snapshot().nodes if n.alive]


def test_tasks_on_a_dead_node_are_retried_elsewhere(fresh, tmp_path):
    ray.init(num_nodes=2, num_cpus=1, _system_config={"health_check_period_ms": 200})
    n2 = node_id("N2")
    marker = tmp_path / "running"

    @ray.remote(max_retries=3)
    def slow(marker):
        open(marker, "a").write(ray.get_runtime_context().get_node_id() + "\n")
        time.sleep(1.0)
        return ray.get_runtime_context().get_node_id()

    ref = slow.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n2, soft=True)) \
        .remote(str(marker))
    wait_for(lambda: marker.exists(), 10, "the task to start on N2")
    chaos.kill_node("N2")
    assert ray.get(ref, timeout=30) == node_id("N1")


def test_actor_on_a_dead_node_restarts_on_another(fresh):
    ray.init(num_nodes=2, num_cpus=1, _system_config={"health_check_period_ms": 200})

    @ray.remote(max_restarts=1)
    class Where:
        def node(self):
            return ray.get_runtime_context().get_node_id()

    a = Where.options(
        scheduling_strategy=NodeAffinitySchedulingStrategy(node_id("N2"), soft=True)).remote()
    assert ray.get(a.node.remote()) == node_id("N2")
    chaos.kill_node("N2")
    assert wait_for(lambda: _try_node(a), 20, "the actor to restart") == node_id("N1")


def _try_node(a):
    try:
        return ray.get(a.node.remote(), timeout=5)
    except exc.RayActorError:
        return None
