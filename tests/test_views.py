"""Views: each one rendered at a fixed width and compared, exactly, with a checked-in text.

The views are pure functions of trace events and cluster snapshots, so most
tests build the events by hand, as the lecture tells the story (ray.put, then
add.remote(a, 2) on N2; a node dying and lineage reconstruction; an actor).
One test runs the real cluster and compares its step log with a golden file.

The expected renderings live in tests/golden/. After a deliberate change,
regenerate them and review the diff:

    RAYLAB_UPDATE_GOLDEN=1 python -m pytest tests/test_views.py
"""
from __future__ import annotations

import difflib
import json
import os
import pathlib

import pytest

import raylab as ray
from raylab import ids, states
from raylab.tracing import timeline as chrome
from raylab.tracing.events import PROTOCOL, TraceEvent
from raylab.views import model as m
from raylab.views.cluster import cluster_html, cluster_text, cluster_view
from raylab.views.html import actor_handle_html, object_ref_html
from raylab.views.lineage import lineage_text
from raylab.views.snapshot import (ActorState, ClusterSnapshot, NodeState, StoreObject,
                                   WorkerState)
from raylab.views.steplog import steplog, steplog_html, steplog_rows, steplog_text
from raylab.views.timeline import timeline_text

from conftest import wait_for

GOLDEN = pathlib.Path(__file__).parent / "golden"
MiB = 1024 * 1024


def assert_golden(name: str, text: str) -> None:
    """Compare ``text`` with tests/golden/<name>.txt (or write it, under RAYLAB_UPDATE_GOLDEN=1)."""
    path = GOLDEN / f"{name}.txt"
    if os.environ.get("RAYLAB_UPDATE_GOLDEN") == "1":
        GOLDEN.mkdir(exist_ok=True)
        path.write_text(text + "\n")
        return
    assert path.exists(), f"no golden file {path}; create it with RAYLAB_UPDATE_GOLDEN=1"
    assert "\x1b" not in text, "plain text must not hold ANSI escapes"
    want = path.read_text()
    if text + "\n" != want:
        diff = "".join(difflib.unified_diff(want.splitlines(True), (text + "\n").splitlines(True),
                                            f"golden/{name}.txt", "rendered"))
        raise AssertionError(f"{name} differs from its golden file (if the change is intended, "
                             f"rerun with RAYLAB_UPDATE_GOLDEN=1):\n{diff}")


# -- hand-built traces, with the real id layout -----------------------------------------------
JOB = ids.job_id(1)
DRIVER_TASK = ids.driver_task_id(JOB)
N1, N2, N3 = (ids.node_id(i).hex() for i in (1, 2, 3))
FN = "251793cdec3bbe1632e77bd713488bc78b78bb52"


def task_id(n: int) -> str:
    return ids.normal_task_id(JOB, DRIVER_TASK, n).hex()


def obj(task_hex: str, index: int = 1) -> str:
    return ids.object_id(bytes.fromhex(task_hex), index).hex()


A = ids.object_id(DRIVER_TASK, 1).hex()          # ray.put(1) in the driver
ADD = task_id(1)
C = obj(ADD)
_ID_KEYS = ("task", "object", "actor", "node", "worker", "function")


class Log:
    """Builds a causal list of TraceEvents: ``log("submit_task", "driver", task=..., name=...)``.

    ``who`` is a process label: "driver", "gcs", "N2.raylet" or "N2.w1".
    """

    def __init__(self):
        self.events: list[TraceEvent] = []

    def __call__(self, step, who, *, level=0, flow="task", **fields):
        node, component = {"driver": ("N1", "driver"), "gcs": ("N1", "gcs")}.get(who, (None, None))
        if node is None:
            node, kind = who.split(".")
            component = "raylet" if kind == "raylet" else "worker"
        n = len(self.events) + 1
        ids_ = {k: v for k, v in fields.items() if k in _ID_KEYS}
        detail = {k: v for k, v in fields.items() if k not in _ID_KEYS}
        self.events.append(TraceEvent(n, 100 + n, n, 1000.0 + n / 1000, node, component, flow,
                                      step, ids_, detail, None, level, False, who))
        return self


def add_on_n2(until: str | None = None) -> list[TraceEvent]:
    """The lecture's add(a, b) on N2, lecture steps and protocol messages."""
    log = Log()
    steps = [
        ("put_object", "driver", dict(flow="put", object=A, size=16,
                                      where="in-process memory store")),
        ("export_function", "driver", dict(function=FN, name="add", bytes=457)),
        ("register_function", "gcs", dict(function=FN)),
        ("submit_task", "driver", dict(task=ADD, name="add", returns=[C], arg_refs=[A])),
        ("resolve_dependencies", "driver", dict(task=ADD, name="add", args=2)),
        ("request_lease", "driver", dict(task=ADD, node=N2, raylet="N2", name="add",
                                         why="NodeAffinity pins it to N2")),
        ("schedule_decision", "N2.raylet", dict(task=ADD, node=N2, to="N2", name="add",
                                                why="NodeAffinity pins the task to N2")),
        ("lease_granted", "N2.raylet", dict(task=ADD, node=N2, worker="ab" * 28, name="add",
                                            worker_label="N2.w1")),
        ("push_task", "driver", dict(task=ADD, node=N2, to="N2", name="add")),
        ("fetch_function", "N2.w1", dict(level=PROTOCOL, function=FN,
                                         **{"from": "GCS function table"})),
        ("execute_task", "N2.w1", dict(task=ADD, name="add", attempt=0)),
        ("task_returned", "N2.w1", dict(task=ADD, name="add", returns=["inline"])),
        ("task_finished", "driver", dict(task=ADD, node=N2, name="add", status="FINISHED",
                                         returns=["inline"])),
        ("return_worker", "driver", dict(level=PROTOCOL, node=N2, worker="abababab")),
        ("lease_returned", "N2.raylet", dict(level=PROTOCOL, node=N2, worker="ab" * 28)),
        ("get_returned", "driver", dict(flow="get", object=C)),
    ]
    for step, who, fields in steps:
        log(step, who, **fields)
        if step == until:
            break
    return log.events


# -- the step log ------------------------------------------------------------------------------
def test_steplog_reads_like_the_lecture():
    assert_golden("steplog_add", steplog_text(add_on_n2(), width=80))


def test_steplog_expands_protocol_steps_on_demand():
    events = add_on_n2()
    assert_golden("steplog_add_expanded", steplog_text(events, expand=True, width=80))
    rows = steplog_rows(events, expand={9})
    assert [r.number for r in rows if r.nested] == ["9.1"]
    assert [r.hidden for r in rows if r.number == "12"] == [2]
    lecture = [e for e in events if e.level == 0]  # hidden events never renumber the steps
    assert steplog_text(events, width=80) == steplog_text(lecture, width=80)
    assert len(steplog_rows(events)) == 13  # a traced add reads as ~10 rows, not two dozen


def test_steplog_lists_steps_it_does_not_know():
    events = add_on_n2() + Log()("chunk_sent", "N2.raylet", flow="object").events
    text = steplog_text(events, width=80)
    assert "N2's raylet: chunk sent" in text
    assert m.fold(events).unknown == ["chunk_sent"]


def test_steplog_text_html_and_view_agree():
    events = add_on_n2()
    view = steplog(events, width=80)
    assert repr(view) == view.text() == steplog_text(events, width=80)
    html = steplog_html(events, width=80)
    assert html.startswith("<pre") and "N2.w1" in html and "\x1b" not in html
    assert html == view._repr_html_()
    with pytest.raises(ValueError, match="invalid value for width"):
        steplog_text(events, width=5)


# -- the model ---------------------------------------------------------------------------------
def test_model_follows_ray_task_states():
    seen = []
    model = m.TraceModel()
    for ev in add_on_n2():
        model.apply(ev)
        if ADD in model.tasks and (not seen or seen[-1] != model.tasks[ADD].state):
            seen.append(model.tasks[ADD].state)
    assert seen == [states.PENDING_ARGS_AVAIL, states.PENDING_NODE_ASSIGNMENT,
                    states.SUBMITTED_TO_WORKER, states.RUNNING, states.FINISHED]
    t = model.tasks[ADD]
    assert (t.name, t.node, t.worker, t.owner) == ("add", "N2", "N2.w1", "driver")
    assert model.objects[C].state == m.READY and model.objects[C].inline
    assert model.objects[A].owner == "driver"
    assert [(e.src, e.dst, e.kind) for e in model.edges] == [(A, ADD, "arg"), (ADD, C, "return")]
    assert model.nodes == {N2: "N2"}
    assert model.unknown == [] and model.problems == []


def test_model_keeps_an_event_it_cannot_read():
    odd = Log()("execute_task", "N2.w1", name="add").events   # no task id
    model = m.fold(odd)
    assert model.events == odd and model.tasks == {}
    assert model.problems == [("execute_task", "KeyError: 'task'")]


# -- a node dies; lineage reconstruction -------------------------------------------------------
MAKE, TOTAL, SLOW = task_id(1), task_id(2), task_id(3)
B, C2 = obj(MAKE), obj(TOTAL)


def node_death() -> list[TraceEvent]:
    """a = put; b = make(a) and c = total(b) on N2; N2 dies; ray.get(c) rebuilds b, then c."""
    log = Log()
    log("put_object", "driver", flow="put", object=A, size=16, where="in-process memory store")
    for tid, name, arg, ret, w in ((MAKE, "make", A, B, "N2.w1"), (TOTAL, "total", B, C2, "N2.w1"),
                                   (SLOW, "slow", A, obj(SLOW), "N2.w2")):
        log("submit_task", "driver", task=tid, name=name, returns=[ret], arg_refs=[arg])
        log("execute_task", w, task=tid, name=name, attempt=0)
        if name != "slow":
            log("store_object", "N2.raylet", flow="object", object=ret, size=50 * MiB,
                primary=True)
            log("task_returned", w, task=tid, name=name, returns=["store"])
            log("task_finished", "driver", task=tid, name=name, status="FINISHED",
                returns=["store"])
    log("health_check_missed", "gcs", flow="failure", level=PROTOCOL, node=N2, label="N2",
        missed=5, threshold=5)
    log("node_marked_dead", "gcs", flow="failure", node=N2, label="N2",
        cause="missed 5 health checks in a row")
    for o in (B, C2):
        log("object_lost", "driver", flow="failure", object=o,
            reason="its only copy was on N2, which died")
    log("reconstruct_object", "driver", flow="failure", object=C2, task=TOTAL)
    log("reconstruct_object", "driver", flow="failure", object=B, task=MAKE)
    for tid, name, ret, w in ((MAKE, "make", B, "N1.w2"), (TOTAL, "total", C2, "N1.w1")):
        log("execute_task", w, task=tid, name=name, attempt=1)
        log("store_object", "N1.raylet", flow="object", object=ret, size=50 * MiB, primary=True)
        log("task_returned", w, task=tid, name=name, returns=["store"])
        log("task_finished", "driver", task=tid, name=name, status="FINISHED", returns=["store"])
        log("reconstruction_done", "driver", flow="failure", object=ret)
    log("get_returned", "driver", flow="get", object=C2)
    return log.events


def test_lineage_shows_lost_objects_rebuilt_by_re_executing_their_tasks():
    model = m.fold(node_death())
    assert model.objects[B].state == model.objects[C2].state == m.REBUILT
    assert model.objects[B].locations == ["N1"]
    assert model.reconstructions == [(TOTAL, C2), (MAKE, B)]
    assert model.dead_nodes == ["N2"]
    assert_golden("lineage_rebuilt", lineage_text(model, C2, width=90))
    assert lineage_text(model, obj(TOTAL)[:8] + "#1", width=90) == lineage_text(model, C2,
                                                                                 width=90)


def test_lineage_of_every_result_and_a_helpful_miss():
    assert_golden("lineage_add", lineage_text(add_on_n2(), width=80))
    with pytest.raises(KeyError, match="the objects in this trace are"):
        lineage_text(add_on_n2(), "ffff", width=80)


def test_timeline_rows_are_worker_processes_and_x_is_the_step_number():
    model = m.fold(node_death())
    slow = next(s for s in model.spans if s.name == "slow")
    assert slow.status == "died" and slow.end is not None
    assert_golden("timeline_node_death", timeline_text(model, width=80))
    running = m.fold(add_on_n2(until="execute_task"))
    assert_golden("timeline_running", timeline_text(running, width=60))


def test_a_worker_crash_and_its_retry_on_the_timeline():
    flaky, w1 = task_id(1), "cd" * 28
    log = Log()
    log("submit_task", "driver", task=flaky, name="flaky", returns=[obj(flaky)], arg_refs=[])
    log("lease_granted", "N1.raylet", task=flaky, node=N1, worker=w1, worker_label="N1.w1")
    log("worker_died", "N1.raylet", flow="failure", node=N1, worker=w1, was_running="flaky")
    log("retry_task", "driver", flow="failure", task=flaky, attempt=1, why="worker_died")
    # a death notice carries no Lamport clock: the dead attempt's own event comes later
    log("execute_task", "N1.w1", task=flaky, name="flaky", attempt=0)
    log("execute_task", "N1.w2", task=flaky, name="flaky", attempt=1)
    log("task_finished", "driver", task=flaky, name="flaky", status="FINISHED",
        returns=["inline"])
    model = m.fold(log.events)
    assert [(s.proc, s.attempt, s.status) for s in model.spans] == \
        [("N1.w1", 0, "died"), ("N1.w2", 1, states.FINISHED)]
    t = model.tasks[flaky]
    assert (t.state, t.worker, t.attempt) == (states.FINISHED, "N1.w2", 1)
    assert model.dead_workers == ["N1.w1"]


# -- actors ------------------------------------------------------------------------------------
COUNTER = ids.actor_id(JOB, DRIVER_TASK, 1).hex()


def counter_actor() -> list[TraceEvent]:
    init = ids.actor_creation_task_id(bytes.fromhex(COUNTER)).hex()
    inc = ids.actor_task_id(bytes.fromhex(COUNTER), DRIVER_TASK, 2).hex()
    log = Log()
    log("register_actor", "driver", flow="actor", actor=COUNTER, class_name="Counter", name=None)
    log("actor_registered", "gcs", flow="actor", level=PROTOCOL, actor=COUNTER,
        class_name="Counter")
    log("schedule_actor", "gcs", flow="actor", actor=COUNTER, node=N2, class_name="Counter",
        to="N2", why="NodeAffinity pins it to N2")
    log("create_actor", "gcs", flow="actor", actor=COUNTER, node=N2, class_name="Counter",
        to="N2")
    log("execute_task", "N2.w2", flow="actor", task=init, actor=COUNTER,
        name="Counter.__init__", attempt=0)
    log("task_returned", "N2.w2", flow="actor", task=init, actor=COUNTER,
        name="Counter.__init__", returns=["inline"])
    log("actor_alive", "gcs", flow="actor", actor=COUNTER, node=N2, class_name="Counter",
        to="N2")
    log("submit_actor_task", "driver", flow="actor", task=inc, actor=COUNTER,
        name="Counter.increment", method="increment", returns=[obj(inc)])
    log("actor_method_call", "driver", flow="actor", task=inc, actor=COUNTER, node=N2,
        method="increment", name="Counter.increment", to="N2")
    log("execute_task", "N2.w2", flow="actor", task=inc, actor=COUNTER,
        name="Counter.increment", attempt=0)
    log("task_returned", "N2.w2", flow="actor", task=inc, actor=COUNTER,
        name="Counter.increment", returns=["inline"])
    log("task_finished", "driver", flow="actor", task=inc, node=N2, name="Counter.increment",
        status="FINISHED", returns=["inline"])
    return log.events


def test_actor_creation_and_method_call():
    model = m.fold(counter_actor())
    a = model.actors[COUNTER]
    assert (a.class_name, a.state, a.node, a.worker) == ("Counter", states.ALIVE, "N2", "N2.w2")
    assert_golden("steplog_actor", steplog_text(counter_actor(), width=80))
    assert_golden("timeline_actor", timeline_text(model, width=80))


# -- the cluster view --------------------------------------------------------------------------
def worker(node: str, n: int, state: str, running: str = "", actor=None) -> WorkerState:
    return WorkerState(f"{node}{n}" * 8, f"{node}.w{n}", 4000 + n, state, running, actor)


def snapshot() -> ClusterSnapshot:
    w = worker
    n1 = NodeState(N1, "N1", True, True, {"CPU": 2.0, "memory": 4096.0 * MiB},
                   {"CPU": 1.0, "memory": 4096.0 * MiB},
                   [w("N1", 1, "LEASED", "total"), w("N1", 2, "IDLE")], 100 * MiB, 50 * MiB,
                   [StoreObject(B, 50 * MiB, "driver", True, True, False)])
    n2 = NodeState(N2, "N2", True, False, {"CPU": 2.0, "GPU": 1.0}, {"CPU": 0.0, "GPU": 1.0},
                   [w("N2", 1, "LEASED", "make"), w("N2", 2, "ACTOR", "Counter", COUNTER)],
                   100 * MiB, 90 * MiB,
                   [StoreObject(C2, 60 * MiB, "driver", True, True, False),
                    StoreObject(B, 50 * MiB, "driver", False, False, True)],
                   queued=[("slow", {"CPU": 1.0})], infeasible=[("big", {"GPU": 4.0})])
    n3 = NodeState(N3, "N3", False, False, {"CPU": 2.0}, {})
    return ClusterSnapshot(
        [n1, n2, n3],
        [ActorState(COUNTER, "Counter", "ALIVE", "counter", "default", "N2", 4002)],
        [(FN, "add"), ("9" * 40, "make")], {B: ["N1", "N2"], C2: ["N2"]}, "centralized")


def test_cluster_view_side_by_side_and_stacked():
    snap = snapshot()
    assert_golden("cluster_wide", cluster_text(snap, width=100))
    assert_golden("cluster_narrow", cluster_text(snap, width=60))
    for text in (cluster_text(snap, width=100), cluster_text(snap, width=60)):
        assert max(len(line) for line in text.splitlines()) <= 100


def test_cluster_view_with_a_trace_shows_the_current_step():
    snap = ClusterSnapshot([NodeState(N1, "N1", True, True, {"CPU": 2.0}, {"CPU": 2.0}),
                            NodeState(N2, "N2", True, False, {"CPU": 2.0}, {"CPU": 1.0},
                                      [WorkerState("ab" * 28, "N2.w1", 4001, "LEASED")])],
                           functions=[(FN, "add")])
    model = m.fold(add_on_n2(until="execute_task"))
    assert_golden("cluster_traced", cluster_text(snap, model, width=90))
    view = cluster_view(snap, model, width=90)
    assert repr(view) == cluster_text(snap, model, width=90)
    assert cluster_html(snap, model, width=90) == view._repr_html_()


# -- the Chrome trace (ray.timeline) and the HTML reprs ----------------------------------------
def test_chrome_trace_has_one_complete_event_per_execution(tmp_path):
    events = node_death()
    out = chrome.chrome_trace_events(events)
    spans = [e for e in out if e["ph"] == "X"]
    assert [e["name"] for e in spans] == ["make", "total", "slow", "make", "total"]
    first = spans[0]
    assert first["ts"] == round(events[2].time * 1e6) and first["dur"] > 0
    assert first["args"]["task_id"] == MAKE and first["args"]["worker"] == "N2.w1"
    names = {(e["name"], e["pid"], e.get("tid")): e["args"]["name"] for e in out if e["ph"] == "M"
             and e["name"] != "process_sort_index"}
    assert names[("process_name", 2, 0)] == "N2"
    assert {v for (k, _p, _t), v in names.items() if k == "thread_name"} == \
        {"N1.w1", "N1.w2", "N2.w1", "N2.w2"}
    chrome.remember(type("T", (), {"events": events})())
    try:
        assert chrome.timeline() == out
        path = tmp_path / "timeline.json"
        assert chrome.timeline(str(path)) is None
        assert json.loads(path.read_text())["traceEvents"] == out
    finally:
        chrome._LAST.clear()


def test_object_ref_and_actor_handle_html_without_a_cluster():
    from raylab.actor import ActorHandle
    from raylab.core_worker.object_ref import ObjectRef
    ref = ObjectRef(bytes.fromhex(C), "/tmp/s/driver.sock", _count=False)
    html = object_ref_html(ref)
    assert "ObjectRef" in html and f"{ADD[:8]}#1" in html and "driver" in html
    handle = ActorHandle(bytes.fromhex(COUNTER), "Counter", {}, None)
    assert "Counter" in actor_handle_html(handle) and COUNTER[:8] in actor_handle_html(handle)


# -- the real cluster --------------------------------------------------------------------------
def test_real_cluster_step_log_of_the_lecture_add(fresh):
    """The demo's traced add(a, 2) on N2: the task flow's step log, word for word."""
    from raylab.state import cluster_snapshot
    from raylab.util.scheduling_strategies import NodeAffinitySchedulingStrategy
    ray.init(num_nodes=2, num_cpus=2)
    n2 = next(n["NodeID"] for n in ray.nodes() if n["NodeName"] == "N2")
    # which worker gets the lease is the lowest-numbered idle one: wait until both are up
    wait_for(lambda: [w.state for w in cluster_snapshot().node("N2").workers] == ["IDLE"] * 2,
             what="N2's two workers to register")

    @ray.remote
    def add(a, b):
        return a + b

    a = ray.put(1)
    with ray.trace() as t:
        ref_c = add.options(
            scheduling_strategy=NodeAffinitySchedulingStrategy(n2, soft=False)).remote(a, 2)
        assert ray.get(ref_c) == 3
    assert_golden("real_steplog_add", steplog_text(t.steps(flow="task"), width=100))
    model = m.fold(t.events)
    task = model.tasks[ref_c.task_id().hex()]
    assert (task.state, task.node, task.worker) == (states.FINISHED, "N2", "N2.w1")
    assert [s.proc for s in model.spans] == ["N2.w1"]
    ray.shutdown()


def test_an_async_actors_overlapping_calls_get_a_row_each_on_the_timeline():
    log = Log()
    calls = [ids.actor_task_id(bytes.fromhex(COUNTER), DRIVER_TASK, i).hex() for i in (1, 2, 3)]
    for i, t in enumerate(calls):
        log("execute_task", "N2.w1", task=t, actor=COUNTER, name="AsyncWorker.work", attempt=0)
    for t in calls:
        log("task_returned", "N2.w1", task=t, actor=COUNTER, name="AsyncWorker.work",
            returns=["inline"])
    text = timeline_text(log.events, width=60)
    rows = [line for line in text.splitlines()[1:4]]
    assert rows[0].startswith("N2.w1  ") and all(r.startswith("       ") for r in rows[1:])
    assert all("work" in r for r in rows)            # three calls in flight at once
    assert_golden("timeline_async", text)
