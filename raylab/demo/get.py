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
    waiting = "register_callback" if _lecture_mode() else "get_object"
    seen = _watch_for(waiting, ref_c.hex())
    got = []
    getter = threading.Thread(target=lambda: got.append(ray.get(ref_c)), name="get-c")
    getter.start()
    seen.wait(30)                # the get is waiting (at the owner, or at a GCS callback)
    stepper.off()                # let add run
    getter.join(60)
    return ref_c, got[0]


def _lecture_mode() -> bool:
    return ray.api.cluster().control_plane == "centralized"


def _watch_for(step: str, object_hex: str) -> threading.Event:
    """An event set when the trace shows ``step`` for the object."""
    from raylab.tracing.recorder import COLLECTOR
    seen = threading.Event()

    def look(events):
        if any(e.step == step and e.ids.get("object") == object_hex for e in events):
            seen.set()
            COLLECTOR.unsubscribe(look)

    COLLECTOR.subscribe(look)
    return seen


def get_flow(ref_c) -> dict:
    """The steps of this get: in Ray 2 the owner learning where c is belongs to the story;
    in the lecture's design the GCS object table tells instead."""
    if _lecture_mode():
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
