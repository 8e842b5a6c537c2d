"""The dashboard's pieces without a kernel: scenes, the diagram, the export, the policy.

A scene is a pure function of trace events, so most tests record one real flow
(the lecture's add(a, b), ``a`` a large object put on N1, the task pinned to N2)
and check what each step draws: who acts, what moves between which boxes, and
the deterministic text a notebook compares.
"""
from __future__ import annotations

import json
import re
import threading
import types

import numpy as np
import pytest

import raylab as ray
from raylab.jupyter import kernel
from raylab.jupyter.controller import Controller
from raylab.jupyter.diagram import scene_svg, scene_text
from raylab.jupyter.export import page_html
from raylab.jupyter.panels import steplog_html, tables_text
from raylab.jupyter.player import Frames
from raylab.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from conftest import two_node_cluster


@ray.remote
def add(a, b):
    return float(a[0]) + b


@pytest.fixture(scope="module")
def recorded(shared_cluster):
    """One real run of the lecture's task, recorded; the frames and the base snapshot."""
    two_node_cluster(shared_cluster)
    from raylab.state import cluster_snapshot
    n2 = next(n["NodeID"] for n in ray.nodes() if n["NodeName"] == "N2")
    a = ray.put(np.ones(200_000))
    base = cluster_snapshot()
    with ray.trace() as t:
        ref = add.options(
            scheduling_strategy=NodeAffinitySchedulingStrategy(n2, soft=False)).remote(a, 2)
        assert ray.get(ref) == 3.0
    return Frames(t.events, base), t


def _step(frames: Frames, name: str) -> int:
    """The lecture step number (1-based) of the first step called ``name``."""
    names = [frames.events[i].step for i in frames.positions]
    return names.index(name) + 1


def test_each_step_draws_who_acts_and_what_moves(recorded):
    frames, _t = recorded
    push = frames.scene(_step(frames, "push_task"))
    assert push.acting == "driver"
    assert (push.motion.src, push.motion.dst, push.motion.kind) == ("driver", "N2.w1", "task")
    pull = frames.scene(_step(frames, "pull_object"))
    assert (pull.motion.src, pull.motion.dst) == ("N1.store", "N2.store")
    back = frames.scene(_step(frames, "task_returned"))
    assert (back.acting, back.motion.dst) == ("N2.w1", "driver")
    lease = frames.scene(_step(frames, "lease_granted"))
    n2 = lease.snapshot.node("N2")
    assert n2.available["CPU"] == 1 and n2.total["CPU"] == 2
    assert any(w.label == "N2.w1" and w.state == "LEASED" for w in n2.workers)
    done = frames.scene(len(frames))
    assert done.model.tasks and all(t.state == "FINISHED" for t in done.model.tasks.values())


def test_the_svg_names_every_box_and_animates_the_motion(recorded):
    frames, _t = recorded
    svg = scene_svg(frames.scene(_step(frames, "push_task")))
    for box in ("gcs", "driver", "N1.raylet", "N2.raylet", "N1.store", "N2.store", "N2.w1"):
        assert f'data-box="{box}"' in svg, box
    assert "<animateMotion" in svg and "add()" in svg
    assert 'stroke="#e65100" stroke-width="3"' in svg     # the acting box is highlighted


def test_stable_text_is_the_same_for_the_same_events(recorded):
    frames, t = recorded
    again = Frames(list(reversed(t.events)), frames.base)     # order comes from the clocks
    for k in (0, 3, len(frames)):
        assert scene_text(frames.scene(k, stable=True)) == scene_text(again.scene(k, stable=True))
    text = frames.text()
    assert "memory" not in text                 # machine-sized resources are never shown
    assert "Worker node N2" in text and "N2.w1" in text
    assert "0x" not in text and "pid" not in text
    assert "add()" in tables_text(frames.scene(len(frames)).model)


def test_the_step_log_highlights_the_current_step(recorded):
    frames, _t = recorded
    html = steplog_html(frames.events, current=4, window=None, row_ids=True)
    rows = re.findall(r'id="raylab-step-(\d+)" style="([^"]*)"', html)
    assert [int(n) for n, _ in rows] == list(range(1, len(frames) + 1))
    assert [n for n, style in rows if "background" in style] == ["4"]


def test_the_exported_page_holds_every_frame_and_no_script_breakout(recorded):
    frames, _t = recorded
    page = page_html(frames, title="add </script><b>")
    assert "</script><b>" not in page.split("<body>")[0]
    data = json.loads(re.search(r'type="application/json">(.*?)</script>', page, re.S).group(1))
    assert len(data) == len(frames) + 1
    assert data[0]["headline"].startswith("step 0 of")
    assert [d["headline"].split(": ", 1)[1] for d in data[1:]] == frames.narratives()
    assert all(d["diagram"].startswith('<div class="raylab-headline"') for d in data)


def test_blocking_get_policy_follows_what_the_kernel_can_do(monkeypatch):
    assert kernel.kernel() is None and kernel.blocking_get_policy() == "advance"
    manager = types.SimpleNamespace(list_subshell=lambda: ["sub-1"])
    fake = types.SimpleNamespace(_supports_kernel_subshells=True,
                                 shell_channel_thread=types.SimpleNamespace(manager=manager))
    monkeypatch.setattr(kernel, "kernel", lambda: fake)
    route = {"works": True}
    monkeypatch.setattr(kernel, "probe_route", lambda sid, k=None: route["works"])
    assert kernel.clicks_reach_blocked_cells() and kernel.blocking_get_policy() == "advance"
    kernel.controls_shown(+1)
    try:
        assert kernel.blocking_get_policy() == "wait"    # a dashboard is there to click
        route["works"] = False                           # the probe's message never came
        assert kernel.blocking_get_policy() == "advance"
        route["works"] = True
        manager.list_subshell = lambda: []                   # nbclient, nbval: no subshell
        assert kernel.blocking_get_policy() == "advance"
    finally:
        kernel.controls_shown(-1)


def test_route_to_sender_overrides_only_where_ipykernel_has_the_hook():
    class Comm74:
        def _reply_subshell_for(self, data, default):
            return None                      # ipykernel 7.4: back to the main shell
    w74, w6 = types.SimpleNamespace(comm=Comm74()), types.SimpleNamespace(comm=object())
    kernel.route_to_sender(w74)
    kernel.route_to_sender(w6)               # no hook (ipykernel < 7.4): nothing to do
    assert w74.comm._reply_subshell_for({"x": 1}, "sub-1") == "sub-1"


def test_controller_runs_every_command_once_in_order_from_many_threads():
    done = []
    c = Controller(report=done.append)
    c.do_note = lambda i: f"note {i}"
    threads = [threading.Thread(target=lambda i=i: c.submit("note", i)) for i in range(20)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    c.call("note", "last")
    c.close()
    assert sorted(done[:-1], key=lambda s: int(s.split()[1])) == [f"note {i}" for i in range(20)]
    assert done[-1] == "note last"
    with pytest.raises(ValueError, match="unknown dashboard action"):
        Controller.submit(c, "explode")


def _in_thread(fn, *args, timeout: float = 10.0) -> None:
    """Run ``fn`` on another thread; fail (instead of hanging) if it does not return."""
    th = threading.Thread(target=fn, args=args, daemon=True)
    th.start()
    th.join(timeout)
    assert not th.is_alive(), f"{fn.__qualname__}{args} did not return: a deadlock"


def test_replay_show_jumps_to_a_step_from_code_and_from_another_thread(recorded):
    from raylab.jupyter.player import Replay
    frames, t = recorded
    r = Replay(t, frames.base)
    n = len(r.frames)

    def shown() -> str:
        return re.search(r"raylab-headline[^>]*>([^<]*)<", r.diagram.value).group(1)

    _in_thread(r.show, 5)                       # what the module docstring tells users to do
    assert r.step == 5 and shown().startswith(f"step 5 of {n}: ")
    _in_thread(r.show, 3)
    assert r.step == 3 and shown().startswith(f"step 3 of {n}: ")
    r.show(5)                                   # and on this thread
    r.show(5)                                   # the slider is already there: just draws
    assert r.step == 5 and shown().startswith(f"step 5 of {n}: ")
    r.show(n + 10)
    assert r.step == n and shown().startswith(f"step {n} of {n}: ")


def test_the_store_a_pull_came_from_holds_the_object_with_its_owner(recorded):
    """``a`` was put on N1 before the trace began; N2 pulls it: the last frame draws it in
    both stores, with its owner and size (the snapshot taken when the trace began)."""
    frames, _t = recorded
    a = next(o for o in frames.base.node("N1").objects if o.primary)
    done = frames.scene(len(frames), stable=True).snapshot
    held = {n.label: o for n in done.nodes for o in n.objects if o.object_id == a.object_id}
    assert sorted(held) == ["N1", "N2"]
    assert held["N1"].primary and not held["N2"].primary
    assert {o.owner for o in held.values()} == {"driver"}
    assert {o.size for o in held.values()} == {a.size}
    from raylab.views.format import short_object
    assert frames.text().count(short_object(a.object_id) + " ") == 2   # drawn in both stores


# -- the live dashboard, in this process ----------------------------------------------------
@ray.remote
def nothing(i):
    return i


def _n2():
    n2 = next(n["NodeID"] for n in ray.nodes() if n["NodeName"] == "N2")
    return NodeAffinitySchedulingStrategy(n2, soft=False)


def test_only_the_drawing_thread_writes_the_dashboards_widgets(cluster2):
    import traitlets
    from raylab.jupyter.live import Dashboard
    dash = Dashboard()
    writers = []
    ui = dash.ui
    for widget in (ui.slider, ui.step_mode, ui.worker, ui.node, ui.bp_node, ui.diagram,
                   ui.status, ui.log, ui.tables, ui.next):
        widget.observe(lambda ch: writers.append(threading.current_thread().name),
                       names=traitlets.All)
    try:
        assert ray.get(nothing.options(scheduling_strategy=_n2()).remote(1)) == 1
        dash.sync()
        _in_thread(dash.show_step, 2)                  # a click on Back, on a click thread
        dash.sync()
        assert ui.slider.value == 2 and "replaying step 2 of" in ui.status.value
        dash.step_mode(True).step_mode(False)          # from code, on this thread
        dash.show_step(None)
        dash.sync()
        assert ui.slider.value == ui.slider.max == len(dash.frames)
    finally:
        dash.close()
    assert writers and set(writers) == {"raylab-dashboard"}, set(writers)
    assert ui.next.disabled                             # greyed out, by the drawing thread too


def test_closing_draws_every_step_recorded_so_far(cluster2):
    from raylab.jupyter.live import Dashboard
    dash = Dashboard(max_rate=0.2)           # it would draw again only five seconds later
    with ray.trace() as t:
        assert ray.get(nothing.options(scheduling_strategy=_n2()).remote(2)) == 2
    dash.close()                             # no sync first: close must catch up by itself
    n = len(dash.frames)
    last = t.steps()[-1]
    assert dash.frames.narratives()[-1] == last.narrative
    assert f"step {n} of {n}: " in dash.ui.diagram.value and dash.ui.slider.value == n
    assert f"its last frame (step {n} of {n})" in dash.ui.status.value


def test_the_clusters_shape_is_read_once_per_period_however_many_steps_change_it(cluster2):
    from raylab.jupyter.live import Dashboard
    from raylab.tracing.events import TraceEvent
    period = 30.0                            # longer than this test: one snapshot in it
    dash = Dashboard(snapshot_period=period)
    try:
        before = dash.snapshots
        # ten workers starting one after the other, as the collector hands them over (on
        # its io thread), each drawn before the next arrives
        for i in range(10):
            dash._on_events([TraceEvent(10**6 + i, 1, i, 0.0, "N2", "raylet", "worker",
                                        "worker_started", {}, {"pid": i}, None, 1, False,
                                        "N2.raylet")])
            dash.sync()
        assert dash.renders >= 10 and dash.snapshots - before <= 1, dash.snapshots - before
        assert ray.get(nothing.options(scheduling_strategy=_n2()).remote(3)) == 3
        dash.sync()
        assert dash.snapshots - before <= 1
    finally:
        dash.close()
    assert dash.snapshots - before <= 2      # and one more for the last frame


# -- the causal chain of an actor ----------------------------------------------------------------
@ray.remote
class Sleeper:
    async def work(self, i):
        import asyncio
        await asyncio.sleep(0.5)
        return i


@ray.remote(max_restarts=1, max_task_retries=1)
class Phoenix:
    def ping(self):
        return "pong"


def test_an_async_actors_chain_shows_its_calls_overlapping(cluster2):
    from raylab.jupyter.traceview import chain_of, timeline
    w = Sleeper.options(scheduling_strategy=_n2()).remote()
    with ray.trace() as t:
        ray.get(w.__ray_ready__.remote())
        assert ray.get([w.work.remote(i) for i in range(3)]) == [0, 1, 2]
    steps = [(e.step, e.detail.get("name")) for e in chain_of(t.events, w)
             if e.component == "worker" and e.detail.get("name") == "Sleeper.work"]
    # all three calls start before the first one is done: they await at the same time
    assert [s for s, _ in steps] == ["execute_task"] * 3 + ["task_returned"] * 3
    lanes = [line for line in timeline(t, w).text().splitlines()
             if "work━" in line and ": steps" not in line]
    assert len(lanes) == 3, lanes


def test_an_actors_chain_shows_its_restart_through_the_gcs(cluster2):
    from raylab import chaos
    from raylab.jupyter.traceview import story
    p = Phoenix.options(scheduling_strategy=_n2()).remote()
    assert ray.get(p.ping.remote()) == "pong"
    with ray.trace() as t:
        chaos.kill_actor_process(p)
        assert ray.get(p.ping.remote(), timeout=60) == "pong"
    names = [e.step for e in story(t, p).events]
    order = ["kill_actor_process", "actor_died", "actor_restart", "schedule_actor",
             "lease_granted", "create_actor", "execute_task", "actor_alive"]
    at = [names.index(s) for s in order]
    assert at == sorted(at), names
    assert "Phoenix.__init__" in story(t, p).text()
