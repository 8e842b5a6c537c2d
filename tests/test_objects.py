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

from conftest import Gate, session_processes, wait_for

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


def test_seed_pattern_by_value_makes_three_copies_put_makes_one(fresh):
    """The lecture's seed: a 1 GB array passed by value to 3 tasks is stored 3 times;
    put once and passed by ref, it is stored once, and 3 tasks on N2 pull it once."""
    ray.init(num_nodes=2, num_cpus=2)
    arr = np.full(1 << 30, 3, dtype=np.uint8)  # the seed's 1 GB array

    @ray.remote
    def hold(a, i, gate):
        ray.get(gate.wait.remote())
        return int(a[0]) + i

    def gb_copies():
        return sorted((n.label, o.object_id, o.primary) for n in cluster_snapshot().nodes
                      for o in n.objects if o.size >= 1 << 30)

    gate = Gate.remote()
    refs = [on("N1", hold).remote(arr, i, gate) for i in range(3)]   # by value, 3 times
    assert [(n, p) for n, _o, p in gb_copies()] == [("N1", True)] * 3
    ray.get(gate.open.remote())
    assert ray.get(refs) == [3, 4, 5]
    del refs
    wait_for(lambda: not gb_copies(), 10, "the by-value copies to be freed")

    gate = Gate.remote()
    ref = ray.put(arr)                                      # once, passed by ref
    refs = [on("N2", hold).remote(ref, i, gate) for i in range(3)]
    one = [("N1", ref.hex(), True), ("N2", ref.hex(), False)]
    wait_for(lambda: gb_copies() == one, 30, "N2 to pull its one replica")
    ray.get(gate.open.remote())
    assert ray.get(refs) == [3, 4, 5]
    assert gb_copies() == one


@ray.remote
def first(x):
    return int(x[0]), x.size


def test_spill_and_restore_round_trip(fresh):
    ctx = ray.init(num_nodes=2, num_cpus=1, object_store_memory=40 * MB)
    spill_dirs = [os.path.join(ctx["session_dir"], "spill", n) for n in ("N1", "N2")]
    arrays = [np.full(15 * MB, i, dtype=np.uint8) for i in range(4)]
    with ray.trace() as t:
        refs = [ray.put(a) for a in arrays]       # 60 MB into N1's 40 MB store
        assert os.listdir(spill_dirs[0])          # the oldest went to disk
        assert [o.spilled for o in store("N1").objects if o.object_id == refs[0].hex()] == [True]
        # a task on N2 needs the spilled one: N1 restores it and sends it
        assert ray.get(on("N2", first).remote(refs[0])) == (0, 15 * MB)
        for i, r in enumerate(refs):              # ... and the driver reads them all back
            assert ray.get(r)[0] == i and ray.get(r).size == 15 * MB
    restored = {e.ids["object"] for e in t.steps(step="restore_object", node="N1")}
    assert t.steps(step="spill_object", node="N1") and refs[0].hex() in restored
    [pull] = t.steps(step="object_replicated", object=refs[0].hex())
    assert (pull.node, pull.detail["from"]) == ("N2", "N1")
    del refs, r
    gc.collect()
    wait_for(lambda: not any(os.listdir(d) for d in spill_dirs), 10,
             "spill files to be deleted on free")
    wait_for(lambda: store("N1").store_used == 0 and store("N2").store_used == 0, 10,
             "every copy to be freed")


def test_store_full_only_when_nothing_can_be_spilled(fresh):
    ray.init(num_nodes=2, num_cpus=1, object_store_memory=20 * MB,
             _system_config={"object_store_full_timeout_ms": 1000})
    with pytest.raises(exc.ObjectStoreFullError, match="larger than"):
        ray.put(np.ones(30 * MB, dtype=np.uint8))
    a, b = ray.put(np.ones(9 * MB, dtype=np.uint8)), ray.put(np.ones(9 * MB, dtype=np.uint8))
    held = [ray.get(a), ray.get(b)]               # readers pin both: nothing can move
    with pytest.raises(exc.ObjectStoreFullError, match="pinned by readers"):
        ray.put(np.ones(9 * MB, dtype=np.uint8))
    del held
    gc.collect()
    c = ray.put(np.ones(9 * MB, dtype=np.uint8))  # now one can be spilled
    assert ray.get(c).sum() == 9 * MB

    @ray.remote
    def put_beside(refs, keep):
        held = ray.get(refs)                      # replicas of a and b fill N2's store
        if not keep:
            del held
        return int(ray.get(ray.put(np.ones(9 * MB, dtype=np.uint8))).sum())

    assert ray.get(on("N2", put_beside).remote([a, b], False)) == 9 * MB  # a replica goes
    with pytest.raises(exc.RayTaskError) as err:   # both replicas in use: nothing can go
        ray.get(on("N2", put_beside).remote([a, b], True))
    assert isinstance(err.value.cause, exc.ObjectStoreFullError)   # as in Ray: not re-typed


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


def test_get_then_drop_frees_the_replica_too(fresh):
    """The driver pulls N2's result to N1 and drops it at once: the owner may hear of the
    new replica only after it freed the object; that copy must go too (no leak)."""
    ray.init(num_nodes=2, num_cpus=1)
    for _ in range(3):
        x = ray.get(on("N2", make).remote(2 * MB))   # N1's raylet tells the owner later
        assert x.sum() == 2 * MB
        del x
        gc.collect()
        wait_for(lambda: store("N1").store_used == 0 and store("N2").store_used == 0, 10,
                 "every copy, the fresh replica on N1 included, to be freed")


def test_the_owner_records_a_new_replicas_location(cluster2):
    if ray.api.cluster().control_plane == "centralized":
        pytest.skip("in the lecture's design the GCS object table records locations")
    from raylab.tracing.steps import narrate
    b = on("N2", make).remote(2 * MB)
    ray.wait([b], fetch_local=False)
    with ray.trace() as t:
        assert ray.get(b).sum() == 2 * MB          # N1 pulls it: the owner hears of it
        [ev] = wait_for(lambda: t.steps(step="location_recorded", object=b.hex(), level=None),
                        10, "the owner to record N1's replica")
    assert ev.detail["at"] == "N1" and ev.node == "N1"
    assert narrate(ev).startswith("Driver (the owner) records that N1 now holds a copy of")


def test_a_restored_primary_evicted_again_is_spilled_not_a_replica(fresh):
    """A spilled, restored primary keeps its spill file; when room is needed again its
    block is just dropped: that is a spill (no IO), never "evicts the replica"."""
    from raylab.tracing.steps import narrate
    ray.init(num_cpus=1, object_store_memory=30 * MB)
    ten = [np.full(10 * MB, i, dtype=np.uint8) for i in range(4)]

    def pinned(ref):
        return any(o.pinned for o in store("N1").objects if o.object_id == ref.hex())

    with ray.trace() as t:
        a, b, c = (ray.put(x) for x in ten[:3])        # c spills a
        assert ray.get(a)[0] == 0                      # a comes back (b spills); its file stays
        wait_for(lambda: not pinned(a), 10, "the read of a to end")
        d = ray.put(ten[3])                            # c spills
        assert ray.get(b)[0] == 1                      # b comes back: a leaves memory again
    spills = t.steps(step="spill_object", object=a.hex(), level=None)
    assert len(spills) == 2 and spills[1].detail.get("file_kept")
    assert "the spill file still holds it" in narrate(spills[1])
    assert not [e for e in t.steps(step="evict_replica", level=None) if e.detail.get("primary")]
    [row] = [o for o in store("N1").objects if o.object_id == a.hex()]
    assert row.primary and row.spilled
    assert ray.get(a)[0] == 0 and ray.get(d)[0] == 3


def test_two_gets_share_one_mapping_and_one_pin(cluster2):
    ref = ray.put(np.arange(2 * MB, dtype=np.uint8))
    x, y = ray.get(ref), ray.get(ref)
    assert np.shares_memory(x, y)                  # the same memory, not two mappings
    row = lambda: next(o for o in store("N1").objects if o.object_id == ref.hex())  # noqa
    assert row().pinned == 1
    del x
    gc.collect()
    assert row().pinned == 1 and y[5] == 5         # y still holds it
    del y
    gc.collect()
    wait_for(lambda: row().pinned == 0, 10, "the pin to go back once both arrays are gone")
    del ref
    wait_for(lambda: store("N1").store_used == 0, 10, "the object to be freed")


def test_a_pin_kept_after_a_read_is_given_back_when_the_store_needs_it(fresh):
    """Pins outlive their last read (the next get needs no request), here for ten
    minutes: the store still gets them back at once when the object is freed, or when
    it needs the room, from the driver and from a task's worker alike."""
    ray.init(num_nodes=2, num_cpus=1, object_store_memory=30 * MB,
             _system_config={"object_store_release_delay_ms": 600_000})
    ref = ray.put(np.ones(16 * MB, dtype=np.uint8))
    assert ray.get(ref).sum() == 16 * MB and ray.get(on("N2", total).remote(ref)) == 16 * MB
    gc.collect()
    assert [o.pinned for o in store("N1").objects] == [1]   # kept: the read is over
    assert [o.pinned for o in store("N2").objects] == [1]   # the worker on N2 keeps one too
    more = ray.put(np.full(16 * MB, 2, dtype=np.uint8))     # only ref can make room
    assert [o.spilled for o in store("N1").objects if o.object_id == ref.hex()] == [True]
    assert ray.get(ref)[0] == 1 and ray.get(more)[0] == 2
    del ref, more
    gc.collect()
    wait_for(lambda: store("N1").store_used == 0 and store("N2").store_used == 0, 10,
             "kept pins to be given back as the objects are freed")


def test_replicas_are_evicted_before_primaries_are_spilled(fresh):
    """N2 holds its own task's primary (the oldest object there) and two replicas its
    tasks just read (their worker still keeps the pins): room for a new object on N2
    comes from the least recently used replica, and the primary stays in memory."""
    ray.init(num_nodes=2, num_cpus=1, object_store_memory=30 * MB)
    p = on("N2", make).remote(9 * MB)
    ray.wait([p], fetch_local=False)
    a, b = ray.put(np.ones(9 * MB, dtype=np.uint8)), ray.put(np.ones(9 * MB, dtype=np.uint8))
    assert ray.get([on("N2", total).remote(a), on("N2", total).remote(b)]) == [9 * MB] * 2
    with ray.trace() as t:
        q = on("N2", make).remote(9 * MB)                  # needs room on N2
        ray.wait([q], fetch_local=False)
    evicted = [e.ids.get("object") for e in t.steps(step="evict_replica", level=None)]
    assert evicted == [a.hex()] and not t.steps(step="spill_object", level=None, node="N2")
    assert copies(p.hex()) == [("N2", True)] and copies(a.hex()) == [("N1", True)]
    assert not any(o.spilled for o in store("N2").objects)
    assert ray.get(on("N2", total).remote(a)) == 9 * MB    # pulled again when needed
