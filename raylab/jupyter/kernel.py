"""What the Jupyter kernel can do while a cell runs, and the shims that make clicks arrive.

A kernel runs cells on its main thread. A widget click is a ``comm_msg`` sent by
the front end, and whether it is handled while a cell is still running depends
on the kernel and the front end. Measured (``shared/notes/jupyter-facts.md``)
with JupyterLab 4.6 in Chromium, and with nbclient:

==============================  ==========================  ===========================
                                cell blocks (``ray.get``)   cell awaits (``await ref``)
==============================  ==========================  ===========================
ipykernel 6.31 (no subshells)   click waits for the cell    click waits for the cell
ipykernel 7.3                   handled on a subshell if    click waits for the cell
                                the front end sends it on
                                one (JupyterLab >= 4.4)
ipykernel 7.4                   the same, once the comm is  handled at once
                                routed to the sender's
                                subshell (shim below)
==============================  ==========================  ===========================

JupyterLab >= 4.4 sends widget messages on a kernel *subshell* (its setting
``commsOverSubshells``); a subshell is a thread of its own, so the click is
handled even though the main thread is blocked. ipykernel 7.4 added
``Comm._reply_subshell_for``, which sends a comm's messages back to the shell
that last *published* on it, the main shell for a widget made in a cell, and
so undoes that. :func:`route_to_sender` puts back the 7.3 behaviour for our own
widgets: a message is handled on the subshell it arrived on. It overrides a
private hook, so nothing here trusts it blindly: :func:`clicks_reach_blocked_cells`
*probes* the route, by sending a widget message on the front end's subshell
through the kernel's own shell socket and checking that a thread other than the
main one handled it. Where the probe fails (another ipykernel, another front
end, a hook that changed), a blocking get steps the cluster by itself instead.

raylab therefore never lets the Next button depend on the kernel's main thread:
the paused thing is the cluster (other processes), and a click only has to
reach the step controller. This module decides what a blocking ``ray.get``
does on a paused cluster (:func:`blocking_get_policy`, installed into
``raylab.stepper`` by :func:`install`): "wait" for clicks where they surely
arrive (a dashboard is shown, and the probe passed), else "advance" by itself at
a visible pace.
"""
from __future__ import annotations

import threading

_live_controls = 0           # dashboards whose buttons can step the cluster now
_lock = threading.Lock()
_installed = False


def kernel():
    """The running ipykernel ``Kernel``, or None outside a Jupyter kernel."""
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    shell = get_ipython()
    return getattr(shell, "kernel", None) if shell is not None else None


def ipykernel_version() -> tuple:
    """``(7, 4, 0)``; ``()`` when ipykernel is not installed."""
    try:
        import ipykernel
    except ImportError:
        return ()
    parts = []
    for piece in ipykernel.__version__.split(".")[:3]:
        digits = "".join(c for c in piece if c.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


def client_subshells(k=None) -> list:
    """The subshells a front end created in this kernel (JupyterLab >= 4.4 makes one for
    widget messages); empty on ipykernel 6, under nbclient and nbval."""
    k = k if k is not None else kernel()
    if k is None or not getattr(k, "_supports_kernel_subshells", False):
        return []
    manager = getattr(getattr(k, "shell_channel_thread", None), "manager", None)
    try:
        return list(manager.list_subshell()) if manager is not None else []
    except Exception:
        return []


def clicks_reach_blocked_cells(k=None) -> bool:
    """Can a click be handled while a cell blocks? Only if a front end made a subshell,
    and a widget message sent on it really is handled off the main thread (probed once
    per subshell: :func:`probe_route`)."""
    subshells = client_subshells(k)
    return bool(subshells) and probe_route(subshells[-1], k)


_probes: dict = {}          # subshell id -> did a message sent on it reach us off the main thread
_probe_lock = threading.Lock()


def probe_route(subshell: str, k=None, timeout: float = 3.0) -> bool:
    """Send a widget message on ``subshell`` the way a front end does (to the kernel's own
    shell socket, signed with its key) and wait for our handler to run. True only if it ran
    on a thread other than the main one: then a click is handled while a cell blocks.
    The answer is kept for the kernel's life."""
    with _probe_lock:
        if subshell not in _probes:
            try:
                _probes[subshell] = _probe(subshell, k if k is not None else kernel(), timeout)
            except Exception:        # cannot tell: say no, and a blocking get advances
                _probes[subshell] = False
        return _probes[subshell]


def _probe(subshell: str, k, timeout: float) -> bool:
    import ipywidgets
    import zmq
    from ipykernel.connect import get_connection_info
    from jupyter_client.session import Session
    if k is None:
        return False
    handled: list = []
    arrived = threading.Event()
    probe = ipywidgets.Widget()
    route_to_sender(probe)

    def on_msg(_widget, content, _buffers):
        if content.get("raylab_probe"):
            handled.append(threading.current_thread() is not threading.main_thread())
            arrived.set()
    probe.on_msg(on_msg)
    info = get_connection_info(unpack=True)
    session = Session(key=k.session.key, signature_scheme=k.session.signature_scheme,
                      username="raylab-probe")
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.linger = 0
    try:
        sock.connect(f"{info['transport']}://{info['ip']}:{info['shell_port']}")
        msg = session.msg("comm_msg", {"comm_id": probe.comm.comm_id, "data": {
            "method": "custom", "content": {"raylab_probe": True}}})
        msg["header"]["subshell_id"] = subshell
        session.send(sock, msg)
        return arrived.wait(timeout) and handled[0]
    finally:
        sock.close()
        ctx.term()
        probe.close()


def clicks_reach_awaiting_cells(k=None) -> bool:
    """Can a click be handled while a cell awaits? ipykernel >= 7.4, or on a subshell."""
    k = k if k is not None else kernel()
    if k is None:
        return False
    return ipykernel_version() >= (7, 4) or clicks_reach_blocked_cells(k)


def route_to_sender(widget) -> None:
    """Handle this widget's incoming messages on the subshell they arrived on.

    The ipykernel 7.4 shim (a no-op elsewhere): without it a click sent on
    JupyterLab's subshell waits until the running cell ends. It is a private
    hook of ipykernel, so it is set only where it exists, per widget.
    """
    comm = getattr(widget, "comm", None)
    if comm is not None and hasattr(comm, "_reply_subshell_for"):
        comm._reply_subshell_for = _arrived_on


def _arrived_on(data, default):
    return default


def controls_shown(delta: int) -> None:
    """A dashboard's controls were shown in the notebook (+1), or it closed (-1)."""
    global _live_controls
    with _lock:
        _live_controls = max(0, _live_controls + delta)


def blocking_get_policy() -> str:
    """What a blocking ``ray.get`` on a paused cluster does in this kernel.

    "wait" for a click only when one surely can arrive: a dashboard's controls are
    shown, and a probe message sent the way the front end sends clicks was handled
    while the main thread was busy. "advance" by itself otherwise (nbclient, nbval,
    ipykernel 6, a dashboard made but never shown, a script), so it never hangs.
    """
    if _live_controls and clicks_reach_blocked_cells():
        return "wait"
    return "advance"


def _tell_waiting(mode: str) -> None:
    """Printed in the blocked cell, so a waiting get is never a silent hang."""
    if mode == "wait":
        print("raylab: ray.get waits for the paused cluster. Click Next or Continue on the "
              "dashboard (clicks reach the kernel while this cell runs), or interrupt the "
              "kernel.", flush=True)


def install() -> None:
    """Make ``raylab.stepper``'s "auto" blocking-get mode ask this kernel (idempotent)."""
    global _installed
    from raylab.tracing.stepper import STEPPER
    if _installed:
        return
    _installed = True
    STEPPER.policy = blocking_get_policy
    STEPPER.blocked_get_hooks.append(_tell_waiting)


def describe() -> dict:
    """The facts above for this kernel, for ``%raylab status`` and bug reports."""
    k = kernel()
    return {"kernel": k is not None,
            "ipykernel": ".".join(map(str, ipykernel_version())) or "-",
            "subshells": len(client_subshells(k)),
            "clicks while a cell blocks": clicks_reach_blocked_cells(k),
            "clicks while a cell awaits": clicks_reach_awaiting_cells(k),
            "blocking get on a paused cluster": blocking_get_policy()}
