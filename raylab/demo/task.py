"""Demo: the lifecycle of a remote task across two nodes (the lecture's ``add(a, b)``).

Object ``a`` is put by the driver on N1; ``b`` is made by a task on N2 (both
large, so they live in their nodes' object stores). Then ``add.remote(a, b)``:
the function is registered (Step 0), the owner asks for a lease where most of
the arguments are (N2, Steps 1-4), N2's raylet checks its store, fetches ``a``
from N1 and replicates it (Steps 5-7), and N2's worker runs ``add`` (Steps 8-9).
"""
from __future__ import annotations

import numpy as np

import raylab as ray
from raylab.demo import runner
from raylab.util.scheduling_strategies import NodeAffinitySchedulingStrategy

MB = 1 << 20


@ray.remote
def make_b():
    return np.full(3 * MB, 2, dtype=np.uint8)


@ray.remote
def add(a, b):
    return np.concatenate([a, b])


def setup():
    """a on N1 (ray.put by the driver), b on N2 (the output of a task there)."""
    a = ray.put(np.full(2 * MB, 1, dtype=np.uint8))
    b = make_b.options(scheduling_strategy=NodeAffinitySchedulingStrategy(
        runner.node_id("N2"), soft=False)).remote()
    ray.wait([b], fetch_local=False)
    return a, b


def scenario(a, b):
    """The traced part: ``ref_c = add.remote(a, b)``, until the task has run.
    (``ray.get(ref_c)`` is the next lecture scenario: see demo/get.py.)"""
    ref_c = add.remote(a, b)
    ray.wait([ref_c], fetch_local=False)
    return ref_c


def run(step: bool = False, out=None, control_plane: str = "ownership") -> str:
    runner.fresh_cluster(control_plane=control_plane)
    try:
        a, b = setup()
        if step:
            runner.step_through(lambda: scenario(a, b), "A remote task: add(a, b)", out)
            return ""
        with ray.trace() as t:
            ref_c = scenario(a, b)
        assert int(ray.get(ref_c).sum()) == 2 * MB + 3 * 2 * MB
        return runner.show(t, "A remote task: add(a, b) with a on N1 and b on N2", out,
                           flow=["task", "object"])
    finally:
        ray.shutdown()
