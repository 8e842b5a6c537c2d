"""Lineage reconstruction: objects really lost with a node, really rebuilt by re-running
exactly the tasks that made them."""
from __future__ import annotations

import random
import threading

import numpy as np
import pytest

import raylab as ray
from raylab import chaos
from raylab import exceptions as exc
from raylab.state import cluster_snapshot
from raylab.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from conftest import node_processes_gone, wait_for
from test_node_failures import FAST_HEALTH, alive, detection_window

MB = 1 << 20


def node_id(label):
    return next(n["NodeID"] for n in ray.nodes() if n["NodeName"] == label)


def prefer(label):
    """Run on ``label`` while it lives; anywhere after (so a rebuild can run elsewhere)."""
    return NodeAffinitySchedulingStrategy(node_id(label), soft=True)


def only(label):
    """Run on ``label`` or nowhere (a rebuild after its death would be unschedulable)."""
    return NodeAffinitySchedulingStrategy(node_id(label), soft=False)


def kill(label):
    """Kill a node, and check that nothing of it is left."""
    chaos.kill_node(label)
    wait_for(lambda: node_processes_gone(label), 5, f"{label}'s processes to exit")


@ray.remote
def make(n):
    return np.ones(n, dtype=np.uint8)


@ray.remote
def double(x):
    return x * 2


@ray.remote
def inc(x):
    return x + 1


@ray.remote
def total(x):
    return int(x.sum())


@pytest.fixture
def two_nodes(fresh):
    ray.init(num_nodes=2, num_cpus=2, _system_config=FAST_HEALTH)
    yield


def test_chain_rebuilds_exactly_the_lost_tasks(two_nodes):
    a = make.options(scheduling_strategy=prefer("N1")).remote(4 * MB)   # survives on N1
    b = double.options(scheduling_strategy=prefer("N2")).remote(a)      # lost with N2
    c = inc.options(scheduling_strategy=prefer("N2")).remote(b)         # lost with N2
    ray.wait([c], fetch_local=False)
    with ray.trace() as t:
        kill("N2")
        value = ray.get(c, timeout=60)
    assert value.sum() == 3 * 4 * MB and value[0] == 3
    rebuilt = sorted(e.detail["name"] for e in t.steps(step="reconstruct_object"))
    assert rebuilt == ["double", "inc"]          # make's output was not lost: not re-run
    runs = sorted(e.detail["name"] for e in t.steps(step="execute_task"))
    assert runs == ["double", "inc"]
    assert all(e.node == "N1" for e in t.steps(step="execute_task"))
    lost = t.steps(step="object_lost")           # the owner says what it found, then acts
    assert c.hex() in {e.ids["object"] for e in lost}
    assert "it was on N2" in next(e.narrative for e in lost if e.ids["object"] == c.hex())
    assert t.events.index(lost[0]) < t.events.index(t.steps(step="reconstruct_object")[0])
    graph = t.lineage(c).text()
    assert graph.splitlines()[0].startswith(f"{c.hex()[:8]}#1  rebuilt")


def test_intermediate_refs_dropped_still_rebuild(two_nodes):
    c = inc.options(scheduling_strategy=prefer("N2")).remote(
        double.options(scheduling_strategy=prefer("N2")).remote(
            make.options(scheduling_strategy=prefer("N2")).remote(2 * MB)))
    ray.wait([c], fetch_local=False)
    kill("N2")
    assert ray.get(c, timeout=60).sum() == 3 * 2 * MB   # the whole chain, from lineage


def test_put_object_lost_with_its_node_raises_object_lost(two_nodes):
    @ray.remote
    class Owner:  # on N1: it owns the object, and it survives
        def ping(self):
            return True

    owner = Owner.options(scheduling_strategy=NodeAffinitySchedulingStrategy(
        node_id("N1"), soft=False)).remote()
    ray.get(owner.ping.remote())

    @ray.remote
    def put_here(owner):
        return [ray.put(np.ones(2 * MB, dtype=np.uint8), _owner=owner)]

    [ref] = ray.get(put_here.options(scheduling_strategy=NodeAffinitySchedulingStrategy(
        node_id("N2"), soft=False)).remote(owner))
    kill("N2")
    with pytest.raises(exc.ObjectLostError, match="ray.put"):
        ray.get(ref, timeout=30)


def test_rebuilding_counts_against_max_retries(two_nodes):
    b = double.options(scheduling_strategy=prefer("N2"), max_retries=0).remote(
        make.options(scheduling_strategy=prefer("N1")).remote(MB))
    ray.wait([b], fetch_local=False)
    kill("N2")
    with pytest.raises(exc.ObjectReconstructionFailedError, match="max_retries"):
        ray.get(b, timeout=30)


@ray.remote
def inc_where(x):
    return x + 1, ray.get_runtime_context().get_node_id()


def test_step_mode_kill_n2_while_paused_then_continue(two_nodes):
    ray.get(inc_where.remote(1))  # export and warm up
    ray.stepper.break_at(step="lease_granted", node="N2")
    try:
        ref = inc_where.options(scheduling_strategy=prefer("N2")).remote(41)
        ev = ray.stepper.wait(10)
        assert ev is not None and ev.node == "N2"
        kill("N2")
        wait_for(lambda: not alive("N2"), detection_window() + 10, "N2 to be declared dead")
        ray.stepper.continue_()
        assert ray.get(ref, timeout=30) == (42, node_id("N1"))   # it ran on N1 instead
    finally:
        ray.stepper.off()


def test_step_mode_pauses_before_a_rebuild(two_nodes):
    # paused at "the owner re-executes double", nothing is re-run until the user continues
    a = make.options(scheduling_strategy=prefer("N1")).remote(MB)   # (held: it survives)
    b = double.options(scheduling_strategy=prefer("N2")).remote(a)
    ray.wait([b], fetch_local=False)
    kill("N2")
    chaos.wait_until_dead("N2")
    got = []
    saved, ray.stepper.blocking_get = ray.stepper.blocking_get, "wait"  # we step, below
    ray.stepper.break_at(step="reconstruct_object")
    try:
        with ray.trace() as t:
            reader = threading.Thread(target=lambda: got.append(ray.get(b, timeout=60)))
            reader.start()
            ev = ray.stepper.wait(30)
            assert ev is not None and ev.detail["name"] == "double"
            assert "execute_task" not in [e.step for e in t.events]   # held: not re-run yet
            ray.stepper.continue_()
            reader.join(60)
    finally:
        ray.stepper.off()
        ray.stepper.blocking_get = saved
    assert got and got[0].sum() == 2 * MB
    assert [e.detail["name"] for e in t.steps(step="execute_task")] == ["double"]


def test_another_copy_is_preferred_over_re_execution(fresh):
    # b is made on N2 only; a task on N3 reads it, so N3 holds a copy. Once N2 is dead, the
    # owner points readers at N3's copy: nothing is re-run (a rebuild, pinned to N2 with
    # soft=False, could not even be scheduled)
    ray.init(num_nodes=3, num_cpus=1, _system_config=FAST_HEALTH)
    b = make.options(scheduling_strategy=only("N2")).remote(2 * MB)
    assert ray.get(total.options(scheduling_strategy=only("N3")).remote(b)) == 2 * MB
    kill("N2")
    chaos.wait_until_dead("N2")
    with ray.trace() as t:
        assert ray.get(b, timeout=30).sum() == 2 * MB
        assert ray.get(total.remote(b), timeout=30) == 2 * MB
    assert t.steps(step="reconstruct_object") == [] and t.steps(step="object_lost") == []
    assert {e.detail["from"] for e in t.steps(step="pull_object")} == {"N3"}


def test_reconstruction_runs_out_across_repeated_node_kills(fresh):
    # make's default max_retries=3 allows three rebuilds; each runs on a fresh "victim" node
    # (the only nodes with that resource), which is killed in turn; the fourth loss is final
    ray.init(num_nodes=1, num_cpus=1, _system_config=FAST_HEALTH)

    def add_victim():  # room for make and for a reader of b that waits while it is rebuilt
        return chaos.add_node(num_cpus=2, resources={"victim": 2})

    victim = add_victim()
    b = make.options(resources={"victim": 1}).remote(MB)
    reader = total.options(resources={"victim": 1})
    assert ray.get(reader.remote(b), timeout=30) == MB
    with ray.trace() as t:
        for _ in range(3):
            kill(victim)
            chaos.wait_until_dead(victim)
            victim = add_victim()
            assert ray.get(reader.remote(b), timeout=60) == MB   # rebuilt on the new node
        kill(victim)
        chaos.wait_until_dead(victim)
        with pytest.raises(exc.ObjectReconstructionFailedError) as info:
            ray.get(b, timeout=60)
    assert type(info.value) is exc.ObjectReconstructionFailedMaxAttemptsExceededError
    assert [e.detail["attempt"] for e in t.steps(step="reconstruct_object")] == [1, 2, 3]


def test_owner_died_when_the_owners_node_dies(two_nodes):
    # the owner of a put is the task's worker on N2: its death takes the object's fate along
    @ray.remote
    def put_and_return():
        return [ray.put(np.ones(2 * MB, dtype=np.uint8))]

    [ref] = ray.get(put_and_return.options(scheduling_strategy=only("N2")).remote())
    assert ray.get(ref, timeout=30).sum() == 2 * MB      # a copy on N1 now, too
    kill("N2")
    chaos.wait_until_dead("N2")
    with pytest.raises(exc.OwnerDiedError):
        ray.get(ref, timeout=30)


KILL_AT = (10, 25, 40, 55, 70, 85)  # a worker is killed when this many results are ready


def test_random_worker_kills_on_a_dag_of_200_tasks(two_nodes):
    rng = random.Random(7)

    @ray.remote(max_retries=-1)
    def leaf(i):
        return np.full(MB // 4, i % 7, dtype=np.int64)

    @ray.remote(max_retries=-1)
    def combine(x, y):
        return x + y

    leaves = [leaf.remote(i) for i in range(100)]
    pairs = [combine.remote(leaves[i], leaves[(i * 37 + 11) % 100]) for i in range(100)]
    expected = [(i % 7) + (((i * 37 + 11) % 100) % 7) for i in range(100)]
    pending, done, killed = list(pairs), 0, []
    for at in KILL_AT:
        ready, pending = ray.wait(pending, num_returns=at - done, timeout=120,
                                  fetch_local=False)
        assert len(ready) == at - done
        done = at
        killed.append(kill_a_worker(rng))
    values = ray.get(pairs, timeout=120)
    assert [int(v[0]) for v in values] == expected
    assert all(int(v[-1]) == e for v, e in zip(values, expected))
    assert len(killed) == len(KILL_AT)


def kill_a_worker(rng) -> str:
    """Kill one live worker, chosen by the seeded ``rng`` from the workers sorted by label;
    those running a task first, so that kills land mid-task when any task runs."""
    for _ in range(20):
        workers = [w for n in cluster_snapshot().nodes if n.alive for w in n.workers
                   if w.state != "DEAD" and w.label != "driver"]
        busy = sorted((w for w in workers if w.running), key=lambda w: w.label)
        pool = busy or sorted(workers, key=lambda w: w.label)
        if not pool:
            continue
        victim = pool[rng.randrange(len(pool))]
        try:
            chaos.kill_worker(victim.pid)
            return victim.label
        except ValueError:  # it died (an earlier kill) after the snapshot: pick again
            pass
    raise AssertionError("no live worker to kill")
