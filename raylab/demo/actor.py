"""Demo: actor creation and method calls (the lecture's Counter example)."""
from __future__ import annotations

import raylab as ray
from raylab.util.scheduling_strategies import NodeAffinitySchedulingStrategy


@ray.remote
class Counter:
    # the slide stores the count in `self.counts`, which hides the method counts();
    # here the attribute has its own name so that counts() can be called
    def __init__(self):
        self.count = 0

    def increment(self):
        self.count += 1

    def counts(self):
        return self.count


def scenario():
    """Create a Counter on N2 and call it from the driver on N1; returns the trace."""
    n2 = next(n["NodeID"] for n in ray.nodes() if n["NodeName"] == "N2")
    with ray.trace() as t:
        counter = Counter.options(
            scheduling_strategy=NodeAffinitySchedulingStrategy(n2, soft=False)).remote()
        # the readiness check: it returns once creation (Steps 1-3) has made Counter ALIVE
        ray.get(counter.__ray_ready__.remote())
    with ray.trace() as calls:
        ray.get(counter.increment.remote())
    return t, calls, counter


def run(step: bool = False, out=print) -> str:
    ray.init(num_nodes=2, num_cpus=2)
    try:
        t, calls, counter = scenario()
        out("Actor creation (the lecture's Steps 1-3): Counter is placed on N2")
        text = t.text(flow=["actor", "task"])
        out(text)
        out("")
        out("Actor task execution: counter.increment.remote() from the driver on N1")
        calls_text = calls.text(flow=["actor", "task"])
        out(calls_text)
        text += "\n" + calls_text
        out(f"counter.counts() = {ray.get(counter.counts.remote())}")
        return text
    finally:
        ray.shutdown()
