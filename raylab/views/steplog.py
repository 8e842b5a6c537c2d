"""The step log: a flow's steps, numbered, in the lecture's words."""
from __future__ import annotations

from raylab.tracing.events import TraceEvent


def _box(ev: TraceEvent) -> str:
    return f"{ev.node or '--'} {ev.component}"


def steplog_text(events: list[TraceEvent]) -> str:
    """Deterministic plain text: one numbered line per step (no times, no pids)."""
    lines = [f"{i:>2}. [{_box(ev):<14}] {ev.narrative}" for i, ev in enumerate(events, 1)]
    return "\n".join(lines) if lines else "(no steps recorded)"


def steplog_html(events: list[TraceEvent]) -> str:
    import html
    rows = "".join(f"<tr><td>{i}</td><td>{html.escape(_box(ev))}</td>"
                   f"<td>{html.escape(ev.narrative)}</td></tr>"
                   for i, ev in enumerate(events, 1))
    return f"<table class='raylab-steplog'>{rows}</table>"


def show_steplog(events: list[TraceEvent], console=None) -> None:
    text = steplog_text(events)
    if console is not None:
        console.print(text)
    else:
        print(text)
