"""The lineage graph: how an object was made, and how it can be made again.

An object's *lineage* is the task that returned it, that task's arguments, the
tasks that made those, and so on back to values that were ``ray.put``. The
owner keeps this (the task specs) for as long as the object may be needed: if
the only copy of an object is lost with its node, the owner re-executes the
task that made it (*lineage reconstruction*), first rebuilding any lost
arguments the same way, recursively.

The tree reads from the object back to its sources:

    4f5a91c0#1  rebuilt  (owner driver)
    └── task add() 4f5a91c0  FINISHED on N2.w1  re-executed for 4f5a91c0#1
        └── 00ffffff#1  ready  ray.put by driver

Everything comes from the trace model: ``submit_task`` gives the edges
(``returns``, ``arg_refs``), the object steps give states, and
``reconstruct_object`` says which task was re-executed for which object.
"""
from __future__ import annotations

from rich.text import Text
from rich.tree import Tree

from raylab.views.format import human_size, short_id, short_object
from raylab.views.model import FREED, LOST, PENDING, REBUILT, SPILLED, TraceModel, fold
from raylab.views.render import View, check_width, to_html, to_text

_STATE_STYLE = {LOST: "bold red", REBUILT: "bold green", FREED: "dim", PENDING: "yellow",
                SPILLED: "magenta"}


def find_object(model: TraceModel, key) -> str:
    """An object id from an ObjectRef, a full hex id, a hex prefix or ``prefix#index``."""
    key = key.hex() if hasattr(key, "hex") and not isinstance(key, str) else str(key)
    if key in model.objects:
        return key
    matches = [oid for oid in model.objects
               if oid.startswith(key) or short_object(oid) == key]
    if len(matches) == 1:
        return matches[0]
    known = ", ".join(short_object(o) for o in model.objects) or "none"
    what = "several objects match" if matches else "no object in this trace matches"
    raise KeyError(f"{what} {key!r}; the objects in this trace are: {known}")


def roots(model: TraceModel) -> list[str]:
    """Objects no task in the trace consumed (the results), in the order they appeared."""
    consumed = {e.src for e in model.edges if e.kind == "arg"}
    return [oid for oid in model.objects if oid not in consumed]


def object_label(model: TraceModel, oid: str) -> Text:
    o = model.objects[oid]
    text = Text(short_object(oid), style="bold")
    text.append(f"  {o.state}", style=_STATE_STYLE.get(o.state, "green"))
    facts = []
    if o.error:
        facts.append("holds an error")
    if o.size is not None:
        facts.append(human_size(o.size))
    if o.put:
        facts.append(f"ray.put by {o.owner}")
    elif o.owner:
        facts.append(f"owner {o.owner}")
    if o.locations:
        facts.append("in the object store on " + ", ".join(o.locations))
    elif o.inline and o.state not in (FREED, LOST):
        facts.append("inline, in the owner's memory store")
    if o.reason and o.state in (LOST, FREED):
        facts.append(o.reason)
    if facts:
        text.append("  (" + "; ".join(facts) + ")", style="dim")
    return text


def task_label(model: TraceModel, tid: str) -> Text:
    t = model.tasks[tid]
    text = Text(f"task {t.name}() ", style="cyan")
    text.append(short_id(tid))
    where = t.worker or t.node
    text.append(f"  {t.state}" + (f" on {where}" if where else ""))
    if t.attempt:
        text.append(f", attempt {t.attempt}")
    if t.reexecuted_for:
        again = ", ".join(short_object(o) for o in t.reexecuted_for)
        text.append(f"  re-executed for {again}", style="bold green")
    return text


def _grow(model: TraceModel, node: Tree, oid: str, seen: set) -> None:
    """Add the task that made ``oid``, then that task's arguments, recursively."""
    task = model.producer(oid)
    if task is None or task.task_id in seen:
        return
    seen.add(task.task_id)
    branch = node.add(task_label(model, task.task_id))
    for arg in task.args:
        if arg in model.objects:
            _grow(model, branch.add(object_label(model, arg)), arg, seen)


def lineage_tree(model: TraceModel, object_id=None) -> Tree:
    """The lineage of one object (or of every result in the trace) as a rich Tree."""
    oids = [find_object(model, object_id)] if object_id is not None else roots(model)
    if len(oids) == 1:
        tree = Tree(object_label(model, oids[0]), guide_style="dim")
        _grow(model, tree, oids[0], set())
        return tree
    tree = Tree(Text("lineage of the objects in this trace", style="bold"), guide_style="dim")
    for oid in oids:
        _grow(model, tree.add(object_label(model, oid)), oid, set())
    return tree


class LineageView(View):
    """The lineage graph of an object, from a trace model (see the module docstring)."""

    def __init__(self, model: TraceModel, object_id=None, *, width: int | None = None):
        self.model = model
        self.object_id = object_id
        self.width = check_width(width)

    def renderable(self, width: int):
        return lineage_tree(self.model, self.object_id)


def _model(model_or_events) -> TraceModel:
    return model_or_events if isinstance(model_or_events, TraceModel) else fold(model_or_events)


def lineage_view(model_or_events, object_id=None, *, width: int | None = None) -> LineageView:
    """The lineage graph as a view object, from a model or a list of trace events."""
    return LineageView(_model(model_or_events), object_id, width=width)


def lineage_text(model_or_events, object_id=None, *, width: int | None = None) -> str:
    """The lineage graph as deterministic plain text."""
    w = check_width(width)
    return to_text(lineage_tree(_model(model_or_events), object_id), w)


def lineage_html(model_or_events, object_id=None, *, width: int | None = None) -> str:
    w = check_width(width)
    return to_html(lineage_tree(_model(model_or_events), object_id), w)
