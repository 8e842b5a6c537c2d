"""Scheduling strategies with Ray's names: ``"DEFAULT"``, ``"SPREAD"``,
:class:`NodeAffinitySchedulingStrategy` and :class:`PlacementGroupSchedulingStrategy`."""
from __future__ import annotations


class NodeAffinitySchedulingStrategy:
    """Run on the node ``node_id`` (a hex string, as ``ray.get_runtime_context().get_node_id()``).

    With ``soft=False`` the task fails if that node is dead or cannot fit it; with
    ``soft=True`` it falls back to the default policy.
    """

    def __init__(self, node_id: str, soft: bool, _spill_on_unavailable: bool = False,
                 _fail_on_unavailable: bool = False):
        if not isinstance(node_id, str):
            raise TypeError(f"node_id must be a hex string, got {type(node_id).__name__}")
        try:
            raw = bytes.fromhex(node_id)
        except ValueError:
            raise ValueError(f"node_id {node_id!r} is not a hex node id") from None
        if len(raw) != 28:
            raise ValueError(f"node_id {node_id!r} must be 56 hex characters (28 bytes)")
        self.node_id = node_id
        self.soft = bool(soft)

    def __repr__(self):
        return f"NodeAffinitySchedulingStrategy(node_id={self.node_id!r}, soft={self.soft})"


class PlacementGroupSchedulingStrategy:
    def __init__(self, placement_group, placement_group_bundle_index: int = -1,
                 placement_group_capture_child_tasks=None):
        self.placement_group = placement_group
        self.placement_group_bundle_index = placement_group_bundle_index
        self.placement_group_capture_child_tasks = placement_group_capture_child_tasks


def to_wire(strategy) -> tuple:
    """The strategy as a plain tuple for task specs and lease requests."""
    if strategy is None or strategy == "DEFAULT":
        return ("DEFAULT",)
    if strategy == "SPREAD":
        return ("SPREAD",)
    if isinstance(strategy, NodeAffinitySchedulingStrategy):
        return ("NODE_AFFINITY", bytes.fromhex(strategy.node_id), strategy.soft)
    if isinstance(strategy, PlacementGroupSchedulingStrategy):
        raise NotImplementedError("placement groups are not supported by raylab yet")
    raise ValueError(f"invalid value for scheduling_strategy, expected \"DEFAULT\", \"SPREAD\" "
                     f"or a NodeAffinitySchedulingStrategy (not {strategy!r})")
