"""The Lamport clock of this process.

Trace events from different processes are ordered by cause, never by wall
time: every frame on the wire carries the sender's clock, and a receiver moves
its own clock past it. So if event A could have caused event B, A's clock is
smaller than B's, however busy the machine is.
"""
_now = 0


def tick() -> int:
    """Advance the clock for a local event or a message being sent."""
    global _now
    _now += 1
    return _now


def observe(remote: int) -> None:
    """A message stamped ``remote`` arrived: nothing after it may be earlier."""
    global _now
    if remote > _now:
        _now = remote


def now() -> int:
    return _now
