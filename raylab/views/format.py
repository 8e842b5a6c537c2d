"""How views write ids, sizes and resources: short, stable, the same everywhere.

Ray's ids are long hex strings. A view shows a prefix, as Ray's dashboard
does. Object ids need one more thing: an object's id is its creating task's
id plus an index (:mod:`raylab.ids`), so every return of one task, and every
``ray.put`` of the driver, share a prefix. A view therefore writes an object
as ``<task prefix>#<index>``: ``4f5a91c0#1`` is the first return of task
``4f5a91c0``.
"""
from __future__ import annotations

_TASK_HEX = 48      # a TaskID is 24 bytes
_OBJECT_HEX = 56    # an ObjectID is a TaskID plus a 4-byte little-endian index


def short_id(hex_id: str | None, n: int = 8) -> str:
    """A hex id's first ``n`` characters ("-" when there is none)."""
    return hex_id[:n] if hex_id else "-"


def short_object(hex_id: str | None) -> str:
    """An object id as ``<creating task prefix>#<index>``, e.g. ``4f5a91c0#1``."""
    if not hex_id:
        return "-"
    if len(hex_id) != _OBJECT_HEX:
        return hex_id[:8]
    try:
        index = int.from_bytes(bytes.fromhex(hex_id[_TASK_HEX:]), "little")
    except ValueError:
        return hex_id[:8]
    return f"{hex_id[:8]}#{index}"


def human_size(n: int | float | None) -> str:
    """Bytes as people say them: ``8 B``, ``1.5 KiB``, ``100 MiB``."""
    if n is None:
        return "?"
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            if unit == "B":
                return f"{int(n)} B"
            text = f"{n:.1f}".removesuffix(".0")
            return f"{text} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # not reached


def number(x) -> str:
    """A resource amount: ``2`` rather than ``2.0``; ``0.5`` stays ``0.5``."""
    if isinstance(x, float) and x.is_integer():
        return str(int(x))
    return str(x)


def resource_amount(name: str, x) -> str:
    """Memory-like resources in bytes are shown as sizes, the rest as numbers."""
    if name in ("memory", "object_store_memory"):
        return human_size(x)
    return number(x)


def resources_text(res: dict) -> str:
    """``{"CPU": 1.0, "GPU": 0.5}`` -> ``CPU 1, GPU 0.5`` (in a fixed order)."""
    if not res:
        return "-"
    return ", ".join(f"{k} {resource_amount(k, v)}" for k, v in sorted(res.items()))


def clip(text: str, width: int) -> str:
    """``text`` cut to ``width`` characters, with an ellipsis when cut."""
    if len(text) <= width:
        return text
    return text[: max(width - 1, 0)] + "…"
