"""One renderable, three forms: a terminal, deterministic plain text, and HTML.

Every view builds a rich renderable from data (a trace model, a cluster
snapshot) and nothing else. This module turns it into:

- the terminal: ``rich.print(view)`` or ``view.show()`` (colours, box drawing);
- plain text: fixed width, no ANSI escapes, trailing spaces stripped. This is the
  ``text/plain`` a notebook stores and nbval compares, so it must never hold a
  wall time, a pid or a memory address;
- HTML: the same drawing with inline styles, for ``_repr_html_`` in Jupyter.

The width is always given, never read from the terminal or ``JUPYTER_COLUMNS``:
the same view prints the same text on every machine.
"""
from __future__ import annotations

import io

from rich.console import Console

DEFAULT_WIDTH = 100

_PRE = ("<pre class=\"raylab-view\" style=\"white-space:pre;overflow-x:auto;"
        "line-height:normal;font-family:Menlo,'DejaVu Sans Mono',consolas,'Courier New',"
        "monospace\">{code}</pre>")


def _console(width: int, styled: bool) -> Console:
    """A private console that ignores the environment (COLUMNS, NO_COLOR, Jupyter)."""
    return Console(width=width, file=io.StringIO(), force_terminal=styled,
                   color_system="truecolor" if styled else None, force_jupyter=False,
                   force_interactive=False, record=styled, emoji=False, markup=False,
                   highlight=False, legacy_windows=False, _environ={})


def check_width(width) -> int:
    """Validate a ``width`` argument eagerly, with the fix in the message."""
    if width is None:
        return DEFAULT_WIDTH
    if not isinstance(width, int) or isinstance(width, bool) or width < 20:
        raise ValueError(f"invalid value for width, expected an int >= 20 (not {width!r})")
    return width


def to_text(renderable, width: int | None = None) -> str:
    """``renderable`` as plain text, ``width`` columns wide, without trailing spaces."""
    console = _console(check_width(width), styled=False)
    console.print(renderable)
    lines = [line.rstrip() for line in console.file.getvalue().splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    return "\n".join(lines)


def to_html(renderable, width: int | None = None) -> str:
    """``renderable`` as a ``<pre>`` block with inline styles (for ``_repr_html_``)."""
    console = _console(check_width(width), styled=True)
    console.print(renderable)
    return console.export_html(inline_styles=True, code_format=_PRE)


class View:
    """A view of raylab data: build it once, show it in a terminal, as text or as HTML.

    Subclasses implement :meth:`renderable`. In Jupyter, ``text/plain`` is the
    deterministic text (what nbval compares) and ``text/html`` the coloured drawing.
    """

    width: int = DEFAULT_WIDTH

    def renderable(self, width: int):
        """The rich renderable for ``width`` columns (layouts may change with it)."""
        raise NotImplementedError(f"{type(self).__name__} must implement renderable(width)")

    def text(self, width: int | None = None) -> str:
        w = check_width(width or self.width)
        return to_text(self.renderable(w), w)

    def html(self, width: int | None = None) -> str:
        w = check_width(width or self.width)
        return to_html(self.renderable(w), w)

    def show(self, console: Console | None = None) -> None:
        """Print to ``console`` (default: a terminal console, or the notebook's)."""
        (console or Console(width=self.width)).print(self)

    def __rich_console__(self, console, options):
        yield self.renderable(options.max_width)

    def __repr__(self) -> str:
        return self.text()

    def _repr_html_(self) -> str:
        return self.html()


class SideBySide:
    """Panels in one row, equal widths, drawn as tall as the tallest (boxes on a slide).

    ``panels`` must have a settable ``height`` (rich ``Panel`` has one).
    """

    def __init__(self, panels: list, gap: int = 2):
        self.panels = panels
        self.gap = gap

    def __rich_console__(self, console, options):
        from rich.segment import Segment
        n = len(self.panels)
        free = options.max_width - self.gap * (n - 1)
        widths = [free // n + (1 if i < free % n else 0) for i in range(n)]
        heights = [len(console.render_lines(p, options.update(width=w, height=None)))
                   for p, w in zip(self.panels, widths)]
        tallest = max(heights, default=0)
        columns = []
        for p, w in zip(self.panels, widths):
            p.height = tallest
            columns.append(console.render_lines(p, options.update(width=w, height=tallest)))
        for row in range(tallest):
            for i, lines in enumerate(columns):
                if i:
                    yield Segment(" " * self.gap)
                yield from lines[row]
            yield Segment.line()
