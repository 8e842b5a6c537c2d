"""Logical resources: ``{"CPU": 2, "GPU": 1, "custom": 4}``.

As in Ray, resources are just numbers that the scheduler adds and
subtracts; nothing stops a task from using more CPU than it asked for. A
node's *total* is what it was started with, its *available* is the total
minus what granted leases hold. Amounts are kept to 4 decimal places, the
precision Ray uses, so fractional requests (0.5 CPU) add up exactly.
"""
from __future__ import annotations

from dataclasses import dataclass, field

_PRECISION = 4


def normalize(req: dict | None) -> dict:
    """Drop zero amounts and round, so two equal requests compare equal."""
    if not req:
        return {}
    return {k: round(float(v), _PRECISION) for k, v in req.items() if v}


def validate(resources: dict, what: str = "resources") -> dict:
    """Check a user's resource dict; raise a clear error naming the bad entry."""
    if resources is None:
        return {}
    if not isinstance(resources, dict):
        raise TypeError(f"{what} must be a dict like {{'CPU': 1}}, not {type(resources).__name__}")
    out = {}
    for name, amount in resources.items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"{what}: resource names must be non-empty strings, got {name!r}")
        if isinstance(amount, bool) or not isinstance(amount, (int, float)):
            raise TypeError(f"{what}: the amount of {name!r} must be a number, got {amount!r}")
        if amount < 0:
            raise ValueError(f"{what}: the amount of {name!r} must be >= 0, got {amount}")
        if amount > 1 and amount != int(amount):
            raise ValueError(f"{what}: {name!r}={amount}: amounts above 1 must be whole numbers")
        out[name] = amount
    return normalize(out)


def fits(req: dict, avail: dict) -> bool:
    """Is every requested amount available?"""
    for k, v in req.items():
        if avail.get(k, 0.0) + 1e-9 < v:
            return False
    return True


def subtract(avail: dict, req: dict) -> dict:
    out = dict(avail)
    for k, v in req.items():
        out[k] = round(out.get(k, 0.0) - v, _PRECISION)
    return out


def add(avail: dict, req: dict) -> dict:
    out = dict(avail)
    for k, v in req.items():
        out[k] = round(out.get(k, 0.0) + v, _PRECISION)
    return out


def missing(req: dict, total: dict) -> dict:
    """What ``req`` asks for beyond ``total`` (names the infeasible part)."""
    return {k: v for k, v in req.items() if total.get(k, 0.0) + 1e-9 < v}


def shape_key(req: dict) -> tuple:
    """A hashable form of a request: the 'scheduling class' of a task."""
    return tuple(sorted(req.items()))


@dataclass
class NodeResources:
    """One node's entry in the resource view the GCS broadcasts."""

    node_id: bytes
    label: str
    total: dict
    available: dict
    alive: bool = True
    labels: dict = field(default_factory=dict)

    def utilization(self) -> float:
        """The most-used resource's fraction in use: Ray's 'critical resource utilization'."""
        worst = 0.0
        for k, tot in self.total.items():
            if tot > 0:
                used = (tot - self.available.get(k, 0.0)) / tot
                worst = max(worst, used)
        return worst

    def feasible(self, req: dict) -> bool:
        return fits(req, self.total)

    def available_for(self, req: dict) -> bool:
        return fits(req, self.available)
