"""The object store on a real cluster: shared memory per node, zero copy, transfers,
spilling, reference counting and ownership failures."""
from __future__ import annotations

import gc
import os

import numpy as np
import pytest

import raylab as ray
from raylab import chaos
from raylab import exceptions as exc
from raylab.state import cluster_snapshot
from raylab.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from conftest import session_processes, wait_for

MB = 1 << 20


def node_id(label):
    return next(n["NodeID"] for n in ray.nodes() if n["NodeName"] == label)


def on(label, fn):
    return fn.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node_id(label),
                                                                         soft=False))


def store(label):
    return cluster_snapshot().node(label)


def copies(oid_hex):
    """(node label, primary?) of every copy of an object, from the stores' contents."""
    return sorted((n.label, o.primary) for n in cluster_snapshot().nodes
                  for o in n.objects if o.object_id == oid_hex)


@ray.remote
def total(x):
    return int(np.asarray(x).sum())


@ray.remote
def make(n):
    return np.ones(n, dtype=np.uint8)


def test_small_objects_stay_in_process_large_ones_go_to_the_store(cluster2):
    small = ray.put(np.ones(1000, dtype=np.uint8))
    big = ray.put(np.ones(2 * MB, dtype=np.uint8))
    if ray.api.cluster().control_plane == "centralized":
        assert copies(small.hex()) == [("N1", True)]   # the lecture: every object is stored
    else:
        assert copies(small.hex()) == []
    assert copies(big.hex()) == [("N1", True)]
    obj = next(o for o in store("N1").objects if o.object_id == big.hex())
    assert obj.size >= 2 * MB and obj.owner == "driver"


def test_get_is_zero_copy_read_only_and_pins_while_alive(cluster2):
    a = np.arange(4 * MB, dtype=np.uint8)
    ref = ray.put(a)
    x = ray.get(ref)
    assert np.array_equal(x, a) and not x.flags.writeable
    with pytest.raises(ValueError):
        x[0] = 1
    row = lambda: next(o for o in store("N1").objects if o.object_id == ref.hex())  # noqa
    assert row().pinned
    del x
    gc.collect()
    wait_for(lambda: not row().pinned, 5, "the pin to be released with the last array")


def test_containers_of_arrays_come_back_zero_copy(cluster2):
    value = {"a": np.ones(MB, dtype=np.float32), "b": [np.zeros(MB, dtype=np.int8), 3]}
    got = ray.get(ray.put(value))
    assert got["b"][1] == 3 and got["a"].sum() == MB
    assert not got["a"].flags.writeable and not got["b"][0].flags.writeable


def test_task_returns_go_to_the_producers_node_and_transfer_on_demand(cluster2):
    b = on("N2", make).remote(3 * MB)
    ray.wait([b], fetch_local=False)
    assert copies(b.hex()) == [("N2", True)]
    assert ray.get(b).sum() == 3 * MB          # the driver on N1 pulls it
    assert copies(b.hex()) == [("N1", False), ("N2", True)]
    a = ray.put(np.ones(2 * MB, dtype=np.uint8))
    assert ray.get(on("N2", total).remote(a)) == 2 * MB   # N2 pulls a from N1
    assert copies(a.hex()) == [("N1", True), ("N2", False)]


def test_three_consumers_on_a_node_cause_one_transfer(cluster2):
    a = ray.put(np.ones(8 * MB, dtype=np.uint8))
    with ray.trace() as t:
        assert ray.get([on("N2", total).remote(a) for _ in range(3)]) == [8 * MB] * 3
    pulls = [e for e in t.steps(step="object_replicated", object=a.hex())]
    assert len(pulls) == 1 and pulls[0].node == "N2" and pulls[0].detail["from"] == "N1"


def test_store_usage_back_to_zero_after_refs_are_dropped(cluster2):
    wait_for(lambda: store("N1").store_used == 0 and store("N2").store_used == 0, 10,
             "empty stores")
    refs = [ray.put(np.ones(MB, dtype=np.uint8)) for _ in range(3)]
    b = on("N2", make).remote(2 * MB)
    ray.get(on("N2", total).remote(refs[0]))
    ray.get(b)
    assert store("N1").store_used > 0 and store("N2").store_used > 0
    del refs, b
    gc.collect()
    wait_for(lambda: store("N1").store_used == 0 and store("N2").store_used == 0, 10,
             "every copy on every node to be freed")


def test_refs_nested_in_args_and_returns_are_counted(cluster2):
    @ray.remote
    def keep(box):
        return box  # returns the ref it was given, inside a list

    a = ray.put(np.ones(MB, dtype=np.uint8))
    outer = keep.remote([a])
    a_hex = a.hex()
    del a
    gc.collect()
    inner = ray.get(outer)[0]   # still alive: the returned value holds it
    assert ray.get(inner).sum() == MB
    del inner, outer
    gc.collect()
    wait_for(lambda: copies(a_hex) == [], 10, "the object to be freed at last")


@ray.remote
class Gate:
    """Tasks wait here until the test has looked at the store."""

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


def test_seed_pattern_by_value_makes_three_copies_put_makes_one(fresh):
    ray.init(num_nodes=1, num_cpus=2)
    arr = np.full(1 << 30, 3, dtype=np.uint8)  # the seed's 1 GB array

    @ray.remote
    def hold(a, i, gate):
        ray.get(gate.wait.remote())
        return int(a[0]) + i

    def gb_copies():
        return [o for o in store("N1").objects if o.size >= 1 << 30]

    gate = Gate.remote()
    refs = [hold.remote(arr, i, gate) for i in range(3)]   # by value, three times
    assert len(gb_copies()) == 3
    ray.get(gate.open.remote())
    assert ray.get(refs) == [3, 4, 5]
    del refs
    wait_for(lambda: not gb_copies(), 10, "the by-value copies to be freed")

    gate = Gate.remote()
    ref = ray.put(arr)                                      # once, passed by ref
    refs = [hold.remote(ref, i, gate) for i in range(3)]
    assert len(gb_copies()) == 1
    ray.get(gate.open.remote())
    assert ray.get(refs) == [3, 4, 5]
    assert len(gb_copies()) == 1


def test_spill_and_restore_round_trip(fresh):
    ctx = ray.init(num_cpus=1, object_store_memory=40 * MB)
    spill_dir = os.path.join(ctx["session_dir"], "spill", "N1")
    arrays = [np.full(15 * MB, i, dtype=np.uint8) for i in range(4)]
    with ray.trace() as t:
        refs = [ray.put(a) for a in arrays]       # 60 MB into a 40 MB store
        assert os.listdir(spill_dir)              # the oldest went to disk
        for i, r in enumerate(refs):              # ... and come back transparently
            assert ray.get(r)[0] == i and ray.get(r).size == 15 * MB
    assert t.steps(step="spill_object") and t.steps(step="restore_object")
    assert any(o.spilled for o in store("N1").objects) or os.listdir(spill_dir)
    del refs, r
    gc.collect()
    wait_for(lambda: not os.listdir(spill_dir), 10, "spill files to be deleted on free")


def test_store_full_only_when_nothing_can_be_spilled(fresh):
    ray.init(num_cpus=1, object_store_memory=20 * MB)
    with pytest.raises(exc.ObjectStoreFullError, match="larger than"):
        ray.put(np.ones(30 * MB, dtype=np.uint8))
    a, b = ray.put(np.ones(9 * MB, dtype=np.uint8)), ray.put(np.ones(9 * MB, dtype=np.uint8))
    held = [ray.get(a), ray.get(b)]               # readers pin both: nothing can move
    with pytest.raises(exc.ObjectStoreFullError):
        ray.put(np.ones(9 * MB, dtype=np.uint8))
    del held
    gc.collect()
    c = ray.put(np.ones(9 * MB, dtype=np.uint8))  # now one can be spilled
    assert ray.get(c).sum() == 9 * MB


def test_owner_death_raises_owner_died_error(cluster2):
    @ray.remote
    class Owner:
        def make(self):
            self.ref = ray.put(np.ones(MB, dtype=np.uint8))
            return [self.ref]

        def pid(self):
            return os.getpid()

    o = Owner.remote()
    [ref] = ray.get(o.make.remote())
    assert ray.get(ref).sum() == MB
    chaos.kill_actor_process(o)

    def owner_death_seen():
        try:
            ray.get(ref, timeout=20)
            return None
        except exc.OwnerDiedError as e:
            return e

    err = wait_for(owner_death_seen, 10, "the driver to learn that the owner died")
    assert ref.hex() in str(err)


def test_no_memory_or_spill_file_left_after_killed_driver(tmp_path):
    import signal
    import subprocess
    import sys
    script = tmp_path / "driver.py"
    script.write_text(
        "import sys, numpy as np, raylab as ray\n"
        "ctx = ray.init(num_nodes=2, num_cpus=1, object_store_memory=30 * 2**20)\n"
        "refs = [ray.put(np.ones(12 * 2**20, dtype=np.uint8)) for _ in range(4)]\n"
        "print(ctx['session_dir'], flush=True)\n"
        "sys.stdin.read()\n")
    shm_before = set(os.listdir("/dev/shm"))
    p = subprocess.Popen([sys.executable, str(script)], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True)
    session_dir = p.stdout.readline().strip()
    assert os.listdir(os.path.join(session_dir, "spill", "N1"))
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    wait_for(lambda: not session_processes(session_dir), 5, "the cluster to exit")
    wait_for(lambda: not os.path.exists(session_dir), 5, "the session directory to go")
    assert set(os.listdir("/dev/shm")) - shm_before == set()


def test_wait_fetch_local_pulls_ready_objects_here(cluster2):
    b = on("N2", make).remote(2 * MB)
    ready, _ = ray.wait([b], fetch_local=False)
    assert ready == [b] and copies(b.hex()) == [("N2", True)]
    c = on("N2", make).remote(3 * MB)
    ready, _ = ray.wait([c])                      # fetch_local=True by default
    assert ready == [c] and ("N1", False) in copies(c.hex())
