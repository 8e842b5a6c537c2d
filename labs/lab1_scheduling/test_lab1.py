"""Lab 1 tests: each is one property of Ray's policies."""
from __future__ import annotations

import pytest

from labs.conftest import load
from raylab.scheduling.resources import NodeResources


@pytest.fixture
def lab(request):
    return load(request, "lab1_scheduling")


def node(i, total, available, alive=True):
    return NodeResources(bytes([i]) * 28, f"N{i}", total, available, alive)


@pytest.mark.lab1_1
def test_utilization_is_the_most_used_resource(lab):
    n = node(1, {"CPU": 4, "GPU": 1}, {"CPU": 3, "GPU": 0})
    assert lab.critical_utilization(n) == 1.0
    assert lab.critical_utilization(node(2, {"CPU": 4}, {"CPU": 3})) == 0.25
    assert lab.critical_utilization(node(3, {"CPU": 4, "GPU": 0}, {"CPU": 4})) == 0.0


@pytest.mark.lab1_2
def test_hybrid_keeps_work_local_below_the_threshold(lab):
    n1, n2 = node(1, {"CPU": 4}, {"CPU": 3}), node(2, {"CPU": 4}, {"CPU": 4})
    assert lab.hybrid({"CPU": 1}, [n1, n2], n1.node_id) == n1.node_id


@pytest.mark.lab1_2
def test_hybrid_spreads_once_the_local_node_is_busy(lab):
    n1, n2 = node(1, {"CPU": 2}, {"CPU": 1}), node(2, {"CPU": 2}, {"CPU": 2})
    assert lab.hybrid({"CPU": 1}, [n1, n2], n1.node_id) == n2.node_id  # 50% is not below


@pytest.mark.lab1_2
def test_hybrid_prefers_nodes_that_are_available_now(lab):
    busy_local = node(1, {"CPU": 2}, {"CPU": 0})
    free = node(2, {"CPU": 2}, {"CPU": 1})
    assert lab.hybrid({"CPU": 1}, [busy_local, free], busy_local.node_id) == free.node_id


@pytest.mark.lab1_2
def test_hybrid_queues_on_a_feasible_node_when_none_is_available(lab):
    n1, n2 = node(1, {"CPU": 2}, {"CPU": 0}), node(2, {"CPU": 2}, {"CPU": 0})
    assert lab.hybrid({"CPU": 1}, [n1, n2], n1.node_id) == n1.node_id


@pytest.mark.lab1_2
def test_hybrid_ignores_dead_and_infeasible_nodes(lab):
    dead = node(1, {"CPU": 8}, {"CPU": 8}, alive=False)
    small = node(2, {"CPU": 1}, {"CPU": 1})
    big = node(3, {"CPU": 4}, {"CPU": 2})
    assert lab.hybrid({"CPU": 2}, [dead, small, big], dead.node_id) == big.node_id
    assert lab.hybrid({"GPU": 1}, [dead, small, big], small.node_id) is None


@pytest.mark.lab1_3
def test_spread_goes_round_robin(lab):
    nodes = [node(i, {"CPU": 2}, {"CPU": 2}) for i in (1, 2, 3)]
    picks = [lab.spread({"CPU": 1}, nodes, c) for c in range(4)]
    assert picks == [nodes[0].node_id, nodes[1].node_id, nodes[2].node_id, nodes[0].node_id]


@pytest.mark.lab1_3
def test_spread_skips_busy_nodes(lab):
    nodes = [node(1, {"CPU": 1}, {"CPU": 0}), node(2, {"CPU": 1}, {"CPU": 1})]
    assert lab.spread({"CPU": 1}, nodes, 0) == nodes[1].node_id
