"""Tasks on a real two-node cluster: the foundation issue, point by point."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

import raylab as ray
from raylab import exceptions as exc

from conftest import driver_env, wait_for


@ray.remote
def add(a, b):
    return a + b


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


def test_worker_output_reaches_driver_with_prefix(cluster2, capfd):
    @ray.remote
    def chatty(x):
        print("hello from the task", x)
        return os.getpid()

    pid = ray.get(chatty.remote(42))
    # the worker sends its output ahead of the reply, on the same connection: by the time
    # get returns, the driver has printed it
    assert f"(chatty pid={pid}) hello from the task 42" in capfd.readouterr().out


def test_output_printed_before_an_immediate_shutdown_is_not_lost():
    script = (
        "import raylab as ray\n"
        "@ray.remote\n"
        "def f(x):\n"
        "    print('line', x)\n"
        "    return x\n"
        "for i in range(3):\n"
        "    ray.init(num_nodes=2, num_cpus=1)\n"
        "    ray.get(f.remote(i))\n"
        "    ray.shutdown()\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120, env=driver_env())
    assert done.returncode == 0, done.stderr
    lines = [line.split(") ", 1)[-1] for line in done.stdout.splitlines()]
    assert lines == ["line 0", "line 1", "line 2"], done.stdout


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


def test_ids_are_unique_across_driver_threads_and_concurrent_calls(cluster2):
    """Every driver thread runs as the driver's task, so they share its id counters; an
    async actor's concurrent calls each derive ids from their own task."""
    import asyncio
    import threading

    made = {}

    def submit(k):
        made[k] = [(add.remote(k, i), ray.put((k, i))) for i in range(20)]

    threads = [threading.Thread(target=submit, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    refs = [r for pairs in made.values() for pair in pairs for r in pair]
    assert len({r.hex() for r in refs}) == len(refs) == 160
    for k, pairs in made.items():
        assert ray.get([a for a, _ in pairs]) == [k + i for i in range(20)]
        assert ray.get([p for _, p in pairs]) == [(k, i) for i in range(20)]

    @ray.remote
    class Interleaved:
        async def run(self, delay):
            before = ray.get_runtime_context().get_task_id()
            await asyncio.sleep(delay)  # the other calls run in between
            child = add.remote(1, 1)
            return before, ray.get_runtime_context().get_task_id(), child.hex()

    a = Interleaved.remote()
    out = ray.get([a.run.remote(0.2 - 0.04 * i) for i in range(5)])
    assert all(before == after for before, after, _ in out)
    assert len({before for before, _, _ in out}) == 5
    assert len({child for _, _, child in out}) == 5


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
    from conftest import driver_env
    outs = [subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                           timeout=60, env=driver_env()).stdout for _ in range(2)]
    assert outs[0] == outs[1] and "ObjectRef(" in outs[0]
    assert "00ffffffffffffffffffffffffffffffffffffff0100000001000000" in outs[0]


# -- recursive cancel ----------------------------------------------------------------------
@ray.remote
def sleep_child():
    time.sleep(100)


@ray.remote
def waits_on_child():
    return ray.get(sleep_child.remote())


def _tasks(t, step: str) -> set:
    return {e.ids.get("task") for e in t.steps(step=step, level=None)}


def _idle_cpus() -> float:
    """The cluster's free CPUs once it has settled (a task an earlier test cancelled may
    still be unwinding on a busy machine: then start from what is free)."""
    try:
        wait_for(lambda: ray.available_resources().get("CPU") == 4, 10, "an idle cluster")
    except AssertionError:
        pass
    return ray.available_resources().get("CPU", 0)


def test_cancel_is_recursive_and_frees_the_childs_cpu(cluster2):
    before = _idle_cpus()
    with ray.trace() as t:
        ref = waits_on_child.remote()
        # the parent lends its CPU while it waits in ray.get: one CPU in use, the child's
        wait_for(lambda: len(_tasks(t, "execute_task")) == 2, 10, "the child to start")
        ray.cancel(ref)
        with pytest.raises(exc.TaskCancelledError):
            ray.get(ref, timeout=20)
        wait_for(lambda: ray.available_resources().get("CPU", 0) >= before, 10,
                 "the child's CPU to come back (the child was cancelled too)")
        # the parent's worker, then the child's
        wait_for(lambda: len(_tasks(t, "cancel_task")) == 2, 10, "both cancels traced")


@ray.remote
def short_child():
    time.sleep(1.0)
    return "done"


@ray.remote
def waits_on_short_child():
    return ray.get(short_child.remote())


def test_cancel_non_recursive_leaves_the_child_running(cluster2):
    with ray.trace() as t:
        ref = waits_on_short_child.remote()
        wait_for(lambda: len(_tasks(t, "execute_task")) == 2, 10, "the child to start")
        ray.cancel(ref, recursive=False)
        with pytest.raises(exc.TaskCancelledError):
            ray.get(ref, timeout=20)
        parent = wait_for(lambda: t.steps(step="cancel_task", level=None), 10,
                          "the parent's worker to trace the cancel")[0].ids["task"]
        child = (_tasks(t, "execute_task") - {parent}).pop()
        # the child was left alone: it runs to its end and returns
        wait_for(lambda: t.steps(step="task_returned", task=child, level=None), 10,
                 "the child to finish")
    cancels = t.steps(step="cancel_task", level=None)
    assert len(cancels) == 1 and cancels[0].detail["recursive"] is False


# -- ray.wait edge cases --------------------------------------------------------------------
def test_wait_on_nothing_and_num_returns_zero(cluster2):
    assert ray.wait([]) == ([], [])
    assert ray.wait([], num_returns=0) == ([], [])
    r = ray.put(1)
    with pytest.raises(ValueError, match="Invalid number of objects to return 0"):
        ray.wait([r], num_returns=0)
    with pytest.raises(ValueError, match="Invalid number of objects to return -1"):
        ray.wait([r], num_returns=-1)


# -- bad input at the call site ---------------------------------------------------------------
def one_arg(x):
    return x


def test_wrong_arguments_fail_at_remote(cluster2):
    f = ray.remote(one_arg)
    with pytest.raises(TypeError, match="too many positional arguments"):
        f.remote(1, 2, 3)
    with pytest.raises(TypeError, match="missing a required argument: 'x'"):
        f.remote()
    with pytest.raises(TypeError, match="unexpected keyword argument 'y'"):
        f.remote(1, y=2)
    with pytest.raises(TypeError, match="too many positional arguments"):
        f.options(name="renamed").remote(1, 2)
    assert ray.get(f.remote(x=5)) == 5
    assert ray.get(add.remote(1, b=2)) == 3

    @ray.remote
    def flexible(a, *rest, key=None, **more):
        return a, rest, key, more

    assert ray.get(flexible.remote(1, 2, 3, key=4, z=5)) == (1, (2, 3), 4, {"z": 5})
    with pytest.raises(TypeError, match="missing a required argument: 'a'"):
        flexible.remote(key=1)


def test_generators_async_functions_and_placement_groups_are_refused(cluster2):
    def gen():
        yield 1

    with pytest.raises(NotImplementedError, match="generator"):
        ray.remote(gen)

    async def coro():
        return 1

    with pytest.raises(ValueError, match="'async def' should not be used for remote tasks"):
        ray.remote(coro)
    with pytest.raises(NotImplementedError, match="placement group"):
        add.options(placement_group=object())
    with pytest.raises(NotImplementedError, match="placement group"):
        ray.remote(placement_group_bundle_index=0)(one_arg)
    assert ray.get(add.options(placement_group=None).remote(1, 2)) == 3


# -- logs and reprs -----------------------------------------------------------------------
def test_worker_stderr_reaches_driver_stderr_with_prefix(cluster2, capfd):
    import sys as _sys

    @ray.remote
    def complains(x):
        print("trouble with", x, file=_sys.stderr)
        return os.getpid()

    pid = ray.get(complains.remote(7))
    err = wait_for(lambda: capfd.readouterr().err, 5, "the task's stderr")
    assert f"(complains pid={pid}) trouble with 7" in err.splitlines()


def test_object_ref_repr_and_ids_are_rays(cluster2):
    import re

    @ray.remote(num_returns=2)
    def two():
        return ray.get_runtime_context().get_task_id(), 2

    a, b = two.remote()
    task_id = ray.get(a)
    for ref, index in ((a, "01000000"), (b, "02000000")):  # task id + return index (LE)
        assert re.fullmatch(r"ObjectRef\([0-9a-f]{56}\)", repr(ref))
        assert repr(ref) == f"ObjectRef({ref.hex()})" and str(ref) == repr(ref)
        assert ref.hex() == task_id + index
    assert ray.get(b) == 2
    p = ray.put(1)
    assert re.fullmatch(r"ObjectRef\([0-9a-f]{56}\)", repr(p))
    assert p.hex()[32:48] == "ffffffff01000000"  # made by the driver's task of job 01000000
