"""The cluster view: the lecture's diagram, drawn from the cluster's real tables.

The slides draw a Ray cluster as boxes: the GCS with its tables on the head
node, and on every node a raylet (the local scheduler), an object store and
worker processes. This view draws the same boxes from a
:class:`~raylab.views.snapshot.ClusterSnapshot` (``raylab.state.cluster_snapshot()``):

- GCS: the node table, the actor table, the function table, and in the
  lecture's centralized control plane the object table (object -> nodes);
- each node: its raylet (resources available of total, requests queued here,
  requests that fit nowhere), its object store (used of capacity, and what is
  in it: primary copies pinned by their owner, replicas, spilled objects) and
  its workers (``N2.w1``: IDLE, LEASED to a task, or an ACTOR).

Nodes stand side by side, head node first, as on the slide; when the width is
too small they are stacked. Given a trace model, the view also shows the last
lecture step and what the traced tasks run on each worker.
"""
from __future__ import annotations

from rich import box
from rich.console import Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from raylab.views.format import clip, human_size, number, resource_amount, short_id, short_object
from raylab.views.render import SideBySide, View, check_width, to_html, to_text
from raylab.views.snapshot import ClusterSnapshot, NodeState

NODE_MIN_WIDTH = 40
_WORKER_STYLE = {"IDLE": "dim", "LEASED": "bold cyan", "ACTOR": "bold magenta", "DEAD": "red"}


def _section(title: str) -> Text:
    return Text(title, style="bold underline")


def _small_table(*columns: str) -> Table:
    table = Table(box=None, pad_edge=False, show_edge=False, padding=(0, 1),
                  header_style="dim")
    for c in columns:
        table.add_column(c, overflow="ellipsis", no_wrap=True)
    return table


def _bar(used: int, capacity: int, width: int = 20) -> Text:
    """``[████······] 40%``: how full a store is."""
    frac = min(max(used / capacity, 0.0), 1.0) if capacity else 0.0
    full = round(frac * width)
    text = Text("[")
    text.append("█" * full, style="red" if frac > 0.8 else "green")
    text.append("·" * (width - full), style="dim")
    text.append(f"] {round(frac * 100)}%")
    return text


# -- one node: raylet, object store, workers -------------------------------------------------
def raylet_section(node: NodeState) -> Group:
    table = _small_table("resource", "available", "total")
    for name in sorted(node.total):
        table.add_row(name, resource_amount(name, node.available.get(name, 0)),
                      resource_amount(name, node.total[name]))
    parts = [_section("raylet (local scheduler)"), table]
    for what, reqs in (("queued here", node.queued), ("infeasible", node.infeasible)):
        for name, res in reqs:
            parts.append(Text(f"{what}: {name} ({_demand(res)})",
                              style="yellow" if what == "queued here" else "red"))
    return Group(*parts)


def _demand(res) -> str:
    if isinstance(res, dict):
        return ", ".join(f"{k} {number(v)}" for k, v in sorted(res.items())) or "nothing"
    return str(res)


def store_section(node: NodeState, model=None) -> Group:
    parts = [_section("object store")]
    if not node.store_capacity and not node.objects:
        parts.append(Text("(no shared-memory store reported)", style="dim"))
        return Group(*parts)
    usage = Text(f"{human_size(node.store_used)} of {human_size(node.store_capacity)} ")
    parts.append(usage + _bar(node.store_used, node.store_capacity))
    if not node.objects:
        parts.append(Text("(empty)", style="dim"))
        return Group(*parts)
    table = _small_table("object", "size", "owner", "copy", "")
    for o in sorted(node.objects, key=lambda o: o.object_id):
        flags = [f for f, on in (("pinned", o.pinned), ("spilled", o.spilled)) if on]
        traced = model.objects.get(o.object_id) if model is not None else None
        if traced is not None and traced.state not in ("ready", "pending"):
            flags.append(traced.state)
        table.add_row(short_object(o.object_id), human_size(o.size), o.owner,
                      "primary" if o.primary else "replica", ", ".join(flags))
    parts.append(table)
    return Group(*parts)


def workers_section(node: NodeState, model=None) -> Group:
    parts = [_section("workers")]
    if not node.workers and not node.is_head:
        parts.append(Text("(none started)", style="dim"))
        return Group(*parts)
    table = _small_table("worker", "state", "runs")
    if node.is_head:
        table.add_row(Text("driver"), Text("-", style="dim"), Text("your program (an owner)"))
    for w in node.workers:
        runs = w.running
        if not runs and model is not None:
            running = model.open_spans(w.label)
            runs = ", ".join(f"{s.name} (traced)" for s in running)
        if w.actor_id and w.actor_id[:8] not in runs:
            runs = f"{runs} actor {short_id(w.actor_id)}".strip()
        table.add_row(Text(w.label), Text(w.state, style=_WORKER_STYLE.get(w.state, "")),
                      Text(runs or "-"))
    parts.append(table)
    return Group(*parts)


def node_panel(node: NodeState, model=None, highlight: bool = False) -> Panel:
    kind = "Head node" if node.is_head else "Worker node"
    title = f"{kind} {node.label}" + ("" if node.alive else " (DEAD)")
    if not node.alive:
        body = Text("DEAD: its raylet, object store and workers are gone", style="red")
        return Panel(body, title=title, title_align="left", box=box.ROUNDED, border_style="red")
    body = Group(raylet_section(node), Text(""), store_section(node, model), Text(""),
                 workers_section(node, model))
    style = "bold yellow" if highlight else "blue"
    return Panel(body, title=title, title_align="left", box=box.ROUNDED, border_style=style)


# -- the GCS ------------------------------------------------------------------------------------
def gcs_tables(snap: ClusterSnapshot) -> list:
    nodes = _small_table("node", "state", "resources")
    for n in snap.nodes:
        state = ("ALIVE" if n.alive else "DEAD") + (" head" if n.is_head else "")
        nodes.add_row(n.label, state, ", ".join(
            f"{k} {resource_amount(k, v)}" for k, v in sorted(n.total.items())
            if k not in ("memory", "object_store_memory")) or "-")
    actors = _small_table("actor", "state", "node", "name")
    for a in snap.actors:
        actors.add_row(f"{a.class_name} {short_id(a.actor_id)}", a.state, a.node or "-",
                       a.name or "-")
    functions = _small_table("function", "id")
    for fid, name in snap.functions:
        functions.add_row(clip(str(name), 24), short_id(fid))
    out = [Group(_section("node table"), nodes),
           Group(_section("actor table"), actors if snap.actors else Text("(empty)", "dim")),
           Group(_section("function table"),
                 functions if snap.functions else Text("(empty)", "dim"))]
    if snap.control_plane == "centralized" or snap.object_table:
        objects = _small_table("object", "locations")
        for oid, where in sorted(snap.object_table.items()):
            objects.add_row(short_object(oid), ", ".join(where) or "-")
        out.append(Group(_section("object table"),
                         objects if snap.object_table else Text("(empty)", "dim")))
    return out


def gcs_panel(snap: ClusterSnapshot, width: int) -> Panel:
    tables = gcs_tables(snap)
    per_row = max(1, min(len(tables), (width - 4) // NODE_MIN_WIDTH))
    mode = Text(f"control plane: {snap.control_plane}", style="dim")
    body = Group(mode, _grid(tables, per_row, gap=True))
    head = next((n.label for n in snap.nodes if n.is_head), "?")
    title = f"GCS (global control store, head node {head})"
    return Panel(body, title=title, title_align="left", box=box.ROUNDED, border_style="yellow")


def _grid(items: list, per_row: int, gap: bool = False):
    """``items`` in rows of ``per_row`` equal columns (a blank line between rows if ``gap``)."""
    rows = []
    for i in range(0, len(items), per_row):
        if gap and rows:
            rows.append(Text(""))
        grid = Table.grid(expand=True, padding=(0, 2))
        chunk = items[i:i + per_row]
        for _ in range(per_row):
            grid.add_column(ratio=1)
        grid.add_row(*chunk, *[""] * (per_row - len(chunk)))
        rows.append(grid)
    return Group(*rows)


# -- the whole cluster ----------------------------------------------------------------------------
def _last_step(model):
    lecture = [e for e in model.events if e.level == 0]
    return (len(lecture), lecture[-1]) if lecture else (0, None)


def cluster_renderable(snap: ClusterSnapshot, model=None, width: int = 100):
    """The lecture's diagram: the GCS box, then one box per node, side by side if they fit."""
    parts = []
    acting = None
    if model is not None:
        n, ev = _last_step(model)
        if ev is not None:
            acting = ev.node
            parts.append(Text(f"step {n}: {ev.narrative}", style="bold"))
    parts.append(gcs_panel(snap, width))
    panels = [node_panel(n, model, highlight=n.label == acting) for n in snap.nodes]
    per_row = max(1, min(len(panels), width // NODE_MIN_WIDTH))
    for i in range(0, len(panels), per_row):
        parts.append(SideBySide(panels[i:i + per_row]))
    if not panels:
        parts.append(Text("(no nodes)", style="dim"))
    return Group(*parts)


class ClusterView(View):
    """The cluster diagram of a snapshot (see the module docstring)."""

    def __init__(self, snapshot: ClusterSnapshot, model=None, *, width: int | None = None):
        self.snapshot = snapshot
        self.model = model
        self.width = check_width(width)

    def renderable(self, width: int):
        return cluster_renderable(self.snapshot, self.model, width)


def cluster_view(snapshot: ClusterSnapshot, model=None, *, width: int | None = None):
    """The cluster diagram as a view object (text in a terminal, HTML in Jupyter)."""
    return ClusterView(snapshot, model, width=width)


def cluster_text(snapshot: ClusterSnapshot, model=None, *, width: int | None = None) -> str:
    """The cluster diagram as deterministic plain text, ``width`` columns wide."""
    w = check_width(width)
    return to_text(cluster_renderable(snapshot, model, w), w)


def cluster_html(snapshot: ClusterSnapshot, model=None, *, width: int | None = None) -> str:
    w = check_width(width)
    return to_html(cluster_renderable(snapshot, model, w), w)


def show_cluster(snapshot: ClusterSnapshot, model=None, console=None, *,
                 width: int | None = None) -> None:
    """Print the cluster diagram to ``console`` (default: the terminal)."""
    from rich.console import Console
    (console or Console(width=width)).print(ClusterView(snapshot, model))
