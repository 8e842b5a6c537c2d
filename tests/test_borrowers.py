"""Reference counting across processes on a real cluster (Ray's ownership design): an
object lives while any ref to it does, in the driver, in a worker, inside another
object or in a pending task's arguments, and is freed everywhere after; an owner
that dies takes its objects with it (OwnerDiedError)."""
from __future__ import annotations

import gc
import os
import signal

import numpy as np
import pytest

import raylab as ray
from raylab import exceptions as exc
from raylab.state import cluster_snapshot
from raylab.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from conftest import Gate, wait_for

MB = 1 << 20


def on(label, fn):
    nid = next(n["NodeID"] for n in ray.nodes() if n["NodeName"] == label)
    return fn.options(scheduling_strategy=NodeAffinitySchedulingStrategy(nid, soft=False))


def held(oid_hex) -> bool:
    """Is any copy of the object in any node's store?"""
    return any(o.object_id == oid_hex for n in cluster_snapshot().nodes for o in n.objects)


def freed(oid_hex, what):
    gc.collect()
    wait_for(lambda: not held(oid_hex), 10, f"{what} to be freed everywhere")


@ray.remote
def total(x):
    return int(np.asarray(x).sum())


@ray.remote
class Keeper:
    def keep(self, box):
        self.ref = box[0]             # a borrowed ref, kept past the call

    def total(self):
        return int(ray.get(self.ref).sum())

    def drop(self):
        del self.ref


def test_a_ref_inside_a_put_object_lives_as_long_as_it(cluster2):
    inner = ray.put(np.ones(MB, np.uint8))
    outer = ray.put([inner])
    inner_hex = inner.hex()
    del inner
    gc.collect()
    assert held(inner_hex)                        # the outer object holds it
    assert ray.get(on("N2", total).remote(ray.get(outer)[0])) == MB
    del outer
    freed(inner_hex, "the inner object, once the outer one is gone")


def test_an_actor_keeping_a_borrowed_ref_keeps_the_object(cluster2):
    k = on("N2", Keeper).remote()
    ref = ray.put(np.ones(MB, np.uint8))
    ray.get(k.keep.remote([ref]))
    ref_hex = ref.hex()
    del ref
    gc.collect()
    assert held(ref_hex) and ray.get(k.total.remote()) == MB   # the borrower's ref counts
    ray.get(k.drop.remote())
    freed(ref_hex, "the object, once the actor dropped its borrowed ref")


def test_a_pending_tasks_nested_argument_keeps_the_object(cluster2):
    @ray.remote
    def later(gate, box):
        ray.get(gate.wait.remote())
        return int(ray.get(box[0]).sum())

    gate = Gate.remote()
    ref = ray.put(np.ones(MB, np.uint8))
    result = on("N2", later).remote(gate, [ref])  # waits at the gate, ref nested inside
    ref_hex = ref.hex()
    del ref
    gc.collect()
    assert held(ref_hex)                          # the pending task's argument holds it
    ray.get(gate.open.remote())
    assert ray.get(result) == MB
    del result
    freed(ref_hex, "the object, once the task that borrowed it is done")


def test_a_dead_task_worker_takes_the_objects_it_owns(cluster2):
    if ray.api.cluster().control_plane == "centralized":
        pytest.skip("ownership failures are Ray 2's design")

    @ray.remote(max_retries=0)
    def make():
        return [ray.put(np.ones(MB, np.uint8))], os.getpid()   # this worker owns it

    [ref], pid = ray.get(on("N2", make).remote())
    assert ray.get(ref).sum() == MB
    os.kill(pid, signal.SIGKILL)                  # the owner dies (a process we started)

    def owner_died():
        try:
            ray.get(ref, timeout=20)
        except exc.OwnerDiedError as e:
            return e
        return None

    err = wait_for(owner_died, 20, "the driver to learn that the owner died")
    assert ref.hex() in str(err)
    wait_for(lambda: not held(ref.hex()), 10, "the raylets to free the dead owner's objects")
