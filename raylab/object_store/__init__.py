"""The object store: one shared-memory store per node (the plasma role).

Objects of 100 KiB and more live here rather than in their owner's
in-process store. The raylet of each node owns the store; the driver and the
workers of that node map the same memory, so a ``ray.put`` writes a value once
and a ``ray.get`` of a numpy array on the same node copies nothing.

    allocator.py   which bytes of the arena hold which object (first fit, coalescing)
    layout.py      one object = header + pickle data + out-of-band buffers, in one block
    arena.py       the memfd arena; passing its fd; StoreClient: write, zero-copy read
    entries.py     what the store knows per object: primary copy or replica, pins, spill
    effects.py     what the store core asks the raylet to do
    store_core.py  ObjectStoreCore: create, seal, get, release, delete; evict and spill
    spill.py       spill files: write, read back (restore), delete
"""
from raylab.object_store.allocator import PAGE_SIZE, Allocator, AllocatorStats
from raylab.object_store.arena import StoreClient, create_arena, recv_fd, send_fd
from raylab.object_store.effects import (Created, DeleteFile, Evict, Failed, Ready, Reclaim,
                                         Restore, Spill)
from raylab.object_store.entries import ObjectInfo, StoreUsage
from raylab.object_store.layout import Layout, pack, pack_into, unpack
from raylab.object_store.store_core import ObjectStoreCore

__all__ = ["PAGE_SIZE", "Allocator", "AllocatorStats", "StoreClient", "create_arena",
           "recv_fd", "send_fd", "Created", "DeleteFile", "Evict", "Failed", "Ready", "Reclaim",
           "Restore", "Spill", "ObjectInfo", "StoreUsage", "Layout", "pack", "pack_into",
           "unpack", "ObjectStoreCore"]
