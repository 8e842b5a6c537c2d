"""The cluster as the diagram draws it, from hand-built traces: objects the trace did not
see being made, an actor call's result, spilled bytes, tasks no node can run.

The events are built as in tests/test_views.py (its ``Log``), with the real id layout.
"""
from __future__ import annotations

from raylab import ids
from raylab.tracing.events import PROTOCOL, TraceEvent
from raylab.views import model as m
from raylab.views.snapshot import ClusterSnapshot, NodeState, StoreObject

from test_views import COUNTER, DRIVER_TASK, MiB, N1, N2, Log, obj, task_id


# -- objects the trace did not see being made ----------------------------------------------
P = ids.object_id(DRIVER_TASK, 4).hex()          # a ray.put array, made before the trace
CALL = ids.actor_task_id(bytes.fromhex(COUNTER), DRIVER_TASK, 3).hex()


def pull_of_an_earlier_put() -> list[TraceEvent]:
    """N2 pulls P (put on N1 before the trace began) for a task; an actor call returns."""
    log = Log()
    T = task_id(7)
    log("submit_task", "driver", task=T, name="total", returns=[obj(T)], arg_refs=[P])
    log("locate_object", "N2.raylet", flow="object", object=P, at="owner")
    log("pull_object", "N2.raylet", flow="object", object=P, node=N2, **{"from": "N1"}, to="N2")
    log("object_replicated", "N2.raylet", flow="object", object=P, node=N2, size=2 * MiB,
        chunks=1, **{"from": "N1"}, to="N2")
    log("task_finished", "driver", task=T, object=obj(T), name="total", status="FINISHED",
        returns=["inline"])
    log("submit_actor_task", "driver", task=CALL, actor=COUNTER, name="Counter.inc",
        method="inc")
    log("task_finished", "driver", task=CALL, actor=COUNTER, object=obj(CALL),
        name="Counter.inc", status="FINISHED", returns=["inline"])
    log("object_freed", "driver", level=PROTOCOL, flow="refcount", object=obj(CALL),
        reason="no references remain")
    return log.events


def test_a_pull_tells_the_fold_where_its_copy_came_from():
    events = pull_of_an_earlier_put()
    p = m.fold(events).objects[P]
    assert p.locations == ["N1", "N2"] and p.size == 2 * MiB     # N1 had it: it came from there
    # what a snapshot taken when the trace began adds: the owner and the primary copy
    n1 = NodeState(N1, "N1", True, True, {"CPU": 2.0}, {"CPU": 2.0}, [], 100 * MiB, 2 * MiB,
                   [StoreObject(P, 2 * MiB, "driver", True, True, False),
                    StoreObject(obj(task_id(7)), 1, "driver", True, True, False)])
    known = m.known_objects(events, ClusterSnapshot([n1]))
    assert list(known) == [P]                     # the trace makes the other one itself
    p = m.fold(events, known).objects[P]
    assert (p.owner, p.primary, p.locations, p.state) == ("driver", "N1", ["N1", "N2"], "ready")
    assert m.fold([], known).objects[P].locations == ["N1"]      # before the pull: only N1
    # a task that only takes P (already on N2 as well): both copies are drawn, from before
    n2 = NodeState(N2, "N2", True, False, {"CPU": 2.0}, {"CPU": 2.0}, [], 100 * MiB, 2 * MiB,
                   [StoreObject(P, 2 * MiB, "driver", False, False, False)])
    again = Log()
    again("submit_task", "driver", task=task_id(8), name="total", returns=[obj(task_id(8))],
          arg_refs=[P])
    known = m.known_objects(again.events, ClusterSnapshot([n1, n2]))
    assert known[P].locations == ["N1", "N2"] and known[P].primary == "N1"
    assert m.known_objects(events, ClusterSnapshot([n1, n2]))[P].locations == ["N1"]  # pulled


def test_an_actor_calls_result_has_its_task_owner_and_inline_size():
    model = m.fold(pull_of_an_earlier_put())
    o = model.objects[obj(CALL)]
    assert (o.task, o.owner, o.inline, o.state) == (CALL, "driver", True, "freed")
    from raylab.jupyter.panels import object_rows
    row = next(r for r in object_rows(model) if r[0].startswith(CALL[:8]))
    assert row[1:] == ("freed", "< 100 KiB", "driver", "-", f"task {CALL[:8]}")


def test_a_spilled_object_counts_on_disk_not_in_the_store():
    from raylab.jupyter.scene import scene_at
    log = Log()
    big = [ids.object_id(DRIVER_TASK, i).hex() for i in (1, 2, 3)]
    for oid in big:
        log("put_object", "driver", flow="put", object=oid, size=40 * MiB,
            where="N1's object store")
    log("spill_object", "N1.raylet", flow="object", object=big[0], size=40 * MiB)
    base = ClusterSnapshot([NodeState(N1, "N1", True, True, {"CPU": 2.0}, {"CPU": 2.0},
                                      store_capacity=100 * MiB)])
    n1 = scene_at(log.events, len(log.events), base, stable=True).snapshot.node("N1")
    assert [o.spilled for o in n1.objects].count(True) == 1
    assert n1.store_used == 80 * MiB           # not 120 MiB of 100 MiB


def test_a_task_no_node_can_run_is_drawn_in_its_raylet_until_cancelled():
    from raylab.jupyter.scene import scene_at
    log = Log()
    T = task_id(11)
    log("submit_task", "driver", task=T, name="impossible", returns=[obj(T)], arg_refs=[])
    for _ in range(2):                    # the raylet tries again, and says so again
        log("infeasible", "N1.raylet", task=T, node=N1, name="impossible",
            resources={"unicorn": 1.0}, why="no node can ever fit it")
    base = ClusterSnapshot([NodeState(N1, "N1", True, True, {"CPU": 2.0}, {"CPU": 2.0})])
    n1 = scene_at(log.events, 99, base, stable=True).snapshot.node("N1")
    assert n1.infeasible == [("impossible", {"unicorn": 1.0})]
    log("cancel_task", "driver", level=PROTOCOL, task=T)
    assert scene_at(log.events, 99, base, stable=True).snapshot.node("N1").infeasible == []
