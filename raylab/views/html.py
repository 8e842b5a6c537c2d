"""Small HTML pieces for Jupyter: how an ObjectRef and an actor handle look in a notebook.

``ObjectRef._repr_html_`` and ``ActorHandle._repr_html_`` call these. They must
be cheap and change nothing: they read the local core worker's in-process
memory store and actor queues (dictionary look-ups, no RPC, no waiting) and
never import rich. What "ready" means here: the value is in *this* process's
memory store (an owner learns it when the task replies; a borrower once it has
fetched it).

Note for notebook tests: readiness is a race with the cluster, so a cell that
shows a fresh ref's HTML may differ between runs; its ``text/plain``
(``ObjectRef(<hex>)``) never does.
"""
from __future__ import annotations

import html as _html

from raylab.views.format import short_id, short_object

_STYLE = ("font-family:Menlo,'DejaVu Sans Mono',consolas,monospace;font-size:90%;"
          "padding:1px 6px;border:1px solid #bbb;border-radius:4px")
_COLORS = {"ready": "#2e7d32", "pending": "#b26a00", "error": "#c62828", "ALIVE": "#2e7d32",
           "DEAD": "#c62828", "RESTARTING": "#b26a00", "PENDING_CREATION": "#b26a00"}


def escape(text) -> str:
    return _html.escape(str(text), quote=True)


def badge(text: str) -> str:
    """A coloured word: ``ready`` green, ``pending`` amber, ``error``/``DEAD`` red."""
    color = _COLORS.get(text, "#555")
    return f"<span style=\"color:{color};font-weight:bold\">{escape(text)}</span>"


def chip(kind: str, *fields: str) -> str:
    """An inline box: ``<kind> field field ...`` (fields are already HTML)."""
    inner = " ".join(f for f in fields if f)
    return f"<span class=\"raylab-{escape(kind.lower())}\" style=\"{_STYLE}\">" \
           f"<b>{escape(kind)}</b> {inner}</span>"


def table(headers: list, rows: list) -> str:
    """A plain HTML table (cells are escaped)."""
    head = "".join(f"<th style=\"text-align:left\">{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>"
                   for row in rows)
    return f"<table class=\"raylab-table\"><tr>{head}</tr>{body}</table>"


def _core_worker():
    from raylab.core_worker import current
    return current.CORE_WORKER


def ref_status(object_id: bytes, owner_address: str) -> str:
    """"ready", "error", "pending" (we own it, no value yet), "elsewhere" or "" (no cluster)."""
    cw = _core_worker()
    if cw is None:
        return ""
    from raylab.core_worker.memory_store import ERROR
    entry = cw.store.objects.get(object_id)
    if entry is not None:
        return "error" if entry[0] == ERROR else "ready"
    return "pending" if owner_address == getattr(cw, "address", None) else "elsewhere"


def _owner_label(address: str) -> str:
    if not address:
        return "?"
    from raylab.state import process_label
    return process_label(address)


def object_ref_html(ref) -> str:
    """``ObjectRef 4f5a91c0#1 owner driver ready``: the id, its owner, and if it is ready."""
    oid = ref.binary()
    status = ref_status(oid, ref.owner_address())
    title = escape(ref.hex())
    fields = [f"<code title=\"{title}\">{escape(short_object(ref.hex()))}</code>",
              f"owner <code>{escape(_owner_label(ref.owner_address()))}</code>",
              badge(status) if status and status != "elsewhere" else ""]
    return chip("ObjectRef", *fields)


def actor_handle_html(handle) -> str:
    """``Actor Counter 3f1c09aa ALIVE``: class, id, and the state this caller last heard."""
    aid = handle._actor_id
    state = ""
    cw = _core_worker()
    queue = cw.actors.queues.get(aid) if cw is not None and hasattr(cw, "actors") else None
    if queue is not None and queue.state:
        state = str(queue.state)
    fields = [f"<code>{escape(handle._class_name)}</code>",
              f"<code title=\"{escape(aid.hex())}\">{escape(short_id(aid.hex()))}</code>",
              badge(state) if state else ""]
    return chip("Actor", *fields)
