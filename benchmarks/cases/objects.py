"""Object cases: ``put`` bandwidth, zero-copy ``get``, and the lecture's 1 GB argument.

``put`` is measured *warm*: the array's pages are already touched and the store has
seen a put before, because the first write into fresh shared memory is dominated
by page faults (DESIGN.md §7) and would measure the kernel, not the store. The
first put is still kept in the JSON output (``first_put_GBps``).

The 1 GB seed pattern is the lecture's example: passing a big array *by value* to
three tasks copies it into the store three times, while one ``put`` passed *by
reference* stores it once; raylab aims to be no slower than Ray at both.
"""
from __future__ import annotations

import time

from benchmarks.common import GB, MB, median, pc


def _put(nbytes: int, label: str, quick_reps: int, full_reps: int):
    def case(ctx) -> None:
        import numpy as np
        ray = ctx.ray
        ctx.init()
        arr = np.full(nbytes, 7, dtype=np.uint8)  # pages touched before timing
        t0 = pc()
        ref = ray.put(arr)
        ctx.info["first_put_GBps"] = nbytes / (pc() - t0) / GB
        del ref
        times = []
        for _ in range(ctx.size(quick_reps, full_reps)):
            t0 = pc()
            ref = ray.put(arr)
            times.append(pc() - t0)
            del ref
            if nbytes >= 100 * MB:
                time.sleep(0.2)  # untimed: let the store free the previous copy
        ctx.metrics[f"put_{label}_GBps"] = nbytes / median(times) / GB
        ctx.info["best_GBps"] = nbytes / min(times) / GB
        ctx.sample("put_s", times)
    case.__doc__ = f"Warm ``ray.put`` of a {label} numpy array, GB/s (decimal)."
    return case


put_1MB = _put(MB, "1MB", 50, 200)
put_100MB = _put(100 * MB, "100MB", 10, 30)
put_1GB = _put(GB, "1GB", 5, 8)


def get_100MB(ctx) -> None:
    """``ray.get`` of a stored 100 MB numpy array: zero-copy should take microseconds."""
    import numpy as np
    ray = ctx.ray
    ctx.init()
    arr = (np.arange(100 * MB, dtype=np.uint64) % 251).astype(np.uint8)
    ref = ray.put(arr)
    t0 = pc()
    x = ray.get(ref)
    ctx.info["first_get_us"] = (pc() - t0) * 1e6
    if not np.array_equal(x, arr):
        raise AssertionError("ray.get returned different data")
    del x
    lat = []
    for _ in range(ctx.size(20, 50)):
        t0 = pc()
        x = ray.get(ref)
        lat.append(pc() - t0)
        del x
    dst = np.empty_like(arr)
    t0 = pc()
    np.copyto(dst, arr)
    memcpy = pc() - t0
    ctx.metrics["get_100MB_us"] = median(lat) * 1e6
    ctx.info["memcpy_100MB_us"] = memcpy * 1e6
    ctx.info["zero_copy_likely"] = median(lat) < memcpy / 10
    ctx.sample("get_us", lat, 1e6)


def _arg_1gb(mode: str):
    def case(ctx) -> None:
        import numpy as np
        ray = ctx.ray

        @ray.remote
        def consume(a):
            return int(a[0]) + int(a[-1]) + int(a.nbytes)

        ctx.init()
        ray.get([consume.remote(np.ones(10, dtype=np.uint8)) for _ in range(3)])
        ctx.track()
        arr = np.full(GB, 3, dtype=np.uint8)
        times = []
        for _ in range(ctx.size(2, 5)):
            t0 = pc()
            if mode == "byvalue":
                refs = [consume.remote(arr) for _ in range(3)]
            else:
                ref = ray.put(arr)
                refs = [consume.remote(ref) for _ in range(3)]
            out = ray.get(refs)
            times.append(pc() - t0)
            assert out == [6 + GB] * 3, out
            del refs, out
            ref = None
            time.sleep(1.0)  # untimed: let the store free the copies
        ctx.metrics[f"arg_1GB_x3_{mode}_s"] = median(times)
        ctx.info["first_rep_s"] = times[0]
        ctx.sample("samples_s", times)
    case.__doc__ = f"A 1 GB numpy array passed to 3 tasks ({mode}): the lecture's seed pattern."
    return case


arg_1GB_x3_byvalue = _arg_1gb("byvalue")
arg_1GB_x3_put = _arg_1gb("put")
