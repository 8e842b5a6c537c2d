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


@pytest.fixture(scope="module")
def cluster2():
    """A two-node cluster (N1 head + N2), two CPUs each, shared by a test module."""
    ctx = ray.init(num_nodes=2, num_cpus=2)
    yield ctx
    ray.shutdown()
    assert_clean(ctx["session_dir"])


@pytest.fixture
def fresh():
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
