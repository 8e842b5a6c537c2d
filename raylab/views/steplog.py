"""The step log: a flow's steps, numbered, in the lecture's words.

A lecture slide says "Step 4: Global scheduler decides to schedule the task on
N2". The step log prints the same kind of list from a real run: one row per
lecture-level step (``event.level == 0``), numbered in causal order, with the
node and the box (component) that acted and the sentence for it.

Beneath each lecture step sit the protocol messages that carried it out
(``level == 1``: every RPC, a worker being started, a lease being returned).
They are hidden by default, so a no-op task reads as about ten rows, and can be
expanded: all of them (``expand=True``) or only some steps (``expand={7}``).
A protocol event belongs to the lecture step that caused it (its causal parent, or
that parent's cause, and so on), or else to the lecture step it follows. Hidden events never change the numbers,
so adding protocol detail to the runtime does not renumber a lecture's steps.

A demo can also say which slide each row is (``slides``: step name -> slide
step, see :class:`SlideSteps`), and call the scenario's objects by their names
on the slide (``names``: {object hex: "a"}).
"""
from __future__ import annotations

from dataclasses import dataclass

from rich import box
from rich.table import Table
from rich.text import Text

from raylab.tracing.events import LECTURE, TraceEvent
from raylab.tracing.steps import narrate
from raylab.views.render import View, check_width, to_html, to_text

_BOX = {"driver": "driver", "gcs": "GCS", "raylet": "raylet", "worker": "worker",
        "object_store": "object store", "object_manager": "object manager"}
_BOX_STYLE = {"driver": "bold", "gcs": "yellow", "raylet": "green", "worker": "cyan",
              "object_store": "magenta", "object_manager": "magenta"}


@dataclass
class StepRow:
    """One row of the log: "7" for a lecture step, "7.1" for a protocol event beneath it."""
    number: str
    event: TraceEvent
    nested: bool = False
    hidden: int = 0          # protocol events folded beneath this row (not shown)


class SlideSteps:
    """Which slide step a row is: ``slides`` maps a step name to its slide's number, or
    to several (``(3, 6)``: the object table is looked up in Step 3 and again in Step 6)
    or a range (``"1-3"``). Slides only move forward, so a step that can be on several
    slides takes the first one not before the slide of the row above it. Feed the
    lecture-level events in causal order (at once, or one by one in step mode)."""

    def __init__(self, slides: dict):
        self.slides = slides
        self.at = 0

    def label(self, ev: TraceEvent) -> str:
        if ev.level != LECTURE:
            return ""
        wanted = self.slides.get(ev.step)
        if wanted is None:
            return ""
        for choice in (wanted if isinstance(wanted, tuple) else (wanted,)):
            last = int(str(choice).rsplit("-", 1)[-1])
            if last >= self.at:
                self.at = last
                return f"Step {choice}"
        return ""


def box_name(ev: TraceEvent) -> str:
    """The box on the lecture's diagram that acted: "driver", "GCS", "raylet", "worker w1"."""
    name = _BOX.get(ev.component, ev.component)
    if ev.component == "worker" and ev.proc:
        return f"worker {ev.proc.rsplit('.', 1)[-1]}"
    return name


def steplog_rows(events: list[TraceEvent], expand=False) -> list[StepRow]:
    """Number the lecture steps; nest each protocol event under its step.

    ``expand``: False (lecture steps only), True (every protocol event too), or a
    collection of step numbers to expand. A list holding no lecture step at all
    (say, ``t.steps(level=1)``) is shown flat, one numbered row per event.
    """
    if isinstance(expand, int) and not isinstance(expand, bool):
        expand = {expand}
    if not any(ev.level == LECTURE for ev in events):
        return [StepRow(str(i), ev) for i, ev in enumerate(events, 1)]
    number_of: dict = {}
    children: dict = {0: []}
    order: list = []
    parent_of: dict = {}
    current = 0
    for ev in events:
        parent_of[ev.key] = ev.parent
        if ev.level == LECTURE:
            current = len(order) + 1
            number_of[ev.key] = current
            children[current] = []
            order.append(ev)
        else:
            children[_lecture_step_of(ev.parent, number_of, parent_of, current)].append(ev)
    rows = _nested_rows(0, children[0], expand)
    for n, ev in enumerate(order, 1):
        shown = _nested_rows(n, children[n], expand)
        rows.append(StepRow(str(n), ev, hidden=len(children[n]) - len(shown)))
        rows.extend(shown)
    return rows


def _lecture_step_of(key, number_of: dict, parent_of: dict, fallback: int) -> int:
    """The lecture step that caused an event: its parent, or its parent's parent, ...
    (causes always come earlier). Where the chain leaves the list, the step it follows."""
    for _ in range(64):  # chains are short; a bound in case a cause was never recorded
        if not key:
            break
        if key in number_of:
            return number_of[key]
        key = parent_of.get(key)
    return fallback


def _nested_rows(n: int, evs: list, expand) -> list[StepRow]:
    wanted = expand is True or (not isinstance(expand, bool) and n in expand)
    return [StepRow(f"{n}.{i}", ev, nested=True) for i, ev in enumerate(evs, 1)] if wanted \
        else []


def steplog_table(events: list[TraceEvent], expand=False, current: int | None = None,
                  title: str | None = None, slides: dict | None = None,
                  names: dict | None = None) -> Table:
    """The step log as a rich Table (``current``: a step number to highlight; ``slides``
    and ``names``: see the module docstring)."""
    table = Table(box=box.SIMPLE_HEAD, expand=True, pad_edge=False, title=title,
                  show_edge=False)
    table.add_column("#", justify="right", no_wrap=True, width=5)
    if slides is not None:
        table.add_column("slide", no_wrap=True, width=8)
    table.add_column("node", no_wrap=True, width=4)
    table.add_column("box", no_wrap=True, width=14)
    table.add_column("step", ratio=1, overflow="fold")
    rows = steplog_rows(events, expand)
    counter = SlideSteps(slides) if slides is not None else None
    if not rows:
        table.add_row(*[""] * (len(table.columns) - 1), Text("(no steps recorded)", style="dim"))
    for row in rows:
        ev = row.event
        style = "dim" if row.nested else ""
        if current is not None and row.number == str(current):
            style = "reverse"
        narrative = ("  " if row.nested else "") + narrate(ev, names)
        cells = [Text(row.number)]
        if counter is not None:
            cells.append(Text(counter.label(ev), style="bold"))
        cells += [Text(ev.node or "--"),
                  Text(box_name(ev), style=_BOX_STYLE.get(ev.component, "")), Text(narrative)]
        table.add_row(*cells, style=style)
    return table


class StepLog(View):
    """The numbered step log of a list of trace events (see the module docstring)."""

    def __init__(self, events: list[TraceEvent], *, expand=False, current: int | None = None,
                 title: str | None = None, width: int | None = None,
                 slides: dict | None = None, names: dict | None = None):
        self.events = list(events)
        self.expand = expand
        self.current = current
        self.title = title
        self.width = check_width(width)
        self.slides, self.names = slides, names

    def renderable(self, width: int):
        return steplog_table(self.events, self.expand, self.current, self.title, self.slides,
                             self.names)


def steplog(events: list[TraceEvent], *, expand=False, current: int | None = None,
            width: int | None = None, slides: dict | None = None,
            names: dict | None = None) -> StepLog:
    """The step log as a view object (it prints as text, and as HTML in Jupyter)."""
    return StepLog(events, expand=expand, current=current, width=width, slides=slides,
                   names=names)


def steplog_text(events: list[TraceEvent], *, expand=False, width: int | None = None,
                 slides: dict | None = None, names: dict | None = None) -> str:
    """Deterministic plain text: one numbered row per step (no times, no pids)."""
    w = check_width(width)
    return to_text(steplog_table(events, expand, slides=slides, names=names), w)


def steplog_html(events: list[TraceEvent], *, expand=False, width: int | None = None,
                 slides: dict | None = None, names: dict | None = None) -> str:
    """The step log as HTML (inline styles), for ``_repr_html_``."""
    w = check_width(width)
    return to_html(steplog_table(events, expand, slides=slides, names=names), w)


def show_steplog(events: list[TraceEvent], console=None, *, expand=False,
                 width: int | None = None) -> None:
    """Print the step log to ``console`` (a rich Console), or to the terminal."""
    from rich.console import Console
    (console or Console(width=width)).print(steplog_table(events, expand))
