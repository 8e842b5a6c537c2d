"""Demo: the lifecycle of a remote task across two nodes (the lecture's ``add(a, b)``).

Object ``a`` is put by the driver on N1; ``b`` is made by a task on N2 (both
large, so they live in their nodes' object stores; plain bytes, so the demo
needs nothing beyond raylab). Then ``add.remote(a, b)``: the function is
registered (Step 0) and the task is placed where most of its arguments are, N2:

- the lecture's design (``control_plane="centralized"``): the driver contacts
  N1's local scheduler (Step 1), which contacts the global scheduler (Step 2);
  an object table lookup finds b on N2 (Step 3), and the global scheduler
  schedules the task there (Step 4);
- Ray 2 (``"ownership"``): the driver owns a and b, so it knows N2 holds most
  of the bytes and asks N2's raylet for a lease itself; N2's raylet keeps it.

Either way N2's local scheduler checks its store (Step 5), looks up a (Step 6:
in the GCS, or by asking a's owner), fetches it from N1 and replicates it
(Step 7), and invokes a worker (Step 8), which runs ``add`` (Step 9).
"""
from __future__ import annotations

import raylab as ray
from raylab.demo import runner
from raylab.util.scheduling_strategies import NodeAffinitySchedulingStrategy

MB = 1 << 20

# which slide each step is, in each design (see raylab.views.steplog.SlideSteps)
SLIDES = {
    "centralized": {
        "export_function": 0, "register_function": 0, "request_lease": 1,
        "forward_to_global_scheduler": 2, "object_table_lookup": (3, 6),
        "global_decision": 4, "check_local_args": 5, "locate_object": 6, "pull_object": 7,
        "object_replicated": 7, "lease_granted": 8, "push_task": 8, "execute_task": 9},
    "ownership": {
        "export_function": 0, "register_function": 0, "request_lease": "1-3",
        "schedule_decision": 4, "check_local_args": 5, "locate_object": 6, "pull_object": 7,
        "object_replicated": 7, "lease_granted": 8, "push_task": 8, "execute_task": 9},
}


@ray.remote
def make_b():
    return bytes([2]) * (3 * MB)


@ray.remote
def add(a, b):
    return a + b


def setup():
    """a on N1 (ray.put by the driver), b on N2 (the output of a task there)."""
    a = ray.put(bytes([1]) * (2 * MB))
    b = make_b.options(scheduling_strategy=NodeAffinitySchedulingStrategy(
        runner.node_id("N2"), soft=False)).remote()
    ray.wait([b], fetch_local=False)
    runner.settle([a, b])  # the traced part starts with the cluster at rest
    return a, b


def scenario(a, b):
    """The traced part: ``ref_c = add.remote(a, b)``, until the task has run.
    (``ray.get(ref_c)`` is the next lecture scenario: see demo/get.py.)"""
    ref_c = add.remote(a, b)
    ray.wait([ref_c], fetch_local=False)
    return ref_c


def steps(trace, ref_c) -> list:
    """The task's lecture-level steps. Where c is stored and entered in the object table
    belongs to the next scenario (``ray.get``), and happens after the task replied."""
    c = ref_c.hex()
    return [e for e in trace.steps(flow=["task", "object"])
            if not (e.flow == "object" and e.ids.get("object") == c)]


def names(a, b, ref_c=None) -> dict:
    """The objects by their names on the slides."""
    out = {a.hex(): "a", b.hex(): "b"}
    if ref_c is not None:
        out[ref_c.hex()] = "c"
    return out


def run(step: bool = False, out=None, control_plane: str = "ownership") -> str:
    runner.fresh_cluster(control_plane=control_plane)
    try:
        a, b = setup()
        title = f"A remote task: add(a, b) with a on N1 and b on N2 ({control_plane})"
        if step:
            called = names(a, b)

            def named_scenario():  # c gets its name as soon as add.remote returns it
                ref_c = add.remote(a, b)
                called[ref_c.hex()] = "c"
                ray.wait([ref_c], fetch_local=False)

            runner.step_through(named_scenario, title, out, slides=SLIDES[control_plane],
                                names=called)
            return ""
        with ray.trace() as t:
            ref_c = scenario(a, b)
        assert sum(ray.get(ref_c)) == 2 * MB + 3 * 2 * MB
        return runner.show(steps(t, ref_c), title, out, SLIDES[control_plane],
                           names(a, b, ref_c))
    finally:
        ray.shutdown()
