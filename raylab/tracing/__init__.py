"""Tracing: every protocol step, as data.

Each process has one :class:`~raylab.tracing.emit.Tracer`. Components call
``step(...)`` (record) or ``checkpoint(...)`` (record, and pause here when the
step controller says so) at each step of a flow. Each event names its cause
(:mod:`raylab.tracing.cause`), within a process and across the wire. Events
stream to the driver's recorder; views are pure functions of the recorded events.
"""
from raylab.tracing import clock  # noqa: F401  (imported first: transport needs it)
