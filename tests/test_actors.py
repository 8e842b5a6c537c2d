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

from actors_common import Counter, Gate, actor_row, held, marker_path, node_id, state_of
from conftest import wait_for


def test_create_call_and_gcs_table(cluster2):
    c = Counter.remote(10)
    assert repr(c).startswith("Actor(Counter, ")
    assert ray.get([c.increment.remote() for _ in range(5)]) == [11, 12, 13, 14, 15]
    row = actor_row(c._actor_id.hex())
    assert row.state == "ALIVE" and row.class_name == "Counter" and row.node in ("N1", "N2")
    node, pid = ray.get(c.where.remote())
    assert (row.worker_pid, row.node_id) == (pid, node)
    assert row.node_id == node_id(row.node)
    assert row.worker_id == ray.get(c.worker_id.remote())


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


def test_out_of_scope_actor_is_killed_and_resources_released(cluster2):
    wait_for(lambda: ray.available_resources().get("CPU") == 4, 5, "an idle cluster")
    c = Counter.options(num_cpus=1).remote()
    ray.get(c.read.remote())
    actor = c._actor_id.hex()
    wait_for(lambda: ray.available_resources().get("CPU") == 3, 5, "the actor's CPU")
    del c
    wait_for(lambda: actor_row(actor).state == "DEAD", 10, "the actor to be killed")
    wait_for(lambda: ray.available_resources().get("CPU") == 4, 5, "its CPU to come back")


def test_calls_made_before_the_last_handle_went_still_run(cluster2):
    """Ray's idiom ``ray.get(Actor.remote().method.remote())``: the handle is gone before
    the actor is even ALIVE, but the calls made through it run, then the actor goes."""
    gate = Gate.remote()

    @ray.remote
    def start_at(gate):
        return 10 if ray.get(gate.wait.remote()) else 0

    c = Counter.remote(start_at.remote(gate))   # not ALIVE before the gate opens
    aid = c._actor_id.hex()
    refs = [c.increment.remote() for _ in range(3)]
    del c
    wait_for(lambda: state_of(aid) == "DEPENDENCIES_UNREADY", 10, "the handle's drop to count")
    ray.get(gate.open.remote())
    assert ray.get(refs, timeout=30) == [11, 12, 13]
    wait_for(lambda: state_of(aid) == "DEAD", 10, "the actor to go after its last call")
    assert "out of scope" in actor_row(aid).death_cause
    assert ray.get(Counter.remote().increment.remote(), timeout=30) == 1


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


# -- the job's namespace, in tasks too --------------------------------------------------------
def test_tasks_see_the_drivers_named_actors_and_namespace(cluster2):
    a = Counter.options(name="ns_probe").remote(1)

    @ray.remote
    def look():
        return ray.get(ray.get_actor("ns_probe").increment.remote())

    @ray.remote
    def make():
        Counter.options(name="made_in_task", lifetime="detached").remote(7)
        return ray.get_runtime_context().namespace

    assert ray.get(look.remote(), timeout=20) == 2
    ns = ray.get(make.remote(), timeout=20)
    assert ns == ray.get_runtime_context().namespace
    d = ray.get_actor("made_in_task")
    assert ray.get(d.read.remote()) == 7
    assert actor_row(d._actor_id.hex()).namespace == ns
    ray.kill(d)
    ray.kill(a)


# -- handles from the GCS keep the actor's options --------------------------------------------
def test_get_actor_in_a_task_keeps_max_task_retries(cluster2):
    @ray.remote(max_restarts=2, max_task_retries=2)
    class Once:
        def once(self, path):
            if not os.path.exists(path):
                open(path, "w").close()
                os._exit(1)
            return "survived"

    @ray.remote
    def call(path):
        return ray.get(ray.get_actor("once_probe").once.remote(path), timeout=30)

    path = marker_path("once")
    o = Once.options(name="once_probe").remote()
    try:
        assert ray.get(call.remote(path), timeout=60) == "survived"
    finally:
        if os.path.exists(path):
            os.remove(path)
    ray.kill(o)


# -- ray.util.state: the GCS actor table, as in Ray ---------------------------------------------
def test_state_api_lists_actors_nodes_workers_and_objects(cluster2):
    from raylab.util import state
    c = Counter.options(name="listed").remote()
    node, pid = ray.get(c.where.remote())
    aid = c._actor_id.hex()
    [row] = state.list_actors(filters=[("name", "=", "listed")])
    assert (row.actor_id, row["class_name"], row.state, row.node_id, row.pid) == \
        (aid, "Counter", "ALIVE", node, pid)
    assert row.ray_namespace == ray.get_runtime_context().namespace
    assert row.job_id == ray.get_runtime_context().get_job_id()
    assert row.death_cause is None and row.num_restarts is None  # detail columns
    assert aid not in [a.actor_id for a in state.list_actors(filters=[("state", "!=", "alive")])]
    full = state.get_actor(aid)
    assert (full.num_restarts, full.is_detached, full.death_cause) == (0, False, None)
    assert full.required_resources == {"CPU": 1.0} and full.node_name in ("N1", "N2")
    workers = state.list_workers(detail=True)
    assert [w.worker_type for w in workers if w.pid == os.getpid()] == ["DRIVER"]
    [me] = [w for w in workers if w.pid == pid]
    assert (me.worker_id, me.node_id, me.actor_id, me.is_alive) == \
        (full.worker_id, node, aid, True)
    nodes = state.list_nodes()
    assert sorted(n.node_name for n in nodes) == ["N1", "N2"]
    assert node in [n.node_id for n in nodes if n.state == "ALIVE"]
    big = ray.put(b"x" * (1 << 20))
    [obj] = state.list_objects(filters=[("object_id", "=", big.hex())])
    assert obj.object_size >= 1 << 20 and obj.reference_type == "PINNED_IN_MEMORY"
    ray.kill(c)
    wait_for(lambda: state.get_actor(aid).state == "DEAD", 10, "the actor to be DEAD")
    cause = state.get_actor(aid).death_cause["actor_died_error_context"]
    assert "ray.kill" in cause["error_message"] and cause["pid"] == pid
    assert state.get_actor("00" * 16) is None
    with pytest.raises(ValueError, match="filter column"):
        state.list_actors(filters=[("colour", "=", "red")])


# -- the states between registration and ALIVE ---------------------------------------------------

def test_constructor_waiting_on_a_pending_ref_is_dependencies_unready(cluster2):
    gate = Gate.remote()
    c = Counter.remote(held.remote(gate, 5))
    aid = c._actor_id.hex()
    wait_for(lambda: state_of(aid) == "DEPENDENCIES_UNREADY", 10, "DEPENDENCIES_UNREADY")
    r = c.read.remote()  # waits with the caller until the actor is ALIVE
    assert ray.wait([r], timeout=0)[0] == []
    assert state_of(aid) == "DEPENDENCIES_UNREADY"  # nothing moves while the gate is shut
    ray.get(gate.open.remote())
    assert ray.get(r, timeout=20) == 5
    assert state_of(aid) == "ALIVE"


def test_infeasible_actor_is_pending_creation_until_killed(cluster2):
    c = Counter.options(resources={"nowhere": 1}).remote()
    aid = c._actor_id.hex()
    wait_for(lambda: state_of(aid) == "PENDING_CREATION" and any(
        name == "Counter" for n in cluster_snapshot().nodes for name, _r in n.infeasible),
        10, "the infeasible actor to wait in a raylet")
    r = c.read.remote()
    ray.kill(c)
    with pytest.raises(exc.RayActorError, match="ray.kill"):
        ray.get(r, timeout=10)
    assert actor_row(aid).state == "DEAD"
    wait_for(lambda: not any(n.infeasible for n in cluster_snapshot().nodes), 10,
             "the raylet to drop the request")


# -- borrowed handles keep an actor alive ---------------------------------------------------------
def test_handle_held_by_a_task_keeps_the_actor_alive(cluster2):
    gate = Gate.remote()

    @ray.remote
    def hold(h, gate):
        ray.get(gate.wait.remote())
        return ray.get(h.increment.remote())

    c = Counter.remote()
    aid = c._actor_id.hex()
    r = hold.remote(c, gate)
    del c  # only the task's handle is left
    ray.get(gate.open.remote())
    assert ray.get(r, timeout=20) == 1
    wait_for(lambda: state_of(aid) == "DEAD", 10, "the actor to go with the task's handle")
    assert "out of scope" in actor_row(aid).death_cause


def test_handle_held_by_another_actor_keeps_the_actor_alive(cluster2):
    @ray.remote
    class Holder:
        def __init__(self, h):
            self.h = h

        def call(self):
            return ray.get(self.h.increment.remote())

        def drop(self):
            self.h = None

    c = Counter.remote()
    aid = c._actor_id.hex()
    holder = Holder.remote(c)
    with ray.trace() as t:
        del c
        assert ray.get(holder.call.remote(), timeout=20) == 1
        assert ray.get(holder.call.remote(), timeout=20) == 2
        ray.get(holder.drop.remote())
        wait_for(lambda: state_of(aid) == "DEAD", 10, "the actor to go with the last handle")
    order = [e.step if e.step == "kill_actor" else e.detail.get("name")
             for e in t.steps() if e.step == "kill_actor" and e.ids.get("actor") == aid or
             e.step == "execute_task" and e.detail.get("name") in ("Holder.call", "Holder.drop")]
    assert order == ["Holder.call", "Holder.call", "Holder.drop", "kill_actor"]


# -- an async actor's max_concurrency ----------------------------------------------------------
def test_async_actor_runs_at_most_max_concurrency_calls_at_once(cluster2):
    @ray.remote(max_concurrency=2)
    class Napper:
        def __init__(self):
            self.active, self.peak, self.log = 0, 0, []

        async def nap(self, i):
            self.active += 1
            self.peak = max(self.peak, self.active)
            self.log.append(("start", i))
            await asyncio.sleep(0.5)
            self.log.append(("end", i))
            self.active -= 1

        async def seen(self):
            return self.peak, self.log

    n = Napper.remote()
    ray.get([n.nap.remote(i) for i in range(4)], timeout=30)
    peak, log = ray.get(n.seen.remote())
    assert peak == 2
    first_end = log.index(next(x for x in log if x[0] == "end"))
    assert [x[0] for x in log[:first_end]] == ["start", "start"]  # the 3rd waits for a slot


def test_handle_stored_by_an_actor_method_keeps_the_actor_alive(cluster2):
    @ray.remote
    class Keeper:
        def keep(self, h):
            self.h = h

        def call(self):
            return ray.get(self.h.increment.remote())

    k = Keeper.remote()
    for _ in range(10):  # the caller drops its handle right after the call returns
        c = Counter.remote()
        ray.get(k.keep.remote(c))
        del c
        assert ray.get(k.call.remote(), timeout=20) == 1
