"""The dashboard driven from a real kernel, the way a front end drives it.

Each test runs cells in a real IPython kernel (``raylab.jupyter.testing``), reads
the widgets' state from the kernel's messages and clicks by sending the
messages a browser sends. The three ways a student meets step mode:

(a) ``.remote()`` returns at once, the cluster is paused, the student clicks Next
    while the kernel is idle;
(b) the cell awaits (``await ref``): clicks are handled while it waits (ipykernel 7.4);
(c) the cell blocks in ``ray.get``: clicks sent on a subshell (what JupyterLab >= 4.4
    does) step it; without subshells (nbclient, nbval) the get advances by itself,
    or, if asked, fails at once saying how to step. Never a silent hang.
"""
from __future__ import annotations

import html
import re

import pytest

from raylab.jupyter.testing import KernelSession

from conftest import assert_clean

SETUP = """
import raylab as ray, raylab.jupyter as rj
from raylab.util.scheduling_strategies import NodeAffinitySchedulingStrategy
ray.init(num_nodes={nodes}, num_cpus=2, object_store_memory=100 * 2**20)
ray.stepper.pace = 0.05
@ray.remote
def add(a, b):
    return a + b
def on(label):
    node = next(n["NodeID"] for n in ray.nodes() if n["NodeName"] == label)
    return add.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False))
ray.get(on("N2").remote(0, 0))      # warm up: the function is exported, N2 has a worker
"""
IDS = ("{k: getattr(dash.ui, k).model_id for k in ('next', 'diagram', 'status', 'log', "
       "'node', 'kill_node', 'add_node', 'worker', 'kill_worker', 'slider', 'play', 'pause', "
       "'cont', 'speed', 'step_mode', 'bp_step', 'bp_node', 'bp_add', 'bp_clear', 'back', "
       "'forward', 'live')}")


def start(nodes: int = 2) -> KernelSession:
    k = KernelSession()
    k.run(SETUP.format(nodes=nodes))
    k.session_dir = k.value("ray.api.cluster().session.dir")
    return k


def stop(k: KernelSession) -> None:
    """Shut the cluster down from the kernel (interrupting a cell left blocked by a failed
    test); if even that fails, the kernel's death ends the cluster through its lifeline."""
    try:
        if k.busy():
            k.km.interrupt_kernel()
        k.run("rj.live.close_all(); ray.shutdown()", timeout=30, check=False)
    finally:
        k.close()
    assert_clean(k.session_dir, timeout=15)


@pytest.fixture(scope="module")
def shared_kernel():
    k = start()
    yield k
    stop(k)


@pytest.fixture
def kern(shared_kernel):
    """The module's kernel; a test that failed halfway leaves no pause, breakpoint or
    dashboard behind for the next one."""
    k = shared_kernel
    yield k
    if k.busy():
        k.km.interrupt_kernel()
    k.run("ray.stepper.off(); ray.stepper.clear_breakpoints(); ray.stepper.pace = 0.05; "
          "ray.stepper.blocking_get = 'auto'; rj.live.close_all()", timeout=30)


@pytest.fixture
def fresh_kernel():
    k = start()
    yield k
    stop(k)


def open_dashboard(k: KernelSession, step: bool = True) -> dict:
    out = k.run(f"dash = rj.dashboard(step={step}); dash")
    assert out[-1]["data"]["text/plain"].startswith("raylab dashboard of nodes N1 (head), N2")
    assert "application/vnd.jupyter.widget-view+json" in out[-1]["data"]
    return k.value(IDS)


def close_dashboard(k: KernelSession) -> None:
    k.run("ray.stepper.off(); ray.stepper.blocking_get = 'auto'; dash.close()")


def headline(k: KernelSession, ids: dict) -> str:
    m = re.search(r"raylab-headline[^>]*>([^<]*)<", k.state(ids["diagram"]).get("value", ""))
    return html.unescape(m.group(1)) if m else ""


def paused(k: KernelSession, ids: dict) -> bool:
    """Does the dashboard say the cluster is paused somewhere?"""
    return "cluster paused at" in k.state(ids["status"]).get("value", "")


def pauses(k: KernelSession, ids: dict) -> int:
    m = re.search(r"(\d+) pause\(s\) so far", k.state(ids["status"]).get("value", ""))
    return int(m.group(1)) if m else -1


def click_next(k: KernelSession, ids: dict, subshell=None) -> None:
    """Click Next and wait until the dashboard tells the click was carried out."""
    before = (pauses(k, ids), k.state(ids["status"]).get("value"))
    k.click(ids["next"], subshell=subshell)
    k.wait_for(lambda: (pauses(k, ids), k.state(ids["status"]).get("value")) != before, 30,
               "the dashboard to show the Next click's effect")


# -- (a) the natural flow ------------------------------------------------------------------------
def test_remote_returns_paused_and_next_clicks_step_the_real_cluster(kern):
    k = kern
    ids = open_dashboard(k)
    k.run('ref = on("N2").remote(1, 2)')
    assert k.value("ray.wait([ref], timeout=0)[0]") == []      # paused for real
    k.wait_for(lambda: paused(k, ids), 10, "the first pause")
    seen = [headline(k, ids)]
    for _ in range(20):
        if k.value("len(ray.wait([ref], timeout=0)[0])") == 1:
            break
        click_next(k, ids)
        seen.append(headline(k, ids))
    assert k.value("ray.get(ref)") == 3
    assert len(set(seen)) >= 5, f"the diagram did not follow the clicks: {seen}"
    log = "\n".join(k.value("[e.narrative for e in dash.sync().events if e.level == 0]"))
    for words in ("asks N2's raylet for a worker lease", "grants a lease on worker N2.",
                  "Worker on N2 executes add()", "stores add's result"):
        assert words in log, f"the step log never showed {words!r}"
    close_dashboard(k)


# -- (b) await keeps the controls live ------------------------------------------------------------------
@pytest.mark.parametrize("wait", ["await ref", "await rj.get_async(ref)"])
def test_await_in_a_cell_keeps_the_controls_live(kern, wait):
    k = kern
    ids = open_dashboard(k)
    k.run("ray.stepper.pace = 60")      # so that only clicks can move the cluster
    cell = k.execute(f'ref = on("N2").remote(1, 2)\nvalue = {wait}')
    clicks = 0
    while cell not in k.replies:
        k.wait_for(lambda: paused(k, ids) or cell in k.replies, 15, "a pause")
        if cell in k.replies:
            break
        click_next(k, ids)        # handled while the cell is still awaiting
        clicks += 1
        assert clicks < 20
    reply = k.wait(cell)
    assert reply["status"] == "ok", k.text(cell)
    assert k.value("value") == 3
    assert clicks >= 5, "the cluster moved by itself: the clicks did not drive it"
    k.run("ray.stepper.pace = 0.05")
    close_dashboard(k)


# -- (c) a blocking ray.get never hangs ----------------------------------------------------------------------
def test_blocking_get_waits_for_clicks_sent_on_a_subshell(fresh_kernel):
    k = fresh_kernel
    sid = k.create_subshell()                 # JupyterLab >= 4.4 does this for widgets
    assert k.value("rj.kernel.client_subshells() != []")
    ids = open_dashboard(k)
    cell = k.execute('ref = on("N2").remote(1, 2)\nvalue = ray.get(ref)')
    k.wait_for(lambda: "waits for the paused cluster" in k.text(cell), 15, "the notice")
    clicks = 0
    while cell not in k.replies:
        k.wait_for(lambda: paused(k, ids) or cell in k.replies, 15, "a pause")
        if cell in k.replies:
            break
        click_next(k, ids, subshell=sid)      # the main thread is blocked in ray.get
        clicks += 1
        assert clicks < 20
    assert k.wait(cell)["status"] == "ok"
    assert k.value("value") == 3
    assert clicks >= 5, "the get advanced by itself although clicks could arrive"
    close_dashboard(k)


def test_blocking_get_without_subshells_advances_by_itself(kern):
    k = kern
    ids = open_dashboard(k)
    assert k.value("rj.kernel.blocking_get_policy()") == "advance"
    cell = k.execute('ref = on("N2").remote(1, 2)\nvalue = ray.get(ref)')
    reply = k.wait(cell, 30)
    assert reply["status"] == "ok" and k.value("value") == 3
    assert "waits for the paused cluster" not in k.text(cell)
    busy_from = next(n for n, kind, parent, c in k.log if parent == cell and kind == "status"
                     and c["execution_state"] == "busy")
    live = [v for n, v in k.updates_of(ids["diagram"]) if busy_from < n < k.idle[cell]]
    assert live, "the diagram was not updated while the cell was running"
    assert any("(paused here)" in v for v in live)   # it showed the cluster paused, mid-get
    close_dashboard(k)


def test_blocking_get_can_fail_at_once_with_how_to_step(kern):
    k = kern
    open_dashboard(k)
    k.run("ray.stepper.blocking_get = 'error'")
    cell = k.execute('ref = on("N2").remote(1, 2)\nvalue = ray.get(ref)')
    reply = k.wait(cell, 15)
    assert reply["status"] == "error" and reply["ename"] == "RuntimeError"
    assert "raylab.stepper.next()" in reply["evalue"] and "await ref" in reply["evalue"]
    k.run("ray.stepper.continue_(); assert ray.get(ref) == 3")
    close_dashboard(k)


# -- failure injection from the dashboard -------------------------------------------------------------------
def test_kill_node_kill_worker_and_add_node_buttons_act_on_the_real_cluster(fresh_kernel):
    k = fresh_kernel
    ids = open_dashboard(k, step=False)
    diagram = lambda: k.state(ids["diagram"]).get("value", "")  # noqa: E731
    options = k.state(ids["worker"])["_options_labels"]
    assert "N2.w1" in options
    k.set_state(ids["worker"], index=options.index("N2.w1"))
    k.click(ids["kill_worker"])
    k.wait_for(lambda: "killed worker N2.w1" in k.state(ids["status"]).get("value", ""), 15)
    assert k.value("ray.get(on('N2').remote(2, 3))") == 5       # the raylet starts another
    assert k.state(ids["node"])["_options_labels"] == ["N2"]
    k.click(ids["kill_node"])
    k.wait_for(lambda: "Worker node N2 (DEAD)" in diagram(), 30, "N2 drawn dead")
    assert k.value("{n['NodeName']: n['Alive'] for n in ray.nodes()}") == {"N1": True,
                                                                          "N2": False}
    k.click(ids["add_node"])
    k.wait_for(lambda: "Worker node N3" in diagram(), 30, "N3 drawn")
    assert k.value("sorted(n['NodeName'] for n in ray.nodes() if n['Alive'])") == ["N1", "N3"]
    assert k.value("ray.get(on('N3').remote(1, 1))") == 2
    close_dashboard(k)


# -- replay ----------------------------------------------------------------------------------------
def test_replay_slider_and_buttons_reproduce_the_recorded_sequence(kern, tmp_path):
    k = kern
    k.run('with ray.trace() as t:\n    ray.get(on("N2").remote(1, 2))\n'
          'r = rj.replay(t)\nr')
    narratives = k.value("[e.narrative for e in t.steps()]")
    ids = k.value("{k: getattr(r, k).model_id for k in ('slider', 'diagram', 'back', "
                  "'forward')}")
    n = len(narratives)
    assert n >= 8

    def shown():
        return headline(k, ids)

    for step in list(range(n + 1)) + list(range(n - 1, -1, -1)):
        k.set_state(ids["slider"], value=step)
        want = f"step {step} of {n}: " + (narratives[step - 1] if step else "nothing")
        k.wait_for(lambda: shown().startswith(want), 10, f"step {step}")
    for step in (1, 2, 3):
        k.click(ids["forward"])
        k.wait_for(lambda: shown().startswith(f"step {step} of {n}: {narratives[step - 1]}"))
    k.click(ids["back"])
    k.wait_for(lambda: shown().startswith(f"step 2 of {n}: {narratives[1]}"))
    k.run("r.show(5)")                       # what the module docstring tells users to do
    k.wait_for(lambda: shown().startswith(f"step 5 of {n}: {narratives[4]}"), 10, "r.show(5)")
    assert k.value("r.step") == 5
    k.run("import threading\nth = threading.Thread(target=r.show, args=(4,)); th.start(); "
          "th.join(10)\nassert not th.is_alive(), 'r.show deadlocked'")
    k.wait_for(lambda: shown().startswith(f"step 4 of {n}: {narratives[3]}"), 10, "r.show(4)")
    page = tmp_path / "replay.html"
    k.run(f"r.export({str(page)!r})")
    import json
    text = page.read_text()
    frames = json.loads(re.search(r'id="raylab-frames" type="application/json">(.*?)</script>',
                                  text, re.S).group(1))
    assert [html.unescape(f["headline"]) for f in frames[1:]] == [
        f"step {i} of {n}: {s}" for i, s in enumerate(narratives, 1)]


# -- the other controls, clicked ----------------------------------------------------------------
def status(k: KernelSession, ids: dict) -> str:
    return html.unescape(k.state(ids["status"]).get("value", ""))


def ready(k: KernelSession, ref: str = "ref") -> bool:
    return k.value(f"len(ray.wait([{ref}], timeout=0)[0])") == 1


def pick(k: KernelSession, model_id: str, label: str) -> None:
    """Choose ``label`` in a dropdown, as a front end does (it sends the index)."""
    k.set_state(model_id, index=k.state(model_id)["_options_labels"].index(label))


def test_play_pause_continue_and_speed_drive_the_real_cluster(kern):
    k = kern
    ids = open_dashboard(k)
    k.run("ray.stepper.pace = 60")                   # only the controls may move it
    pick(k, ids["speed"], "fast (0.15 s)")
    k.wait_for(lambda: k.value("ray.stepper.pace") == 0.15, 10, "the speed menu")
    k.run('ref = on("N2").remote(1, 2)')
    k.wait_for(lambda: paused(k, ids), 10, "the first pause")
    k.click(ids["play"])                             # steps by itself, one every 0.15 s
    k.wait_for(lambda: "playing, one step every 0.15 s" in status(k, ids), 10, "playing")
    k.wait_for(lambda: ready(k), 30, "Play to run the task to its end, with no click")
    k.click(ids["pause"])
    k.wait_for(lambda: "paused: the cluster stops at its next step" in status(k, ids), 10)
    assert "playing" not in status(k, ids)
    k.run('ref2 = on("N2").remote(2, 3)')
    k.wait_for(lambda: paused(k, ids), 10, "Pause to hold the next flow")
    held = pauses(k, ids)
    k.click(ids["next"])                             # paused: only a click moves it
    k.wait_for(lambda: pauses(k, ids) == held + 1, 10, "Next to let one step happen")
    assert not ready(k, "ref2")
    k.click(ids["cont"])
    k.wait_for(lambda: "running on" in status(k, ids), 10, "Continue")
    k.wait_for(lambda: ready(k, "ref2"), 30, "Continue to release the cluster")
    assert k.value("ray.get(ref2)") == 5 and k.value("ray.stepper.stepping") is False
    k.run("ray.stepper.pace = 0.05")
    close_dashboard(k)


def test_the_step_toggle_and_breakpoints_from_the_menus(kern):
    k = kern
    ids = open_dashboard(k, step=False)
    k.set_state(ids["step_mode"], value=True)
    k.wait_for(lambda: k.value("ray.stepper.stepping") is True, 10, "the toggle to step")
    k.wait_for(lambda: "step mode on" in status(k, ids), 10)
    k.set_state(ids["step_mode"], value=False)
    k.wait_for(lambda: k.value("ray.stepper.stepping") is False, 10, "the toggle to stop")
    pick(k, ids["bp_step"], "lease_granted")
    pick(k, ids["bp_node"], "N2")
    k.click(ids["bp_add"])
    k.wait_for(lambda: k.value("ray.stepper.breakpoints") ==
               [{"step": "lease_granted", "node": "N2"}], 10, "Add breakpoint")
    k.run("ray.stepper.pace = 60")
    k.run('ref = on("N2").remote(3, 4)')
    k.wait_for(lambda: paused(k, ids), 15, "the breakpoint to pause the cluster")
    assert "grants a lease on worker N2." in headline(k, ids)
    assert "breakpoints: step=lease_granted node=N2" in status(k, ids)
    assert not ready(k)
    k.click(ids["cont"])                             # runs on; the breakpoint stays armed
    k.wait_for(lambda: ready(k), 30, "Continue past the breakpoint")
    k.click(ids["bp_clear"])
    k.wait_for(lambda: k.value("ray.stepper.breakpoints") == [], 10, "Clear")
    k.run("ray.stepper.pace = 0.05")
    close_dashboard(k)


def test_the_scrubber_replays_while_the_cluster_goes_on_and_live_follows_again(kern):
    k = kern
    ids = open_dashboard(k, step=False)
    k.run('ray.get(on("N2").remote(1, 1)); dash.sync()')
    n = k.value("len(dash.frames)")
    slider = lambda: k.state(ids["slider"])  # noqa: E731
    k.wait_for(lambda: slider().get("max") == n and slider().get("value") == n, 10)
    k.set_state(ids["slider"], value=3)                       # drag it back
    # Each panel is its own widget, so the status may arrive a message after the diagram.
    k.wait_for(lambda: headline(k, ids).startswith(f"step 3 of {n}: ")
               and f"replaying step 3 of {n}" in status(k, ids), 10, "step 3")
    k.click(ids["back"])
    k.wait_for(lambda: headline(k, ids).startswith(f"step 2 of {n}: "), 10, "Back")
    k.click(ids["forward"])
    k.wait_for(lambda: headline(k, ids).startswith(f"step 3 of {n}: "), 10, "Forward")
    k.run('ray.get(on("N2").remote(2, 2)); dash.sync()')      # the cluster goes on meanwhile
    m = k.value("len(dash.frames)")
    k.wait_for(lambda: slider().get("max") == m
               and headline(k, ids).startswith(f"step 3 of {m}: "), 10, "the recording to grow")
    assert m > n and slider()["value"] == 3
    k.click(ids["live"])
    k.wait_for(lambda: headline(k, ids).startswith(f"step {m} of {m}: ")
               and "replaying" not in status(k, ids), 10, "Live")
    assert slider()["value"] == m
    close_dashboard(k)


def test_shutdown_leaves_the_last_step_on_the_page(fresh_kernel):
    k = fresh_kernel
    k.run("%load_ext raylab")
    ids = open_dashboard(k, step=False)
    k.run('value = ray.get(on("N2").remote(5, 6))\n%raylab shutdown')   # no sync in between
    n, last = k.value("len(dash.frames)"), k.value("dash.frames.narratives()[-1]")
    assert last.startswith("Driver's ray.get returns the value of")
    k.wait_for(lambda: headline(k, ids) == f"step {n} of {n}: {last}"
               and f"its last frame (step {n} of {n})" in status(k, ids), 10, "the last frame")
    assert k.state(ids["next"]).get("disabled") is True


# -- when may a blocking get wait for clicks? ----------------------------------------------------
def test_a_get_waits_for_clicks_only_where_a_probe_of_the_route_got_through(fresh_kernel):
    k = fresh_kernel
    k.create_subshell()                               # JupyterLab >= 4.4 does this
    k.run("dash = rj.dashboard(step=True)")           # made, but never shown
    assert k.value("rj.kernel.blocking_get_policy()") == "advance"
    k.run("dash")                                     # shown: its buttons are there to click
    assert k.value("rj.kernel.blocking_get_policy()") == "wait"
    # the route broken (as another ipykernel might): the probe's message waits for the
    # main thread, so a blocking get must not wait for clicks that cannot arrive
    k.run("rj.kernel._probes.clear()\nshim = rj.kernel.route_to_sender\n"
          "rj.kernel.route_to_sender = lambda widget: None")
    assert k.value("rj.kernel.blocking_get_policy()") == "advance"
    cell = k.execute('ref = on("N2").remote(1, 2)\nvalue = ray.get(ref)')
    assert k.wait(cell, 60)["status"] == "ok" and k.value("value") == 3    # no click needed
    assert "waits for the paused cluster" not in k.text(cell)
    k.run("rj.kernel.route_to_sender = shim; rj.kernel._probes.clear()")
    assert k.value("rj.kernel.blocking_get_policy()") == "wait"
    close_dashboard(k)
