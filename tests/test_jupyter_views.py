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
    assert kernel.clicks_reach_blocked_cells() and kernel.blocking_get_policy() == "advance"
    kernel.controls_shown(+1)
    try:
        assert kernel.blocking_get_policy() == "wait"    # a dashboard is there to click
    finally:
        kernel.controls_shown(-1)
    manager.list_subshell = lambda: []                       # nbclient, nbval: no subshell
    assert kernel.blocking_get_policy() == "advance"


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
