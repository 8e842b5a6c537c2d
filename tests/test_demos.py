"""The lecture's scenarios, produced by the real cluster: exact step sequences and text."""
from __future__ import annotations

import io
import os
import subprocess
import sys

import pytest
from rich.console import Console

import raylab as ray
from raylab.demo import actor, get, lineage, runner, task

GOLDEN = os.path.join(os.path.dirname(__file__), "golden")


def quiet():
    return Console(file=io.StringIO(), width=runner.WIDTH)


def check_golden(name: str, text: str) -> None:
    path = os.path.join(GOLDEN, name)
    if os.environ.get("RAYLAB_UPDATE_GOLDEN"):
        with open(path, "w") as f:
            f.write(text + "\n")
    with open(path) as f:
        assert text == f.read().rstrip("\n"), f"{name} differs (RAYLAB_UPDATE_GOLDEN=1)"


def sequence(t, **criteria):
    return [(e.step, e.node, e.component) for e in t.steps(**criteria)]


def test_demo_without_a_name_lists_the_demos():
    out = subprocess.run([sys.executable, "-m", "raylab", "demo"], capture_output=True,
                         text=True, timeout=60).stdout
    for name in ("task", "get", "actor", "lineage", "compare"):
        assert f"  {name}" in out


@pytest.fixture
def cluster(fresh):
    runner.fresh_cluster()
    yield


def test_task_demo_follows_the_lecture(cluster):
    a, b = task.setup()
    with ray.trace() as t:
        task.scenario(a, b)
    assert sequence(t, flow=["task", "object"]) == [
        ("export_function", "N1", "driver"),        # Step 0
        ("register_function", "N1", "gcs"),
        ("submit_task", "N1", "driver"),            # Step 1
        ("resolve_dependencies", "N1", "driver"),
        ("request_lease", "N1", "driver"),          # Steps 2-4: N2 holds most bytes
        ("schedule_decision", "N2", "raylet"),
        ("check_local_args", "N2", "raylet"),       # Step 5
        ("locate_object", "N2", "object_manager"),  # Step 6
        ("pull_object", "N2", "object_manager"),    # Step 7
        ("object_replicated", "N2", "object_manager"),
        ("lease_granted", "N2", "raylet"),          # Step 8
        ("push_task", "N1", "driver"),
        ("execute_task", "N2", "worker"),           # Step 9
        ("store_object", "N2", "object_store"),
        ("task_returned", "N2", "worker"),
        ("task_finished", "N1", "driver"),
    ]
    check_golden("demo_task.txt", t.text(width=runner.WIDTH, flow=["task", "object"]))


def test_get_demo_follows_the_lecture(cluster):
    a, b = task.setup()
    with ray.trace() as t:
        ref_c, c = get.scenario(a, b)
    assert len(c) == 5 * task.MB
    assert sequence(t, object=ref_c.hex()) == [
        ("get_object", "N1", "driver"),             # Step 1: not in the local store
        ("store_object", "N2", "object_store"),     # Step 3: c stored on N2
        ("task_returned", "N2", "worker"),
        ("task_finished", "N1", "driver"),          # Step 4: the owner learns where c is
        ("pull_object", "N1", "object_manager"),    # Steps 5-6: fetch and replicate on N1
        ("object_replicated", "N1", "object_manager"),
        ("get_returned", "N1", "driver"),           # Step 7
    ]
    check_golden("demo_get.txt", t.text(width=runner.WIDTH, object=ref_c.hex()))


def test_actor_demo_follows_the_lecture(cluster):
    t, calls, counter = actor.scenario()
    assert sequence(t, flow=["actor", "task"]) == [
        ("export_function", "N1", "driver"),
        ("register_function", "N1", "gcs"),
        ("register_actor", "N1", "driver"),         # Step 1: register with the GCS
        ("submit_actor_task", "N1", "driver"),      # (a call, queued until ALIVE)
        ("schedule_actor", "N1", "gcs"),            # Step 2: pick N2, wait for a lease
        ("schedule_decision", "N2", "raylet"),
        ("lease_granted", "N2", "raylet"),
        ("create_actor", "N1", "gcs"),              # Step 3: the creation task on N2
        ("execute_task", "N2", "worker"),
        ("actor_alive", "N1", "gcs"),
        ("actor_method_call", "N1", "driver"),
        ("execute_task", "N2", "worker"),
        ("task_returned", "N2", "worker"),
        ("task_finished", "N1", "driver"),
    ]
    assert sequence(calls, flow=["actor", "task"]) == [
        ("submit_actor_task", "N1", "driver"),
        ("actor_method_call", "N1", "driver"),      # straight to the actor process
        ("execute_task", "N2", "worker"),
        ("task_returned", "N2", "worker"),
        ("task_finished", "N1", "driver"),
    ]
    check_golden("demo_actor.txt", t.text(width=runner.WIDTH, flow=["actor", "task"]) + "\n\n" +
                 calls.text(width=runner.WIDTH, flow=["actor", "task"]))
    assert ray.get(counter.counts.remote()) == 1


def test_lineage_demo_rebuilds_what_was_lost(fresh):
    runner.fresh_cluster(_system_config={"health_check_period_ms": 300})
    _a, _b, c = lineage.setup()
    with ray.trace() as t:
        value = lineage.scenario(c)
    assert int(value[0]) == 3
    names = [(e.step, e.detail.get("name") or e.detail.get("label")) for e in t.steps()]
    order = [s for s in names if s[0] in ("kill_node", "reconstruct_object")]
    assert order == [("kill_node", "N2"), ("reconstruct_object", "inc"),
                     ("reconstruct_object", "double")]
    assert "rebuilt" in lineage_text(t, c)


def lineage_text(t, ref) -> str:
    from raylab.views.lineage import lineage_text as text
    return text(t.events, ref, width=runner.WIDTH)


def test_step_mode_demo_advances_one_step_per_enter(cluster):
    a, b = task.setup()
    presses = []
    runner.step_through(lambda: task.scenario(a, b), "add(a, b)", out=quiet(),
                        prompt=presses.append)
    assert len(presses) >= 10      # one Enter per lecture step of the task and the get
    assert not ray.stepper.active
