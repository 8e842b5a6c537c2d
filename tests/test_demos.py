"""The lecture's scenarios, produced by the real cluster: exact step sequences and text."""
from __future__ import annotations

import io
import os
import re
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


def labelled(events, slides):
    """(slide, step, node, box) per row, as the demo labels them."""
    from raylab.views.steplog import SlideSteps
    counter = SlideSteps(slides)
    return [(counter.label(e), e.step, e.node, e.component) for e in events]


def test_task_demo_follows_the_lecture(cluster):
    """Ray 2: the owner picks N2 itself (it owns b), N2's raylet keeps the task."""
    a, b = task.setup()
    with ray.trace() as t:
        ref_c = task.scenario(a, b)
    steps = task.steps(t, ref_c)
    assert labelled(steps, task.SLIDES["ownership"]) == [
        ("Step 0", "export_function", "N1", "driver"),
        ("Step 0", "register_function", "N1", "gcs"),
        ("", "submit_task", "N1", "driver"),
        ("", "resolve_dependencies", "N1", "driver"),
        ("Step 1-3", "request_lease", "N1", "driver"),        # the owner knows N2 holds b
        ("Step 4", "schedule_decision", "N2", "raylet"),      # N2's raylet keeps it
        ("Step 5", "check_local_args", "N2", "raylet"),
        ("Step 6", "locate_object", "N2", "object_manager"),  # asks a's owner
        ("Step 7", "pull_object", "N2", "object_manager"),
        ("Step 7", "object_replicated", "N2", "object_manager"),
        ("Step 8", "lease_granted", "N2", "raylet"),
        ("Step 8", "push_task", "N1", "driver"),
        ("Step 9", "execute_task", "N2", "worker"),
        ("", "task_returned", "N2", "worker"),
        ("", "task_finished", "N1", "driver"),
    ]
    text = demo_text(steps, task.SLIDES["ownership"], task.names(a, b, ref_c))
    assert "asks the owner of a where its copies are" in text
    assert "GCS object table" not in text
    check_golden("demo_task.txt", text)


def demo_text(steps, slides, names) -> str:
    from raylab.views.steplog import steplog_text
    return steplog_text(steps, width=runner.WIDTH, slides=slides, names=names)


def test_get_demo_follows_the_lecture(cluster):
    a, b = task.setup()
    with ray.trace() as t:
        ref_c, c = get.scenario(a, b)
    assert len(c) == 5 * task.MB
    steps = t.steps(**get.get_flow(ref_c))
    assert labelled(steps, get.SLIDES["ownership"]) == [
        ("Step 1", "get_object", "N1", "driver"),            # not in the local store
        ("Step 3", "store_object", "N2", "object_store"),    # c stored on N2
        ("Step 3", "task_returned", "N2", "worker"),
        ("Step 4-5", "task_finished", "N1", "driver"),       # the owner learns where c is
        ("Step 6", "pull_object", "N1", "object_manager"),   # fetch and replicate on N1
        ("Step 6", "object_replicated", "N1", "object_manager"),
        ("Step 7", "get_returned", "N1", "driver"),
    ]
    check_golden("demo_get.txt", demo_text(steps, get.SLIDES["ownership"],
                                           task.names(a, b, ref_c)))


def test_demo_shows_the_cluster_beside_the_log_when_wide(cluster):
    a, b = task.setup()
    with ray.trace() as t:
        ref_c = task.scenario(a, b)
    steps, names = task.steps(t, ref_c), task.names(a, b, ref_c)
    outputs = {}
    for width in (runner.BESIDE, runner.BESIDE - 1):
        out = Console(file=io.StringIO(), width=width)
        text = runner.show(steps, "add(a, b)", out, task.SLIDES["ownership"], names)
        outputs[width] = out.file.getvalue().splitlines()
        assert text == demo_text(steps, task.SLIDES["ownership"], names)  # the same text
    wide, narrow = outputs[runner.BESIDE], outputs[runner.BESIDE - 1]
    row = next(i for i, line in enumerate(wide) if "exports remote function add" in line)
    assert "GCS (global control store" in wide[row - 2]          # on the log's first lines
    assert "GCS (global control store" not in "".join(narrow[:row + 14])
    assert any("GCS (global control store" in line for line in narrow[row + 14:])  # below
    # the cluster view calls the objects a, b and c too
    assert any(line.strip("│ ").startswith("b ") for line in narrow)


def test_demo_command_runs_under_the_lecture_control_plane():
    env = dict(os.environ, COLUMNS="200")
    out = subprocess.run([sys.executable, "-m", "raylab", "demo", "task", "--lecture"],
                         capture_output=True, text=True, timeout=120, env=env,
                         cwd=os.path.dirname(os.path.dirname(GOLDEN))).stdout
    assert "(centralized)" in out and "control plane: centralized" in out
    assert "Step 8" in out and "invokes the task function add()" in out


def test_every_demo_takes_a_control_plane(fresh):
    """The actor demo's run() has no control_plane parameter: the runner hands the plane
    to ray.init the way it reads its default, and the lecture's words show it."""
    lines: list = []
    runner.run_demo("actor", plane="centralized", out=lines.append)
    assert any("worker process executes the function code" in line for line in lines)
    assert not ray.is_initialized()


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
    # the whole story, as the demo prints it: made, killed, noticed, rebuilt
    console = quiet()
    lineage.run(out=console)
    out = console.file.getvalue()
    legend = next(line for line in out.splitlines() if line.startswith("a = "))
    a, b, c = re.findall(r"= (\S+)", legend)
    story = [
        "Worker on N1 executes make()",
        f"records that make's result {a} is in N1's object store",
        "Worker on N2 executes double()",
        f"records that double's result {b} is in N2's object store",
        "Worker on N2 executes inc()",
        f"records that inc's result {c} is in N2's object store",
        "chaos: N2 is killed",
        "GCS: N2 missed health check 1/3",
        "GCS: N2 missed health check 2/3",
        "GCS: N2 missed health check 3/3",
        "GCS marks N2 DEAD (missed 3 health checks in a row) and broadcasts the death",
        "Driver learns from the GCS that N2 is dead",
        f"Driver (the owner) finds every copy of {c} gone (it was on N2)",
        "Driver (the owner) re-executes inc from its lineage",
        f"Driver (the owner) finds every copy of {b} gone (it was on N2)",
        "Driver (the owner) re-executes double from its lineage",
        f"records that double's result {b} is in N1's object store",
        f"records that inc's result {c} is in N1's object store",
    ]
    log = " ".join(out[:out.index("GCS (global control store")].split())  # unwrapped
    at = [log.find(s) for s in story]
    assert -1 not in at, ([s for s, i in zip(story, at) if i == -1], out)
    assert at == sorted(at), out
    assert "N1's raylet learns from the GCS that N2 is dead" in log
    assert "re-executes make" not in log                 # a survived on N1
    assert log.count("re-executes") == 2
    assert "NodeAffinity pins it to N2" not in log[log.index("chaos: N2 is killed"):]
    assert re.search(r"N2\s+DEAD", out) and "Worker node N2 (DEAD)" in out
    graph = [line.strip("│└─ ") for line in out[out.index(f"{c}  rebuilt"):].splitlines()]
    assert [g.split("  ")[0] for g in graph[:5]] == [
        f"{c}", f"task inc() {c[:8]}", f"{b}", f"task double() {b[:8]}", f"{a}"]
    assert "rebuilt" in graph[2] and "re-executed" in graph[1] and "re-executed" in graph[3]
    assert "ready" in graph[4] and "re-executed" not in graph[5]


def test_step_mode_demo_advances_one_step_per_enter(cluster):
    a, b = task.setup()
    presses = []
    runner.step_through(lambda: task.scenario(a, b), "add(a, b)", out=quiet(),
                        prompt=presses.append)
    assert len(presses) >= 10      # one Enter per lecture step of the task and the get
    assert not ray.stepper.active
