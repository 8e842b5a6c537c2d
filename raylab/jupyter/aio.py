"""``await`` in a notebook cell: get values while the dashboard's controls stay live.

    value = await ref                                  # plain Ray style
    values = await raylab.jupyter.get_async([r1, r2])  # many refs, with a timeout

A cell that *awaits* gives the kernel's event loop back while it waits, and
ipykernel >= 7.4 handles widget messages meanwhile, so Next and Continue work
even in front ends that do not use subshells (classic Notebook, VS Code,
nbclient). ``get_async`` also keeps the never-hang promise of ``ray.get``: it
follows the same policy (``raylab.stepper.blocking_mode()``), so where nobody
may be there to click it advances the paused cluster itself, one step every
``raylab.stepper.pace`` seconds, and clicks only make it go faster.
"""
from __future__ import annotations

import asyncio

from raylab.tracing.stepper import STEPPER


def await_mode() -> str:
    """What an awaiting get does on a paused cluster: the same as a blocking ``ray.get``
    ("wait" for clicks in JupyterLab with a dashboard, else "advance" at ``pace``; clicks
    are handled meanwhile wherever the kernel allows, so they just go faster)."""
    return STEPPER.blocking_mode()


def _future(ref):
    """The ref's concurrent future, from the owner's object manager."""
    from raylab.core_worker import current
    cw = current.CORE_WORKER
    if cw is None:
        raise RuntimeError("raylab is not initialized; call ray.init() first")
    return cw.objects.get_future(ref)


async def get_async(refs, *, timeout: float | None = None):
    """The value of an ObjectRef (or the values of a list of them), awaited."""
    from raylab.core_worker.object_ref import ObjectRef
    single = isinstance(refs, ObjectRef)
    refs = [refs] if single else list(refs)
    gathered = asyncio.gather(*(asyncio.wrap_future(_future(r)) for r in refs))
    loop = asyncio.get_running_loop()
    deadline = None if timeout is None else loop.time() + timeout
    try:
        return await _wait(gathered, single, loop, deadline, timeout)
    finally:
        STEPPER.blocked_get = None


async def _wait(gathered, single, loop, deadline, timeout):
    """Wait for the values, a pace at a time, doing what the policy says when paused (the
    dashboard's status line tells what the waiting get does, as for ray.get)."""
    from raylab import exceptions
    told = False
    while True:
        left = None if deadline is None else deadline - loop.time()
        if left is not None and left <= 0:
            gathered.cancel()
            raise exceptions.GetTimeoutError(f"Get timed out: some object(s) not ready after "
                                             f"{timeout} s.")
        done, _ = await asyncio.wait({gathered}, timeout=STEPPER.pace if left is None
                                     else min(STEPPER.pace, left))
        if done:
            values = gathered.result()
            return values[0] if single else values
        if STEPPER.paused:
            mode = await_mode()
            if STEPPER.blocked_get != mode:
                STEPPER.blocked_get = mode
                from raylab.jupyter.live import refresh_all
                refresh_all()          # the status line says what this get does
            if mode == "wait" and not told:
                told = True
                print("raylab: get_async waits for the paused cluster. Click Next or Continue "
                      "on the dashboard, or interrupt the kernel.", flush=True)
            if mode == "error":
                raise RuntimeError("the cluster is paused in step mode: step it with the "
                                   "dashboard's Next button or raylab.stepper.next()")
            if mode == "advance":
                await loop.run_in_executor(None, STEPPER.next, 0)
