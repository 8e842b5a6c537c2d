"""Ray's ``ray.util`` namespace: scheduling strategies, placement groups, state."""
