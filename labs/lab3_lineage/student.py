"""Lab 3: lineage reconstruction. A node died; which tasks must run again?

The owner of an object keeps its *lineage*: the task that produced it, and that
task's arguments (other objects). Given:

- ``producer``: object -> the task that produced it (objects made by ``ray.put``
  are absent: they have no task);
- ``args``: task -> the objects it took as arguments;
- ``alive``: the objects that still have a copy somewhere;

rebuilding ``lost`` means re-running its task, after rebuilding whichever of that
task's arguments are lost too, and so on. Tasks whose outputs survive are not re-run.
"""
from __future__ import annotations


class CannotRebuild(Exception):
    """A needed object is lost and was made by ray.put: it has no lineage."""


def tasks_to_rerun(lost: str, producer: dict, args: dict, alive: set) -> list:
    """Lab 3.1: the tasks to re-run to rebuild ``lost``, each after the tasks that
    rebuild its arguments (dependencies first), each task once.

    Lab 3.2: raise :class:`CannotRebuild` naming the object if a lost object that is
    needed has no producer (it came from ray.put).
    """
    raise NotImplementedError("Lab 3.1: walk the lineage")
