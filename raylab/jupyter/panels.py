"""The dashboard's other panels: the step log and the tables of tasks, actors and objects.

Each is a pure function of the trace model (or of the events), as HTML for the
widgets and the exported page, and as plain text for notebooks. The step log
uses the same rows as the rich step log (:func:`raylab.views.steplog.steplog_rows`):
lecture steps numbered in causal order, in the lecture's words; the protocol
messages beneath a step are counted, not shown.
"""
from __future__ import annotations

from html import escape

from raylab.config import Config
from raylab.tracing.events import TraceEvent
from raylab.views.format import human_size, short_id, short_object
from raylab.views.model import FREED, LOST, TraceModel
from raylab.views.steplog import box_name, steplog_rows

INLINE_LIMIT = Config.max_direct_call_object_size     # Ray's default: smaller travels inline
MONO = "font-family:Menlo,'DejaVu Sans Mono',consolas,monospace"
# the widget's own CSS gives every HTML widget a line height of one button (28 px), which
# double-spaces a table: each panel sets its own
FONT = f"{MONO};font-size:13px;line-height:1.35"


def font(scale: float = 1.0) -> str:
    """The panels' font at ``scale`` (1.5: for a lecture hall)."""
    return f"{MONO};font-size:{13 * scale:.0f}px;line-height:1.35"
_CELL = "padding:1px 8px 1px 0;text-align:left;vertical-align:top"
_BOX_COLOR = {"driver": "#222", "gcs": "#8d6e00", "raylet": "#2e7d32", "worker": "#00838f",
              "object_store": "#ad1457", "object_manager": "#ad1457"}


def steplog_html(events: list[TraceEvent], current: int | None = None,
                 window: int | None = 14, row_ids: bool = False, paused=(),
                 scale: float = 1.0) -> str:
    """The numbered step log as an HTML table, row ``current`` highlighted.

    ``window``: show at most this many rows, ending a few after ``current`` (a live
    view cannot scroll itself); None shows every row. ``row_ids`` gives each row an
    id ``raylab-step-<n>`` (the exported page highlights rows with them). ``paused``:
    keys of the events the cluster is held at now (marked "paused").
    """
    rows = [r for r in steplog_rows(events) if not r.nested]
    if not rows:
        return f'<div style="{font(scale)};color:#999">(no steps recorded yet)</div>'
    first, last = 0, len(rows)
    if window is not None and len(rows) > window:
        end = min(len(rows), max(current or len(rows), window - 3) + 3)
        first, last = max(0, end - window), end
    out = [f'<table class="raylab-steplog" style="{font(scale)};border-collapse:collapse;'
           f'width:100%">']
    if first:
        out.append(f'<tr><td colspan="4" style="{_CELL};color:#999">… {first} earlier '
                   f'step(s)</td></tr>')
    for row in rows[first:last]:
        out.append(_row_html(row, str(current) == row.number, row_ids, paused))
    if last < len(rows):
        out.append(f'<tr><td colspan="4" style="{_CELL};color:#999">… {len(rows) - last} '
                   f'later step(s)</td></tr>')
    out.append("</table>")
    return "".join(out)


def _row_html(row, highlight: bool, row_ids: bool, paused) -> str:
    ev = row.event
    style = "background:#ffe0b2;font-weight:bold" if highlight else ""
    rid = f' id="raylab-step-{row.number}"' if row_ids else ""
    more = (f' <span style="color:#999">(+{row.hidden} protocol)</span>'
            if row.hidden else "")
    color = _BOX_COLOR.get(ev.component, "#222")
    held = ' <span style="color:#e65100">‖ paused here</span>' if ev.key in paused else ""
    return (f'<tr class="raylab-step"{rid} style="{style}">'
            f'<td style="{_CELL};text-align:right;color:#777">{row.number}</td>'
            f'<td style="{_CELL}">{escape(ev.node or "--")}</td>'
            f'<td style="{_CELL};color:{color};white-space:nowrap">{escape(box_name(ev))}</td>'
            f'<td style="{_CELL}">{escape(ev.narrative)}{more}{held}</td></tr>')


# -- tasks, actors, objects ------------------------------------------------------------------------
def task_rows(model: TraceModel) -> list[tuple]:
    """One row per task, by name then id (events of concurrent tasks arrive in any order)."""
    tasks = sorted(model.tasks.values(), key=lambda t: (t.name, t.task_id))
    return [(short_id(t.task_id), f"{t.name}()", t.state, t.worker or t.node or "-",
             str(t.attempt)) for t in tasks]


def actor_rows(model: TraceModel) -> list[tuple]:
    return [(short_id(a.actor_id), a.class_name, a.state or "?", a.worker or a.node or "-",
             str(a.restarts)) for a in sorted(model.actors.values(),
                                              key=lambda a: (a.class_name, a.actor_id))]


def object_rows(model: TraceModel) -> list[tuple]:
    out = []
    for o in sorted(model.objects.values(), key=lambda o: o.object_id):
        where = ", ".join(o.locations) or ("owner's memory store"
                                           if o.inline and o.state not in (FREED, LOST) else "-")
        made_by = f"task {short_id(o.task)}" if o.task else ("ray.put" if o.put else "?")
        out.append((short_object(o.object_id), o.state, _size(o), o.owner or "?", where,
                    made_by))
    return out


def _size(o) -> str:
    """Its size; a small value that travelled inside a message has none in the trace."""
    if o.size:
        return human_size(o.size)
    return f"< {human_size(INLINE_LIMIT)}" if o.inline else "?"


TABLES = (("tasks", ("task", "function", "state", "where", "attempt"), task_rows),
          ("actors", ("actor", "class", "state", "where", "restarts"), actor_rows),
          ("objects", ("object", "state", "size", "owner", "copies on", "made by"),
           object_rows))


def _table_html(title: str, headers, rows) -> str:
    head = "".join(f'<th style="{_CELL};border-bottom:1px solid #bbb">{escape(h)}</th>'
                   for h in headers)
    body = "".join("<tr>" + "".join(f'<td style="{_CELL}">{escape(c)}</td>' for c in r)
                   + "</tr>" for r in rows[-12:])
    more = (f'<div style="color:#999">… and {len(rows) - 12} earlier</div>'
            if len(rows) > 12 else "")
    empty = '<div style="color:#999">(none in this trace)</div>' if not rows else ""
    return (f'<div style="display:inline-block;vertical-align:top;margin:0 18px 8px 0">'
            f'<div style="font-weight:bold">{escape(title)}</div>'
            f'<table style="border-collapse:collapse">{head and "<tr>" + head + "</tr>"}'
            f'{body}</table>{more}{empty}</div>')


def tables_html(model: TraceModel, scale: float = 1.0) -> str:
    """Tasks (with Ray's task states), actors and objects of the trace, side by side."""
    return (f'<div class="raylab-tables" style="{font(scale)}">' +
            "".join(_table_html(t, h, f(model)) for t, h, f in TABLES) + "</div>")


def tables_text(model: TraceModel) -> str:
    """The same tables as plain text with fixed columns (deterministic)."""
    out = []
    for title, headers, f in TABLES:
        rows = f(model)
        out.append(f"{title}:")
        if not rows:
            out.append("  (none in this trace)")
            continue
        widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows)]
        for r in (headers, *rows):
            out.append("  " + "  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip())
    return "\n".join(out)
