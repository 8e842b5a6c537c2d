"""Tasks on a real two-node cluster: the foundation issue, point by point."""
from __future__ import annotations

import os
import time

import pytest

import raylab as ray
from raylab import exceptions as exc
from raylab.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from conftest import wait_for


@ray.remote
def add(a, b):
    return a + b


@ray.remote
def node_of():
    return ray.get_runtime_context().get_node_id()


def test_the_issue_example(cluster2):
    ref_a = ray.put(1)
    ref_c = add.remote(ref_a, 2)
    assert ray.get(ref_c) == 3


def test_remote_with_and_without_arguments(cluster2):
    @ray.remote
    def three():
        return 3

    @ray.remote(num_returns=2, max_retries=0)
    def pair(x):
        return x, x * 2

    assert ray.get(three.remote()) == 3
    a, b = pair.remote(5)
    assert ray.get([a, b]) == [5, 10]
    assert ray.get(add.remote(b=2, a=40)) == 42


def test_options_override_and_name(cluster2):
    @ray.remote
    def env():
        return os.environ.get("RAYLAB_TEST_VAR")

    ref = env.options(runtime_env={"env_vars": {"RAYLAB_TEST_VAR": "hello"}},
                      name="env-task").remote()
    assert ray.get(ref) == "hello"
    assert ray.get(env.remote()) is None  # the variable does not leak into later tasks


def test_tasks_submit_tasks(cluster2):
    @ray.remote
    def parent(n):
        return sum(ray.get([add.remote(i, 1) for i in range(n)]))

    assert ray.get(parent.remote(10)) == sum(range(1, 11))


def test_nested_refs_stay_refs_and_top_level_refs_resolve(cluster2):
    @ray.remote
    def inspect(top, nested):
        return type(top).__name__, type(nested[0]).__name__, ray.get(nested[0])

    r = ray.put(7)
    assert ray.get(inspect.remote(r, [r])) == ("int", "ObjectRef", 7)


def test_task_error_is_users_exception_with_remote_traceback(cluster2):
    class MyError(ValueError):
        pass

    @ray.remote
    def fails():
        raise MyError("bad input")

    with pytest.raises(MyError) as info:
        ray.get(fails.remote())
    err = info.value
    assert isinstance(err, exc.RayTaskError)
    assert isinstance(err, ValueError)
    assert "bad input" in str(err)
    assert "raise MyError" in str(err)  # the remote traceback travels with it
    assert "fails" in str(err)


def test_error_in_argument_fails_dependent_task(cluster2):
    @ray.remote
    def boom():
        return 1 / 0

    with pytest.raises(ZeroDivisionError):
        ray.get(add.remote(boom.remote(), 1))


def test_get_timeout(cluster2):
    @ray.remote
    def slow():
        time.sleep(3)
        return 1

    ref = slow.remote()
    t0 = time.monotonic()
    with pytest.raises(exc.GetTimeoutError):
        ray.get(ref, timeout=0.2)
    assert time.monotonic() - t0 < 2
    with pytest.raises(TimeoutError):  # GetTimeoutError is also a TimeoutError
        ray.get(ref, timeout=0)
    ray.cancel(ref, force=True)


def test_wait_semantics_and_order(cluster2):
    @ray.remote
    def sleepy(t, v):
        time.sleep(t)
        return v

    slow = sleepy.remote(2.0, "slow")
    fast = [sleepy.remote(0, i) for i in range(3)]
    refs = [slow] + fast
    ready, not_ready = ray.wait(refs, num_returns=3, timeout=10)
    assert ready == fast  # input order, the slow one is not ready
    assert not_ready == [slow]
    ready, not_ready = ray.wait(refs, num_returns=4, timeout=0.1)
    assert slow in not_ready and len(ready) == 3
    ready, not_ready = ray.wait(refs, num_returns=1)
    assert len(ready) == 1 and ready[0] in fast and len(not_ready) == 3
    with pytest.raises(ValueError, match="unique"):
        ray.wait([slow, slow])
    with pytest.raises(ValueError, match="num_returns"):
        ray.wait(fast, num_returns=5)
    ray.cancel(slow, force=True)


def test_cancel_running_and_pending(cluster2):
    @ray.remote
    def forever():
        while True:
            time.sleep(0.05)

    running = forever.remote()
    wait_for(lambda: ray.available_resources().get("CPU", 0) < 4, 5, "the task to start")
    ray.cancel(running)
    with pytest.raises(exc.TaskCancelledError):
        ray.get(running, timeout=10)

    blocker = [forever.options(num_cpus=2).remote() for _ in range(2)]
    pending = add.options(num_cpus=2).remote(1, 2)
    ray.cancel(pending)
    with pytest.raises(exc.TaskCancelledError):
        ray.get(pending, timeout=10)
    for b in blocker:
        ray.cancel(b, force=True)
    for b in blocker:
        with pytest.raises(exc.TaskCancelledError):
            ray.get(b, timeout=10)
    assert ray.get(add.remote(1, 1)) == 2  # the cluster keeps working


def test_node_affinity_pins_to_n2(cluster2):
    nodes = {n["NodeName"]: n["NodeID"] for n in ray.nodes()}
    n2 = nodes["N2"]
    where = node_of.options(
        scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=n2, soft=False)).remote()
    assert ray.get(where) == n2
    assert len(n2) == 56 and int(n2, 16) >= 0  # a hex string, as in Ray
    assert ray.get_runtime_context().get_node_id() == nodes["N1"]


def test_spread_uses_both_nodes(cluster2):
    @ray.remote
    def where_slow():
        time.sleep(0.3)
        return ray.get_runtime_context().get_node_id()

    refs = [where_slow.options(scheduling_strategy="SPREAD").remote() for _ in range(4)]
    assert len(set(ray.get(refs))) == 2


def test_default_policy_packs_then_spreads(cluster2):
    @ray.remote
    def hold(t):
        time.sleep(t)
        return ray.get_runtime_context().get_node_id()

    refs = [hold.remote(1.0) for _ in range(4)]
    assert len(set(ray.get(refs))) == 2  # 4 CPUs needed: both nodes


def test_available_resources_reflect_running_tasks(cluster2):
    @ray.remote(num_cpus=1)
    def busy():
        time.sleep(2)

    assert ray.cluster_resources()["CPU"] == 4
    wait_for(lambda: ray.available_resources().get("CPU") == 4, 5, "an idle cluster")
    refs = [busy.remote(), busy.remote()]
    wait_for(lambda: ray.available_resources().get("CPU") == 2, 5, "two CPUs in use")
    ray.get(refs)
    wait_for(lambda: ray.available_resources().get("CPU") == 4, 5, "CPUs released")


def test_custom_resources_and_infeasible_warning(cluster2, capsys):
    @ray.remote(resources={"unicorn": 1})
    def needs_unicorn():
        return 1

    ref = needs_unicorn.remote()
    ready, _ = ray.wait([ref], timeout=0.5)
    assert ready == []  # stays pending: no node has a unicorn
    err = wait_for(lambda: capsys.readouterr().err, 5, "the infeasible warning")
    assert "unicorn" in err
    ray.cancel(ref)


def test_worker_output_reaches_driver_with_prefix(cluster2, capfd):
    @ray.remote
    def chatty(x):
        print("hello from the task", x)
        return os.getpid()

    pid = ray.get(chatty.remote(42))
    out = wait_for(lambda: capfd.readouterr().out, 5, "the task's output")
    assert f"(chatty pid={pid}) hello from the task 42" in out


def test_runtime_context_ids(cluster2):
    @ray.remote
    def ctx():
        c = ray.get_runtime_context()
        return c.get_job_id(), c.get_task_id(), c.get_worker_id(), c.get_node_id()

    job, task, worker, node = ray.get(ctx.remote())
    c = ray.get_runtime_context()
    assert job == c.get_job_id() == "01000000"
    assert task is not None and len(task) == 48
    assert worker != c.get_worker_id() and len(worker) == 56
    assert c.get_task_id() is None  # the driver is not a task


def test_object_ref_repr_looks_like_rays(cluster2):
    r = ray.put(1)
    assert repr(r).startswith("ObjectRef(") and len(r.hex()) == 56
    assert r.hex().endswith("0100000001000000") or r.hex()[-16:-8] == "01000000"


def test_bad_input_fails_at_call_site_and_cluster_survives(cluster2):
    import threading

    with pytest.raises(TypeError, match="Could not serialize the argument"):
        add.remote(threading.Lock(), 1)
    with pytest.raises(ValueError, match="Invalid option keyword"):
        add.options(num_cpu=1)
    with pytest.raises(ValueError, match="num_cpus"):
        add.options(num_cpus=-1)
    with pytest.raises(TypeError, match="num_cpus"):
        add.options(num_cpus="two")
    with pytest.raises(TypeError, match="cannot be called directly"):
        add(1, 2)
    with pytest.raises(ValueError, match="Invalid type of object refs"):
        ray.get(42)
    with pytest.raises(TypeError, match="ObjectRef"):
        ray.get([ray.put(1), 2])
    with pytest.raises(ValueError, match="scheduling_strategy"):
        add.options(scheduling_strategy="NEAREST")
    with pytest.raises(NotImplementedError, match="pip"):
        add.options(runtime_env={"pip": ["requests"]})
    assert ray.get(add.remote(1, 2)) == 3


def test_second_init_raises_unless_ignored(cluster2):
    with pytest.raises(RuntimeError, match="ray.init twice"):
        ray.init()
    ctx = ray.init(ignore_reinit_error=True)
    assert ctx["session_dir"] == cluster2["session_dir"]
    assert ray.is_initialized()


def test_deterministic_ids_across_runs(tmp_path):
    script = tmp_path / "ids.py"
    script.write_text(
        "import raylab as ray\n"
        "ray.init(num_cpus=1)\n"
        "@ray.remote\n"
        "def f(x):\n"
        "    return x\n"
        "a = ray.put(1)\n"
        "b = f.remote(a)\n"
        "print(a, b, ray.get(b))\n"
        "ray.shutdown()\n")
    import subprocess
    import sys
    outs = [subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                           timeout=60).stdout for _ in range(2)]
    assert outs[0] == outs[1] and "ObjectRef(" in outs[0]
    assert "00ffffffffffffffffffffffffffffffffffffff0100000001000000" in outs[0]
