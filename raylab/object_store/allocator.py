"""The arena allocator: which bytes of the node's object store hold which object.

Each node's object store (the plasma role) is ONE shared-memory arena of
``object_store_memory`` bytes. Putting an object means finding a free run of
bytes in it; freeing an object gives the run back. This module is that
bookkeeping and nothing else: pure arithmetic over offsets, no memory is
touched, so it can be tested (and rewritten in a lab) on its own.

Policy: first fit by address. Blocks start on page boundaries (a reader maps
exactly one object with ``mmap``, whose offset must be page aligned), and the
lowest free block that fits wins. Low blocks are the ones used and freed
before, so their pages already exist and are mapped in the writers: writing
there runs at memcpy speed instead of page-fault speed. Neighbouring free
blocks are merged (coalesced) on free, so freeing everything gives back one
block the size of the arena.
"""
from __future__ import annotations

import bisect
import mmap
from dataclasses import dataclass

# mmap offsets must be multiples of this (4096 on x86-64 Linux).
PAGE_SIZE = mmap.ALLOCATIONGRANULARITY


@dataclass(frozen=True)
class AllocatorStats:
    capacity: int
    used: int            # bytes in allocated blocks (rounded up to pages)
    free: int
    largest_free: int    # the biggest object that fits right now
    free_blocks: int
    fragmentation: float  # 0.0: all free bytes are one block; near 1.0: many small holes


class Allocator:
    """First-fit free list with coalescing over ``[0, capacity)``."""

    def __init__(self, capacity: int, align: int = PAGE_SIZE):
        if align <= 0 or align & (align - 1):
            raise ValueError(f"align must be a power of two, got {align}")
        self.align = align
        self.capacity = max(0, capacity) // align * align
        # Free blocks, kept sorted by offset: a list of offsets and their sizes.
        self._free_offsets: list[int] = [0] if self.capacity else []
        self._free_size: dict[int, int] = {0: self.capacity} if self.capacity else {}
        self._used: dict[int, int] = {}  # offset -> block size
        self.used = 0

    def rounded(self, size: int) -> int:
        """The block size for an object of ``size`` bytes (at least one page)."""
        if size < 0:
            raise ValueError(f"size must be >= 0, got {size}")
        return max(self.align, -(-size // self.align) * self.align)

    def alloc(self, size: int) -> int | None:
        """Offset of a new block of at least ``size`` bytes, or None if none fits."""
        need = self.rounded(size)
        for i, off in enumerate(self._free_offsets):
            have = self._free_size[off]
            if have >= need:
                self._take(i, off, have, need)
                return off
        return None

    def _take(self, i: int, off: int, have: int, need: int) -> None:
        # Use the low end of the free block; the rest stays free, right after it.
        del self._free_size[off]
        if have > need:
            self._free_offsets[i] = off + need
            self._free_size[off + need] = have - need
        else:
            del self._free_offsets[i]
        self._used[off] = need
        self.used += need

    def free(self, offset: int) -> int:
        """Give the block at ``offset`` back; returns its size. Merges neighbours."""
        size = self._used.pop(offset, None)
        if size is None:
            raise KeyError(f"no allocated block at offset {offset}")
        self.used -= size
        length = size
        i = bisect.bisect_left(self._free_offsets, offset)
        # Merge with the free block right after this one ...
        if i < len(self._free_offsets) and self._free_offsets[i] == offset + size:
            length += self._free_size.pop(self._free_offsets.pop(i))
        # ... and with the one right before it.
        prev = self._free_offsets[i - 1] if i > 0 else None
        if prev is not None and prev + self._free_size[prev] == offset:
            self._free_size[prev] += length
        else:
            self._free_offsets.insert(i, offset)
            self._free_size[offset] = length
        return size

    def size_of(self, offset: int) -> int:
        return self._used[offset]

    def can_alloc(self, size: int) -> bool:
        return self.largest_free() >= self.rounded(size)

    def largest_free(self) -> int:
        return max(self._free_size.values(), default=0)

    def free_blocks(self) -> list[tuple[int, int]]:
        """``[(offset, size), ...]`` of the free blocks, by offset."""
        return [(off, self._free_size[off]) for off in self._free_offsets]

    def copy(self) -> Allocator:
        """An independent copy, to try out "what if these blocks were freed"."""
        twin = Allocator.__new__(Allocator)
        twin.align, twin.capacity, twin.used = self.align, self.capacity, self.used
        twin._free_offsets = list(self._free_offsets)
        twin._free_size = dict(self._free_size)
        twin._used = dict(self._used)
        return twin

    def stats(self) -> AllocatorStats:
        free = self.capacity - self.used
        largest = self.largest_free()
        frag = 0.0 if free == 0 else 1.0 - largest / free
        return AllocatorStats(self.capacity, self.used, free, largest,
                              len(self._free_offsets), frag)
