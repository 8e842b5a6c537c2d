"""Demo: ``ray.get`` of an object produced on another node (the lecture's Steps 1-7).

The driver asks for ``c`` while ``add`` is still running on N2: it checks its
local store (Step 1), and as c's owner waits for the task to finish; N2's
worker stores ``c`` in N2's object store (Step 3) and the owner records where
it is (Step 4); N1 fetches ``c`` from N2 and replicates it (Steps 5-6), and
``ray.get`` returns it (Step 7). To make "while it is still running" certain,
the demo holds the task at its start (step mode) until the get is waiting.
"""
from __future__ import annotations

import threading

import raylab as ray
from raylab.demo import runner
from raylab.demo.task import add, setup


def scenario(a, b):
    ref_c = add.remote(a, b)
    stepper = ray.stepper
    stepper.break_at(step="execute_task")
    stepper.wait(30)             # add is about to run on N2; the driver now asks for c
    got = []
    getter = threading.Thread(target=lambda: got.append(ray.get(ref_c)), name="get-c")
    getter.start()
    stepper.off()                # let add run
    getter.join(60)
    return ref_c, got[0]


def get_flow(ref_c) -> dict:
    """The steps of this get: in Ray 2 the owner learning where c is belongs to the story;
    in the lecture's design the GCS object table tells instead."""
    if ray.api.cluster().control_plane == "centralized":
        return {"object": ref_c.hex(), "flow": ["get", "object"]}
    return {"object": ref_c.hex()}


def run(step: bool = False, out=None, control_plane: str = "ownership") -> str:
    runner.fresh_cluster(control_plane=control_plane)
    try:
        a, b = setup()
        if step:
            runner.step_through(lambda: ray.get(add.remote(a, b)), "ray.get of c", out)
            return ""
        with ray.trace() as t:
            ref_c, c = scenario(a, b)
        return runner.show(t, "ray.get(ref_c): c is produced on N2, the driver is on N1", out,
                           **get_flow(ref_c))
    finally:
        ray.shutdown()
