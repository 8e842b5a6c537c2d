"""Running a lecture demo in the terminal: all at once, or one step per Enter.

A demo is a *scenario*: a function that runs a program on a fresh two-node
cluster and returns the trace of the part worth narrating. Without ``--step``
the scenario runs, then the step log is printed with the cluster view beside it
(below it in a narrow terminal). Each row of the log says which slide it is
("Step 4"), and the scenario's objects are called a, b, c as on the slides.
With ``--step`` the cluster pauses at every lecture step: the scenario runs on a
background thread, and each press of Enter lets one step happen while the
narrative is printed.

Every demo runs under either control plane (``--control-plane centralized`` is
the lecture's design, ``ownership`` Ray 2's).
"""
from __future__ import annotations

import dataclasses
import importlib
import inspect
import os
import threading

import raylab as ray
from raylab.state import cluster_snapshot

WIDTH = 110          # the step log's deterministic text (the goldens) is this wide
BESIDE = 170         # a terminal at least this wide shows the cluster beside the log
CLUSTER_WIDTH = 84   # room for the two nodes side by side


def console():
    """The terminal, as wide as it is."""
    from rich.console import Console
    return Console(highlight=False)


# -- the cluster a demo runs on -------------------------------------------------------------
def fresh_cluster(**kwargs):
    """A two-node cluster for a demo (N1 = head, N2 = worker node)."""
    return ray.init(num_nodes=2, num_cpus=2, **kwargs)


def node_id(label: str) -> str:
    return next(n["NodeID"] for n in ray.nodes() if n["NodeName"] == label)


def control_plane() -> str:
    return ray.api.cluster().control_plane


def settle(refs) -> None:
    """Wait until the control plane knows where each of ``refs`` is. In the lecture's
    design a node's object store adds an object's entry to the GCS object table on its
    own, after the task that made it has replied; a scenario traced right after
    ``ray.wait`` would see that entry arrive in its first rows. So ask the table: its
    lookup answers once the entry exists (the lecture's callback)."""
    if control_plane() != "centralized":
        return  # Ray 2: the owner learnt the location from the task's reply already
    from raylab.core_worker import current
    cw = current.CORE_WORKER
    for ref in refs:
        reply = cw.rpc_sync(cw.gcs, "object_table_lookup", ref.binary(), cw.node_id,
                            timeout=30)
        if reply[0] != "ok":
            raise reply[1]


def run_demo(name: str, step: bool = False, plane: str | None = None, out=None):
    """Run demo ``name`` under control plane ``plane`` (None: the default). A demo whose
    ``run`` takes no ``control_plane`` gets it the way ``ray.init`` reads its default."""
    module = importlib.import_module(f"raylab.demo.{name}")
    kwargs = {"step": step}
    if out is not None:
        kwargs["out"] = out
    params = inspect.signature(module.run).parameters
    if plane is None or "control_plane" in params:
        return module.run(**kwargs, **({"control_plane": plane} if plane else {}))
    saved = os.environ.get("RAYLAB_CONTROL_PLANE")
    os.environ["RAYLAB_CONTROL_PLANE"] = plane
    try:
        return module.run(**kwargs)
    finally:
        if saved is None:
            os.environ.pop("RAYLAB_CONTROL_PLANE", None)
        else:
            os.environ["RAYLAB_CONTROL_PLANE"] = saved


# -- showing a scenario -------------------------------------------------------------------
def show(events, title: str, out=None, slides: dict | None = None,
         names: dict | None = None) -> str:
    """Print a finished scenario: its numbered steps, and the cluster as it ended. Returns
    the step log's deterministic text."""
    from raylab.views.steplog import steplog, steplog_text
    c = out or console()
    c.rule(title)
    c.print(beside(steplog(events, slides=slides, names=names),
                   named_cluster(cluster_snapshot(), names), c.width))
    return steplog_text(events, width=WIDTH, slides=slides, names=names)


def beside(log, cluster, width: int):
    """The step log with the cluster view beside it, if ``width`` leaves room for both;
    else the cluster below the log."""
    from rich.console import Group
    from rich.table import Table
    if width < BESIDE:
        return Group(log, cluster)
    grid = Table.grid(padding=(0, 2))
    grid.add_column(width=width - CLUSTER_WIDTH - 2)
    grid.add_column(width=CLUSTER_WIDTH)
    grid.add_row(log, cluster)
    return grid


def named_cluster(snap, names: dict | None):
    """The cluster view, with the scenario's objects called by their names."""
    from raylab.views.cluster import cluster_view
    if names:
        snap = dataclasses.replace(
            snap, object_table={names.get(k, k): v for k, v in snap.object_table.items()},
            nodes=[dataclasses.replace(n, objects=[
                dataclasses.replace(o, object_id=names.get(o.object_id, o.object_id))
                for o in n.objects]) for n in snap.nodes])
    return cluster_view(snap)


def step_through(scenario, title: str, out=None, prompt=input, slides: dict | None = None,
                 names: dict | None = None, story=None) -> None:
    """Run ``scenario`` paused at every lecture step; Enter lets the next step happen.
    ``story(event)``: which events the ``slides`` label (default: all)."""
    from raylab.tracing.steps import narrate
    from raylab.views.steplog import SlideSteps
    c = out or console()
    c.rule(f"{title} (step mode: press Enter for the next step)")
    stepper = ray.stepper
    saved = stepper.blocking_get
    stepper.blocking_get = "wait"   # we are the ones stepping
    stepper.on()
    done = threading.Event()
    errors: list = []
    counter = SlideSteps(slides or {})

    def run():
        try:
            scenario()
        except BaseException as e:  # shown below, not lost on the thread
            errors.append(e)
        finally:
            done.set()

    threading.Thread(target=run, name="demo-scenario", daemon=True).start()
    try:
        n = 0
        ev = stepper.wait(10)
        while ev is not None:
            n += 1
            slide = counter.label(ev) if story is None or story(ev) else ""
            c.print(f"[bold]{n:>2}[/bold] {slide:<9} [{ev.node} {ev.component}] "
                    f"{narrate(ev, names)}")
            prompt("")
            ev = stepper.next(timeout=3.0)
            if ev is None and not done.is_set():
                ev = stepper.wait(10)
    finally:
        stepper.off()
        stepper.blocking_get = saved
    done.wait(30)
    if errors:
        raise errors[0]
    c.print(named_cluster(cluster_snapshot(), names))
