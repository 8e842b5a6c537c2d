"""Trace events from a real cluster: causal parents, unique ids, the Chrome timeline, and
tracing never breaking the runtime."""
from __future__ import annotations

import json
import threading

import pytest

import raylab as ray
from raylab.state import cluster_snapshot
from raylab.tracing import cause
from raylab.tracing.events import LECTURE, PROTOCOL
from raylab.tracing.recorder import COLLECTOR
from raylab.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from conftest import two_node_cluster, wait_for


@ray.remote
def add(a, b):
    return a + b


def on_n2(fn):
    n2 = next(n["NodeID"] for n in ray.nodes() if n["NodeName"] == "N2")
    return fn.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n2, soft=False))


def by_id(events):
    return {e.key: e for e in events}


def ancestors(ev, index):
    """The chain of causes of ``ev``, nearest first."""
    out = []
    seen = set()
    while ev.parent is not None and ev.parent in index and ev.parent not in seen:
        seen.add(ev.parent)
        ev = index[ev.parent]
        out.append(ev)
    return out


def lecture_cause(ev, index):
    """The nearest lecture-level step among ``ev``'s causes."""
    return next((a for a in ancestors(ev, index) if a.level == LECTURE), None)


@pytest.fixture(scope="module")
def traced_add(shared_cluster):
    """The lecture's add(a, b) on N2 (a first call, so Step 0 is in it too), traced."""
    two_node_cluster(shared_cluster)

    @ray.remote
    def add_for_parents(a, b):
        return a + b

    a = ray.put(1)
    with ray.trace() as t:
        ref = on_n2(add_for_parents).remote(a, 2)
        assert ray.get(ref, timeout=10) == 3
        # the owner keeps the idle lease a moment (worker_lease_linger_ms) before it gives
        # it back: the trace ends once N2's raylet has it back, so the return is in it
        wait_for(lambda: all(n.available.get("CPU") == n.total.get("CPU")
                             for n in cluster_snapshot().nodes), 10, "the lease's return")
    return t, ref


def test_event_ids_are_unique_and_pack_pid_and_sequence(traced_add):
    t, _ = traced_add
    keys = [e.key for e in t.events]
    assert len(keys) == len(set(keys))
    for e in t.events:
        assert e.key == (e.pid << 32) | e.seq


def test_every_step_of_the_task_flow_names_its_cause(traced_add):
    t, ref = traced_add
    index = by_id(t.events)
    tid = ref.task_id().hex()
    mine = [e for e in t.events if e.ids.get("task") == tid]
    step = {e.step: e for e in mine}
    # across processes: the frame header carries the sender's step
    assert step["schedule_decision"].parent == step["request_lease"].key      # driver -> raylet
    assert step["schedule_decision"].proc == "N2.raylet"
    assert index[step["push_task"].parent].step == "lease_granted"            # raylet's reply
    assert index[step["execute_task"].parent].step in ("push_task", "fetch_function")
    assert index[step["task_finished"].parent].step == "task_returned"        # worker's reply
    # within a process: the submission goes on where submit_task left it
    assert step["resolve_dependencies"].parent == step["submit_task"].key
    # the lecture's chain holds through parents
    chain = [a.step for a in ancestors(step["execute_task"], index)]
    for name in ("push_task", "lease_granted", "request_lease", "submit_task"):
        assert name in chain, chain
    assert chain.index("lease_granted") < chain.index("request_lease") < \
        chain.index("submit_task")
    # Step 0 too: the GCS registers what the driver exported
    reg = next(e for e in t.events if e.step == "register_function")
    assert index[reg.parent].step == "export_function"
    # a step the user's own call starts is a root
    assert step["submit_task"].parent is None


def test_protocol_events_hang_under_the_lecture_step_that_caused_them(traced_add):
    t, ref = traced_add
    index = by_id(t.events)
    tid = ref.task_id().hex()
    fetch = next(e for e in t.events if e.step == "fetch_function")
    assert lecture_cause(fetch, index).step == "push_task"
    assert lecture_cause(fetch, index).ids["task"] == tid
    for name in ("return_worker", "lease_returned"):
        ev = next(e for e in t.events if e.step == name)
        assert lecture_cause(ev, index).step == "task_finished", name
    flow = [e for e in t.events if e.level == PROTOCOL and e.flow == "task"]
    assert flow
    for ev in flow:           # every protocol event of the flow has a lecture step as cause
        cause = lecture_cause(ev, index)
        assert cause is not None, ev
        assert cause.sort_key() < ev.sort_key()


def test_timeline_of_a_real_run_is_chrome_trace_json(cluster2, tmp_path):
    with ray.trace() as t:
        refs = [add.remote(i, i) for i in range(4)] + [on_n2(add).remote(5, 5)]
        assert ray.get(refs, timeout=10) == [0, 2, 4, 6, 10]
    path = tmp_path / "timeline.json"
    assert ray.timeline(str(path)) is None
    with open(path) as f:
        doc = json.load(f)
    events = doc["traceEvents"]
    runs = [e for e in events if e["ph"] == "X"]
    executions = [e for e in t.events if e.step == "execute_task"]
    assert len(runs) == len(executions) == 5
    for e in runs:
        assert e["name"] == "add" and e["cat"] == "task"
        assert isinstance(e["pid"], int) and isinstance(e["tid"], int)
        assert e["dur"] >= 1 and e["ts"] > 0
    assert {e["args"]["task_id"] for e in runs} == {r.task_id().hex() for r in refs}
    meta = [e for e in events if e["ph"] == "M"]
    processes = {e["pid"]: e["args"]["name"] for e in meta if e["name"] == "process_name"}
    threads = {(e["pid"], e["tid"]): e["args"]["name"] for e in meta
               if e["name"] == "thread_name"}
    assert processes[2] == "N2"
    for e in runs:            # every track is named: the node, and the worker in it
        assert e["pid"] in processes and (e["pid"], e["tid"]) in threads
        assert threads[(e["pid"], e["tid"])].startswith(processes[e["pid"]] + ".w")
    assert any(e["pid"] == 2 for e in runs)


# -- tracing never breaks the runtime ------------------------------------------------------

def test_a_broken_subscriber_does_not_break_a_task(cluster2):
    def broken(events):
        raise RuntimeError("a view with a bug")

    COLLECTOR.subscribe(broken)
    try:
        with ray.trace() as t:
            assert ray.get(on_n2(add).remote(1, 2), timeout=10) == 3
        assert "task_finished" in t.names()
    finally:
        COLLECTOR.unsubscribe(broken)


@ray.remote
def emits_a_lock(x):
    """A component's trace point with a detail that cannot be pickled (a lock)."""
    from raylab.tracing.emit import step
    step("worker", "task", "odd_detail", detail={"lock": threading.Lock()})
    return x + 1


def test_an_unpicklable_detail_breaks_neither_the_task_nor_the_trace(cluster2):
    with ray.trace() as t:
        assert ray.get(on_n2(emits_a_lock).remote(1), timeout=10) == 2
    names = t.names(level=None)
    assert "odd_detail" in names                      # sent, its detail made plain
    odd = next(e for e in t.events if e.step == "odd_detail")
    assert "lock" in odd.detail["lock"]
    # and nothing sent in the same batch was lost
    assert "execute_task" in names and "task_returned" in names
    assert ray.get(add.remote(2, 2), timeout=10) == 4


def test_a_trace_shows_a_ref_dropped_just_before_it_ended_as_freed(cluster2):
    """The driver counts dropped refs in batches; ending a trace (or a snapshot) counts
    the ones dropped so far, so what it shows is the cluster as of now."""
    with ray.trace() as t:
        ref = ray.put(b"tiny")
        ref_hex = ref.hex()
        del ref
    [freed] = t.steps(step="object_freed", object=ref_hex, level=None)
    assert freed.proc == "driver"


# -- the wire: a frame header carries the sender's step, 0 while nobody traces ----------------

class _Peer:
    def rpc_which_cause(self, conn):
        return cause.current()

    async def rpc_step_and_answer(self, conn):
        seen = cause.current()
        cause.enter(seen + 1)          # as recording a step in the handler would
        return seen


def test_frame_header_carries_the_cause_only_while_tracing(tmp_path):
    import asyncio
    from raylab import transport
    from raylab.tracing.emit import TRACER

    async def main():
        token = transport.new_token()
        address = transport.unix_address(str(tmp_path / "peer.sock"))
        server = await transport.serve(address, token, _Peer)
        conn = await transport.connect(address, token, None)
        try:
            cause.enter(77)
            saved, TRACER.on = TRACER.on, False
            try:
                off = await conn.call("which_cause")
                TRACER.on = True
                on = await conn.call("which_cause")
                seen = await conn.call("step_and_answer")
                after = cause.current()  # the reply handed the handler's step back to us
            finally:
                TRACER.on = saved
            return off, on, seen, after
        finally:
            conn.close()
            server.close()

    import concurrent.futures
    with concurrent.futures.ThreadPoolExecutor(1) as pool:  # a loop of its own
        off, on, seen, after = pool.submit(asyncio.run, main()).result(timeout=30)
    assert (off, on) == (0, 77)
    assert (seen, after) == (77, 78)
