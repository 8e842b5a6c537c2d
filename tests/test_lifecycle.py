"""Clean exits: shutdown, a killed driver, adding and removing nodes."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import raylab as ray
from raylab.cluster_utils import Cluster

from conftest import assert_clean, session_processes, wait_for


def shm_entries() -> set:
    return set(os.listdir("/dev/shm"))


def test_shutdown_is_fast_and_leaves_nothing(fresh):
    before = shm_entries()
    ctx = ray.init(num_nodes=2, num_cpus=2)
    d = ctx["session_dir"]

    @ray.remote
    def f(x):
        return x * 2

    assert ray.get([f.remote(i) for i in range(20)]) == [i * 2 for i in range(20)]
    assert len(session_processes(d)) >= 5  # GCS, 2 raylets, zygotes, workers
    t0 = time.monotonic()
    ray.shutdown()
    assert time.monotonic() - t0 < 1.0
    assert not ray.is_initialized()
    assert_clean(d, timeout=2)
    assert not os.path.exists(d)
    assert shm_entries() - before == set()


def test_killed_driver_takes_the_cluster_down(tmp_path):
    script = tmp_path / "driver.py"
    script.write_text(
        "import sys, raylab as ray\n"
        "ctx = ray.init(num_nodes=2, num_cpus=1)\n"
        "@ray.remote\n"
        "def f():\n"
        "    return 1\n"
        "ray.get(f.remote())\n"
        "print(ctx['session_dir'], flush=True)\n"
        "sys.stdin.read()\n")
    p = subprocess.Popen([sys.executable, str(script)], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True)
    session_dir = p.stdout.readline().strip()
    assert session_dir and session_processes(session_dir)
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    wait_for(lambda: not session_processes(session_dir), 5,
             "every cluster process to exit after the driver was killed")


def test_cluster_utils_add_and_remove_nodes(fresh):
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    n2 = cluster.add_node(num_cpus=1, resources={"special": 2})
    assert n2.label == "N2"
    assert ray.cluster_resources().get("special") == 2

    @ray.remote(resources={"special": 1})
    def where():
        return ray.get_runtime_context().get_node_id()

    assert ray.get(where.remote()) == n2.node_id
    cluster.remove_node(n2)
    alive = {n["NodeName"]: n["Alive"] for n in ray.nodes()}
    assert alive == {"N1": True, "N2": False}
    wait_for(lambda: "special" not in ray.cluster_resources(), 5, "N2's resources to go")
    n3 = cluster.add_node(num_cpus=1, resources={"special": 1})
    assert n3.label == "N3"
    assert ray.get(where.remote()) == n3.node_id
    assert [n["NodeName"] for n in ray.nodes()] == ["N1", "N2", "N3"]  # same order every run
    cluster.shutdown()


def test_session_dir_is_private(fresh):
    ctx = ray.init(num_cpus=1)
    mode = os.stat(ctx["session_dir"]).st_mode & 0o777
    assert mode == 0o700
    token = os.path.join(ctx["session_dir"], "token")
    assert os.stat(token).st_mode & 0o777 == 0o600


def test_stranger_without_token_is_dropped(fresh):
    import socket as sk
    ctx = ray.init(num_cpus=1)
    path = os.path.join(ctx["session_dir"], "s", "gcs.sock")
    s = sk.socket(sk.AF_UNIX)
    s.connect(path)
    import pickle
    s.sendall(b"x" * 32 + pickle.dumps(("evil",)))
    s.settimeout(5)
    assert s.recv(100) == b""  # the GCS hung up without unpickling anything
    s.close()

    @ray.remote
    def ok():
        return "still fine"

    assert ray.get(ok.remote()) == "still fine"


def test_killed_kernel_leaves_nothing_behind():
    """A Jupyter kernel running a cluster is killed (as a restart does when the kernel
    hangs): every cluster process exits and no shared memory or spill file remains."""
    from jupyter_client.manager import start_new_kernel
    km, kc = start_new_kernel(kernel_name="python3")
    try:
        code = ("import raylab as ray, numpy as np\n"
                "ctx = ray.init(num_nodes=2, num_cpus=1, object_store_memory=20 * 2**20)\n"
                "refs = [ray.put(np.ones(8 * 2**20, dtype=np.uint8)) for _ in range(3)]\n"
                "print(ctx['session_dir'])")
        out: list = []
        reply = kc.execute_interactive(code, timeout=60, output_hook=_collect(out))
        assert reply["content"]["status"] == "ok"
        session_dir = "".join(out).strip()
        assert session_processes(session_dir)
        os.kill(km.provisioner.pid, signal.SIGKILL)
        wait_for(lambda: not session_processes(session_dir), 10,
                 "the cluster to exit after its kernel was killed")
        wait_for(lambda: not os.path.exists(session_dir), 10, "the session to be removed")
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def _collect(out: list):
    def hook(msg):
        if msg["msg_type"] == "stream" and msg["content"]["name"] == "stdout":
            out.append(msg["content"]["text"])
    return hook
