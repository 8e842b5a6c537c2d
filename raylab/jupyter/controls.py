"""The dashboard's widgets: buttons, the scrubber and the panels, wired to a controller.

Every callback here does one thread-safe thing (a click may be handled on the
kernel's main thread, on a subshell thread or on its event loop): it submits a
command to the :class:`~raylab.jupyter.controller.Controller`, or it tells the
dashboard which step the scrubber shows. None of them draws or waits.
"""
from __future__ import annotations

from raylab.jupyter import kernel
from raylab.tracing.stepper import STEPPER

SPEEDS = [("slow (1.5 s)", 1.5), ("normal (0.5 s)", 0.5), ("fast (0.15 s)", 0.15)]


# narratives of a step that reads differently by case (raylab.tracing.steps._variant), and
# one no process emits: none is a step name, so a breakpoint there could never fire
_NOT_STEPS = {"task_finished_store", "task_returned_store", "spillback_global",
              "schedule_decision_global", "object_table_lookup_miss"}


def step_names() -> list[str]:
    """Every step name a breakpoint can use (the catalogue in raylab.tracing.steps)."""
    from raylab.tracing import steps
    names = getattr(steps, "STEP_NAMES", None) or set(steps.NARRATIVES) - _NOT_STEPS
    return sorted(names)


def stepping() -> bool:
    """Is step mode on (the cluster pauses at every lecture step)?"""
    return STEPPER.stepping


def _button(w, text, tip, style=""):
    b = w.Button(description=text, tooltip=tip, button_style=style,
                 layout=w.Layout(width="auto"))
    kernel.route_to_sender(b)
    return b


class Controls:
    """The widgets of one dashboard (``dash.ui``); ``widget`` is the whole thing."""

    def __init__(self, dash, scale: float = 1.0):
        import ipywidgets as w
        c = dash.controller
        self.scale = scale
        self.step_mode = w.ToggleButton(value=False, description="Step mode",
                                        tooltip="pause the cluster at every lecture step",
                                        icon="pause-circle", layout=w.Layout(width="auto"))
        self.next = _button(w, "Next step", "let the paused step happen", "primary")
        self.play = _button(w, "Play ▶", "step by itself at the chosen speed")
        self.pause = _button(w, "Pause ‖", "stop at the next step")
        self.cont = _button(w, "Continue ▶▶", "run on to the next breakpoint")
        self.speed = w.Dropdown(options=SPEEDS, value=0.5, description="speed",
                                layout=w.Layout(width="210px"))
        self.bp_step = w.Dropdown(options=["(any step)"] + step_names(),
                                  description="break at", layout=w.Layout(width="300px"))
        self.bp_node = w.Dropdown(options=["(any node)"], layout=w.Layout(width="110px"))
        self.bp_add = _button(w, "Add breakpoint", "pause wherever this step happens")
        self.bp_clear = _button(w, "Clear", "remove every breakpoint")
        self.worker = w.Dropdown(options=[], description="worker",
                                 layout=w.Layout(width="200px"))
        self.kill_worker = _button(w, "Kill worker", "SIGKILL that worker process", "danger")
        self.node = w.Dropdown(options=[], description="node", layout=w.Layout(width="170px"))
        self.kill_node = _button(w, "Kill node", "kill the node's raylet, store and workers",
                                 "danger")
        self.add_node = _button(w, "Add node", "start one more node", "success")
        self.back = _button(w, "◀", "one step back in the recording")
        self.forward = _button(w, "▶", "one step forward in the recording")
        self.slider = w.IntSlider(value=0, min=0, max=0, description="show step",
                                  layout=w.Layout(width="460px"))
        self.live = _button(w, "Live", "follow the cluster again")
        for x in (self.step_mode, self.speed, self.bp_step, self.bp_node, self.worker,
                  self.node, self.slider):
            kernel.route_to_sender(x)
        self.status, self.diagram = w.HTML(), w.HTML()
        self.log, self.tables = w.HTML(), w.HTML()
        self._wire(dash, c)
        self.widget = self._layout(w)

    def _wire(self, dash, c) -> None:
        # the drawing thread sets the toggle to what the stepper does: only a change to
        # something else is a click
        self.step_mode.observe(lambda ch: stepping() != ch["new"] and
                               c.submit("step_mode", bool(ch["new"])), names="value")
        self.next.on_click(lambda _b: c.submit("next"))
        self.play.on_click(lambda _b: c.submit("play"))
        self.pause.on_click(lambda _b: c.submit("pause"))
        self.cont.on_click(lambda _b: c.submit("continue"))
        self.speed.observe(lambda ch: c.submit("speed", ch["new"]), names="value")
        self.bp_add.on_click(lambda _b: c.submit("break_at", self.breakpoint()))
        self.bp_clear.on_click(lambda _b: c.submit("clear_breakpoints"))
        self.kill_worker.on_click(lambda _b: self.worker.value and
                                  c.submit("kill_worker", self.worker.value))
        self.kill_node.on_click(lambda _b: self.node.value and
                                c.submit("kill_node", self.node.value))
        self.add_node.on_click(lambda _b: c.submit("add_node"))
        self.back.on_click(lambda _b: dash.show_step(self.slider.value - 1))
        self.forward.on_click(lambda _b: dash.show_step(self.slider.value + 1))
        self.live.on_click(lambda _b: dash.show_step(None))
        self.slider.observe(lambda ch: dash.scrubbed(ch["new"]), names="value")

    def breakpoint(self) -> dict:
        """The breakpoint the two dropdowns describe (at least one criterion)."""
        crit = {}
        if self.bp_step.value != "(any step)":
            crit["step"] = self.bp_step.value
        if self.bp_node.value != "(any node)":
            crit["node"] = self.bp_node.value
        return crit or {"level": 0}

    def _layout(self, w):
        px = round(13 * self.scale)
        # the widgets' own CSS sizes buttons and menus for a desk, not a lecture hall
        style = (f"<style>.raylab-scaled .jupyter-widgets, .raylab-scaled button, "
                 f".raylab-scaled select, .raylab-scaled .widget-label {{font-size:{px}px}}"
                 f"</style>") if self.scale != 1 else ""
        title = w.HTML(f"{style}<b style='font-size:{round(15 * self.scale)}px'>raylab "
                       f"dashboard</b> <span style='color:#777'>the real cluster, live</span>")
        rows = [title,
                w.HBox([self.step_mode, self.next, self.play, self.pause, self.cont,
                        self.speed]),
                w.HBox([self.bp_step, self.bp_node, self.bp_add, self.bp_clear,
                        self.worker, self.kill_worker]),
                w.HBox([self.node, self.kill_node, self.add_node]),
                self.status, self.diagram,
                w.HBox([self.back, self.slider, self.forward, self.live]),
                w.HTML(f"<b style='font-size:{px}px'>step log</b>"), self.log, self.tables]
        box = w.VBox(rows, layout=w.Layout(max_width="1000px"))
        box.add_class("raylab-dashboard")
        if self.scale != 1:
            box.add_class("raylab-scaled")
        return box

    def show_mode(self) -> None:
        """Make the Step mode toggle say what the stepper does (it may change from code);
        the toggle's observer ignores a value the stepper already has."""
        if self.step_mode.value != stepping():
            self.step_mode.value = stepping()

    def set_choices(self, snapshot) -> None:
        """Workers and nodes to pick from (called by the dashboard's drawing thread)."""
        if snapshot is None:
            return
        workers = [wk.label for n in snapshot.nodes if n.alive for wk in n.workers
                   if wk.state != "DEAD"]
        nodes = [n.label for n in snapshot.nodes if n.alive and not n.is_head]
        labels = [n.label for n in snapshot.nodes]
        for dropdown, options in ((self.worker, workers), (self.node, nodes),
                                  (self.bp_node, ["(any node)"] + labels)):
            if list(dropdown.options) != options:
                keep = dropdown.value if dropdown.value in options else None
                dropdown.options = options
                dropdown.value = keep if keep is not None else (options[0] if options else None)

    def disable(self, note: str, scale: float = 1.0) -> None:
        """Grey out every control; the panels keep their last frame."""
        for x in (self.step_mode, self.next, self.play, self.pause, self.cont, self.speed,
                  self.bp_step, self.bp_node, self.bp_add, self.bp_clear, self.worker,
                  self.kill_worker, self.node, self.kill_node, self.add_node, self.back,
                  self.forward, self.slider, self.live):
            x.disabled = True
        self.status.value = (f"<div class='raylab-status' style='color:#777;font-size:"
                             f"{13 * scale:.0f}px;line-height:1.35'>{note}</div>")

    def close(self) -> None:
        """Close this dashboard's widgets (their front-end views go away)."""
        _close_tree(self.widget)


def _close_tree(widget) -> None:
    for child in getattr(widget, "children", ()):
        _close_tree(child)
    widget.close()
