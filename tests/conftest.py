"""Shared fixtures: real clusters, and checks that nothing outlives them."""
from __future__ import annotations

import gc
import os
import time

import psutil
import pytest

import raylab as ray


def session_processes(session_dir: str) -> list:
    """Live processes started for this session (their command line names its directory)."""
    name = os.path.basename(session_dir)
    out = []
    for p in psutil.process_iter(["cmdline", "status"]):
        try:
            if p.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            if any(name in part for part in (p.info["cmdline"] or [])):
                out.append(p)
        except psutil.Error:
            pass
    return out


def group_processes(pgid: int) -> list:
    """Live (not zombie) processes of a process group: a node's raylet, zygote, workers."""
    out = []
    for p in psutil.process_iter(["status"]):
        try:
            if p.info["status"] != psutil.STATUS_ZOMBIE and os.getpgid(p.pid) == pgid:
                out.append(p)
        except (psutil.Error, ProcessLookupError):
            pass
    return out


def node_processes_gone(label: str) -> bool:
    """Nothing of a node is left: its raylet has exited, and so has its process group."""
    p = ray.api.cluster().procs.procs["raylet_" + label]
    return p.poll() is not None and not group_processes(p.pid)


def driver_env() -> dict:
    """The environment for a driver script run as a subprocess: it imports the raylab
    under test (this tree), not whichever one is installed, as the cluster processes it
    starts from this directory do."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(ray.__file__)))
    return dict(os.environ, PYTHONPATH=root)


def wait_for(pred, timeout: float = 10.0, what: str = "condition"):
    """Poll real cluster state until ``pred()`` is truthy (synchronisation, not a sleep)."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.01)


def shm_segments() -> list:
    """raylab's named segments in /dev/shm. Its stores are anonymous memfds, so there must
    never be one (from this session or any other)."""
    try:
        return [n for n in os.listdir("/dev/shm") if "raylab" in n.lower()]
    except FileNotFoundError:
        return []


def arena_fds() -> list:
    """This process's file descriptors on a node's store arena (the driver maps N1's)."""
    out = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("/memfd:raylab-store"):
            out.append(target)
    return out


def assert_clean(session_dir: str, timeout: float = 5.0) -> None:
    """Nothing of the session is left: processes, sockets, spill files, shared memory."""
    wait_for(lambda: not session_processes(session_dir), timeout,
             f"processes of {session_dir} to exit")
    assert not os.path.exists(os.path.join(session_dir, "s")), "sockets left behind"
    assert not os.path.exists(os.path.join(session_dir, "spill")), "spill files left behind"
    assert not shm_segments(), f"shared memory left in /dev/shm: {shm_segments()}"
    if not ray.is_initialized():  # (a cluster running in this process maps its own arena)
        gc.collect()  # values read zero-copy map their block until collected (cycles too)
        assert not arena_fds(), f"this process still holds a store arena: {arena_fds()}"


# The runtime's behaviour must not depend on the control plane: these modules run twice,
# under Ray 2's ownership design and under the lecture's centralized one.
BOTH_CONTROL_PLANES = {"test_tasks", "test_task_errors", "test_task_scheduling", "test_objects",
                       "test_actors", "test_actor_failures", "test_failures",
                       "test_node_failures", "test_lineage"}


def pytest_generate_tests(metafunc):
    if "control_plane" in metafunc.fixturenames:
        planes = (["ownership", "centralized"]
                  if metafunc.module.__name__ in BOTH_CONTROL_PLANES else ["ownership"])
        metafunc.parametrize("control_plane", planes, indirect=True, scope="module")


@pytest.fixture(scope="module")
def control_plane(request):
    """The control plane ray.init uses by default in this module (RAYLAB_CONTROL_PLANE)."""
    saved = os.environ.get("RAYLAB_CONTROL_PLANE")
    os.environ["RAYLAB_CONTROL_PLANE"] = request.param
    yield request.param
    if saved is None:
        os.environ.pop("RAYLAB_CONTROL_PLANE", None)
    else:
        os.environ["RAYLAB_CONTROL_PLANE"] = saved


@pytest.fixture(scope="module")
def shared_cluster(control_plane):
    """The module's two-node cluster, started on first use (see ``cluster2``)."""
    shared: dict = {}
    yield shared
    if shared and ray.is_initialized() and _session_dir() == shared["ctx"]["session_dir"]:
        ray.shutdown()
    if shared:
        assert_clean(shared["ctx"]["session_dir"])


def _session_dir():
    return ray.api.cluster().session.dir if ray.is_initialized() else None


@pytest.fixture
def cluster2(shared_cluster):
    """A two-node cluster (N1 head + N2), two CPUs each, shared by a test module's tests."""
    yield two_node_cluster(shared_cluster)


def two_node_cluster(shared: dict):
    """The module's shared cluster, started again if it is gone: a ``fresh`` test in
    between shuts it down (and pytest may order tests by control plane), and a test
    finding it gone must get two nodes again, not a one-node auto-init."""
    if not shared or _session_dir() != shared["ctx"]["session_dir"]:
        if ray.is_initialized():
            ray.shutdown()
        if shared:
            assert_clean(shared["ctx"]["session_dir"])
        shared["ctx"] = ray.init(num_nodes=2, num_cpus=2)
    return shared["ctx"]


@pytest.fixture
def fresh(control_plane):
    """For tests that call ray.init themselves: always shut down and check for leftovers."""
    if ray.is_initialized():  # a module's shared cluster must not leak into this test
        ray.shutdown()
    dirs = []
    yield dirs
    ctx_dir = None
    if ray.is_initialized():
        ctx_dir = ray.api.cluster().session.dir
    ray.shutdown()
    for d in dirs + ([ctx_dir] if ctx_dir else []):
        assert_clean(d)


@ray.remote
class Gate:
    """Tasks wait here until the test has looked at the cluster (an async actor: waiting
    tasks and the test's open() run concurrently). Synchronisation, never a sleep."""

    def __init__(self):
        self.event = None

    def _ev(self):
        import asyncio
        if self.event is None:
            self.event = asyncio.Event()
        return self.event

    async def wait(self):
        await self._ev().wait()

    async def open(self):
        self._ev().set()
