"""Lecture mode: the lecture's centralized control plane reproduces the slides step by
step, in the slides' words (Ray 2's steps are in test_demos.py); the GCS carries far more
of the load."""
from __future__ import annotations

import pytest

import raylab as ray
from raylab.config import Config
from raylab.demo import actor, compare, get, runner, task
from raylab.effects import Call, Send
from raylab.raylet.lease_manager import LeaseManager, LeaseRequest
from raylab.tracing.steps import narrate
from raylab.views.compare import differing
from raylab.views.steplog import SlideSteps

from test_demos import check_golden


@pytest.fixture
def lecture(fresh):
    runner.fresh_cluster(control_plane="centralized")
    yield


def seq(events):
    return [(e.step, e.node, e.component) for e in events]


def slide_seq(events, slides):
    """(slide, step, node, box) per row, as the demo labels them."""
    counter = SlideSteps(slides)
    return [(counter.label(e), e.step, e.node, e.component) for e in events]


def assert_in_slide_words(events, slides, names, words: dict) -> None:
    """Each slide step's rows, together, say what the slide says (its key phrases)."""
    counter = SlideSteps(slides)
    said: dict = {}
    for e in events:
        said.setdefault(counter.label(e), []).append(narrate(e, names))
    for slide, phrases in words.items():
        text = " / ".join(said.get(slide, []))
        for phrase in phrases:
            assert phrase in text, f"{slide}: {phrase!r} not in {text!r}"


# the slides' words, step by step (lecture-ray-core-internals.txt)
TASK_WORDS = {
    "Step 0": ["exports remote function add", "registers the function in its function table"],
    "Step 1": ["Driver contacts N1's local scheduler", "which node holds"],
    "Step 2": ["N1's raylet (the local scheduler) contacts the global scheduler"],
    "Step 3": ["global scheduler performs an object table lookup and finds N2 holds b"],
    "Step 4": ["global scheduler decides to schedule the task add on N2"],
    "Step 5": ["N2's local scheduler checks whether the local object store contains "
               "add(a, b)'s arguments"],
    "Step 6": ["looks up a's location in the GCS"],
    "Step 7": ["N2 fetches a from N1's object store and replicates it locally"],
    "Step 8": ["N2's local scheduler invokes the task function add() at N2's local worker"],
    "Step 9": ["N2's worker process executes the function code",
               "by accessing locally stored objects a and b"],
}

GET_WORDS = {
    "Step 1": ["Driver checks its local object store for c"],
    "Step 2": ["looks up c's location in the GCS", "no entry for c yet",
               "registers a callback, to be triggered when the entry is created"],
    "Step 3": ["N2's object store stores c"],
    "Step 4": ["N2's object store adds c's entry to the GCS"],
    "Step 5": ["GCS triggers the callback registered by N1"],
    "Step 6": ["N1 fetches c from N2's object store and replicates it"],
    "Step 7": ["ray.get returns the value of c"],
}


def test_remote_task_slides_step_0_to_9(lecture):
    a, b = task.setup()
    with ray.trace() as t:
        ref_c = task.scenario(a, b)
    steps = task.steps(t, ref_c)
    slides = task.SLIDES["centralized"]
    assert slide_seq(steps, slides) == [
        ("Step 0", "export_function", "N1", "driver"),
        ("Step 0", "register_function", "N1", "gcs"),
        ("", "submit_task", "N1", "driver"),
        ("", "resolve_dependencies", "N1", "driver"),
        ("Step 1", "request_lease", "N1", "driver"),              # N1's local scheduler
        ("Step 2", "forward_to_global_scheduler", "N1", "raylet"),  # ... asks the global one
        ("Step 3", "object_table_lookup", "N1", "gcs"),          # a on N1
        ("Step 3", "object_table_lookup", "N1", "gcs"),          # b on N2
        ("Step 4", "global_decision", "N1", "gcs"),              # schedule on N2
        ("Step 5", "check_local_args", "N2", "raylet"),          # are the arguments here?
        ("Step 6", "locate_object", "N2", "object_manager"),     # look up a in the GCS
        ("Step 6", "object_table_lookup", "N1", "gcs"),
        ("Step 7", "pull_object", "N2", "object_manager"),       # fetch a from N1, replicate
        ("Step 7", "object_replicated", "N2", "object_manager"),
        ("Step 8", "lease_granted", "N2", "raylet"),             # N2 invokes the worker
        ("Step 8", "push_task", "N1", "driver"),
        ("Step 9", "execute_task", "N2", "worker"),              # add runs on N2
        ("", "task_returned", "N2", "worker"),
        ("", "task_finished", "N1", "driver"),
    ]
    lookups = [e for e in steps if e.step == "object_table_lookup"]
    assert [e.detail["at"] for e in lookups] == ["N1", "N2", "N1"]
    # none of Ray 2's machinery between Steps 4 and 5, at any zoom level
    everything = {e.step for e in t.steps(flow="task", level=None)}
    assert not everything & {"schedule_decision", "spillback", "follow_spillback"}
    assert [e.step for e in t.steps(flow="task", level=None)].count("request_lease") == 1
    names = task.names(a, b, ref_c)
    assert_in_slide_words(steps, slides, names, TASK_WORDS)
    check_golden("demo_task_centralized.txt", task_text(steps, names))


def task_text(steps, names) -> str:
    from raylab.views.steplog import steplog_text
    return steplog_text(steps, width=runner.WIDTH, slides=task.SLIDES["centralized"],
                        names=names)


def test_ray_get_slides_step_1_to_7(lecture):
    a, b = task.setup()
    with ray.trace() as t:
        ref_c, c = get.scenario(a, b)
    steps = t.steps(**get.get_flow(ref_c))
    slides = get.SLIDES["centralized"]
    assert slide_seq(steps, slides) == [
        ("Step 1", "get_object", "N1", "driver"),                # check the local store
        ("Step 2", "locate_object", "N1", "object_manager"),     # look c up in the GCS ...
        ("Step 2", "register_callback", "N1", "gcs"),            # ... no entry: a callback
        ("Step 3", "store_object", "N2", "object_store"),        # c stored on N2
        ("Step 4", "object_table_add", "N1", "gcs"),             # entry added to the GCS
        ("Step 5", "callback_fired", "N1", "gcs"),               # the callback fires
        ("Step 6", "pull_object", "N1", "object_manager"),       # fetch c, replicate on N1
        ("Step 6", "object_replicated", "N1", "object_manager"),
        ("Step 7", "get_returned", "N1", "driver"),              # return c
    ]
    assert len(c) == 5 * task.MB
    names = task.names(a, b, ref_c)
    assert_in_slide_words(steps, slides, names, GET_WORDS)
    from raylab.views.steplog import steplog_text
    check_golden("demo_get_centralized.txt",
                 steplog_text(steps, width=runner.WIDTH, slides=slides, names=names))


def test_setup_leaves_the_object_table_settled(lecture):
    """The demos' setup returns once the GCS object table lists a and b: what a traced
    scenario shows first is its own first step, not a late entry of b."""
    from raylab.state import cluster_snapshot
    a, b = task.setup()
    table = cluster_snapshot().object_table
    assert table.get(a.hex()) == ["N1"] and table.get(b.hex()) == ["N2"]


def test_settle_waits_at_the_object_table_until_the_entry_exists(lecture):
    """What the demos' setup waits on: a lookup at the GCS object table that answers when
    the object's entry is created (the lecture's callback), not a sleep."""
    import threading
    from raylab.state import cluster_snapshot

    @ray.remote
    def late():
        return bytes(1000)

    stepper = ray.stepper
    stepper.break_at(step="execute_task")
    ref = late.remote()
    try:
        assert stepper.wait(30) is not None   # late is held before it runs: no entry yet
        waiting = get._watch_for("register_callback", ref.hex())
        settled = threading.Event()
        threading.Thread(target=lambda: (runner.settle([ref]), settled.set()),
                         daemon=True).start()
        assert waiting.wait(30)               # settle registered a callback at the GCS
        assert not settled.is_set()           # and waits there: the entry cannot exist yet
    finally:
        stepper.off()                         # let late run and store its result
    assert settled.wait(30)
    assert cluster_snapshot().object_table.get(ref.hex())  # and now the table lists it


def test_a_get_waits_while_its_callback_is_paused_at_the_gcs(lecture):
    """Step 5 in step mode: the GCS holds at callback_fired, and the waiting get must not
    go on (fetch c, return it) until that step is released."""
    import threading
    from raylab.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    @ray.remote
    def late():
        return bytes(200_000)   # a store object: its entry goes to the GCS object table

    n2 = [n["NodeID"] for n in ray.nodes() if n["NodeID"] != ray.get_runtime_context()
          .get_node_id()][0]
    stepper = ray.stepper
    stepper.blocking_get = "wait"              # only this test steps the cluster
    held = stepper.break_at(step="execute_task")
    ref = late.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n2, False)).remote()
    got = threading.Event()
    try:
        assert stepper.wait(30) is not None   # late is held before it runs
        waiting = get._watch_for("register_callback", ref.hex())
        threading.Thread(target=lambda: (ray.get(ref, timeout=60), got.set()),
                         daemon=True).start()
        assert waiting.wait(30)               # the get registered its callback
        stepper.break_at(step="callback_fired")
        stepper.remove(held)
        stepper.continue_()                   # late runs; c's entry is added at the GCS
        ev = stepper.wait(30)
        assert ev is not None and ev.step == "callback_fired"
        # paused there, nothing tells the get where c is: it cannot return
        assert not got.wait(1.0)
    finally:
        stepper.off()
        stepper.blocking_get = "auto"
    assert got.wait(30)



def test_an_object_is_ready_only_once_the_gcs_object_table_lists_it(lecture):
    """Step 4 before anything else: while the GCS holds at object_table_add, the owner has
    not heard that the object is ready. (Were the two concurrent, a node killed right
    after its result was ready could leave the table without the entry, and a reader's
    lookup would wait for it for ever instead of finding the object lost.)"""
    from raylab.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    @ray.remote
    def made_on_n2():
        return bytes(200_000)

    n2 = next(n["NodeID"] for n in ray.nodes() if n["NodeName"] == "N2")
    stepper = ray.stepper
    stepper.blocking_get = "wait"              # only this test steps the cluster
    stepper.break_at(step="object_table_add", component="gcs")
    ref = made_on_n2.options(
        scheduling_strategy=NodeAffinitySchedulingStrategy(n2, soft=False)).remote()
    try:
        ev = stepper.wait(30)
        assert ev is not None and ev.ids.get("object") == ref.hex()
        assert ray.wait([ref], timeout=1.0)[0] == []   # held at the GCS: not ready yet
    finally:
        stepper.off()
        stepper.blocking_get = "auto"
    assert ray.get(ref, timeout=30) == bytes(200_000)

def test_actor_creation_slides_step_1_to_3(lecture):
    t, calls, counter = actor.scenario()
    steps = seq(t.steps(flow=["actor", "task"]))
    # the driver queues its first call while the GCS schedules the actor: the two are
    # concurrent, so the call's place among the GCS's steps is not fixed
    call = steps.index(("submit_actor_task", "N1", "driver"))
    assert call > steps.index(("register_actor", "N1", "driver"))
    assert [s for s in steps if s[0] != "submit_actor_task"][:9] == [
        ("export_function", "N1", "driver"),
        ("register_function", "N1", "gcs"),
        ("register_actor", "N1", "driver"),              # Step 1: register with the GCS
        ("schedule_actor", "N1", "gcs"),                 # Step 2: pick N2's raylet, wait
        ("schedule_decision", "N2", "raylet"),
        ("lease_granted", "N2", "raylet"),
        ("create_actor", "N1", "gcs"),                   # Step 3: the creation task on N2
        ("execute_task", "N2", "worker"),
        ("actor_alive", "N1", "gcs"),
    ]
    assert ray.get(counter.counts.remote()) == 1


def test_comparison_marks_what_happens_not_names(fresh):
    """locate_object is in both designs, but one looks a up in the GCS and the other
    asks its owner: both are marked; the steps both take alike are not."""
    steps = {plane: compare.traced_task(plane) for plane in compare.PLANES}
    marked = {p: sorted(steps[p][i].step for i in idx) for p, idx in differing(steps).items()}
    assert marked["centralized"] == sorted([
        "request_lease", "forward_to_global_scheduler", "object_table_lookup",
        "object_table_lookup", "global_decision", "locate_object", "object_table_lookup"])
    assert marked["ownership"] == sorted(["request_lease", "schedule_decision",
                                          "locate_object"])


def test_comparison_counts_the_gcs_on_every_task(fresh):
    loads = {plane: compare.gcs_load(plane, tasks=6) for plane in compare.PLANES}
    central, owner = loads["centralized"], loads["ownership"]
    assert central["gcs_messages_by_method"].get("global_schedule", 0) >= 1  # every task
    assert central["gcs_messages_by_method"].get("object_table_add", 0) >= 1
    assert "global_schedule" not in owner["gcs_messages_by_method"]
    assert central["gcs_messages_per_task"] > 3 * owner["gcs_messages_per_task"]
    for load in loads.values():  # the GCS's idle work is measured, and taken out
        assert load["gcs_background_cpu_ms_per_s"] >= 0
        assert load["gcs_cpu_ms_per_task"] >= 0


# -- the local scheduler's core, driven event by event (no processes) ----------------------
N1, N2 = b"\x01" * 28, b"\x02" * 28


def infeasible_request(key=1) -> LeaseRequest:
    return LeaseRequest(key, {"GPU": 1}, {"GPU": 1}, ("DEFAULT",), False, "owner",
                        b"\x07" * 24, "needs_gpu")


def view(gpus_on_n2=0):
    return [(N1, "N1", {"CPU": 2}, {"CPU": 2}, True),
            (N2, "N2", {"CPU": 2, "GPU": gpus_on_n2}, {"CPU": 2, "GPU": gpus_on_n2}, True)]


def warnings(effects) -> int:
    return sum(1 for e in effects if type(e) is Send and e.method == "lease_infeasible")


@pytest.mark.parametrize("plane", ["ownership", "centralized"])
def test_infeasible_request_is_warned_once_not_per_broadcast(plane):
    lm = LeaseManager(N1, "N1", {"CPU": 2}, Config(control_plane=plane))
    lm.node_added(N2, "unix:n2", "N2")
    req = infeasible_request()
    out = lm.update_view(view()) + lm.request(req)
    if plane == "centralized":  # the global scheduler answers: no node can ever fit it
        assert [e.action for e in out if type(e) is Call] == ["global_schedule"]
        out = lm.placement.answered(lm, req, ("infeasible", "no node has a GPU"), True)
    assert warnings(out) == 1
    for _ in range(10):  # ten resource broadcasts later: nothing new to say, nothing asked
        again = lm.update_view(view())
        assert warnings(again) == 0 and not [e for e in again if type(e) is Call]
    assert lm.infeasible == [req]
    # a node that fits joins: the request is placed again (and not warned about again)
    placed = lm.update_view(view(gpus_on_n2=1))
    assert warnings(placed) == 0 and lm.infeasible == []
    if plane == "centralized":
        assert [e.action for e in placed if type(e) is Call] == ["global_schedule"]
    else:
        assert any(getattr(e, "value", (None,))[0] == "spillback" for e in placed)
