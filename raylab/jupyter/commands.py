"""What each ``%raylab`` command does (the parsing and usage are in :mod:`~raylab.jupyter.magics`).

One function per command, each a few lines of the public API, and each prints
one sentence (or returns a view, which the notebook shows).
"""
from __future__ import annotations

import raylab as ray
from raylab.jupyter import live as _dashboard
from raylab.tracing.stepper import STEPPER

MiB = 1024 * 1024
_LAST = {}          # the last %%raylab trace: {"view": TraceView}


def _need_cluster() -> None:
    if not ray.is_initialized():
        from raylab.jupyter.magics import UsageError
        raise UsageError("no cluster is running: start one with %raylab init")


def _refuse(message: str):
    from raylab.jupyter.magics import CommandError
    raise CommandError(message)


def _labels() -> list[str]:
    return sorted(ray.api.cluster().nodes, key=lambda s: (len(s), s))


def _sync_dashboards() -> None:
    for d in list(_dashboard._OPEN):
        d.sync()


def cmd_init(args) -> None:
    if ray.is_initialized():
        _refuse(f"a cluster is already running (nodes {', '.join(_labels())}); "
                "stop it first with %raylab shutdown")
    ray.init(num_nodes=args.nodes, num_cpus=args.cpus, num_gpus=args.gpus,
             object_store_memory=args.store_mb * MiB, control_plane=args.mode)
    labels = sorted((n["NodeName"] for n in ray.nodes()), key=lambda s: (len(s), s))
    nodes = ", ".join(label + (" (head)" if label == "N1" else "") for label in labels)
    print(f"raylab: started nodes {nodes}; {args.cpus:g} CPUs and {args.store_mb} MiB of "
          f"object store each; control plane: {args.mode}")


def cmd_status(args):
    """The cluster now: the lecture's diagram as a view (text and HTML)."""
    _need_cluster()
    from raylab.jupyter.player import current_base
    from raylab.jupyter.scene import project
    from raylab.views.cluster import cluster_view
    from raylab.views.model import TraceModel
    return cluster_view(project(current_base(), TraceModel(), []))


def cmd_dashboard(args):
    _need_cluster()
    scale = args.scale if args.scale is not None else 1.0
    if _dashboard._OPEN and _dashboard._OPEN[-1].scale == scale:
        dash = _dashboard._OPEN[-1]
        if args.step:
            dash.step_mode(True)
        return dash
    return _dashboard.Dashboard(step=args.step, scale=scale)


def cmd_step(args) -> None:
    _need_cluster()
    if args.state == "on":
        STEPPER.on()
        print("step mode on: the cluster pauses at every lecture step (%raylab next to go on)")
    else:
        STEPPER.off()
        print("step mode off: nothing pauses")
    _sync_dashboards()


def cmd_next(args) -> None:
    _need_cluster()
    ev = None
    for _ in range(max(args.count, 1)):
        ev = STEPPER.next(timeout=2.0)
        if ev is None:
            break
    _sync_dashboards()
    print(f"paused at: {ev.narrative}" if ev is not None else
          "nothing is paused now (the flow has finished, or step mode is off)")


def cmd_continue(args) -> None:
    _need_cluster()
    STEPPER.continue_()
    _sync_dashboards()
    print(f"running on ({len(STEPPER.breakpoints)} breakpoint(s) armed)")


def cmd_break(args) -> None:
    from raylab.jupyter.controls import step_names
    names = step_names()
    if args.list:
        print(_columns(names))
        return
    if not args.step:
        from raylab.jupyter.magics import UsageError
        raise UsageError("break needs a step name (%raylab break --list shows them)")
    _need_cluster()
    if args.step not in names:
        import difflib
        close = difflib.get_close_matches(args.step, names, n=3, cutoff=0.6)
        hint = f"did you mean {' or '.join(close)}? " if close else ""
        _refuse(f"no step is called {args.step!r}, so that breakpoint could never pause "
                f"anything; {hint}%raylab break --list shows every step name")
    if args.node and args.node not in _labels():
        _refuse(f"no node {args.node!r}; nodes are {', '.join(_labels())}")
    crit = {"step": args.step}
    if args.node:
        crit["node"] = args.node
    STEPPER.break_at(**crit)
    print("breakpoint: " + " ".join(f"{k}={v}" for k, v in crit.items()))


def _columns(names: list, width: int = 100) -> str:
    col = max(len(n) for n in names) + 2
    per_row = max(1, width // col)
    rows = [names[i:i + per_row] for i in range(0, len(names), per_row)]
    return "\n".join("".join(n.ljust(col) for n in row).rstrip() for row in rows)


def cmd_kill_node(args) -> None:
    _need_cluster()
    from raylab import chaos
    label = chaos.kill_node(args.node)
    print(f"killed node {label}: its raylet, object store and workers are gone; the GCS "
          f"finds out when its health checks fail")


def cmd_kill_worker(args) -> None:
    _need_cluster()
    from raylab import chaos
    chaos.kill_worker(args.worker)
    print(f"killed worker {args.worker}")


def cmd_add_node(args) -> None:
    """A node shaped like the others (CPUs, store size) unless --cpus / --store-mb say."""
    _need_cluster()
    from raylab import chaos
    from raylab.jupyter.controller import node_shape
    cpus, store = node_shape()
    if args.cpus is not None:
        cpus = args.cpus
    if args.store_mb is not None:
        if args.store_mb < 1:
            _refuse(f"--store-mb must be at least 1 (not {args.store_mb})")
        store = args.store_mb * MiB
    label = chaos.add_node(num_cpus=cpus, object_store_memory=store)
    print(f"added node {label}: {cpus:g} CPUs and {store // MiB} MiB of object store")


def cmd_timeline(args) -> None:
    events = ray.timeline()
    ray.timeline(args.file)
    print(f"wrote {sum(1 for e in events if e.get('ph') == 'X')} task execution(s) to "
          f"{args.file} (open it in chrome://tracing or ui.perfetto.dev)")


def _last_view():
    view = _LAST.get("view")
    if view is None:
        from raylab.jupyter.magics import UsageError
        raise UsageError("no trace yet: run a cell with %%raylab trace first")
    return view


def cmd_replay(args):
    return _last_view().replay()


def cmd_export(args) -> None:
    from raylab.jupyter.export import export_html
    view = _last_view()
    export_html(view.frames, args.file, title="raylab replay")
    print(f"wrote a standalone replay of {len(view.frames)} steps to {args.file}")


def cmd_shutdown(args) -> None:
    _dashboard.close_all()
    ray.shutdown()
    print("raylab: the cluster is shut down")


def trace(shell, cell: str, args):
    """``%%raylab trace``: run the cell inside ``ray.trace()``; show what happened."""
    _need_cluster()
    from raylab.jupyter.player import current_base
    from raylab.jupyter.traceview import TraceView
    base = current_base()                # what was there before: objects the cell only uses
    with ray.trace() as t:
        # silent: the cell's own last value is not shown (the view is the cell's result)
        result = shell.run_cell(cell, store_history=False, silent=True)
    shell.user_ns["_raylab_trace"] = t
    if result.error_before_exec or result.error_in_exec:
        return None
    of = None
    if args.of:
        try:
            of = eval(args.of, shell.user_ns)
        except Exception as e:
            _refuse(f"--of {args.of}: {type(e).__name__}: {e}")
    try:
        view = TraceView(t, flow=args.flow, expand=args.expand, width=args.width, base=base,
                         of=of)
    except TypeError as e:               # --of names something that is not a ref or handle
        _refuse(f"--of {args.of}: {e}")
    _LAST["view"] = view
    return view
