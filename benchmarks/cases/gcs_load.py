"""Placeholder: GCS load per task, control_plane="ownership" vs "centralized".

The lecture's argument for ownership is that the owner, not the GCS, tracks each
task and object, so the GCS sees almost no messages per task; a centralized
control plane (``raylab.init(control_plane="centralized")``) routes them all
through the GCS. This case will count the messages the GCS handles per tiny task
under each control plane (raylab only: Ray has no switch for it).

It is a hook for that later work and measures nothing yet: the runner reports it
as "not implemented yet" rather than inventing a figure. To implement it, replace
``TODO`` with ``None`` and write :func:`gcs_load` (set ``ctx.metrics[...]``), and add
its metrics to ``benchmarks/metrics.py``.
"""
from __future__ import annotations

TODO = "not implemented yet (needs a count of GCS messages per task in raylab)"


def gcs_load(ctx) -> None:
    raise NotImplementedError(TODO)
