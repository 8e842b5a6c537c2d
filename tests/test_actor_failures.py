"""Actors that fail: constructor errors, crashes and restarts, ray.kill, retried calls."""
from __future__ import annotations

import os
import time

import pytest

import raylab as ray
from raylab import exceptions as exc
from raylab.state import cluster_snapshot

from actors_common import Counter, actor_row, marker_path, process_gone, state_of
from conftest import wait_for


# -- errors and crashes -----------------------------------------------------------------------
def test_constructor_error_fails_every_call_with_the_cause(cluster2):
    @ray.remote
    class Broken:
        def __init__(self):
            raise ZeroDivisionError("bad constructor")

        def f(self):
            return 1

    b = Broken.remote()
    for _ in range(2):
        with pytest.raises(exc.RayActorError) as info:
            ray.get(b.f.remote(), timeout=10)
        assert "bad constructor" in str(info.value)
        assert isinstance(info.value.cause, ZeroDivisionError)


def test_method_error_is_a_task_error_and_the_actor_lives_on(cluster2):
    c = Counter.remote()
    with pytest.raises(ValueError, match="method failed"):
        ray.get(c.boom.remote())
    assert ray.get(c.increment.remote()) == 1


# no_restart=False with max_restarts=0: nothing to restart, it stays dead all the same
@pytest.mark.parametrize("no_restart", [True, False], ids=["no_restart", "no_budget"])
def test_kill_fails_later_calls_and_records_the_kill(cluster2, no_restart):
    c = Counter.remote()
    ray.get(c.increment.remote())
    ray.kill(c, no_restart=no_restart)
    with pytest.raises(exc.RayActorError, match="ray.kill"):
        ray.get(c.increment.remote(), timeout=10)
    row = actor_row(c._actor_id.hex())
    assert row.state == "DEAD" and "ray.kill" in row.death_cause


def test_restart_after_os_exit_reruns_constructor(cluster2):
    c = Counter.options(max_restarts=1).remote(100)
    assert ray.get(c.increment.remote()) == 101
    _, pid1 = ray.get(c.where.remote())
    with pytest.raises(exc.RayActorError):
        ray.get(c.crash.remote(), timeout=10)  # no max_task_retries: the call fails
    assert ray.get(c.increment.remote(), timeout=20) == 101  # state reset by the constructor
    _, pid2 = ray.get(c.where.remote())
    assert pid1 != pid2
    assert actor_row(c._actor_id.hex()).restarts == 1
    c.crash.remote()
    with pytest.raises(exc.RayActorError):  # out of restarts: dead for good
        ray.get(c.increment.remote(), timeout=20)


def test_max_task_retries_retries_the_interrupted_call(cluster2):
    @ray.remote(max_restarts=1, max_task_retries=1)
    class Flaky:
        def __init__(self):
            self.marker = "/tmp/raylab_flaky_%d" % os.getpid()

        def once_crash(self, path):
            if not os.path.exists(path):
                open(path, "w").close()
                os._exit(1)
            return "survived"

    path = f"/tmp/raylab_test_flaky_{os.getpid()}"
    if os.path.exists(path):
        os.remove(path)
    f = Flaky.remote()
    try:
        assert ray.get(f.once_crash.remote(path), timeout=30) == "survived"
    finally:
        os.remove(path)


# -- ray.kill ends the process at once ------------------------------------------------------
@ray.remote
class Busy:
    def pid(self):
        return os.getpid()

    def spin(self, marker):
        open(marker, "w").close()
        while True:
            time.sleep(0.1)

    def slow(self, marker):
        open(marker, "w").close()
        time.sleep(2)
        return "finished"


def test_kill_interrupts_the_running_call(cluster2):
    wait_for(lambda: ray.available_resources().get("CPU") == 4, 5, "an idle cluster")
    b = Busy.options(num_cpus=1).remote()
    pid = ray.get(b.pid.remote())
    marker = marker_path("spin")
    r = b.spin.remote(marker)
    try:
        wait_for(lambda: os.path.exists(marker), 10, "the call to start")
        ray.kill(b)
        with pytest.raises(exc.RayActorError, match="ray.kill"):
            ray.get(r, timeout=5)
    finally:
        if os.path.exists(marker):
            os.remove(marker)
    wait_for(lambda: process_gone(pid), 5, "the actor's process to end")
    assert actor_row(b._actor_id.hex()).state == "DEAD"
    wait_for(lambda: ray.available_resources().get("CPU") == 4, 5, "its CPU to come back")


def test_kill_fails_the_calls_queued_behind_the_running_one(cluster2):
    b = Busy.remote()
    ray.get(b.pid.remote())
    marker = marker_path("slow")
    refs = [b.slow.remote(marker) for _ in range(3)]
    try:
        wait_for(lambda: os.path.exists(marker), 10, "the first call to start")
        ray.kill(b)
        for r in refs:  # none of them finishes: the process is gone
            with pytest.raises(exc.RayActorError):
                ray.get(r, timeout=5)
    finally:
        if os.path.exists(marker):
            os.remove(marker)


# -- failures while creating the actor ----------------------------------------------------------
def test_failed_constructor_argument_fails_every_call(cluster2):
    @ray.remote
    def bad():
        raise KeyError("no such key")

    @ray.remote
    class Takes:
        def __init__(self, x):
            self.x = x

        def f(self):
            return self.x

    t = Takes.remote(bad.remote())
    for _ in range(2):
        with pytest.raises(exc.ActorDiedError) as info:
            ray.get(t.f.remote(), timeout=20)
        assert "input arguments for this task could not be computed" in str(info.value)
        assert "no such key" in str(info.value)
        assert isinstance(info.value.cause, exc.RayTaskError)
        assert isinstance(info.value.cause, KeyError)
    row = actor_row(t._actor_id.hex())
    assert row.state == "DEAD" and "creation task" in row.death_cause and row.restarts == 0


def _refuse_outside(pid):
    if os.getpid() != pid:
        raise RuntimeError("this class cannot be loaded outside the driver")
    return Poison()


class Poison:
    def __reduce__(self):
        return (_refuse_outside, (os.getpid(),))


def test_class_that_cannot_be_loaded_fails_every_call(cluster2):
    @ray.remote(max_restarts=1)
    class Unloadable:
        poison = Poison()

        def f(self):
            return 1

    u = Unloadable.remote()
    for _ in range(2):
        with pytest.raises(exc.ActorDiedError, match="cannot be loaded outside the driver"):
            ray.get(u.f.remote(), timeout=20)
    assert actor_row(u._actor_id.hex()).restarts == 0  # a creation error is not a crash


# -- a killed pending actor leaves nothing behind -----------------------------------------------
@ray.remote
class Special:
    def where(self):
        return ray.get_runtime_context().get_node_id()


def test_killing_a_pending_actor_cancels_its_lease_request(fresh):
    from raylab.cluster_utils import Cluster
    ray.init(num_nodes=1, num_cpus=1)
    s = Special.options(resources={"special": 1}).remote()
    aid = s._actor_id.hex()
    wait_for(lambda: state_of(aid) == "PENDING_CREATION" and
             cluster_snapshot().node("N1").infeasible, 10, "an infeasible actor")
    ray.kill(s)
    wait_for(lambda: actor_row(aid).state == "DEAD", 10, "the actor to be DEAD")
    wait_for(lambda: not cluster_snapshot().node("N1").infeasible, 10,
             "its lease request to be cancelled")
    n2 = Cluster().add_node(num_cpus=1, resources={"special": 1})
    t = Special.options(resources={"special": 1}).remote()  # resources= places the actor
    assert ray.get(t.where.remote(), timeout=30) == n2.node_id
    wait_for(lambda: ray.available_resources().get("special", 0) == 0, 5, "t to hold special")
    ray.kill(t)
    wait_for(lambda: ray.available_resources().get("special") == 1, 5, "special to come back")
    workers = [w for n in cluster_snapshot().nodes for w in n.workers]
    assert not [w for w in workers if w.actor_id == aid]  # no worker became the dead actor


def test_lease_granted_to_a_killed_actor_is_returned(cluster2):
    wait_for(lambda: ray.available_resources().get("CPU") == 4, 5, "an idle cluster")
    ray.stepper.break_at(step="lease_granted")
    try:
        c = Counter.options(num_cpus=1).remote()
        ev = ray.stepper.wait(10)
        assert ev is not None and ev.detail.get("name") == "Counter"
        ray.kill(c)  # the raylet has granted the lease, the GCS has not heard yet
        wait_for(lambda: actor_row(c._actor_id.hex()).state == "DEAD", 10, "DEAD")
    finally:
        ray.stepper.off()
    # The GCS's resource view may still be the one from before the grant, so wait for the
    # raylets to say so: no worker is the dead actor, and its CPU is free again.
    def returned():
        workers = [w for n in cluster_snapshot().nodes for w in n.workers]
        return not [w for w in workers if w.actor_id == c._actor_id.hex()] and \
            sum(n.available.get("CPU", 0) for n in cluster_snapshot().nodes) == 4
    wait_for(returned, 10, "the lease to be returned")
    wait_for(lambda: ray.available_resources().get("CPU") == 4, 10, "the GCS to hear of it")


# -- error classes and death causes ---------------------------------------------------------------
def test_duplicate_name_is_actor_already_exists_error(cluster2):
    a = Counter.options(name="dup", namespace="lab").remote()
    with pytest.raises(exc.ActorAlreadyExistsError, match="already taken"):
        Counter.options(name="dup", namespace="lab").remote()
    assert issubclass(exc.ActorAlreadyExistsError, ValueError)
    assert ray.get(a.increment.remote()) == 1  # the first one is untouched
    ray.kill(a)


def test_kill_with_restart_restarts_and_clears_the_death_cause(cluster2):
    c = Counter.options(max_restarts=1).remote(10)
    assert ray.get(c.increment.remote()) == 11
    _, pid1 = ray.get(c.where.remote())
    with ray.trace() as t:
        ray.kill(c, no_restart=False)
        # (a call sent before the GCS has restarted it may fail, as in Ray)
        wait_for(lambda: actor_row(c._actor_id.hex()).restarts == 1 and
                 actor_row(c._actor_id.hex()).state == "ALIVE", 20, "the restart")
        assert ray.get(c.increment.remote(), timeout=20) == 11  # the constructor ran again
    _, pid2 = ray.get(c.where.remote())
    assert pid1 != pid2
    row = actor_row(c._actor_id.hex())
    assert (row.state, row.restarts, row.death_cause) == ("ALIVE", 1, "")
    steps = [e.step for e in t.steps(flow="actor", actor=c._actor_id.hex(), level=None)]
    assert steps.index("kill_actor") < steps.index("actor_died") < steps.index("actor_restart")
    states = [e.detail["state"] for e in t.steps(flow="actor", level=None)
              if e.step == "actor_state"]
    assert states[-2:] == ["RESTARTING", "ALIVE"]
    ray.kill(c)


# -- retried calls keep their order -------------------------------------------------------------
def test_retried_calls_run_in_submission_order(cluster2):
    @ray.remote(max_restarts=1, max_task_retries=1)
    class Log:
        def __init__(self):
            self.log = []

        def crash_once(self, path):
            if not os.path.exists(path):
                open(path, "w").close()
                os._exit(1)
            return "survived"

        def add(self, i):
            self.log.append(i)
            return list(self.log)

    path = marker_path("order")
    a = Log.remote()
    ray.get(a.add.remote(0))
    try:
        first = a.crash_once.remote(path)
        refs = [a.add.remote(i) for i in (1, 2, 3)]  # in flight when the process dies
        assert ray.get(first, timeout=30) == "survived"
        assert ray.get(refs, timeout=30) == [[1], [1, 2], [1, 2, 3]]
    finally:
        if os.path.exists(path):
            os.remove(path)


def test_failures_are_traced_died_restart_kill(cluster2):
    c = Counter.options(max_restarts=1).remote()
    ray.get(c.read.remote())
    aid = c._actor_id.hex()
    with ray.trace() as t:
        c.crash.remote()
        wait_for(lambda: actor_row(aid).restarts == 1 and actor_row(aid).state == "ALIVE",
                 20, "the restart")
        ray.kill(c)
        wait_for(lambda: actor_row(aid).state == "DEAD", 10, "the kill")
    steps = [(e.step, e.detail.get("will_restart", e.detail.get("state")))
             for e in t.steps(flow="actor", actor=aid, level=None)
             if e.step in ("actor_died", "actor_restart", "kill_actor", "actor_state")]
    assert steps == [("actor_died", True), ("actor_state", "RESTARTING"),
                     ("actor_restart", None), ("actor_state", "ALIVE"),
                     ("kill_actor", None), ("actor_died", False), ("actor_state", "DEAD")]
    died = [e for e in t.steps(flow="actor", actor=aid, level=None) if e.step == "actor_died"]
    assert "process died" in died[0].detail["cause"] and "ray.kill" in died[1].detail["cause"]


