"""The lecture's diagram of a scene, drawn as SVG (for the dashboard, replays and exports).

The slides draw the cluster as nested boxes: the GCS with its tables on top,
then one box per node holding the raylet (local scheduler), the object store
and the worker processes; the driver sits on the head node. This module draws
the same boxes for a :class:`~raylab.jupyter.scene.Scene`, highlights the box
that acted at this step, and animates what travels: a token runs along an arrow
from the sender's box to the receiver's (a task pushed to a worker, an object
pulled between stores, a lease request to a raylet).

It is a pure function of the scene: no cluster, no widgets, no JavaScript (the
token moves with SVG's own ``<animateMotion>``), so the same string works in a
live widget, in a replay and in a standalone HTML file. The ``text/plain`` twin
is :func:`scene_text`, the rich cluster view of the same snapshot.
"""
from __future__ import annotations

from html import escape

from raylab.jupyter.scene import Scene
from raylab.views.cluster import cluster_text
from raylab.views.format import human_size, number, short_id, short_object
from raylab.views.snapshot import NodeState

WIDTH = 980
CHAR = 6.6             # px per character of the 11px monospace font
LINE = 14
FONT = "font-family:Menlo,'DejaVu Sans Mono',consolas,monospace"
COLORS = {"gcs": ("#fff8e1", "#f9a825"), "node": ("#f4f8fd", "#1565c0"),
          "raylet": ("#e8f5e9", "#2e7d32"), "store": ("#fce4ec", "#ad1457"),
          "worker": ("#e0f7fa", "#00838f"), "driver": ("#eeeeee", "#424242"),
          "dead": ("#f5f5f5", "#c62828")}
STATE_COLORS = {"IDLE": "#757575", "LEASED": "#00838f", "ACTOR": "#8e24aa", "DEAD": "#c62828"}
MOTION_COLORS = {"task": "#e65100", "object": "#ad1457", "call": "#1565c0"}


def scene_text(scene: Scene, width: int = 100) -> str:
    """The scene as deterministic plain text: the rich cluster view of its snapshot."""
    return cluster_text(scene.snapshot, scene.model if scene.step else None, width=width)


def _clip(text, px: float) -> str:
    text, n = str(text), max(int(px / CHAR), 1)
    return text if len(text) <= n else text[: max(n - 1, 0)] + "…"


class _Canvas:
    """SVG pieces plus where every named box is (for the arrows)."""

    def __init__(self, acting: str | None):
        self.parts: list[str] = []
        self.boxes: dict[str, tuple] = {}
        self.acting = acting

    def box(self, name, kind, x, y, w, h, title="", bold=True):
        fill, stroke = COLORS[kind]
        width = 1.2
        if name and name == self.acting:
            fill, stroke, width = "#fff3e0", "#e65100", 3
        if name:
            self.boxes[name] = (x, y, w, h)
        tag = f' data-box="{escape(name)}"' if name else ""
        self.parts.append(f'<rect x="{x:.0f}" y="{y:.0f}" width="{w:.0f}" height="{h:.0f}" '
                          f'rx="6" fill="{fill}" stroke="{stroke}" stroke-width="{width}"{tag}/>')
        if title:
            self.text(x + 6, y + 14, _clip(title, w - 10), stroke, bold)

    def text(self, x, y, s, color="#222", bold=False, size=11):
        weight = ' font-weight="bold"' if bold else ""
        self.parts.append(f'<text x="{x:.0f}" y="{y:.0f}" font-size="{size}" fill="{color}"'
                          f'{weight}>{escape(str(s))}</text>')


# -- the GCS ---------------------------------------------------------------------------------------
def _gcs_tables(scene: Scene) -> list:
    snap = scene.snapshot
    nodes = [f"{n.label} {'ALIVE' if n.alive else 'DEAD'}{' head' if n.is_head else ''}"
             for n in snap.nodes]
    actors = [f"{a.class_name} {short_id(a.actor_id)} {a.state} {a.node or '-'}"
              for a in snap.actors]
    functions = [f"{name} {short_id(fid)}" for fid, name in snap.functions]
    tables = [("node table", nodes), ("actor table", actors), ("function table", functions)]
    if snap.control_plane == "centralized" or snap.object_table:
        tables.append(("object table", [f"{short_object(o)} {', '.join(w) or '-'}"
                                        for o, w in sorted(snap.object_table.items())]))
    return tables


def _draw_gcs(c: _Canvas, scene: Scene, y: float) -> float:
    tables = _gcs_tables(scene)
    rows = min(max((len(r) for _, r in tables), default=0), 5)
    h = 44 + LINE * (rows + 1)
    head = next((n.label for n in scene.snapshot.nodes if n.is_head), "N1")
    c.box("gcs", "gcs", 10, y, WIDTH - 20, h,
          f"GCS (global control store) on head node {head}, control plane: "
          f"{scene.snapshot.control_plane}")
    col = (WIDTH - 32) / len(tables)
    for i, (title, items) in enumerate(tables):
        x = 18 + i * col
        c.text(x, y + 34, title, "#8d6e00", True)
        shown = items[:5] if len(items) <= 5 else items[:4] + [f"+{len(items) - 4} more"]
        for j, item in enumerate(shown or ["(empty)"]):
            c.text(x, y + 34 + LINE * (j + 1), _clip(item, col - 10),
                   "#999" if not items else "#222")
    return y + h


# -- one node -------------------------------------------------------------------------------------
def _resources(node: NodeState) -> str:
    parts = [f"{k} {number(node.available.get(k, 0))}/{number(v)}"
             for k, v in sorted(node.total.items())]
    return ("free: " + ", ".join(parts)) if parts else "resources: -"


def _node_height(node: NodeState, scene: Scene) -> float:
    if not node.alive:
        return 90
    h = 28
    if node.is_head:
        h += 26 + LINE * min(len(scene.inline.get("driver", [])), 3)
    h += 50 + 6
    h += 40 + LINE * min(len(node.objects), 5) + 6
    h += 20 + 40 * ((min(len(node.workers), 6) + 1) // 2 or 1) + 6
    return h


def _draw_driver(c, scene, x, y, w) -> float:
    objs = scene.inline.get("driver", [])
    h = 22 + LINE * min(len(objs), 3)
    c.box("driver", "driver", x, y, w, h, "Driver (your program; an owner)")
    for j, oid in enumerate(objs[:3]):
        more = f"  +{len(objs) - 3} more" if j == 2 and len(objs) > 3 else ""
        c.text(x + 10, y + 16 + LINE * (j + 1) - 2,
               _clip(f"memory store: {short_object(oid)}{more}", w - 16), "#424242")
    return y + h + 4


def _draw_raylet(c, node, x, y, w) -> float:
    c.box(f"{node.label}.raylet", "raylet", x, y, w, 50, "raylet (local scheduler)")
    c.text(x + 10, y + 30, _clip(_resources(node), w - 16))
    waiting = [f"queued: {n}" for n, _ in node.queued] + [f"infeasible: {n}"
                                                          for n, _ in node.infeasible]
    if waiting:
        c.text(x + 10, y + 44, _clip(", ".join(waiting), w - 16), "#b26a00")
    return y + 56


def _draw_store(c, node, x, y, w) -> float:
    objs = node.objects
    h = 40 + LINE * min(len(objs), 5)
    c.box(f"{node.label}.store", "store", x, y, w, h, "object store (shared memory)")
    cap = node.store_capacity
    frac = min(node.store_used / cap, 1.0) if cap else 0.0
    bar_w = min(w - 20, 160)
    c.parts.append(f'<rect x="{x + 10:.0f}" y="{y + 21:.0f}" width="{bar_w:.0f}" height="7" '
                   f'fill="#fff" stroke="#ad1457" stroke-width="0.6"/>'
                   f'<rect x="{x + 10:.0f}" y="{y + 21:.0f}" width="{bar_w * frac:.0f}" '
                   f'height="7" fill="#ad1457"/>')
    c.text(x + 16 + bar_w, y + 28, _clip(f"{human_size(node.store_used)} of "
                                         f"{human_size(cap) if cap else '?'}", w - bar_w - 24))
    shown = objs[:5] if len(objs) <= 5 else objs[:4]
    for j, o in enumerate(shown):
        kind = "primary" if o.primary else "replica"
        flag = ", spilled" if o.spilled else ""
        c.text(x + 10, y + 40 + LINE * j + 2, _clip(
            f"{short_object(o.object_id)} {human_size(o.size)} {kind}{flag}", w - 16),
            "#ad1457" if o.primary else "#6a1b4d")
    if len(objs) > 5:
        c.text(x + 10, y + 40 + LINE * 4 + 2, f"+{len(objs) - 4} more", "#999")
    return y + h + 6


def _draw_workers(c, node, x, y, w) -> float:
    c.text(x + 2, y + 12, "workers", "#00838f", True)
    workers = node.workers[:6]
    if not workers:
        c.text(x + 70, y + 12, "(none started)", "#999")
    ww = (w - 6) / 2
    for i, wk in enumerate(workers):
        wx, wy = x + (i % 2) * (ww + 6), y + 18 + (i // 2) * 40
        c.box(wk.label, "worker" if wk.state != "DEAD" else "dead", wx, wy, ww, 36)
        c.text(wx + 6, wy + 14, _clip(f"{wk.label} {wk.state}", ww - 10),
               STATE_COLORS.get(wk.state, "#222"), True)
        if wk.running:
            c.text(wx + 6, wy + 29, _clip(f"runs {wk.running}", ww - 10))
    if len(node.workers) > 6:
        c.text(x + w - 60, y + 12, f"+{len(node.workers) - 6} more", "#999")
    return y + 20 + 40 * ((len(workers) + 1) // 2 or 1)


def _draw_node(c: _Canvas, scene: Scene, node: NodeState, x, y, w, h) -> None:
    kind = "Head node" if node.is_head else "Worker node"
    if not node.alive:
        c.box(f"{node.label}.node", "dead", x, y, w, h, f"{kind} {node.label} (DEAD)")
        c.boxes[f"{node.label}.raylet"] = (x, y, w, h)
        c.text(x + 10, y + 44, "✗ its raylet, object store and workers are gone", "#c62828")
        return
    c.box(f"{node.label}.node", "node", x, y, w, h, f"{kind} {node.label}")
    inner_x, inner_w, cy = x + 8, w - 16, y + 24
    if node.is_head:
        cy = _draw_driver(c, scene, inner_x, cy, inner_w)
    cy = _draw_raylet(c, node, inner_x, cy, inner_w)
    cy = _draw_store(c, node, inner_x, cy, inner_w)
    _draw_workers(c, node, inner_x, cy, inner_w)


# -- what moves ---------------------------------------------------------------------------------------
def _center(box) -> tuple:
    x, y, w, h = box
    return x + w / 2, y + h / 2


def _draw_motion(c: _Canvas, scene: Scene) -> None:
    m = scene.motion
    if m is None:
        return
    src, dst = c.boxes.get(m.src), c.boxes.get(m.dst)
    if src is None or dst is None or src == dst:
        return
    (x1, y1), (x2, y2) = _center(src), _center(dst)
    bend = 60 if abs(y2 - y1) < 40 else 40
    cx, cy = (x1 + x2) / 2, min(y1, y2) - bend
    path = f"M{x1:.0f},{y1:.0f} Q{cx:.0f},{cy:.0f} {x2:.0f},{y2:.0f}"
    color = MOTION_COLORS.get(m.kind, "#e65100")
    label = escape(_clip(m.label, 200))
    c.parts.append(
        f'<path d="{path}" fill="none" stroke="{color}" stroke-width="2.2" '
        f'stroke-dasharray="6 4" marker-end="url(#raylab-arrow-{m.kind})" class="raylab-motion"/>'
        f'<g class="raylab-token"><circle r="7" fill="{color}"/>'
        f'<text x="10" y="4" font-size="12" font-weight="bold" fill="{color}" '
        f'stroke="#fff" stroke-width="3" paint-order="stroke">{label}</text>'
        f'<animateMotion dur="1.6s" repeatCount="indefinite" path="{path}"/></g>')


def _defs() -> str:
    markers = "".join(
        f'<marker id="raylab-arrow-{k}" viewBox="0 0 10 10" refX="9" refY="5" '
        f'markerWidth="7" markerHeight="7" orient="auto-start-reverse">'
        f'<path d="M0,0 L10,5 L0,10 z" fill="{v}"/></marker>' for k, v in MOTION_COLORS.items())
    return f"<defs>{markers}</defs>"


def scene_svg(scene: Scene) -> str:
    """The diagram as an inline ``<svg>`` element (scales to the width it is given)."""
    c = _Canvas(scene.acting)
    y = _draw_gcs(c, scene, 10) + 16
    nodes = scene.snapshot.nodes
    per_row = max(1, min(len(nodes), 3))
    gap = 12
    w = (WIDTH - 20 - gap * (per_row - 1)) / per_row
    for i in range(0, len(nodes), per_row):
        row = nodes[i:i + per_row]
        h = max(_node_height(n, scene) for n in row)
        for j, node in enumerate(row):
            _draw_node(c, scene, node, 10 + j * (w + gap), y, w, h)
        y += h + gap
    _draw_motion(c, scene)
    height = y + 4
    return (f'<svg class="raylab-diagram" xmlns="http://www.w3.org/2000/svg" '
            f'viewBox="0 0 {WIDTH} {height:.0f}" width="100%" '
            f'style="max-width:{WIDTH}px;{FONT}" role="img" '
            f'aria-label="{escape(scene.headline)}">{_defs()}{"".join(c.parts)}</svg>')


def headline_html(scene: Scene) -> str:
    """The line above the diagram: which step this is, in the lecture's words."""
    color = "#e65100" if scene.paused else "#1b5e20"
    return (f'<div class="raylab-headline" style="{FONT};font-size:13px;font-weight:bold;'
            f'color:{color};margin:2px 0 4px 0">{escape(scene.headline)}</div>')


def scene_html(scene: Scene) -> str:
    """Headline plus diagram, ready for an ``ipywidgets.HTML`` or a page."""
    return headline_html(scene) + scene_svg(scene)
