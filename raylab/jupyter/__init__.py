"""raylab in Jupyter: a live dashboard, replays, rich display and the %raylab magics.

    %load_ext raylab                       # the magics: %raylab init, %raylab dashboard, ...
    import raylab.jupyter as rj
    dash = rj.dashboard(step=True)         # the real cluster, live, with step controls
    rj.replay(t)                           # scrub a recorded trace back and forth
    rj.export_html(t, "add.html")          # ... or as a page that plays without a kernel
    await rj.get_async(refs)               # wait in a cell, the controls staying live
    rj.story(t, ref)                       # one task's steps, in their causal order
    rj.timeline(t, actor)                  # what ran in an actor's process, over the steps

Modules, one idea each:

- :mod:`~raylab.jupyter.kernel`      what a kernel can do while a cell runs; the shims
- :mod:`~raylab.jupyter.scene`       the cluster at step k of a trace (pure data)
- :mod:`~raylab.jupyter.diagram`     a scene drawn as the lecture's diagram (SVG) or text
- :mod:`~raylab.jupyter.panels`      step log and tables of tasks, actors, objects (HTML)
- :mod:`~raylab.jupyter.player`      frames of a recording; the replay widget
- :mod:`~raylab.jupyter.export`      a standalone HTML replay
- :mod:`~raylab.jupyter.controller`  clicks become actions, on a thread of their own
- :mod:`~raylab.jupyter.controls`    the dashboard's widgets
- :mod:`~raylab.jupyter.live`        the live dashboard
- :mod:`~raylab.jupyter.aio`         ``await`` in a cell
- :mod:`~raylab.jupyter.magics`, :mod:`~raylab.jupyter.commands`   ``%raylab``

The runtime never imports this package; it reads the trace like any other view.
"""
from __future__ import annotations

_EXPORTS = {
    "Dashboard": "live", "dashboard": "live",
    "Replay": "player", "replay": "player", "Frames": "player",
    "export_html": "export", "get_async": "aio", "TraceView": "traceview",
    "story": "traceview", "timeline": "traceview",
    "load_ipython_extension": "magics",
}

__all__ = sorted(_EXPORTS) + ["status"]


def status():
    """The cluster now, as the lecture's diagram (a view: text and HTML)."""
    from raylab.jupyter import commands
    return commands.cmd_status(None)


_MODULES = ("aio", "commands", "controller", "controls", "diagram", "export", "kernel", "live",
            "magics", "panels", "player", "scene", "testing", "traceview")


def __getattr__(name: str):
    import importlib
    if name in _MODULES:
        return importlib.import_module(f"raylab.jupyter.{name}")
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'raylab.jupyter' has no attribute {name!r}")
    return getattr(importlib.import_module(f"raylab.jupyter.{module}"), name)
