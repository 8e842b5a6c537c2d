"""Lab 3, a reference answer. raylab's runtime does the same walk lazily: a re-run task
that finds an argument lost asks that argument's owner to rebuild it first
(``raylab/core_worker/lineage.py``); this function computes the whole plan at once."""
from __future__ import annotations


class CannotRebuild(Exception):
    pass


def tasks_to_rerun(lost: str, producer: dict, args: dict, alive: set) -> list:
    plan: list = []

    def rebuild(obj):
        task = producer.get(obj)
        if task is None:
            raise CannotRebuild(f"{obj} was made by ray.put and cannot be rebuilt")
        if task in plan:
            return
        for arg in args.get(task, ()):
            if arg not in alive:
                rebuild(arg)
        plan.append(task)

    rebuild(lost)
    return plan
