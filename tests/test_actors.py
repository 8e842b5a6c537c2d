"""Actors on a real two-node cluster: the whole lifecycle through the GCS."""
from __future__ import annotations

import asyncio
import os
import threading
import time

import pytest

import raylab as ray
from raylab import exceptions as exc
from raylab.state import cluster_snapshot
from raylab.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from conftest import wait_for


@ray.remote
class Counter:
    def __init__(self, start=0):
        self.counts = start

    def increment(self):
        self.counts += 1
        return self.counts

    def read(self):
        return self.counts

    def where(self):
        return ray.get_runtime_context().get_node_id(), os.getpid()

    @ray.method(num_returns=2)
    def pair(self):
        return self.counts, -self.counts

    def crash(self):
        os._exit(1)

    def boom(self):
        raise ValueError("method failed")


def node_id(label):
    return next(n["NodeID"] for n in ray.nodes() if n["NodeName"] == label)


def actor_row(actor_id_hex):
    return next(a for a in cluster_snapshot().actors if a.actor_id == actor_id_hex)


def test_create_call_and_gcs_table(cluster2):
    c = Counter.remote(10)
    assert repr(c).startswith("Actor(Counter, ")
    assert ray.get([c.increment.remote() for _ in range(5)]) == [11, 12, 13, 14, 15]
    row = actor_row(c._actor_id.hex())
    assert row.state == "ALIVE" and row.class_name == "Counter" and row.node in ("N1", "N2")
    assert row.worker_pid == ray.get(c.where.remote())[1]


def test_calls_before_alive_are_queued_and_ordered(cluster2):
    @ray.remote
    class Slow:
        def __init__(self):
            time.sleep(0.5)
            self.log = []

        def add(self, i):
            self.log.append(i)
            return list(self.log)

    s = Slow.remote()
    refs = [s.add.remote(i) for i in range(20)]  # all sent before the actor is ALIVE
    assert ray.get(refs[-1]) == list(range(20))


def test_default_resources_one_cpu_to_place_zero_to_run(cluster2):
    wait_for(lambda: ray.available_resources().get("CPU") == 4, 5, "an idle cluster")
    actors = [Counter.remote() for _ in range(6)]  # more actors than CPUs: they hold none
    assert ray.get([a.increment.remote() for a in actors]) == [1] * 6
    wait_for(lambda: ray.available_resources().get("CPU") == 4, 5, "CPUs unchanged")
    with_cpu = Counter.options(num_cpus=1).remote()
    ray.get(with_cpu.read.remote())
    wait_for(lambda: ray.available_resources().get("CPU") == 3, 5, "the actor to hold 1 CPU")
    ray.kill(with_cpu)
    wait_for(lambda: ray.available_resources().get("CPU") == 4, 5, "the CPU to come back")


def test_async_actor_runs_awaits_concurrently(cluster2):
    @ray.remote
    class Sleeper:
        async def nap(self, s):
            await asyncio.sleep(s)
            return s

    a = Sleeper.remote()
    ray.get(a.nap.remote(0))
    t0 = time.monotonic()
    assert ray.get([a.nap.remote(1), a.nap.remote(1)]) == [1, 1]
    assert time.monotonic() - t0 < 1.5


def test_threaded_actor_max_concurrency(cluster2):
    @ray.remote(max_concurrency=4)
    class Pool:
        def __init__(self):
            self.active = 0
            self.peak = 0
            self.lock = threading.Lock()

        def work(self):
            with self.lock:
                self.active += 1
                self.peak = max(self.peak, self.active)
            time.sleep(0.3)
            with self.lock:
                self.active -= 1
            return threading.get_ident()

        def peak_seen(self):
            return self.peak

    p = Pool.remote()
    threads = set(ray.get([p.work.remote() for _ in range(8)]))
    assert len(threads) > 1
    assert 2 <= ray.get(p.peak_seen.remote()) <= 4


def test_named_actors_namespaces_get_if_exists(cluster2):
    a = Counter.options(name="ctr", namespace="lab").remote(5)
    ray.get(a.increment.remote())
    b = ray.get_actor("ctr", namespace="lab")
    assert ray.get(b.increment.remote()) == 7
    with pytest.raises(ValueError, match="already taken"):
        Counter.options(name="ctr", namespace="lab").remote()
    c = Counter.options(name="ctr", namespace="lab", get_if_exists=True).remote()
    assert ray.get(c.read.remote()) == 7
    with pytest.raises(ValueError, match="Failed to look up actor"):
        ray.get_actor("ctr", namespace="elsewhere")
    ray.kill(a)


def test_num_returns_method_and_handles_in_tasks_and_actors(cluster2):
    c = Counter.remote(3)
    x, y = c.pair.remote()
    assert ray.get([x, y]) == [3, -3]

    @ray.remote
    def bump(h):
        return ray.get(h.increment.remote())

    @ray.remote
    class Caller:
        def call(self, h):
            return ray.get(h.increment.remote())

    assert ray.get(bump.remote(c)) == 4
    assert ray.get(Caller.remote().call.remote(c)) == 5
    assert ray.get(c.read.remote()) == 5


def test_actor_on_n2_called_from_task_on_n1(cluster2):
    n1, n2 = node_id("N1"), node_id("N2")
    a = Counter.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n2, soft=False)).remote()

    @ray.remote
    def from_n1(h):
        return ray.get_runtime_context().get_node_id(), ray.get(h.where.remote())[0]

    here, there = ray.get(from_n1.options(
        scheduling_strategy=NodeAffinitySchedulingStrategy(n1, soft=False)).remote(a))
    assert here == n1 and there == n2


def test_constructor_error_fails_every_call_with_the_cause(cluster2):
    @ray.remote
    class Broken:
        def __init__(self):
            raise ZeroDivisionError("bad constructor")

        def f(self):
            return 1

    b = Broken.remote()
    for _ in range(2):
        with pytest.raises(exc.RayActorError) as info:
            ray.get(b.f.remote(), timeout=10)
        assert "bad constructor" in str(info.value)
        assert isinstance(info.value.cause, ZeroDivisionError)


def test_method_error_is_a_task_error_and_the_actor_lives_on(cluster2):
    c = Counter.remote()
    with pytest.raises(ValueError, match="method failed"):
        ray.get(c.boom.remote())
    assert ray.get(c.increment.remote()) == 1


def test_kill_fails_pending_and_later_calls(cluster2):
    c = Counter.remote()
    ray.get(c.increment.remote())
    ray.kill(c)
    with pytest.raises(exc.RayActorError, match="ray.kill"):
        ray.get(c.increment.remote(), timeout=10)
    row = actor_row(c._actor_id.hex())
    assert row.state == "DEAD" and "ray.kill" in row.death_cause


def test_restart_after_os_exit_reruns_constructor(cluster2):
    c = Counter.options(max_restarts=1).remote(100)
    assert ray.get(c.increment.remote()) == 101
    _, pid1 = ray.get(c.where.remote())
    with pytest.raises(exc.RayActorError):
        ray.get(c.crash.remote(), timeout=10)  # no max_task_retries: the call fails
    assert ray.get(c.increment.remote(), timeout=20) == 101  # state reset by the constructor
    _, pid2 = ray.get(c.where.remote())
    assert pid1 != pid2
    assert actor_row(c._actor_id.hex()).restarts == 1
    c.crash.remote()
    with pytest.raises(exc.RayActorError):  # out of restarts: dead for good
        ray.get(c.increment.remote(), timeout=20)


def test_max_task_retries_retries_the_interrupted_call(cluster2):
    @ray.remote(max_restarts=1, max_task_retries=1)
    class Flaky:
        def __init__(self):
            self.marker = "/tmp/raylab_flaky_%d" % os.getpid()

        def once_crash(self, path):
            if not os.path.exists(path):
                open(path, "w").close()
                os._exit(1)
            return "survived"

    path = f"/tmp/raylab_test_flaky_{os.getpid()}"
    if os.path.exists(path):
        os.remove(path)
    f = Flaky.remote()
    try:
        assert ray.get(f.once_crash.remote(path), timeout=30) == "survived"
    finally:
        os.remove(path)


def test_out_of_scope_actor_is_killed_and_resources_released(cluster2):
    wait_for(lambda: ray.available_resources().get("CPU") == 4, 5, "an idle cluster")
    c = Counter.options(num_cpus=1).remote()
    ray.get(c.read.remote())
    actor = c._actor_id.hex()
    wait_for(lambda: ray.available_resources().get("CPU") == 3, 5, "the actor's CPU")
    del c
    wait_for(lambda: actor_row(actor).state == "DEAD", 10, "the actor to be killed")
    wait_for(lambda: ray.available_resources().get("CPU") == 4, 5, "its CPU to come back")


def test_detached_actor_outlives_its_handles(cluster2):
    c = Counter.options(name="keeper", lifetime="detached").remote()
    ray.get(c.increment.remote())
    actor = c._actor_id.hex()
    del c
    again = ray.get_actor("keeper")
    assert ray.get(again.increment.remote()) == 2
    assert actor_row(actor).state == "ALIVE"
    ray.kill(again)


def test_bad_input_is_a_clear_error_at_the_call_site(cluster2):
    c = Counter.remote()
    with pytest.raises(AttributeError, match="no attribute 'incremnt'"):
        c.incremnt.remote()
    with pytest.raises(TypeError, match="Could not serialize"):
        Counter.remote(threading.Lock())
    with pytest.raises(TypeError, match="cannot be instantiated directly"):
        Counter()
    with pytest.raises(ValueError, match="Invalid option keyword"):
        Counter.options(num_cpu=1)
    with pytest.raises(ValueError, match="lifetime"):
        Counter.options(lifetime="forever")
    assert ray.get(c.increment.remote()) == 1


def test_actor_runtime_env_lasts_for_its_methods(cluster2):
    @ray.remote
    class Env:
        def read(self):
            return os.environ.get("RAYLAB_ACTOR_VAR")

    e = Env.options(runtime_env={"env_vars": {"RAYLAB_ACTOR_VAR": "set"}}).remote()
    assert ray.get([e.read.remote(), e.read.remote()]) == ["set", "set"]
