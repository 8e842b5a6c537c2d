"""Running a lecture demo in the terminal: all at once, or one step per Enter.

A demo is a *scenario*: a function that runs a program on a fresh two-node
cluster and returns the trace of the part worth narrating. Without ``--step``
the scenario runs, then the step log and the cluster view are printed. With
``--step`` the cluster pauses at every lecture step: the scenario runs on a
background thread, and each press of Enter lets one step happen while the
narrative (and the cluster as it is now) is printed.
"""
from __future__ import annotations

import threading

import raylab as ray
from raylab.state import cluster_snapshot

WIDTH = 110


def console():
    from rich.console import Console
    return Console(width=WIDTH, highlight=False)


def show(trace, title: str, out=None, **criteria) -> str:
    """Print a finished scenario: its numbered steps, then the cluster as it ended."""
    from raylab.views.cluster import cluster_view
    from raylab.views.steplog import steplog
    c = out or console()
    c.rule(title)
    c.print(steplog(trace.steps(**criteria), width=WIDTH))
    c.print(cluster_view(cluster_snapshot(), width=WIDTH))
    return trace.text(width=WIDTH, **criteria)


def step_through(scenario, title: str, out=None, prompt=input) -> None:
    """Run ``scenario`` paused at every lecture step; Enter lets the next step happen."""
    from raylab.views.cluster import cluster_view
    c = out or console()
    c.rule(f"{title} (step mode: press Enter for the next step)")
    stepper = ray.stepper
    saved = stepper.blocking_get
    stepper.blocking_get = "wait"   # we are the ones stepping
    stepper.on()
    done = threading.Event()
    errors: list = []

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
            c.print(f"[bold]Step {n}[/bold] [{ev.node} {ev.component}] {ev.narrative}")
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
    c.print(cluster_view(cluster_snapshot(), width=WIDTH))


def fresh_cluster(**kwargs):
    """A two-node cluster for a demo (N1 = head, N2 = worker node)."""
    return ray.init(num_nodes=2, num_cpus=2, **kwargs)


def node_id(label: str) -> str:
    return next(n["NodeID"] for n in ray.nodes() if n["NodeName"] == label)
