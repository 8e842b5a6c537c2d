"""The figures the table compares, their units, and the project's targets.

The comparison column is a *cost ratio*, oriented so that below 1 always means
raylab is faster:

* for times (lower is better): raylab time / Ray time;
* for rates and bandwidths (higher is better, marked ``↑``): Ray rate / raylab rate.

A target is a bound on that ratio, taken from the project's issues ("tiny tasks/s
at least 2x Ray" is a cost ratio of at most 0.5). raylab-only figures (tracing cost)
have an absolute bound instead.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Metric:
    case: str                        # the case that measures it
    key: str
    unit: str
    higher_is_better: bool = False
    target: float | None = None      # max cost ratio raylab vs Ray
    absolute: float | None = None    # raylab-only: the value must stay below this
    goal: str = ""                   # the target in the words

    def ratio(self, raylab, ray):
        """The cost ratio (below 1: raylab faster), or None if either side is missing."""
        if not _num(raylab) or not _num(ray) or raylab <= 0 or ray <= 0:
            return None
        return ray / raylab if self.higher_is_better else raylab / ray

    def verdict(self, raylab, ray):
        """True/False against the target, None where there is no target or no data."""
        if self.absolute is not None:
            return None if not _num(raylab) else raylab < self.absolute
        r = self.ratio(raylab, ray)
        if self.target is None or r is None:
            return None
        return r <= self.target


def _num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


_M = Metric
METRICS = [
    _M("init_to_first_result", "init_to_first_result_s", "s", target=0.2, goal="<= 1/5 of Ray"),
    _M("tiny_tasks", "tiny_tasks_per_s", "tasks/s", True, target=0.5, goal=">= 2x Ray"),
    _M("task_rtt", "task_rtt_us", "us", target=1 / 3, goal="<= 1/3 of Ray"),
    _M("actor_calls", "actor_calls_per_s", "calls/s", True, target=0.5, goal=">= 2x Ray"),
    _M("actor_rtt", "actor_rtt_us", "us", target=1 / 3, goal="<= 1/3 of Ray"),
    _M("async_actor", "async_actor_100x0.1s_s", "s (ideal 0.1)"),
    _M("put_1MB", "put_1MB_GBps", "GB/s", True, target=2.0, goal=">= 1/2 of Ray"),
    _M("put_100MB", "put_100MB_GBps", "GB/s", True, target=2.0, goal=">= 1/2 of Ray"),
    _M("put_1GB", "put_1GB_GBps", "GB/s", True, target=2.0, goal=">= 1/2 of Ray"),
    _M("get_100MB", "get_100MB_us", "us", target=3.0, goal="within 3x of Ray"),
    _M("arg_1GB_x3_byvalue", "arg_1GB_x3_byvalue_s", "s", target=1.0, goal="no slower than Ray"),
    _M("arg_1GB_x3_put", "arg_1GB_x3_put_s", "s", target=1.0, goal="no slower than Ray"),
    _M("nested_fanout", "nested_fanout_s", "s"),
    _M("wait_1000", "wait_1000_s", "s"),
    _M("chain_100", "chain_100_s", "s"),
    _M("tracing_cost", "tracing_recorder_slowdown_x", "x", absolute=2.0, goal="< 2x (raylab only)"),
    _M("tracing_cost", "tracing_off_overhead_pct", "%", absolute=5.0, goal="< 5% (raylab only)"),
    _M("gcs_load", "gcs_msgs_per_task_central", "msgs", goal="lecture mode (raylab only)"),
    _M("gcs_load", "gcs_msgs_per_task_owner", "msgs", goal="Ray 2 mode (raylab only)"),
    _M("gcs_load", "gcs_cpu_ms_per_task_central", "ms", goal="lecture mode (raylab only)"),
    _M("gcs_load", "gcs_cpu_ms_per_task_owner", "ms", goal="Ray 2 mode (raylab only)"),
    _M("gcs_load", "wall_ms_per_task_central", "ms", goal="lecture mode (raylab only)"),
    _M("gcs_load", "wall_ms_per_task_owner", "ms", goal="Ray 2 mode (raylab only)"),
]
BY_KEY = {m.key: m for m in METRICS}


def for_case(case: str) -> list:
    return [m for m in METRICS if m.case == case]
