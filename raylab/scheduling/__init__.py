"""Scheduling: resources and placement policies as pure functions."""
from raylab.scheduling.resources import NodeResources  # noqa: F401
from raylab.scheduling import policies  # noqa: F401
