"""The GCS job table: one job per driver, numbered 1, 2, ... as in Ray."""
from __future__ import annotations

import time
from dataclasses import dataclass, field

from raylab import ids
from raylab.states import JOB_FINISHED, JOB_RUNNING


@dataclass
class JobInfo:
    job_id: bytes
    driver_address: str
    driver_pid: int
    namespace: str
    state: str = JOB_RUNNING
    start_time: float = field(default_factory=time.time)
    end_time: float | None = None


class JobTable:
    def __init__(self):
        self.jobs: dict[bytes, JobInfo] = {}
        self._counter = 0

    def add(self, driver_address: str, driver_pid: int, namespace: str) -> JobInfo:
        self._counter += 1
        job = JobInfo(ids.job_id(self._counter), driver_address, driver_pid, namespace)
        self.jobs[job.job_id] = job
        return job

    def finish(self, job_id: bytes) -> None:
        job = self.jobs.get(job_id)
        if job is not None and job.state == JOB_RUNNING:
            job.state = JOB_FINISHED
            job.end_time = time.time()
