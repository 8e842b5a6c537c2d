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
       "'node', 'kill_node', 'add_node', 'worker', 'kill_worker', 'slider')}")


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
def kern():
    k = start()
    yield k
    stop(k)


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
    page = tmp_path / "replay.html"
    k.run(f"r.export({str(page)!r})")
    import json
    text = page.read_text()
    frames = json.loads(re.search(r'id="raylab-frames" type="application/json">(.*?)</script>',
                                  text, re.S).group(1))
    assert [html.unescape(f["headline"]) for f in frames[1:]] == [
        f"step {i} of {n}: {s}" for i, s in enumerate(narratives, 1)]
