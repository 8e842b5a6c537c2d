"""``%load_ext raylab``: every %raylab command in a real kernel, and the usage on mistakes."""
from __future__ import annotations

import json

import pytest

from raylab.jupyter.magics import USAGE, UsageError, parse
from raylab.jupyter.testing import KernelSession

from conftest import assert_clean


@pytest.fixture(scope="module")
def k():
    session = KernelSession()
    session.run("%load_ext raylab")
    yield session
    try:
        if session.busy():
            session.km.interrupt_kernel()
        session.run("%raylab shutdown", check=False)
    finally:
        session.close()
    if getattr(session, "session_dir", None):
        assert_clean(session.session_dir)


def out(k, code: str) -> str:
    msg = k.execute(code)
    reply = k.wait(msg, 60)
    assert reply["status"] == "ok", k.text(msg)
    return k.text(msg)


def test_bad_command_lines_print_the_usage_without_a_traceback(k):
    for line in ("%raylab", "%raylab bogus", "%raylab next many", "%raylab init --nodes x",
                 "%raylab step sideways", "%raylab kill-node", "%raylab status"):
        text = out(k, line)
        assert text.startswith("%raylab: "), (line, text)
        assert "%raylab init [--nodes N]" in text and "Traceback" not in text
    assert "no cluster is running: start one with %raylab init" in out(k, "%raylab status")
    assert "trace is a cell magic" in out(k, "%raylab trace")
    assert "the cell magic is %%raylab trace" in out(k, "%%raylab next\npass")


def test_question_mark_shows_the_usage(k):
    msg = k.execute("%raylab?")
    reply = k.wait(msg)
    pages = [p["data"]["text/plain"] for p in reply.get("payload", []) if "data" in p]
    assert pages and "%raylab kill-node NODE" in pages[0] and "%%raylab trace" in pages[0]


def test_parse_is_strict():
    assert parse("init --nodes 3 --cpus 1 --mode centralized").nodes == 3
    assert parse("next 4").count == 4
    with pytest.raises(UsageError, match="invalid choice"):
        parse("step maybe")
    with pytest.raises(UsageError, match="no command"):
        parse("")
    assert "%raylab add-node" in USAGE


def test_a_lecture_with_magics_only(k, tmp_path):
    text = out(k, "%raylab init --nodes 2 --cpus 2 --store-mb 64")
    assert text == ("raylab: started nodes N1 (head), N2; 2 CPUs and 64 MiB of object store "
                    "each; control plane: ownership\n")
    k.session_dir = k.value("__import__('raylab').api.cluster().session.dir")
    out(k, "import raylab as ray\n@ray.remote\ndef add(a, b):\n    return a + b\n"
           "ray.get(add.remote(0, 0))")
    status = out(k, "%raylab status")
    assert "GCS (global control store, head node N1)" in status and "Worker node N2" in status
    dash = out(k, "%raylab dashboard")
    assert dash.startswith("raylab dashboard of nodes N1 (head), N2")
    assert "step mode on" in out(k, "%raylab step on")
    out(k, "ref = add.remote(1, 2)")
    assert out(k, "%raylab next").startswith("paused at: ")
    assert out(k, "%raylab continue").startswith("running on")
    assert k.value("ray.get(ref)") == 3
    out(k, "%raylab step off")

    traced = out(k, "%%raylab trace --flow task\nvalue = ray.get(add.remote(20, 22))")
    assert "Driver submits task add() and gets back ObjectRef(s) at once" in traced
    assert "╭─ GCS (global control store" in traced and "Worker node N2" in traced
    assert k.value("value") == 42 and k.value("len(_raylab_trace.steps()) > 5")
    timeline = tmp_path / "timeline.json"
    assert "task execution(s)" in out(k, f"%raylab timeline {timeline}")
    assert json.loads(timeline.read_text())["traceEvents"]
    page = tmp_path / "replay.html"
    assert "standalone replay" in out(k, f"%raylab export {page}")
    assert "raylab-frames" in page.read_text()
    assert out(k, "%raylab replay").startswith("Replay(")

    assert out(k, "%raylab add-node --cpus 1") == \
        "added node N3: 1 CPUs and 64 MiB of object store\n"
    assert out(k, "%raylab kill-node N3").startswith("killed node N3")
    assert out(k, "%raylab break lease_granted --node N2") == \
        "breakpoint: step=lease_granted node=N2\n"
    out(k, "ray.stepper.off()")
    assert out(k, "%raylab shutdown") == "raylab: the cluster is shut down\n"
    assert k.value("ray.is_initialized()") is False


def test_values_the_cluster_refuses_print_what_was_wrong_without_a_traceback(k):
    out(k, "%raylab init --nodes 2 --cpus 1 --store-mb 48\nimport raylab as ray")
    k.session_dir = k.value("__import__('raylab').api.cluster().session.dir")
    cases = {
        "%raylab init": "a cluster is already running (nodes N1, N2)",
        "%raylab kill-node N9": "unknown node 'N9'; nodes are N1, N2",
        "%raylab kill-node N1": "N1 is the head node",
        "%raylab kill-worker N7.w3": "no live worker 'N7.w3'",
        "%raylab break bogus_step": "no step is called 'bogus_step'",
        "%raylab break lease_grantd": "did you mean lease_granted",
        "%raylab break lease_granted --node N9": "no node 'N9'; nodes are N1, N2",
        "%raylab add-node --store-mb 0": "--store-mb must be at least 1",
    }
    for line, words in cases.items():
        text = out(k, line)              # out() asserts the cell did not fail
        command = line.split()[1]
        assert text.startswith(f"%raylab {command}: "), (line, text)
        assert words in text, (line, text)
        assert f"usage:\n  %raylab {command}" in text and "Traceback" not in text, text
    assert k.value("len(ray.stepper.breakpoints)") == 0     # none of them was armed
    assert "lease_granted" in out(k, "%raylab break --list").split()
    assert k.value("ray.get(ray.remote(lambda: 1).remote())") == 1    # the cluster works on
    # a new node is shaped like the others: a store of 48 MiB, not a share of the machine
    assert out(k, "%raylab add-node") == "added node N3: 1 CPUs and 48 MiB of object store\n"
    assert k.value("ray.state.cluster_snapshot().node('N3').store_capacity") == 48 * 2**20
    assert out(k, "%raylab shutdown") == "raylab: the cluster is shut down\n"


def test_trace_of_one_chain_shows_its_steps_and_the_diagram_they_make(k):
    out(k, "%raylab init --nodes 2 --cpus 2 --store-mb 64\nimport numpy as np\n"
           "import raylab as ray, raylab.jupyter as rj\n"
           "from raylab.util.scheduling_strategies import NodeAffinitySchedulingStrategy\n"
           "n2 = NodeAffinitySchedulingStrategy(next(n['NodeID'] for n in ray.nodes() "
           "if n['NodeName'] == 'N2'), soft=False)\n"
           "@ray.remote\ndef first(x):\n    return float(x[0]) + 1\n"
           "a = ray.put(np.ones(200_000))")
    k.session_dir = k.value("ray.api.cluster().session.dir")
    cell = k.execute("%%raylab trace --of ref\nref = first.options(scheduling_strategy=n2)"
                     ".remote(a)\nray.get(ref)")
    assert k.wait(cell)["status"] == "ok"
    shown = [o for o in k.outputs[cell] if o["type"] in ("execute_result", "display_data")]
    assert len(shown) == 1, "the cell's own value (2.0) is shown besides the trace view"
    text = shown[0]["data"]["text/plain"]
    story = k.value("rj.story(_raylab_trace, ref).text()")
    assert text.startswith(story + "\n\n"), "the log is not the chain of ref"
    for words in ("Driver exports remote function first to the GCS function table",
                  "N2 fetches 00ffffff#1 from N1's object store"):
        assert words in story
    assert "checks its local object store" not in story        # ray.get runs beside it
    diagram = text[len(story):]
    assert diagram.count("00ffffff#1 ") == 2      # in N1's store (since before) and in N2's
    assert "driver" in diagram.split("00ffffff#1 ")[1].split("\n")[0]      # its owner
    assert "<svg" in shown[0]["data"]["text/html"]
    bad = out(k, "%%raylab trace --of 42\nx = 1")
    assert bad.startswith("%raylab trace: --of 42: a causal chain starts from an ObjectRef")
    assert out(k, "%raylab shutdown") == "raylab: the cluster is shut down\n"
