"""Which of a node's GPUs a lease holds (``ray.get_gpu_ids()``, ``CUDA_VISIBLE_DEVICES``).

Resources are logical, but a GPU is also an *instance* with an index: a task that asks
for ``num_gpus=1`` on a node with two GPUs gets GPU 0 or GPU 1, and no other lease
gets the same one while it runs. Whole GPUs take the lowest free indices; a fraction
(``num_gpus=0.5``) shares the lowest-numbered GPU that has that much left, as Ray's
raylet does. Sans-IO: plain bookkeeping the lease manager calls at grant and return.
"""
from __future__ import annotations


class GpuIds:
    def __init__(self, total: float):
        self.free = [1.0] * int(total)   # per GPU index, the fraction still free

    def assign(self, amount: float) -> tuple:
        """The (index, share) pairs for a lease of ``amount`` GPUs; () when none fit."""
        if not amount or not self.free:
            return ()
        if amount < 1:
            for i, f in enumerate(self.free):
                if f >= amount - 1e-9:
                    self.free[i] = f - amount
                    return ((i, amount),)
            return ()
        whole = [i for i, f in enumerate(self.free) if f >= 1 - 1e-9][:int(amount)]
        if len(whole) < int(amount):
            return ()
        for i in whole:
            self.free[i] = 0.0
        return tuple((i, 1.0) for i in whole)

    def release(self, held: tuple) -> None:
        for i, share in held:
            self.free[i] = min(1.0, self.free[i] + share)


def indices(held: tuple) -> list[int]:
    return [i for i, _share in held]
