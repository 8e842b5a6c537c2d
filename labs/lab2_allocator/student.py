"""Lab 2: the object store's allocator. Which bytes of the shared-memory arena hold
which object?

The store is one arena of ``capacity`` bytes. Blocks start at multiples of ``align``
(a page, 4096 bytes) and take whole pages. Allocation is *first fit*: the lowest free
range that is big enough (recently freed low blocks are warm in memory, so reusing
them makes ``ray.put`` fast). Freeing merges a block with free neighbours
(*coalescing*), so that many small frees can make room for one big object.
"""
from __future__ import annotations


class Allocator:
    def __init__(self, capacity: int, align: int = 4096):
        """Lab 2.1: start with one free range [0, capacity), capacity rounded down to
        whole ``align`` units."""
        raise NotImplementedError("Lab 2.1: set up the free list")

    def alloc(self, size: int) -> int | None:
        """Lab 2.1: reserve ``size`` bytes (rounded up to whole pages, at least one);
        return the block's offset, or None if no free range is big enough."""
        raise NotImplementedError("Lab 2.1: first-fit allocation")

    def free(self, offset: int) -> int:
        """Lab 2.2: release the block at ``offset``; merge it with free neighbours;
        return its size. Freeing an offset that is not an allocated block raises
        KeyError."""
        raise NotImplementedError("Lab 2.2: free with coalescing")

    @property
    def used(self) -> int:
        """Bytes in allocated blocks."""
        raise NotImplementedError("Lab 2.1: bytes in use")
