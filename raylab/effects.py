"""Effects: what a component's sans-IO core asks its process shell to do.

A core (GCS tables, the raylet's lease manager, ...) takes an event and
returns a list of effects instead of doing IO itself. The shell carries them
out in order: it sends the messages, starts the processes, and records the
trace steps (pausing there in step mode, so the effects after a step wait).
"""
from __future__ import annotations

from typing import Any, NamedTuple


class Send(NamedTuple):
    """Send a one-way message ``method(*args)`` to the peer known as ``to``."""
    to: Any
    method: str
    args: tuple = ()


class Reply(NamedTuple):
    """Answer a pending request (``key`` identifies it) with ``value``."""
    key: Any
    value: Any


class Publish(NamedTuple):
    """Publish ``args`` on a pubsub channel to every subscriber."""
    channel: str
    method: str
    args: tuple = ()


class Trace(NamedTuple):
    """Record a trace step (and pause here if the step controller says so)."""
    component: str
    flow: str
    step: str
    ids: dict
    detail: dict | None = None
    level: int = 0


class Call(NamedTuple):
    """Run a shell-side action (start a worker, kill a process, ...) by name."""
    action: str
    args: tuple = ()
