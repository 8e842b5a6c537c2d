"""The causal parent: which step the code running now is carrying out.

Every trace event names its cause, the step that made it happen (DESIGN §4):
the lecture's ``request_lease`` causes the raylet's ``schedule_decision``, which
causes ``lease_granted``, and so on down to ``execute_task``. The cause is a
*context variable* holding an event id, so each asyncio task and each thread
follows its own flow:

- recording a step makes it the cause of whatever this context does next;
- a frame on the wire carries the sender's cause in its header (beside the
  Lamport clock), and the handler of a message runs with it as its cause;
- a reply hands its cause to the code awaiting it (:func:`hand_to`), so the
  owner's ``push_task`` names the raylet's ``lease_granted`` as its cause;
- a new asyncio task or callback starts with a copy of its creator's context,
  so it inherits the cause, with no code to write.

An event id is ``pid << 32 | seq`` (see :attr:`TraceEvent.key`); 0 means none.
"""
from __future__ import annotations

import contextvars

_CAUSE: contextvars.ContextVar = contextvars.ContextVar("raylab_cause", default=0)

current = _CAUSE.get      # () -> the id of the step this context is carrying out (0: none)
enter = _CAUSE.set        # (id) -> make ``id`` the cause of what this context does next


def hand_to(fut, cause: int) -> None:
    """The code waiting on ``fut`` resumes as a consequence of step ``cause``.

    A future's callbacks run in the contexts they were registered in (an
    awaiting task's own context, for one); setting the cause there before the
    future is resolved is how a reply carries its step back to the awaiter.
    """
    try:
        callbacks = fut._callbacks or ()
    except AttributeError:
        return
    for _callback, ctx in callbacks:
        try:
            ctx.run(_CAUSE.set, cause)
        except RuntimeError:   # that context is running right now: it already knows
            pass


def resolve(fut, value) -> None:
    """``fut.set_result(value)``, handing the current cause to whoever awaits it."""
    cause = _CAUSE.get()
    if cause:
        hand_to(fut, cause)
    fut.set_result(value)
