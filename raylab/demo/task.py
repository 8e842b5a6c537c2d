"""Demo: the lifecycle of a remote task across two nodes (the lecture's add(a, b))."""
from __future__ import annotations

import raylab as ray
from raylab.util.scheduling_strategies import NodeAffinitySchedulingStrategy


def run(step: bool = False, out=print) -> str:
    ray.init(num_nodes=2, num_cpus=2)
    try:
        n2 = next(n["NodeID"] for n in ray.nodes() if n["NodeName"] == "N2")

        @ray.remote
        def add(a, b):
            return a + b

        a = ray.put(1)
        with ray.trace() as t:
            ref_c = add.options(
                scheduling_strategy=NodeAffinitySchedulingStrategy(n2, soft=False)).remote(a, 2)
            c = ray.get(ref_c)
        out(f"add(a, b) = {c}, computed on N2; the steps, in the order they happened:")
        text = t.text(flow="task")
        out(text)
        return text
    finally:
        ray.shutdown()
