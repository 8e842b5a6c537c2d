"""raylab: a Ray Core you can watch.

``import raylab as ray`` and use Ray's API; every protocol step of the real,
multi-process cluster underneath is traced and can be shown step by step.
"""
from raylab import exceptions  # noqa: F401
from raylab.api import (available_resources, cancel, cluster_resources, get, get_actor,
                        get_gpu_ids, get_runtime_context, init, is_initialized, kill, method,
                        nodes, put, remote, shutdown, timeline, wait)
from raylab.core_worker.object_ref import ObjectRef
from raylab.ids import ActorID, JobID, NodeID, ObjectID, TaskID, WorkerID
from raylab.tracing.api import trace
from raylab.tracing.stepper import STEPPER as stepper

__version__ = "0.1.0"

__all__ = [
    "init", "shutdown", "is_initialized", "remote", "method", "get", "put", "wait", "cancel",
    "kill", "get_actor", "nodes", "cluster_resources", "available_resources",
    "get_runtime_context", "get_gpu_ids", "timeline", "ObjectRef", "ObjectID", "TaskID",
    "JobID", "ActorID", "NodeID", "WorkerID", "exceptions", "trace", "stepper",
]


def load_ipython_extension(ipython):
    """``%load_ext raylab``: the %raylab and %%raylab magics."""
    from raylab.jupyter.magics import load_ipython_extension as _load
    _load(ipython)
