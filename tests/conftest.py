"""Shared fixtures: real clusters, and checks that nothing outlives them."""
from __future__ import annotations

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


def assert_clean(session_dir: str, timeout: float = 5.0) -> None:
    wait_for(lambda: not session_processes(session_dir), timeout,
             f"processes of {session_dir} to exit")
    assert not os.path.exists(os.path.join(session_dir, "s")), "sockets left behind"


# The runtime's behaviour must not depend on the control plane: these modules run twice,
# under Ray 2's ownership design and under the lecture's centralized one.
BOTH_CONTROL_PLANES = {"test_tasks", "test_objects", "test_actors", "test_failures",
                       "test_lineage"}


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
