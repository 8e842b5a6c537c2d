"""Lab 1: where should a task run? Ray's scheduling policies, as pure functions.

A node is a :class:`raylab.scheduling.resources.NodeResources`: ``node_id``,
``label``, ``total`` and ``available`` resources (dicts like ``{"CPU": 2}``),
``alive``. ``req`` is the task's request, e.g. ``{"CPU": 1}``.
"""
from __future__ import annotations


def critical_utilization(node) -> float:
    """Lab 1.1: the fraction in use of the node's *most* used resource.

    A node with ``total={"CPU": 4, "GPU": 1}`` and ``available={"CPU": 3, "GPU": 0}``
    is 100% used (its GPU is), not 25%. Resources with a total of 0 do not count.
    """
    raise NotImplementedError("Lab 1.1: compute the critical resource utilization")


def hybrid(req: dict, view: list, local: bytes, threshold: float = 0.5):
    """Lab 1.2: Ray's DEFAULT policy. Return the chosen node's id, or None if no alive
    node could ever fit ``req`` (its *total* is too small).

    1. Only alive nodes whose total fits ``req`` are candidates ("feasible").
    2. Prefer candidates that have the resources *now* ("available"); if there are
       none, choose among the feasible ones (the task will queue there).
    3. Score each candidate by its critical utilization, counted as 0 while it is
       below ``threshold``.
    4. If the ``local`` node is a candidate and its score is no worse than the best,
       choose it (keep work local while it is not too busy).
    5. Otherwise choose the candidate with the lowest score (ties: the smallest id).
    """
    raise NotImplementedError("Lab 1.2: implement the hybrid policy")


def spread(req: dict, view: list, cursor: int):
    """Lab 1.3: SPREAD. Order the feasible alive nodes by label length, then label
    (N1, N2, ..., N10); starting at position ``cursor`` (modulo their number), return
    the first that has the resources now; if none does, the one at ``cursor``.
    None if no node is feasible.
    """
    raise NotImplementedError("Lab 1.3: implement SPREAD")
