"""Demo: lineage reconstruction. A node dies; what lived only there is really gone, and
the owner rebuilds it by re-running exactly the tasks that made it.

``a = make()`` runs on N1, ``b = double(a)`` and ``c = inc(b)`` on N2 (large: they live
in N2's object store). Then N2 is killed. Nobody tells the GCS: its health checks miss
N2 until it is marked DEAD, and the death is broadcast to every raylet and owner.
``ray.get(c)`` then finds every copy of ``c`` gone; the driver, c's owner, re-runs
``inc``, which needs ``b`` (gone too), so ``double`` is re-run first; ``a`` survived on
N1 and is not recomputed.
"""
from __future__ import annotations

import raylab as ray
from raylab import chaos
from raylab.demo import runner
from raylab.util.scheduling_strategies import NodeAffinitySchedulingStrategy

MB = 1 << 20
# byte-wise x * 2 and x + 1 over a plain bytes value (the demo needs nothing beyond raylab)
DOUBLE = bytes(2 * v % 256 for v in range(256))
INC = bytes((v + 1) % 256 for v in range(256))
# the GCS pings every raylet each 300 ms: N2's death is noticed within about a second
HEALTH = {"health_check_period_ms": 300}
# how the tasks are made, in a line each: where each ran, where its result is
MADE = ("submit_task", "execute_task", "task_finished")
# the failure, told by whoever noticed each part of it
NOTICED = ("health_check_missed",)


@ray.remote
def make():
    return bytes([1]) * (2 * MB)


@ray.remote
def double(x):
    return x.translate(DOUBLE)


@ray.remote
def inc(x):
    return x.translate(INC)


def prefer(label: str):
    return NodeAffinitySchedulingStrategy(runner.node_id(label), soft=True)


def setup():
    a = make.options(scheduling_strategy=prefer("N1")).remote()
    b = double.options(scheduling_strategy=prefer("N2")).remote(a)
    c = inc.options(scheduling_strategy=prefer("N2")).remote(b)
    ray.wait([c], fetch_local=False)
    return a, b, c


def scenario(c):
    chaos.kill_node("N2")
    chaos.wait_until_dead("N2")   # the GCS finds out by itself: missed health checks
    return ray.get(c, timeout=120)


def record():
    """The whole story under one trace: returns (trace, (a, b, c), the value of c)."""
    with ray.trace() as t:
        refs = setup()
        value = scenario(refs[2])
    return t, refs, value


def story(t) -> list:
    """The steps worth narrating: how a, b and c were made (a line or so per task), then
    everything about the failure and the rebuild, health checks included."""
    events = t.events
    kill = next(i for i, e in enumerate(events) if e.step == "kill_node")
    before = [e for e in events[:kill] if e.step in MADE and e.level == 0]
    after = [e for e in events[kill:]
             if (e.level == 0 and e.flow in ("failure", "task")) or e.step in NOTICED]
    return before + after


def run(step: bool = False, out=None) -> str:
    from raylab.state import cluster_snapshot
    from raylab.views.cluster import cluster_view
    from raylab.views.format import short_object
    from raylab.views.steplog import steplog, steplog_text
    runner.fresh_cluster(_system_config=HEALTH)
    try:
        if step:
            _a, _b, c = setup()
            runner.step_through(lambda: scenario(c), "Lineage reconstruction", out)
            return ""
        t, refs, value = record()
        assert value[0] == 3
        events = story(t)
        console = out or runner.console()
        console.rule("a -> b -> c (b and c on N2); N2 dies; c and b are rebuilt from lineage")
        console.print("  ".join(f"{name} = {short_object(r.hex())}"
                                for name, r in zip("abc", refs)))
        console.print(steplog(events, expand=True, width=runner.WIDTH))
        console.print(cluster_view(cluster_snapshot(), width=runner.WIDTH))
        console.print(t.lineage(refs[2]))
        return steplog_text(events, expand=True, width=runner.WIDTH)
    finally:
        ray.shutdown()
