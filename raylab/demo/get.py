"""Demo: ``ray.get`` of an object produced on another node (the lecture's Steps 1-7).

The driver asks for ``c`` while ``add`` is still running on N2: it checks its
local store (Step 1). In the lecture's design N1 looks c up in the GCS, finds
no entry and registers a callback (Step 2); N2's worker stores ``c`` in N2's
object store (Step 3), which adds c's entry to the GCS (Step 4), and the GCS
fires the callback (Step 5). In Ray 2 the driver owns c: the worker's reply
tells it where c is (Steps 4-5). Then N1 fetches ``c`` from N2 and replicates
it (Step 6), and ``ray.get`` returns it (Step 7). To make "while it is still
running" certain, the demo holds the task at its start (step mode) until the
get is waiting.
"""
from __future__ import annotations

import threading

import raylab as ray
from raylab.demo import runner
from raylab.demo.task import add, names, setup

# which slide each step is, in each design (see raylab.views.steplog.SlideSteps)
SLIDES = {
    "centralized": {
        "get_object": 1, "locate_object": 2, "register_callback": 2, "store_object": 3,
        "object_table_add": 4, "callback_fired": 5, "pull_object": 6, "object_replicated": 6,
        "get_returned": 7},
    "ownership": {
        "get_object": 1, "store_object": 3, "task_returned": 3, "task_finished": "4-5",
        "pull_object": 6, "object_replicated": 6, "get_returned": 7},
}


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
    return runner.control_plane() == "centralized"


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
        title = f"ray.get(ref_c): c is produced on N2, the driver is on N1 ({control_plane})"
        if step:
            called = names(a, b)

            def named_get():  # c gets its name as soon as add.remote returns it
                ref_c = add.remote(a, b)
                called[ref_c.hex()] = "c"
                ray.get(ref_c)

            runner.step_through(named_get, title, out, slides=SLIDES[control_plane],
                                names=called,
                                story=lambda ev: called.get(ev.ids.get("object")) == "c")
            return ""
        with ray.trace() as t:
            ref_c, c = scenario(a, b)
        return runner.show(t.steps(**get_flow(ref_c)), title, out, SLIDES[control_plane],
                           names(a, b, ref_c))
    finally:
        ray.shutdown()
