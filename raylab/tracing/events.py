"""The one trace event record.

Every protocol step of every flow is one :class:`TraceEvent`: where it
happened (node, component, pid), when (wall time for humans, a Lamport clock
for causal order), what (flow and step name, the ids involved) and why (the
causal parent: the key of the step that made this one happen; and the
scheduling reason in ``detail``). The narrative in the lecture's words is
derived from the step name by :mod:`raylab.tracing.steps`, so emitting an
event never formats text.

``level`` is the zoom level: 0 for the steps a lecture slide shows, 1 for the
protocol messages that carry a step out.
"""
from __future__ import annotations

from dataclasses import dataclass, field

LECTURE = 0
PROTOCOL = 1
_RANK = {"driver": 0, "gcs": 1, "raylet": 2, "object_manager": 3, "object_store": 4,
         "worker": 5}


@dataclass(slots=True)
class TraceEvent:
    lamport: int
    pid: int
    seq: int
    time: float
    node: str
    component: str
    flow: str
    step: str
    ids: dict = field(default_factory=dict)
    detail: dict = field(default_factory=dict)
    parent: int | None = None  # the key of the step that caused this one (None: a root)
    level: int = LECTURE
    held: bool = False
    proc: str = ""            # a stable process label: driver, gcs, N2.raylet, N2.w1

    @property
    def key(self) -> int:
        """This event's id, unique across the cluster: pid and per-process sequence number,
        packed into one integer (``pid << 32 | seq``), as frame headers carry it."""
        return (self.pid << 32) | self.seq

    @property
    def narrative(self) -> str:
        from raylab.tracing.steps import narrate
        return narrate(self)

    def to_wire(self) -> tuple:
        return (self.lamport, self.pid, self.seq, self.time, self.node, self.component,
                self.flow, self.step, self.ids, self.detail, self.parent, self.level, self.held,
                self.proc)

    @classmethod
    def from_wire(cls, t: tuple) -> "TraceEvent":
        return cls(*t)

    def sort_key(self) -> tuple:
        """Causal order (Lamport), ties broken without wall time so a replay sorts the same."""
        return (self.lamport, _RANK.get(self.component, 9), self.proc, self.seq)

    def matches(self, **criteria) -> bool:
        """True if every criterion holds: flow/step/component/node/level, or an id (task=...)."""
        for k, want in criteria.items():
            if want is None:
                continue
            if k in ("flow", "step", "component", "node", "level"):
                have = getattr(self, k)
            else:
                have = self.ids.get(k)
            if isinstance(want, (list, tuple, set, frozenset)):
                if have not in want:
                    return False
            elif have != want:
                return False
        return True
