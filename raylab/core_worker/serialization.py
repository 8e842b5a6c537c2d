"""Serialization: values to bytes and back, noticing the ObjectRefs inside.

Plain data goes through the standard pickle (fast, C); anything else (functions
and classes defined in a notebook, closures, lambdas) through cloudpickle,
which ships them by value. Pickle protocol 5 lets large buffers (numpy arrays)
travel *out of band*: they are written once into shared memory and read back
without a copy.

While a value is pickled, every :class:`ObjectRef` inside it reports itself to
the serialization context, so the owner can count refs that travel nested in
arguments and return values.
"""
from __future__ import annotations

import hashlib
import io
import pickle
import threading
import types
from collections import ChainMap

import cloudpickle

_SIMPLE = frozenset((int, float, str, bytes, bool, type(None), complex))
_CONTAINERS = frozenset((list, tuple, dict, set, frozenset))
_ctx = threading.local()


class SerializationError(TypeError):
    """The value cannot be pickled; the message names the value and why."""


def _plain(value, budget: int = 1000) -> bool:
    """Shallow check: scalars, or small containers of scalars (no refs, no code)."""
    t = type(value)
    if t in _SIMPLE:
        return True
    if t in _CONTAINERS and len(value) <= budget:
        items = value.items() if t is dict else value
        if t is dict:
            return all(type(k) in _SIMPLE and type(v) in _SIMPLE for k, v in items)
        return all(type(v) in _SIMPLE for v in items)
    return False


def serialize(value, oob: bool = False):
    """Return ``(data, buffers, contained_refs)``.

    ``buffers`` holds protocol-5 out-of-band buffers when ``oob`` is true (for
    the shared-memory store), otherwise it is empty and ``data`` has everything.
    ``contained_refs`` lists ``(object_id, owner_address)`` of refs inside.
    """
    if _plain(value):
        return pickle.dumps(value, 5), [], []
    saved = getattr(_ctx, "refs", None)
    refs = _ctx.refs = []
    buffers: list = []
    try:
        data = cloudpickle.dumps(value, 5, buffer_callback=buffers.append if oob else None)
    except Exception as e:
        raise SerializationError(f"cannot pickle {_describe(value)}: {e}") from e
    finally:
        _ctx.refs = saved
    return data, buffers, refs


def deserialize(data, buffers=None):
    return pickle.loads(data, buffers=buffers)


def note_ref(object_id: bytes, owner: str) -> None:
    """Called by ObjectRef.__reduce__: this ref is being serialized inside a value."""
    refs = getattr(_ctx, "refs", None)
    if refs is not None:
        refs.append((object_id, owner))


def export_function(fn) -> tuple[bytes, bytes]:
    """Pickle a remote function or actor class by value (it may live in a notebook cell).

    Returns ``(blob, function_id)``. The id is a digest of the function's content only, so
    the same program shows the same ids on every run, wherever its file lives.
    """
    try:
        content = cloudpickle.dumps(fn, 5)
        blob = _pickle_keeping_filenames(fn)
    except Exception as e:
        raise SerializationError(f"cannot pickle the remote function or class "
                                 f"{getattr(fn, '__qualname__', fn)!r}: {e}. Values it "
                                 "captures (globals, closures) must be picklable too.") from e
    return blob, hashlib.sha1(content).digest()[:20]


# cloudpickle (>= 3.1) blanks every code object's file name to make its pickles
# reproducible; a worker then cannot show the user's source lines in a remote
# traceback ("raise MyError" in RayTaskError). The exported blob keeps the names.
_BLANK = "<dynamic-code>"
_code_reduce = cloudpickle.Pickler.dispatch_table[types.CodeType]


def _code_keeping_filename(code):
    if code.co_filename == _BLANK:
        return _code_reduce(code)
    return _restore_filename, (code.replace(co_filename=_BLANK), code.co_filename)


def _restore_filename(code, filename: str):
    return code.replace(co_filename=filename)


class _FunctionPickler(cloudpickle.Pickler):
    dispatch_table = ChainMap({types.CodeType: _code_keeping_filename},
                              cloudpickle.Pickler.dispatch_table)


def _pickle_keeping_filenames(fn) -> bytes:
    out = io.BytesIO()
    _FunctionPickler(out, protocol=5).dump(fn)
    return out.getvalue()


def _describe(value) -> str:
    r = repr(value)
    if len(r) > 80:
        r = r[:77] + "..."
    return f"{r} (type {type(value).__name__})"
