"""Where tasks run: node affinity, SPREAD, the hybrid policy, spillback, lease reuse, infeasible shapes."""
from __future__ import annotations

import time

import pytest

import raylab as ray
from raylab.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from conftest import wait_for


@ray.remote
def node_of():
    return ray.get_runtime_context().get_node_id()


def test_node_affinity_pins_to_n2(cluster2):
    nodes = {n["NodeName"]: n["NodeID"] for n in ray.nodes()}
    n2 = nodes["N2"]
    where = node_of.options(
        scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=n2, soft=False)).remote()
    assert ray.get(where) == n2
    assert len(n2) == 56 and int(n2, 16) >= 0  # a hex string, as in Ray
    assert ray.get_runtime_context().get_node_id() == nodes["N1"]


def test_spread_uses_both_nodes(cluster2):
    @ray.remote
    def where_slow():
        time.sleep(0.3)
        return ray.get_runtime_context().get_node_id()

    refs = [where_slow.options(scheduling_strategy="SPREAD").remote() for _ in range(4)]
    assert len(set(ray.get(refs))) == 2


def test_default_policy_packs_then_spreads(cluster2):
    @ray.remote
    def hold(t):
        time.sleep(t)
        return ray.get_runtime_context().get_node_id()

    refs = [hold.remote(1.0) for _ in range(4)]
    assert len(set(ray.get(refs))) == 2  # 4 CPUs needed: both nodes


def test_custom_resources_and_infeasible_warning(cluster2, capsys):
    @ray.remote(resources={"unicorn": 1})
    def needs_unicorn():
        return 1

    ref = needs_unicorn.remote()
    ready, _ = ray.wait([ref], timeout=0.5)
    assert ready == []  # stays pending: no node has a unicorn
    err = wait_for(lambda: capsys.readouterr().err, 5, "the infeasible warning")
    assert "unicorn" in err
    ray.cancel(ref)


# -- the infeasible warning, once per shape ----------------------------------------------------
def test_infeasible_warning_is_printed_once_per_shape(cluster2, capfd):
    @ray.remote(resources={"dragon": 1})
    def needs_dragon():
        return 1

    @ray.remote(resources={"dragon": 1})
    def also_needs_dragon():  # another scheduling key (another lease request), same shape
        return 2

    with ray.trace() as t:
        refs = [needs_dragon.remote(), also_needs_dragon.remote(), needs_dragon.remote()]
        wait_for(lambda: len(t.steps(step="infeasible", level=None)) >= 2, 10,
                 "both requests found infeasible")
    err = capfd.readouterr().err
    assert err.count("requests {'dragon': 1.0") == 1, err
    assert len(t.steps(step="infeasible_warning", level=None)) == 1
    for r in refs:
        ray.cancel(r)


# -- lease reuse, spillback, packing ---------------------------------------------------------
def test_serial_tasks_of_one_shape_reuse_their_lease(cluster2, control_plane):
    @ray.remote
    def inc(x):
        return x + 1

    with ray.trace() as t:
        for i in range(20):
            assert ray.get(inc.remote(i)) == i + 1
    grants = t.steps(step="lease_granted", level=None)
    pushes = t.steps(step="push_task", level=None)
    assert len(pushes) == 20
    if control_plane == "ownership":
        assert len(grants) < 20  # Ray 2: the owner keeps the lease for the next task
    else:
        assert len(grants) == 20  # the lecture's design schedules every task afresh


def test_default_task_spills_back_from_a_full_local_node(cluster2, control_plane):
    if control_plane != "ownership":
        pytest.skip("spillback between raylets is Ray 2's (the lecture's GCS places tasks)")
    nodes = {n["NodeName"]: n["NodeID"] for n in ray.nodes()}

    @ray.remote
    def forever():
        while True:
            time.sleep(0.05)

    wait_for(lambda: ray.available_resources().get("CPU") == 4, 20, "an idle cluster")
    on_n1 = NodeAffinitySchedulingStrategy(node_id=nodes["N1"], soft=False)
    blockers = [forever.options(scheduling_strategy=on_n1).remote() for _ in range(2)]
    try:
        wait_for(lambda: ray.available_resources().get("CPU") == 2, 10, "N1 to be full")
        with ray.trace() as t:
            where = ray.get(node_of.remote(), timeout=30)
        assert where == nodes["N2"]
        task = t.steps(step="submit_task", level=None)[0].ids["task"]
        spill = t.steps(step="spillback", task=task, level=None)
        assert len(spill) == 1 and spill[0].node == "N1" and spill[0].detail["to"] == "N2"
        assert [e.node for e in t.steps(step="lease_granted", task=task, level=None)] == ["N2"]
        assert t.names(task=task, step=["spillback", "follow_spillback", "lease_granted"],
                       level=None) == ["spillback", "follow_spillback", "lease_granted"]
    finally:
        for b in blockers:
            ray.cancel(b, force=True)


def test_default_policy_packs_onto_the_local_node_below_the_threshold(cluster2, control_plane):
    if control_plane != "ownership":
        pytest.skip("the hybrid policy is the raylet's (the lecture's global scheduler "
                    "places by load)")
    nodes = {n["NodeName"]: n["NodeID"] for n in ray.nodes()}
    wait_for(lambda: ray.available_resources().get("CPU") == 4, 20, "an idle cluster")
    with ray.trace() as t:
        # one task at a time: N1 never passes the spread threshold (50%), so the local
        # node keeps every task though N2 is idle
        where = [ray.get(node_of.remote()) for _ in range(6)]
    assert where == [nodes["N1"]] * 6
    decisions = t.steps(step="schedule_decision", level=None)
    assert decisions and all(e.detail["to"] == "N1" for e in decisions)
    assert not t.steps(step="spillback", level=None)
