"""Demo: lineage reconstruction. A node dies; what lived only there is really gone, and
the owner rebuilds it by re-running exactly the tasks that made it.

``a`` is made on N1, ``b = double(a)`` and ``c = inc(b)`` on N2 (large: they live in
N2's object store). Then N2 is killed. ``ray.get(c)`` finds every copy of ``c`` gone;
the driver, c's owner, re-runs ``inc``, which needs ``b`` (gone too), so ``double``
is re-run first; ``a`` survived on N1 and is not recomputed.
"""
from __future__ import annotations

import numpy as np

import raylab as ray
from raylab import chaos
from raylab.demo import runner
from raylab.util.scheduling_strategies import NodeAffinitySchedulingStrategy

MB = 1 << 20


@ray.remote
def make():
    return np.ones(2 * MB, dtype=np.uint8)


@ray.remote
def double(x):
    return x * 2


@ray.remote
def inc(x):
    return x + 1


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
    return ray.get(c, timeout=120)


def run(step: bool = False, out=None) -> str:
    runner.fresh_cluster(_system_config={"health_check_period_ms": 300})
    try:
        _a, _b, c = setup()
        if step:
            runner.step_through(lambda: scenario(c), "Lineage reconstruction", out)
            return ""
        with ray.trace() as t:
            value = scenario(c)
        assert int(value[0]) == 3
        text = runner.show(t, "N2 dies: c and b are rebuilt from lineage", out,
                           flow=["failure", "task"])
        (out or runner.console()).print(t.lineage(c))
        return text
    finally:
        ray.shutdown()
