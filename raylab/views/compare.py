"""The comparison view: one program, two control planes, side by side.

Left, the lecture's centralized design; right, Ray 2's ownership design. Each
column is the numbered step log of the same task. A step that does not happen
in the other design is marked ◆: steps are compared by *what happens* (who
acts, the step, and whom it asks or where it goes), not by name alone, so
"N2's object manager looks a up in the GCS object table" and "... asks the
owner of a" are marked although both are ``locate_object``. Below, the GCS's
load per task in each design: messages received, and CPU time.

A column given as a :class:`raylab.demo.compare.Scenario` also says which slide
each row is and calls the scenario's objects a, b, c.
"""
from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text

from raylab.tracing.steps import narrate
from raylab.views.render import View, to_html, to_text
from raylab.views.steplog import SlideSteps

TITLES = {"centralized": "lecture: centralized (GCS object table, global scheduler)",
          "ownership": "Ray 2: ownership (owners, leases, spillback)"}
DIFFERS = " ◆"


def what_happens(ev) -> tuple:
    """A step, as the two designs can share it: the box that acts, the step, and whom
    it addresses (a raylet, a node, the GCS or the owner) or how (its sentence)."""
    d = ev.detail
    return (ev.node, ev.component, ev.step, d.get("at"), d.get("raylet"), d.get("to"),
            d.get("text"))


def differing(steps: dict) -> dict:
    """control plane -> the positions of its steps that the other designs do not take."""
    happens = {p: {what_happens(ev) for ev in evs} for p, evs in steps.items()}
    out = {}
    for p, evs in steps.items():
        others = set().union(*(happens[q] for q in steps if q != p))
        out[p] = {i for i, ev in enumerate(evs) if what_happens(ev) not in others}
    return out


def _column(events, marked: set) -> Table:
    slides = getattr(events, "slides", None)
    names = getattr(events, "names", None)
    counter = SlideSteps(slides) if slides else None
    t = Table(show_header=False, box=None, pad_edge=False, expand=True)
    t.add_column("#", justify="right", width=3)
    if counter is not None:
        t.add_column("slide", width=9, no_wrap=True)
    t.add_column("where", width=9, no_wrap=True)
    t.add_column("step", ratio=1)
    for i, ev in enumerate(events):
        mark = DIFFERS if i in marked else ""
        cells = [str(i + 1)]
        if counter is not None:
            cells.append(counter.label(ev))
        cells += [f"{ev.node} {ev.component}"[:9],
                  Text(narrate(ev, names) + mark, style="bold" if mark else "")]
        t.add_row(*cells)
    return t


def _side_by_side(steps: dict) -> Table:
    planes = list(steps)
    marked = differing(steps)
    grid = Table(show_header=True, expand=True, show_lines=False)
    for p in planes:
        grid.add_column(TITLES.get(p, p), ratio=1)
    grid.add_row(*(_column(steps[p], marked[p]) for p in planes))
    grid.add_row(*(Text(f"{len(marked[p])} of {len(steps[p])} steps differ", style="dim")
                   for p in planes))
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
             Text("◆ happens only in this control plane (who acts, and whom it asks)",
                  style="dim")]
    if loads:
        parts.append(_load_table(loads))
        parts.append(Text("GCS CPU time: its process's CPU while the tasks ran, less its "
                          "background work (resource pulls, health checks) over that time",
                          style="dim"))
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
    """``steps``: control plane -> its trace events (a list, or a ``Scenario`` with slides
    and names); ``loads``: control plane -> the GCS load dict of
    :func:`raylab.demo.compare.gcs_load` (optional)."""
    return CompareView(steps, loads)
