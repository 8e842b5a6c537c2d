"""Views: what the cluster does, drawn for people (rich in a terminal or a notebook).

Every view is a pure function of data, never of the live cluster:

- the trace model (:mod:`~raylab.views.model`), folded from trace events: tasks with
  Ray's task states, objects, actors, execution spans and lineage edges;
- a cluster snapshot (:mod:`~raylab.views.snapshot`): the GCS tables and each node.

Each view has three forms: a rich renderable (``rich.print(view)``), deterministic
plain text of a given ``width`` (``text/plain`` in Jupyter, compared by nbval and by
``tests/test_views.py``) and HTML (``_repr_html_``):

    steplog(events)         the numbered steps in the lecture's words   (steplog.py)
    cluster_view(snapshot)  the lecture's diagram: GCS, raylets, stores  (cluster.py)
    lineage_view(model)     object <- task <- argument objects <- ...    (lineage.py)
    timeline_view(model)    which worker ran which task, step by step    (timeline.py)

This package's ``__init__`` imports nothing heavy: the runtime reads
:mod:`raylab.views.snapshot` and :mod:`raylab.views.model` (plain Python), and rich
is only imported when a view is drawn.
"""
from __future__ import annotations

_EXPORTS = {
    "fold": "model", "TraceModel": "model",
    "steplog": "steplog", "steplog_text": "steplog", "steplog_html": "steplog",
    "show_steplog": "steplog", "StepLog": "steplog",
    "cluster_view": "cluster", "cluster_text": "cluster", "cluster_html": "cluster",
    "show_cluster": "cluster", "ClusterView": "cluster",
    "lineage_view": "lineage", "lineage_text": "lineage", "lineage_html": "lineage",
    "LineageView": "lineage",
    "timeline_view": "timeline", "timeline_text": "timeline", "timeline_html": "timeline",
    "TimelineView": "timeline",
    "compare_view": "compare", "CompareView": "compare",
    "View": "render",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'raylab.views' has no attribute {name!r}")
    import importlib
    return getattr(importlib.import_module(f"raylab.views.{module}"), name)
