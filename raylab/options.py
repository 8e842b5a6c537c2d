"""Options of ``@ray.remote`` and ``.options()``: validated eagerly, with clear errors.

A bad option fails at the call site with a message naming the option and the
allowed values, and nothing is sent to the cluster.
"""
from __future__ import annotations

from raylab.scheduling import resources as res

TASK_OPTIONS = {
    "num_cpus", "num_gpus", "resources", "num_returns", "name", "max_retries",
    "retry_exceptions", "runtime_env", "scheduling_strategy", "memory", "max_calls",
    "_metadata", "enable_task_events", "label_selector",
}
ACTOR_OPTIONS = {
    "num_cpus", "num_gpus", "resources", "name", "namespace", "lifetime", "get_if_exists",
    "max_restarts", "max_task_retries", "max_concurrency", "max_pending_calls", "runtime_env",
    "scheduling_strategy", "memory", "concurrency_groups", "_metadata", "enable_task_events",
    "label_selector", "allow_out_of_order_execution",
}
METHOD_OPTIONS = {"num_returns", "max_task_retries", "retry_exceptions", "name",
                  "concurrency_group", "enable_task_events"}
SUPPORTED_RUNTIME_ENV = {"env_vars"}
# Ray's (deprecated) placement group options: known names, but not a raylab feature yet
PLACEMENT_GROUP_OPTIONS = {"placement_group", "placement_group_bundle_index",
                           "placement_group_capture_child_tasks"}


def check_keys(opts: dict, allowed: set, what: str) -> None:
    for k in opts:
        if k in PLACEMENT_GROUP_OPTIONS and "scheduling_strategy" in allowed:
            if k == "placement_group" and opts[k] in (None, "default"):
                continue  # Ray accepts these: "no placement group"
            raise NotImplementedError(
                f"placement groups are not supported by raylab (the option {k}); schedule "
                "with scheduling_strategy=\"DEFAULT\", \"SPREAD\" or a "
                "NodeAffinitySchedulingStrategy instead")
        if k not in allowed:
            raise ValueError(f"Invalid option keyword {k} for {what}. Valid ones are "
                             f"{sorted(allowed)}.")


def _number(name: str, v, allow_none=True, integer=False, minimum=0):
    if v is None and allow_none:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise TypeError(f"The option {name} must be a number, not {type(v).__name__} ({v!r}).")
    if integer and int(v) != v:
        raise ValueError(f"The option {name} must be an integer, got {v!r}.")
    if v < minimum:
        raise ValueError(f"The option {name} must be >= {minimum}, got {v!r}.")
    return v


def resources_of(opts: dict, default_cpus: float) -> dict:
    """The logical resources a task or actor asks for."""
    out = res.validate(opts.get("resources") or {}, "resources")
    for reserved in ("CPU", "GPU", "memory"):
        if reserved in out:
            raise ValueError(f"Use the {reserved.lower() if reserved != 'memory' else 'memory'}"
                             f" option (num_cpus=/num_gpus=/memory=) instead of "
                             f"resources={{'{reserved}': ...}}.")
    cpus = _number("num_cpus", opts.get("num_cpus"))
    gpus = _number("num_gpus", opts.get("num_gpus"))
    mem = _number("memory", opts.get("memory"))
    out["CPU"] = default_cpus if cpus is None else cpus
    if gpus:
        out["GPU"] = gpus
    if mem:
        out["memory"] = mem
    return res.validate(out, "resources")


def runtime_env_of(opts: dict):
    env = opts.get("runtime_env")
    if not env:
        return None
    if not isinstance(env, dict):
        raise TypeError(f"runtime_env must be a dict like {{'env_vars': {{...}}}}, "
                        f"not {type(env).__name__}")
    for k in env:
        if k not in SUPPORTED_RUNTIME_ENV:
            raise NotImplementedError(
                f"runtime_env field {k!r} is not supported by raylab (all processes share "
                f"this machine's Python environment); supported: {sorted(SUPPORTED_RUNTIME_ENV)}")
    env_vars = env.get("env_vars") or {}
    if not isinstance(env_vars, dict) or not all(
            isinstance(a, str) and isinstance(b, str) for a, b in env_vars.items()):
        raise TypeError("runtime_env['env_vars'] must be a dict of str to str")
    return {"env_vars": dict(env_vars)}


def strategy_of(opts: dict) -> tuple:
    from raylab.util.scheduling_strategies import to_wire
    return to_wire(opts.get("scheduling_strategy"))


def num_returns_of(opts: dict, default: int = 1) -> int:
    n = opts.get("num_returns", default)
    if n in ("dynamic", "streaming"):
        raise NotImplementedError(f"num_returns={n!r} (generators) is not supported by raylab")
    return int(_number("num_returns", n, allow_none=False, integer=True))


def max_retries_of(opts: dict, default: int = 3) -> int:
    v = opts.get("max_retries", default)
    v = _number("max_retries", v, allow_none=False, integer=True, minimum=-1)
    return int(v)


def retry_exceptions_of(opts: dict):
    v = opts.get("retry_exceptions", False)
    if isinstance(v, bool):
        return v
    if isinstance(v, (list, tuple)) and all(isinstance(t, type) and issubclass(t, BaseException)
                                            for t in v):
        return tuple(v)
    raise TypeError("retry_exceptions must be a bool or a list of exception classes, "
                    f"got {v!r}")
