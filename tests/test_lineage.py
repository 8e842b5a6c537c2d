"""Lineage reconstruction: objects really lost with a node, really rebuilt by re-running
exactly the tasks that made them."""
from __future__ import annotations

import random
import time

import numpy as np
import pytest

import raylab as ray
from raylab import chaos
from raylab import exceptions as exc
from raylab.state import cluster_snapshot
from raylab.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from conftest import wait_for

MB = 1 << 20
FAST_HEALTH = {"health_check_period_ms": 200, "health_check_failure_threshold": 3}


def node_id(label):
    return next(n["NodeID"] for n in ray.nodes() if n["NodeName"] == label)


def prefer(label):
    """Run on ``label`` while it lives; anywhere after (so a rebuild can run elsewhere)."""
    return NodeAffinitySchedulingStrategy(node_id(label), soft=True)


@ray.remote
def make(n):
    return np.ones(n, dtype=np.uint8)


@ray.remote
def double(x):
    return x * 2


@ray.remote
def inc(x):
    return x + 1


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
        chaos.kill_node("N2")
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
    chaos.kill_node("N2")
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
    chaos.kill_node("N2")
    with pytest.raises(exc.ObjectLostError, match="ray.put"):
        ray.get(ref, timeout=30)


def test_rebuilding_counts_against_max_retries(two_nodes):
    b = double.options(scheduling_strategy=prefer("N2"), max_retries=0).remote(
        make.options(scheduling_strategy=prefer("N1")).remote(MB))
    ray.wait([b], fetch_local=False)
    chaos.kill_node("N2")
    with pytest.raises(exc.ObjectReconstructionFailedError, match="max_retries"):
        ray.get(b, timeout=30)


def test_step_mode_kill_n2_while_paused_then_continue(two_nodes):
    ray.get(inc.remote(1))  # export and warm up
    ray.stepper.break_at(step="lease_granted", node="N2")
    try:
        ref = inc.options(scheduling_strategy=prefer("N2")).remote(41)
        ev = ray.stepper.wait(10)
        assert ev is not None and ev.node == "N2"
        chaos.kill_node("N2")
        wait_for(lambda: not {n["NodeName"]: n["Alive"] for n in ray.nodes()}["N2"], 10,
                 "N2 to be declared dead")
        ray.stepper.continue_()
        assert ray.get(ref, timeout=30) == 42
    finally:
        ray.stepper.off()


def test_random_worker_kills_on_a_dag_of_200_tasks(two_nodes):
    rng = random.Random(7)

    @ray.remote(max_retries=-1)
    def leaf(i):
        time.sleep(0.01)  # some work, so that kills land while tasks run
        return np.full(MB // 4, i % 7, dtype=np.int64)

    @ray.remote(max_retries=-1)
    def combine(x, y):
        time.sleep(0.01)
        return x + y

    leaves = [leaf.remote(i) for i in range(100)]
    pairs = [combine.remote(leaves[i], leaves[(i * 37 + 11) % 100]) for i in range(100)]
    expected = [(i % 7) + (((i * 37 + 11) % 100) % 7) for i in range(100)]
    killed = 0
    pending = list(pairs)
    while pending and killed < 6:
        ready, pending = ray.wait(pending, num_returns=min(5, len(pending)), timeout=30)
        victims = [w for n in cluster_snapshot().nodes if n.alive for w in n.workers
                   if w.state == "LEASED"]
        if victims:
            try:
                chaos.kill_worker(rng.choice(victims).pid)
                killed += 1
            except ValueError:  # it died (an earlier kill) after the snapshot: pick again
                pass
    values = ray.get(pairs, timeout=120)
    assert [int(v[0]) for v in values] == expected
    assert all(int(v[-1]) == e for v, e in zip(values, expected))
    assert killed >= 3
