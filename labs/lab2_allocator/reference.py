"""Lab 2, raylab's own answer: the allocator of the node's object store."""
from raylab.object_store.allocator import Allocator  # noqa: F401
