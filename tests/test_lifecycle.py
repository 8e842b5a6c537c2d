"""Clean exits: shutdown, a killed driver, adding and removing nodes."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

import raylab as ray
from raylab.cluster_utils import Cluster

from conftest import assert_clean, driver_env, session_processes, wait_for


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
                         stdout=subprocess.PIPE, text=True, env=driver_env())
    session_dir = p.stdout.readline().strip()
    assert session_dir and session_processes(session_dir)
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    wait_for(lambda: not session_processes(session_dir), 5,
             "every cluster process to exit after the driver was killed")


def test_cluster_utils_add_and_remove_nodes(fresh):
    # Ray's idiom: the Cluster stands on its own, the driver connects to its address
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    try:
        assert not ray.is_initialized()
        ray.init(address=cluster.address)
        fresh.append(ray.api.cluster().session.dir)
        n2 = cluster.add_node(num_cpus=1, resources={"special": 2})
        assert n2.label == "N2"
        assert ray.cluster_resources().get("special") == 2
        assert [n.label for n in cluster.list_all_nodes()] == ["N1", "N2"]

        @ray.remote(resources={"special": 1})
        def where():
            return ray.get_runtime_context().get_node_id()

        assert ray.get(where.remote()) == n2.node_id
        cluster.remove_node(n2)
        assert [n.label for n in cluster.list_all_nodes()] == ["N1"]
        alive = {n["NodeName"]: n["Alive"] for n in ray.nodes()}
        assert alive == {"N1": True, "N2": False}
        wait_for(lambda: "special" not in ray.cluster_resources(), 5, "N2's resources to go")
        n3 = cluster.add_node(num_cpus=1, resources={"special": 1})
        assert n3.label == "N3"
        cluster.wait_for_nodes()
        assert ray.get(where.remote()) == n3.node_id
        assert [n["NodeName"] for n in ray.nodes()] == ["N1", "N2", "N3"]  # same order every run
    finally:
        cluster.shutdown()
    assert not ray.is_initialized()


def test_cluster_outlives_its_driver_and_takes_a_new_one(fresh):
    with pytest.raises(RuntimeError, match="uninitialized"):
        Cluster(connect=True)
    cluster = Cluster(initialize_head=True, connect=True, head_node_args={"num_cpus": 2})
    try:
        d = ray.api.cluster().session.dir
        fresh.append(d)
        assert ray.is_initialized() and ray.cluster_resources()["CPU"] == 2
        ray.shutdown()  # the driver leaves; the cluster stays up, as in Ray
        assert not ray.is_initialized()
        assert session_processes(d)
        with pytest.raises(ValueError, match="num_cpus must not be provided"):
            ray.init(address=cluster.address, num_cpus=4)
        n2 = cluster.add_node(num_cpus=1)  # no driver connected: the GCS is asked directly
        cluster.wait_for_nodes()
        cluster.connect()
        assert ray.cluster_resources()["CPU"] == 3
        assert ray.get_runtime_context().get_job_id() == "02000000"  # a second job

        @ray.remote
        def double(x):
            return 2 * x

        assert ray.get([double.remote(i) for i in range(4)]) == [0, 2, 4, 6]
        assert n2 in cluster.list_all_nodes()
    finally:
        cluster.shutdown()
    assert not ray.is_initialized()
    assert_clean(d)


def test_bad_init_starts_nothing_and_a_good_one_follows(fresh):
    import psutil
    me = psutil.Process()
    from raylab.session import _base_dir
    sessions = set(os.listdir(_base_dir()))
    before = {p.pid for p in me.children(recursive=True)}
    bad = [
        (NotImplementedError, "pip", dict(runtime_env={"pip": ["requests"]})),
        (TypeError, "runtime_env", dict(runtime_env="env")),
        (ValueError, "num_cpus", dict(num_cpus=-1)),
        (TypeError, "num_gpus", dict(num_gpus="one")),
        (ValueError, "unknown system config", dict(_system_config={"no_such_knob": 1})),
        (ValueError, "control_plane", dict(control_plane="anarchy")),
        (ValueError, "object_store_memory", dict(object_store_memory=10)),
        (ValueError, "num_nodes", dict(num_nodes=0)),
        (TypeError, "namespace", dict(namespace=5)),
        (ValueError, "resources", dict(resources={"CPU": 2})),
        (NotImplementedError, "address", dict(address="10.0.0.1:6379")),
        (TypeError, "unexpected keyword", dict(num_cpu=2)),
    ]
    for error, match, kwargs in bad:
        with pytest.raises(error, match=match):
            ray.init(**kwargs)
        assert not ray.is_initialized(), kwargs
    assert {p.pid for p in me.children(recursive=True)} - before == set()
    assert set(os.listdir(_base_dir())) == sessions  # not even a session directory
    ctx = ray.init(num_cpus=1)  # and the next init works
    fresh.append(ctx["session_dir"])

    @ray.remote
    def one():
        return 1

    assert ray.get(one.remote()) == 1


def test_shutdown_with_pending_tasks_prints_nothing(tmp_path):
    script = tmp_path / "pending.py"
    script.write_text(
        "import time, raylab as ray\n"
        "ray.init(num_cpus=2)\n"
        "@ray.remote\n"
        "def nap():\n"
        "    time.sleep(5)\n"
        "refs = [nap.remote() for _ in range(3)]\n"
        "time.sleep(0.5)\n"
        "ray.shutdown()\n"
        "print('done')\n")
    env = driver_env()
    for _ in range(2):  # the noise came at interpreter exit, most runs but not all
        out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                             timeout=60, env=env)
        assert out.returncode == 0 and out.stdout == "done\n"
        assert out.stderr == "", out.stderr


def test_init_returns_a_context_that_shows_the_cluster(fresh):
    ctx = ray.init(num_nodes=2, num_cpus=1)
    assert ctx["nodes"] == ["N1", "N2"] and ctx.control_plane in ("ownership", "centralized")
    html = ctx._repr_html_()
    assert html.count("<td>ALIVE</td>") == 2 and "<td>N2</td>" in html
    with ctx:  # as Ray's context: leaving the block shuts the cluster down
        assert ray.is_initialized()
    assert not ray.is_initialized() and "shut down" in ctx._repr_html_()


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


def test_gpu_ids_and_task_name_inside_tasks_and_actors(fresh):
    import asyncio
    ray.init(num_cpus=4, num_gpus=2)

    @ray.remote(num_cpus=0)
    class Barrier:
        def __init__(self, n):
            self.n, self.event = n, asyncio.Event()

        async def arrive(self):
            self.n -= 1
            if self.n == 0:
                self.event.set()
            await self.event.wait()

    @ray.remote(num_gpus=1)
    def gpu_task(barrier):
        ids = ray.get_gpu_ids()
        ray.get(barrier.arrive.remote())  # both run at once: they hold different GPUs
        ctx = ray.get_runtime_context()
        return ids, os.environ.get("CUDA_VISIBLE_DEVICES"), ctx.get_accelerator_ids(), \
            ctx.get_task_name()

    @ray.remote
    def cpu_task():
        return ray.get_gpu_ids(), os.environ.get("CUDA_VISIBLE_DEVICES")

    b = Barrier.remote(2)
    out = ray.get([gpu_task.remote(b), gpu_task.options(name="second").remote(b)])
    assert sorted(ids for ids, *_ in out) == [[0], [1]]
    for ids, visible, acc, _name in out:
        assert visible == str(ids[0]) and acc == {"GPU": [str(ids[0])]}
    assert [name for *_, name in out] == ["gpu_task", "second"]
    assert ray.get(cpu_task.remote()) == ([], None)  # nothing left over from a GPU task

    @ray.remote(num_gpus=0.5)
    def half():
        return ray.get_gpu_ids()

    assert ray.get(half.remote()) == [0]

    @ray.remote(num_gpus=1)
    class OnGpu:
        def ids(self):
            return ray.get_gpu_ids(), ray.get_runtime_context().get_task_name()

    actor = OnGpu.remote()
    ids, name = ray.get(actor.ids.remote())
    assert ids in ([0], [1]) and name.endswith("ids")
    ctx = ray.get_runtime_context()
    assert ray.get_gpu_ids() == [] and ctx.get_task_name() is None  # the driver


EVENT_LOOP_SCRIPT = """
import asyncio, raylab as ray
from raylab.core_worker import current
ray.init(num_nodes=2, num_cpus=1)

def loop_kind():
    return type(current.CORE_WORKER.loop).__module__.split(".")[0]

@ray.remote
def add(a, b):
    return a + b, loop_kind()

@ray.remote
class Sleeper:
    async def nap(self):
        await asyncio.sleep(0.01)
        return type(asyncio.get_running_loop()).__module__.split(".")[0]

total, worker_loop = ray.get(add.remote(ray.put(1), 2))
print(total, loop_kind(), worker_loop, ray.get(Sleeper.remote().nap.remote()))
ray.shutdown()
"""


@pytest.mark.parametrize("choice, expected", [("", "uvloop"), ("asyncio", "asyncio")])
def test_the_cluster_runs_on_the_chosen_event_loop(tmp_path, choice, expected):
    """uvloop by default; RAYLAB_EVENT_LOOP=asyncio runs the same cluster on asyncio's own
    loop (the one a student steps through in a debugger), end to end."""
    pytest.importorskip("uvloop")
    script = tmp_path / "loops.py"
    script.write_text(EVENT_LOOP_SCRIPT)
    env = dict(driver_env(), RAYLAB_EVENT_LOOP=choice)
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         timeout=120, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["3", expected, expected, expected]
