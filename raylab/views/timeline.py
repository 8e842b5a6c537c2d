"""The timeline: which worker process ran which task, step by step (a text Gantt chart).

One row per worker process (``N2.w1``), one bar per execution of a task on
it. The x axis is not wall time but the numbered lecture steps of the step
log: a bar from step 10 to step 11 means the worker started the task at step
10 (``execute_task``) and finished it at step 11. So the picture is the same
on every run and on every machine, and it lines up with the step log.

Bars end in ``▶`` while the task still runs and in ``✗`` when its worker died
or it failed. A process that runs several tasks at once (an async actor awaiting
in one call while the next starts, a threaded actor) gets one row per call in
flight: the overlap is the point. For wall times, export the same spans as a Chrome trace
(:func:`raylab.tracing.timeline.timeline`, what ``ray.timeline()`` writes).
"""
from __future__ import annotations

from rich.console import Group
from rich.text import Text

from raylab import states
from raylab.views.format import short_id
from raylab.views.model import Span, TraceModel, fold
from raylab.views.render import View, check_width, to_html, to_text

_MAX_CELL = 6      # columns per step, at most (a short trace is not stretched)
_STYLES = ["cyan", "magenta", "green", "yellow", "blue", "red"]


def lanes(model: TraceModel) -> list[str]:
    """The worker processes that ran something, in node order: N1.w1, N1.w2, N2.w1."""
    procs = {s.proc for s in model.spans}
    return sorted(procs, key=_proc_key)


def _proc_key(proc: str) -> tuple:
    node, _, rest = proc.partition(".")
    digits = "".join(c for c in rest if c.isdigit())
    return (len(node), node, int(digits) if digits else 0, proc)


def _x(step: int, steps: int, cols: int) -> int:
    """The column where ``step`` (1-based) starts; ``steps + 1`` is the right edge."""
    return (step - 1) * cols // steps


def _bar(span: Span, length: int) -> str:
    """``name━━━▶``; on an actor's row the method name is enough (the row is the actor's),
    and a name cut short ends in ``…`` so that two bars side by side read apart."""
    end = {states.RUNNING: "▶", "died": "✗", states.FAILED: "✗"}.get(span.status, "")
    name = span.name.rsplit(".", 1)[-1] if span.actor else span.name
    room = max(length - len(end), 0)
    body = name + "━" * room if len(name) <= room else name[: max(room - 1, 0)] + "…"
    return (body[:room] + end)[:length]


def _lane(spans: list[Span], steps: int, cols: int, style_of) -> Text:
    cells = [" "] * cols
    styles = [""] * cols
    for s in spans:
        end = s.end if s.end is not None else steps
        a = _x(s.start, steps, cols)
        b = max(_x(end + 1, steps, cols), a + 1)
        for i, ch in enumerate(_bar(s, b - a)):
            if a + i < cols:
                cells[a + i], styles[a + i] = ch, style_of(s)
    text = Text()
    for ch, st in zip(cells, styles):
        text.append(ch, style=st)
    return text


def tracks(spans: list[Span]) -> list[list[Span]]:
    """One process's spans in rows, none overlapping another in its row (the first row
    that is free when a span starts): one row for a process that runs one task at a time."""
    rows: list[list[Span]] = []
    for s in sorted(spans, key=lambda s: s.start):
        row = next((r for r in rows if r[-1].end is not None and r[-1].end < s.start), None)
        if row is None:
            rows.append([s])
        else:
            row.append(s)
    return rows


def _axis(steps: int, cols: int) -> Text:
    line = [" "] * cols
    last_end = -1
    for s in range(1, steps + 1):
        x, label = _x(s, steps, cols), str(s)
        if x > last_end and x + len(label) <= cols:
            line[x:x + len(label)] = label
            last_end = x + len(label)
    return Text("".join(line).rstrip(), style="dim")


def timeline_renderable(model: TraceModel, width: int, legend: bool = True):
    """The Gantt chart (and its legend) as a rich renderable, ``width`` columns wide."""
    rows = lanes(model)
    if not rows:
        return Text("(no task ran on a worker in this trace)", style="dim")
    steps = max(model.step_count, 1)
    label_w = max(len(r) for r in rows + ["step"])
    cols = min(width - label_w - 2, steps * _MAX_CELL)
    names = sorted({s.name for s in model.spans})

    def style_of(span: Span) -> str:  # one colour per task name
        return _STYLES[names.index(span.name) % len(_STYLES)]

    out = [Text(f"{'step':<{label_w}}  ", style="dim") + _axis(steps, cols)]
    for proc in rows:
        for i, track in enumerate(tracks([s for s in model.spans if s.proc == proc])):
            out.append(Text(f"{proc if i == 0 else '':<{label_w}}  ", style="bold") +
                       _lane(track, steps, cols, style_of))
    if legend:
        out.append(Text(""))
        out.extend(_legend_line(s, label_w) for s in model.spans)
    return Group(*out)


def _legend_line(s: Span, label_w: int) -> Text:
    if s.end == s.start:
        steps = f"step {s.start}"
    else:
        steps = f"steps {s.start}-{s.end if s.end is not None else '…'}"
    attempt = f", attempt {s.attempt}" if s.attempt else ""
    who = f"actor {short_id(s.actor)}, " if s.actor else ""
    return Text(f"{s.proc:<{label_w}}  {s.name} ({who}task {short_id(s.task)}{attempt}): "
                f"{steps}, {s.status}")


class TimelineView(View):
    """The per-worker timeline of a trace model (see the module docstring)."""

    def __init__(self, model: TraceModel, *, legend: bool = True, width: int | None = None):
        self.model = model
        self.legend = legend
        self.width = check_width(width)

    def renderable(self, width: int):
        return timeline_renderable(self.model, width, self.legend)


def _model(model_or_events) -> TraceModel:
    return model_or_events if isinstance(model_or_events, TraceModel) else fold(model_or_events)


def timeline_view(model_or_events, *, legend: bool = True,
                  width: int | None = None) -> TimelineView:
    """The timeline as a view object, from a model or a list of trace events."""
    return TimelineView(_model(model_or_events), legend=legend, width=width)


def timeline_text(model_or_events, *, legend: bool = True, width: int | None = None) -> str:
    """The timeline as deterministic plain text."""
    w = check_width(width)
    return to_text(timeline_renderable(_model(model_or_events), w, legend), w)


def timeline_html(model_or_events, *, legend: bool = True, width: int | None = None) -> str:
    w = check_width(width)
    return to_html(timeline_renderable(_model(model_or_events), w, legend), w)
