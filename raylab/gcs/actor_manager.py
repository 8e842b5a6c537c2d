"""The GCS actor manager (filled in by the actors issue)."""
from __future__ import annotations


class ActorManager:
    def __init__(self, gcs):
        self.gcs = gcs

    def apply(self, e):
        raise TypeError(f"unknown effect {e!r}")

    def on_node_added(self, node_id):
        pass

    def on_node_dead(self, node_id):
        return []

    def on_connection_lost(self, conn):
        pass

    def on_job_finished(self, job_id):
        return None

    def table_rows(self) -> list:
        return []
