"""The GCS function table (a namespace of its key-value store).

Lecture Step 0: "Ray automatically registers each initialized remote function
and distributes it to every worker in the cluster." In Ray 2 the driver
exports each remote function once, pickled, to this table; a worker fetches
it the first time it is asked to run it and keeps it.
"""
from __future__ import annotations

import asyncio


class KeyValueStore:
    """Namespaced key-value store; a reader may wait for a key to appear."""

    def __init__(self):
        self.data: dict[tuple, bytes] = {}
        self._waiters: dict[tuple, list] = {}

    def put(self, namespace: str, key: bytes, value, overwrite: bool = True) -> bool:
        k = (namespace, key)
        if not overwrite and k in self.data:
            return False
        self.data[k] = value
        for fut in self._waiters.pop(k, []):
            if not fut.done():
                fut.set_result(value)
        return True

    def get(self, namespace: str, key: bytes):
        return self.data.get((namespace, key))

    def delete(self, namespace: str, key: bytes) -> bool:
        return self.data.pop((namespace, key), None) is not None

    def keys(self, namespace: str, prefix: bytes = b"") -> list:
        return [k for ns, k in self.data if ns == namespace and k.startswith(prefix)]

    async def wait_get(self, namespace: str, key: bytes, timeout: float):
        """Get a key, waiting up to ``timeout`` for it to be put (an export in flight)."""
        k = (namespace, key)
        if k in self.data:
            return self.data[k]
        fut = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(k, []).append(fut)
        try:
            return await asyncio.wait_for(fut, timeout)
        except asyncio.TimeoutError:
            return None


FUNCTIONS = "fun"  # the namespace that holds exported remote functions and classes
