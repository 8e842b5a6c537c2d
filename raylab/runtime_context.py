"""``ray.get_runtime_context()``: where am I running, and as what?"""
from __future__ import annotations

from raylab import ids


class RuntimeContext:
    def __init__(self, cw):
        self._cw = cw

    def get_job_id(self) -> str:
        return self._cw.current_job().hex()

    def get_node_id(self) -> str:
        return self._cw.node_id.hex()

    def get_task_id(self) -> str | None:
        cw = self._cw
        if cw.mode == "driver" and cw.ctx.task_id == ids.driver_task_id(cw.current_job()):
            return None
        return cw.ctx.task_id.hex() if cw.ctx.task_id else None

    def get_task_name(self) -> str | None:
        """The running task's name (its function's, or ``options(name=...)``); None in the
        driver."""
        if self.get_task_id() is None:
            return None
        return self._cw.ctx.name

    def get_accelerator_ids(self) -> dict:
        """The accelerator ids this task or actor holds, by kind (raylab has GPUs only)."""
        from raylab.api import get_gpu_ids
        return {"GPU": [str(i) for i in get_gpu_ids()]}

    def get_worker_id(self) -> str:
        return self._cw.worker_id.hex()

    def get_actor_id(self) -> str | None:
        a = self._cw.ctx.actor_id or getattr(self._cw, "actor_id", None)
        return a.hex() if a else None

    def get_actor_name(self) -> str | None:
        return getattr(self._cw, "actor_name", None)

    def get_namespace(self) -> str | None:
        from raylab.actor import job_namespace  # a worker learns it from the GCS job table
        return job_namespace(self._cw)

    def get_node_label(self) -> str:
        """raylab's short node label (N1, N2, ...) for views."""
        return self._cw.node_label

    @property
    def namespace(self):
        return self.get_namespace()

    @property
    def was_current_actor_reconstructed(self) -> bool:
        return bool(getattr(self._cw, "actor_restarts", 0))

    def get_assigned_resources(self) -> dict:
        spec = self._cw.executor.current if self._cw.executor is not None else None
        return dict(spec.resources) if spec is not None else {}

    def get(self) -> dict:
        return {"job_id": self.get_job_id(), "node_id": self.get_node_id(),
                "task_id": self.get_task_id(), "worker_id": self.get_worker_id(),
                "namespace": self.get_namespace()}
