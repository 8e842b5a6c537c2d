"""Lecture mode: the lecture's centralized control plane reproduces the slides step by
step (and Ray 2's steps are in test_demos.py); the GCS carries far more of the load."""
from __future__ import annotations

import pytest

import raylab as ray
from raylab.demo import actor, compare, get, runner, task


@pytest.fixture
def lecture(fresh):
    runner.fresh_cluster(control_plane="centralized")
    yield


def seq(events):
    return [(e.step, e.node, e.component) for e in events]


def test_remote_task_slides_step_0_to_9(lecture):
    a, b = task.setup()
    with ray.trace() as t:
        ref_c = task.scenario(a, b)
    # c's own journey (stored, entered in the GCS) is the next scenario's: leave it out
    steps = [e for e in t.steps(flow=["task", "object"])
             if not (e.flow == "object" and e.ids.get("object") == ref_c.hex())]
    assert seq(steps) == [
        ("export_function", "N1", "driver"),             # Step 0: register the function
        ("register_function", "N1", "gcs"),
        ("submit_task", "N1", "driver"),
        ("resolve_dependencies", "N1", "driver"),
        ("request_lease", "N1", "driver"),               # Step 1: ask N1's local scheduler
        ("forward_to_global_scheduler", "N1", "raylet"),  # Step 2: ... which asks the global one
        ("global_schedule_request", "N1", "gcs"),
        ("object_table_lookup", "N1", "gcs"),            # Step 3: object table lookup: a on N1
        ("object_table_lookup", "N1", "gcs"),            #          ... and b on N2
        ("global_decision", "N1", "gcs"),                # Step 4: schedule on N2
        ("schedule_decision", "N1", "raylet"),
        ("spillback", "N1", "raylet"),
        ("follow_spillback", "N1", "driver"),
        ("request_lease", "N1", "driver"),
        ("schedule_decision", "N2", "raylet"),
        ("check_local_args", "N2", "raylet"),            # Step 5: are the arguments here?
        ("locate_object", "N2", "object_manager"),       # Step 6: look up a in the GCS
        ("object_table_lookup", "N1", "gcs"),
        ("pull_object", "N2", "object_manager"),         # Step 7: fetch a from N1, replicate
        ("object_replicated", "N2", "object_manager"),
        ("lease_granted", "N2", "raylet"),               # Step 8: invoke the worker
        ("push_task", "N1", "driver"),
        ("execute_task", "N2", "worker"),                # Step 9: execute add
        ("task_returned", "N2", "worker"),
        ("task_finished", "N1", "driver"),
    ]
    lookups = [e for e in steps if e.step == "object_table_lookup"]
    assert [e.detail["at"] for e in lookups] == ["N1", "N2", "N1"]
    text = "\n".join(e.narrative for e in steps)
    assert "contacts the global scheduler" in text
    assert "decides to schedule add on N2" in text


def test_ray_get_slides_step_1_to_7(lecture):
    a, b = task.setup()
    with ray.trace() as t:
        ref_c, c = get.scenario(a, b)
    assert seq(t.steps(**get.get_flow(ref_c))) == [
        ("get_object", "N1", "driver"),                  # Step 1: check the local store
        ("locate_object", "N1", "object_manager"),       # Step 2: look c up in the GCS ...
        ("register_callback", "N1", "gcs"),              #   ... no entry: register a callback
        ("store_object", "N2", "object_store"),          # Step 3: c stored on N2
        ("object_table_add", "N1", "gcs"),               # Step 4: entry added to the GCS
        ("callback_fired", "N1", "gcs"),                 # Step 5: the callback fires
        ("pull_object", "N1", "object_manager"),         # Step 6: fetch c, replicate on N1
        ("object_replicated", "N1", "object_manager"),
        ("get_returned", "N1", "driver"),                # Step 7: return c
    ]
    assert len(c) == 5 * task.MB


def test_actor_creation_slides_step_1_to_3(lecture):
    t, calls, counter = actor.scenario()
    steps = [(s, n, c) for s, n, c in seq(t.steps(flow=["actor", "task"]))]
    assert steps[:10] == [
        ("export_function", "N1", "driver"),
        ("register_function", "N1", "gcs"),
        ("register_actor", "N1", "driver"),              # Step 1: register with the GCS
        ("submit_actor_task", "N1", "driver"),
        ("schedule_actor", "N1", "gcs"),                 # Step 2: pick N2's raylet, wait
        ("schedule_decision", "N2", "raylet"),
        ("lease_granted", "N2", "raylet"),
        ("create_actor", "N1", "gcs"),                   # Step 3: the creation task on N2
        ("execute_task", "N2", "worker"),
        ("actor_alive", "N1", "gcs"),
    ]
    assert ray.get(counter.counts.remote()) == 1


def test_comparison_counts_the_gcs_on_every_task(fresh):
    loads = {plane: compare.gcs_load(plane, tasks=6) for plane in compare.PLANES}
    central, owner = loads["centralized"], loads["ownership"]
    assert central["gcs_messages_by_method"].get("global_schedule", 0) >= 1
    assert central["gcs_messages_by_method"].get("object_table_add", 0) >= 1
    assert "global_schedule" not in owner["gcs_messages_by_method"]
    assert central["gcs_messages_per_task"] > 3 * owner["gcs_messages_per_task"]
