"""Failures of workers: crashes and retries (max_retries, retry_exceptions), a killed actor
process restarted. Node failures are in test_node_failures.py."""
from __future__ import annotations

import os
import signal
import sys
import time

import psutil
import pytest

import raylab as ray
from raylab import chaos
from raylab import exceptions as exc
from raylab.state import cluster_snapshot

from conftest import wait_for


def node_id(label):
    return next(n["NodeID"] for n in ray.nodes() if n["NodeName"] == label)


def counter_file(tmp_path, name):
    path = tmp_path / name
    path.write_text("0")
    return str(path)


@ray.remote(max_retries=3)
def die_until(path, fatal_times, how):
    """Dies the first ``fatal_times`` attempts (as the worker process), then succeeds."""
    n = int(open(path).read()) + 1
    open(path, "w").write(str(n))
    if n <= fatal_times:
        if how == "os._exit":
            os._exit(1)
        if how.startswith("SIG"):  # a signal, as the OOM killer or an operator sends it
            os.kill(os.getpid(), getattr(signal, how))
            time.sleep(30)  # (a signal is delivered asynchronously; the process ends here)
        sys.exit(1)
    return n


def test_worker_crash_is_retried(cluster2, tmp_path):
    path = counter_file(tmp_path, "a")
    assert ray.get(die_until.remote(path, 2, "os._exit"), timeout=30) == 3


def test_sys_exit_is_retried_until_it_succeeds(cluster2, tmp_path):
    # the seed notebook's second flaky task: sys.exit kills the worker, Ray retries
    path = counter_file(tmp_path, "b")
    assert ray.get(die_until.remote(path, 3, "sys.exit"), timeout=30) == 4


@pytest.mark.parametrize("sig", ["SIGKILL", "SIGTERM"])
def test_a_signal_inside_the_task_is_retried(cluster2, tmp_path, sig):
    path = counter_file(tmp_path, sig)
    with ray.trace() as t:
        assert ray.get(die_until.remote(path, 1, sig), timeout=30) == 2
    assert [e.detail["attempt"] for e in t.steps(step="retry_task")] == [1]


@ray.remote
def always_dies(path):
    n = int(open(path).read()) + 1
    open(path, "w").write(str(n))
    os._exit(1)


def test_default_max_retries_is_three(cluster2, tmp_path):
    # as in Ray: a task is retried 3 times by default, so it runs 4 times in all
    path = counter_file(tmp_path, "default")
    with pytest.raises(exc.WorkerCrashedError, match="attempt 4 of 4"):
        ray.get(always_dies.remote(path), timeout=60)
    assert open(path).read() == "4"


def test_retries_run_out_then_worker_crashed_error(cluster2, tmp_path):
    path = counter_file(tmp_path, "c")
    with pytest.raises(exc.WorkerCrashedError):
        ray.get(die_until.options(max_retries=1).remote(path, 5, "os._exit"), timeout=30)
    assert open(path).read() == "2"  # the first attempt and one retry


def test_application_errors_are_not_retried_by_default(cluster2, tmp_path):
    # the seed notebook's first flaky task: an exception in user code is not retried
    path = counter_file(tmp_path, "d")

    @ray.remote
    def flaky(path):
        n = int(open(path).read()) + 1
        open(path, "w").write(str(n))
        raise ValueError(f"attempt {n} failed")

    with pytest.raises(ValueError, match="attempt 1 failed"):
        ray.get(flaky.remote(path))
    assert open(path).read() == "1"


def test_retry_exceptions_true_and_by_type(cluster2, tmp_path):
    @ray.remote(max_retries=2)
    def flaky(path, exc_type):
        n = int(open(path).read()) + 1
        open(path, "w").write(str(n))
        if n < 3:
            raise exc_type(f"attempt {n}")
        return n

    p1 = counter_file(tmp_path, "e")
    assert ray.get(flaky.options(retry_exceptions=True).remote(p1, KeyError)) == 3
    p2 = counter_file(tmp_path, "f")
    assert ray.get(flaky.options(retry_exceptions=[KeyError]).remote(p2, KeyError)) == 3
    p3 = counter_file(tmp_path, "g")
    with pytest.raises(ValueError):  # not in the list: not retried
        ray.get(flaky.options(retry_exceptions=[KeyError]).remote(p3, ValueError))
    assert open(p3).read() == "1"


def test_killed_worker_running_a_task_is_detected_and_retried(cluster2, tmp_path):
    marker = tmp_path / "started"

    @ray.remote(max_retries=2)
    def long_task(marker):
        first = not os.path.exists(marker)
        open(marker, "a").write("x")
        if first:
            time.sleep(30)
        return ray.get_runtime_context().get_worker_id()

    ref = long_task.remote(str(marker))
    wait_for(lambda: marker.exists(), 10, "the task to start")
    running = [w for n in cluster_snapshot().nodes for w in n.workers
               if w.running == "long_task"]
    assert len(running) == 1
    with ray.trace() as t:
        pid = chaos.kill_worker(running[0].label)
        wait_for(lambda: gone(pid), 5, "the killed worker to exit")
        assert ray.get(ref, timeout=30) != running[0].worker_id
    names = t.names(level=None)
    assert "worker_died" in names and "retry_task" in names


def gone(pid: int) -> bool:
    """The process has exited (a zombie waiting for its reaper counts as gone)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_killed_actor_process_restarts(cluster2):
    @ray.remote(max_restarts=1)
    class Counter:
        def __init__(self):
            self.n = 0

        def incr(self):
            self.n += 1
            return self.n, os.getpid()

    a = Counter.remote()
    assert ray.get(a.incr.remote())[0] == 1
    n, pid = ray.get(a.incr.remote())
    with ray.trace() as t:
        assert chaos.kill_actor_process(a) == pid
        assert wait_for(lambda: gone(pid), 10, "the actor's process to exit")
        n, new_pid = wait_for(lambda: _try_incr(a), 30, "the actor to restart")
    assert (n, new_pid != pid) == (1, True)   # a new process: the constructor ran again
    assert [e.detail["attempt"] for e in t.steps(step="actor_restart")] == [1]
    with ray.trace() as t:                    # max_restarts=1 is used up: dead for good
        chaos.kill_actor_process(a)
        with pytest.raises(exc.RayActorError):
            wait_for(lambda: _try_incr(a, retry=False), 30, "the actor to die")
    assert t.steps(step="actor_restart") == []


def _try_incr(a, retry=True):
    try:
        return ray.get(a.incr.remote(), timeout=5)
    except exc.ActorUnavailableError:
        return None
    except exc.RayActorError:
        if retry:
            return None
        raise


@ray.remote(max_retries=1, retry_exceptions=True)
def always_raises(path):
    n = int(open(path).read()) + 1
    open(path, "w").write(str(n))
    raise ValueError(f"boom {n}")


@ray.remote
def consume(x):
    return x


def test_retry_exceptions_run_out_then_the_real_error(cluster2, tmp_path):
    # as in Ray: once retry_exceptions retries are used up, get raises the task's own
    # error (RayTaskError(ValueError)), never WorkerCrashedError, and so do its dependents
    path = counter_file(tmp_path, "h")
    with ray.trace() as t:
        with pytest.raises(ValueError, match="boom 2") as info:
            ray.get(always_raises.remote(path), timeout=30)
    assert isinstance(info.value, exc.RayTaskError)
    assert not isinstance(info.value, exc.WorkerCrashedError)
    assert open(path).read() == "2"  # the first attempt and one retry
    assert [e.detail["attempt"] for e in t.steps(step="retry_task")] == [1]
    assert not any(e.detail["error"] == "WorkerCrashedError" for e in t.steps(step="task_failed"))
    path = counter_file(tmp_path, "i")
    with pytest.raises(ValueError, match="boom 2") as info:
        ray.get(consume.remote(always_raises.remote(path)), timeout=30)
    assert isinstance(info.value, exc.RayTaskError)
    assert not isinstance(info.value, exc.WorkerCrashedError)
