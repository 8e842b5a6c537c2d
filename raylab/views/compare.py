"""The comparison view: one program, two control planes, side by side.

Left, the lecture's centralized design; right, Ray 2's ownership design. Each
column is the numbered step log of the same task; a step whose name appears
in only one of the two is marked, so the differences stand out. Below, the
GCS's load per task in each design: messages received, and CPU time.
"""
from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text

from raylab.views.render import View, to_html, to_text

TITLES = {"centralized": "lecture: centralized (GCS object table, global scheduler)",
          "ownership": "Ray 2: ownership (owners, leases, spillback)"}


def _column(events, other_names: set) -> Table:
    t = Table(show_header=False, box=None, pad_edge=False, expand=True)
    t.add_column("#", justify="right", width=3)
    t.add_column("where", width=9, no_wrap=True)
    t.add_column("step", ratio=1)
    for i, ev in enumerate(events, 1):
        mark = "" if ev.step in other_names else " ◆"
        t.add_row(str(i), f"{ev.node} {ev.component}"[:9],
                  Text(ev.narrative + mark, style="bold" if mark else ""))
    return t


def _side_by_side(steps: dict) -> Table:
    planes = list(steps)
    names = {p: {ev.step for ev in steps[p]} for p in planes}
    grid = Table(show_header=True, expand=True, show_lines=False)
    for p in planes:
        grid.add_column(TITLES.get(p, p), ratio=1)
    cols = []
    for p in planes:
        others = set().union(*(names[q] for q in planes if q != p))
        cols.append(_column(steps[p], others))
    grid.add_row(*cols)
    return grid


def _load_table(loads: dict) -> Table:
    planes = list(loads)
    t = Table(title="GCS load per task", expand=False)
    t.add_column("per task")
    for p in planes:
        t.add_column(p, justify="right")
    rows = [("messages to the GCS", "gcs_messages_per_task", "{:.1f}"),
            ("GCS CPU time (ms)", "gcs_cpu_ms_per_task", "{:.2f}"),
            ("wall time (ms)", "wall_ms_per_task", "{:.1f}")]
    for label, key, fmt in rows:
        t.add_row(label, *(fmt.format(loads[p][key]) for p in planes))
    methods = sorted(set().union(*(loads[p]["gcs_messages_by_method"] for p in planes)))
    for m in methods:
        t.add_row(f"  {m}", *(f"{loads[p]['gcs_messages_by_method'].get(m, 0):.1f}"
                              for p in planes))
    return t


def compare_renderable(steps: dict, loads: dict | None = None, width: int = 110):
    parts = [_side_by_side(steps),
             Text("◆ a step only this control plane takes", style="dim")]
    if loads:
        parts.append(_load_table(loads))
    return Group(*parts)


def compare_text(steps: dict, loads: dict | None = None, *, width: int = 110) -> str:
    return to_text(compare_renderable(steps, loads, width), width)


def compare_html(steps: dict, loads: dict | None = None, *, width: int = 110) -> str:
    return to_html(compare_renderable(steps, loads, width), width)


class CompareView(View):
    """The comparison as a view: rich in a terminal, HTML and stable text in a notebook."""

    def __init__(self, steps: dict, loads: dict | None = None):
        self.steps, self.loads = steps, loads

    def renderable(self, width: int):
        return compare_renderable(self.steps, self.loads, width)


def compare_view(steps: dict, loads: dict | None = None) -> CompareView:
    """``steps``: control plane -> its trace events; ``loads``: control plane -> the GCS
    load dict of :func:`raylab.demo.compare.gcs_load` (optional)."""
    return CompareView(steps, loads)
