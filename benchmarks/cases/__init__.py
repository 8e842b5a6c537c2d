"""The case registry: name -> the function that measures it, and who can run it.

A case function takes a :class:`benchmarks.common.Ctx`, calls ``ctx.init()``,
measures, and stores its figures in ``ctx.metrics`` (compared in the table) and
details in ``ctx.info`` (JSON only). The runner shuts the runtime down after it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from benchmarks.cases import actors, gcs_load, objects, tasks, tracing_cost

BOTH = ("raylab", "ray")


@dataclass(frozen=True)
class Case:
    name: str
    fn: Callable
    impls: tuple = BOTH
    runs: tuple = (1, 1)       # fresh subprocesses per impl: (quick, full)
    todo: str | None = None    # a placeholder: reported, never run

    @property
    def doc(self) -> str:
        return (self.fn.__doc__ or "").strip().split("\n")[0]


CASES = {c.name: c for c in [
    Case("init_to_first_result", tasks.init_to_first_result, runs=(3, 5)),
    Case("tiny_tasks", tasks.tiny_tasks),
    Case("task_rtt", tasks.task_rtt),
    Case("actor_calls", actors.actor_calls),
    Case("actor_rtt", actors.actor_rtt),
    Case("async_actor", actors.async_actor),
    Case("put_1MB", objects.put_1MB),
    Case("put_100MB", objects.put_100MB),
    Case("put_1GB", objects.put_1GB),
    Case("get_100MB", objects.get_100MB),
    Case("arg_1GB_x3_byvalue", objects.arg_1GB_x3_byvalue),
    Case("arg_1GB_x3_put", objects.arg_1GB_x3_put),
    Case("nested_fanout", tasks.nested_fanout),
    Case("wait_1000", tasks.wait_1000),
    Case("chain_100", tasks.chain_100),
    Case("tracing_cost", tracing_cost.tracing_cost, impls=("raylab",)),
    Case("gcs_load", gcs_load.gcs_load, impls=("raylab",)),
]}
