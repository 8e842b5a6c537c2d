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

WIDTH = 980            # the canvas at scale 1; a larger scale draws on a narrower canvas,
                       # so the same screen width shows bigger text
FONT_PX = 14           # the diagram's text
CHAR = FONT_PX * 0.61  # px per character of the monospace font
LINE = round(FONT_PX * 1.32)
NODE_MIN = 300         # the narrowest a node's box may be before nodes stack in rows
FONT = "font-family:Menlo,'DejaVu Sans Mono',consolas,monospace"
COLORS = {"gcs": ("#fff8e1", "#f9a825"), "node": ("#f4f8fd", "#1565c0"),
          "raylet": ("#e8f5e9", "#2e7d32"), "store": ("#fce4ec", "#ad1457"),
          "worker": ("#e0f7fa", "#00838f"), "driver": ("#eeeeee", "#424242"),
          "dead": ("#f5f5f5", "#c62828")}
STATE_COLORS = {"IDLE": "#757575", "LEASED": "#00838f", "ACTOR": "#8e24aa", "DEAD": "#c62828"}
MOTION_COLORS = {"task": "#e65100", "object": "#ad1457", "call": "#1565c0"}
_TITLE = LINE + 8      # a box's title band


def check_scale(scale) -> float:
    """Validate a ``scale`` argument eagerly, with the fix in the message."""
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not 0.5 <= scale <= 3:
        raise ValueError(f"invalid value for scale, expected a number from 0.5 to 3 "
                         f"(1 is normal, 1.5 large for a lecture hall; not {scale!r})")
    return float(scale)


def scene_text(scene: Scene, width: int = 100) -> str:
    """The scene as deterministic plain text: the rich cluster view of its snapshot."""
    return cluster_text(scene.snapshot, scene.model if scene.step else None, width=width)


def _clip(text, px: float) -> str:
    text, n = str(text), max(int(px / CHAR), 1)
    return text if len(text) <= n else text[: max(n - 1, 0)] + "…"


class _Canvas:
    """SVG pieces plus where every named box is (for the arrows)."""

    def __init__(self, acting: str | None, width: int):
        self.parts: list[str] = []
        self.boxes: dict[str, tuple] = {}
        self.acting = acting
        self.width = width
        self.gaps: list[float] = []     # the middle of the free band above each row of nodes

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
            self.text(x + 6, y + LINE, _clip(title, w - 10), stroke, bold)

    def text(self, x, y, s, color="#222", bold=False, size=FONT_PX):
        weight = ' font-weight="bold"' if bold else ""
        self.parts.append(f'<text x="{x:.0f}" y="{y:.0f}" font-size="{size}" fill="{color}"'
                          f'{weight}>{escape(str(s))}</text>')


# -- the GCS ---------------------------------------------------------------------------------------
def _gcs_tables(scene: Scene) -> list:
    snap = scene.snapshot
    nodes = [f"{n.label} {'ALIVE' if n.alive else 'DEAD'}{' head' if n.is_head else ''}"
             for n in snap.nodes]
    actors = [f"{a.class_name} {short_id(a.actor_id)} {a.state} {a.node or '-'}"
              + (f" ↻{a.restarts}" if a.restarts else "") for a in snap.actors]   # restarts
    functions = [f"{name} {short_id(fid)}" for fid, name in snap.functions]
    tables = [("node table", nodes), ("actor table", actors), ("function table", functions)]
    if snap.control_plane == "centralized" or snap.object_table:
        tables.append(("object table", [f"{short_object(o)} {', '.join(w) or '-'}"
                                        for o, w in sorted(snap.object_table.items())]))
    return tables


def _draw_gcs(c: _Canvas, scene: Scene, y: float) -> float:
    tables = _gcs_tables(scene)
    rows = min(max((len(r) for _, r in tables), default=0), 5)
    top = y + _TITLE + LINE - 4           # the tables' titles
    h = _TITLE + LINE * (rows + 1) + 10
    head = next((n.label for n in scene.snapshot.nodes if n.is_head), "N1")
    c.box("gcs", "gcs", 10, y, c.width - 20, h,
          f"GCS (global control store) on head node {head}, control plane: "
          f"{scene.snapshot.control_plane}")
    col = (c.width - 32) / len(tables)
    for i, (title, items) in enumerate(tables):
        x = 18 + i * col
        c.text(x, top, _clip(title, col - 10), "#8d6e00", True)
        shown = items[:5] if len(items) <= 5 else items[:4] + [f"+{len(items) - 4} more"]
        for j, item in enumerate(shown or ["(empty)"]):
            c.text(x, top + LINE * (j + 1), _clip(item, col - 10),
                   "#999" if not items else "#222")
    return y + h


# -- one node -------------------------------------------------------------------------------------
def _resources(node: NodeState) -> str:
    parts = [f"{k} {number(node.available.get(k, 0))}/{number(v)}"
             for k, v in sorted(node.total.items())]
    return ("free: " + ", ".join(parts)) if parts else "resources: -"


def _driver_h(scene: Scene) -> float:
    return LINE + 8 + LINE * min(len(scene.inline.get("driver", [])), 3)


def _raylet_h() -> float:
    return 3 * LINE + 6


def _store_h(node: NodeState) -> float:
    return 2 * LINE + 12 + LINE * min(len(node.objects), 5)


def _worker_h() -> float:
    return 2 * LINE + 8


def _node_height(node: NodeState, scene: Scene) -> float:
    if not node.alive:
        return 4 * LINE + 30
    h = _TITLE + 4
    if node.is_head:
        h += _driver_h(scene) + 4
    h += _raylet_h() + 6 + _store_h(node) + 6
    h += LINE + 6 + (_worker_h() + 4) * ((min(len(node.workers), 6) + 1) // 2 or 1) + 6
    return h


def _draw_driver(c, scene, x, y, w) -> float:
    objs = scene.inline.get("driver", [])
    h = _driver_h(scene)
    c.box("driver", "driver", x, y, w, h, "Driver (your program; an owner)")
    for j, oid in enumerate(objs[:3]):
        more = f"  +{len(objs) - 3} more" if j == 2 and len(objs) > 3 else ""
        c.text(x + 10, y + LINE * (j + 2), _clip(f"memory store: {short_object(oid)}{more}",
                                                 w - 16), "#424242")
    return y + h + 4


def _draw_raylet(c, node, x, y, w) -> float:
    c.box(f"{node.label}.raylet", "raylet", x, y, w, _raylet_h(), "raylet (local scheduler)")
    c.text(x + 10, y + 2 * LINE, _clip(_resources(node), w - 16))
    waiting = [f"queued: {n}" for n, _ in node.queued] + [f"infeasible: {n}"
                                                          for n, _ in node.infeasible]
    if waiting:
        c.text(x + 10, y + 3 * LINE, _clip(", ".join(waiting), w - 16), "#b26a00")
    return y + _raylet_h() + 6


def _draw_store(c, node, x, y, w) -> float:
    objs = node.objects
    h = _store_h(node)
    c.box(f"{node.label}.store", "store", x, y, w, h, "object store (shared memory)")
    cap = node.store_capacity
    frac = min(node.store_used / cap, 1.0) if cap else 0.0
    bar_w = min(w - 20, 90)
    bar_y = y + LINE + 6
    c.parts.append(f'<rect x="{x + 10:.0f}" y="{bar_y:.0f}" width="{bar_w:.0f}" height="8" '
                   f'fill="#fff" stroke="#ad1457" stroke-width="0.6"/>'
                   f'<rect x="{x + 10:.0f}" y="{bar_y:.0f}" width="{bar_w * frac:.0f}" '
                   f'height="8" fill="#ad1457"/>')
    c.text(x + 16 + bar_w, bar_y + 8, _clip(f"{human_size(node.store_used)} of "
                                           f"{human_size(cap) if cap else '?'}", w - bar_w - 24))
    shown = objs[:5] if len(objs) <= 5 else objs[:4]
    for j, o in enumerate(shown):
        kind = "primary" if o.primary else "replica"
        flag = ", spilled to disk" if o.spilled else ""
        c.text(x + 10, y + LINE * (j + 3) + 2, _clip(
            f"{short_object(o.object_id)} {human_size(o.size)} {kind}{flag}", w - 16),
            "#999" if o.spilled else "#ad1457" if o.primary else "#6a1b4d")
    if len(objs) > 5:
        c.text(x + 10, y + LINE * 7 + 2, f"+{len(objs) - 4} more", "#999")
    return y + h + 6


def _draw_workers(c, node, x, y, w) -> float:
    c.text(x + 2, y + LINE - 2, "workers", "#00838f", True)
    workers = node.workers[:6]
    if not workers:
        c.text(x + 2 + 8 * CHAR, y + LINE - 2, "(none started)", "#999")
    ww, wh = (w - 6) / 2, _worker_h()
    for i, wk in enumerate(workers):
        wx, wy = x + (i % 2) * (ww + 6), y + LINE + 4 + (i // 2) * (wh + 4)
        c.box(wk.label, "worker" if wk.state != "DEAD" else "dead", wx, wy, ww, wh)
        c.text(wx + 6, wy + LINE, _clip(f"{wk.label} {wk.state}", ww - 10),
               STATE_COLORS.get(wk.state, "#222"), True)
        if wk.running:
            c.text(wx + 6, wy + 2 * LINE + 1, _clip(f"runs {wk.running}", ww - 10))
    if len(node.workers) > 6:
        c.text(x + w - 9 * CHAR, y + LINE - 2, f"+{len(node.workers) - 6} more", "#999")
    return y + LINE + 4 + (wh + 4) * ((len(workers) + 1) // 2 or 1)


def _draw_node(c: _Canvas, scene: Scene, node: NodeState, x, y, w, h) -> None:
    kind = "Head node" if node.is_head else "Worker node"
    if not node.alive:
        c.box(f"{node.label}.node", "dead", x, y, w, h, f"{kind} {node.label} (DEAD)")
        c.boxes[f"{node.label}.raylet"] = (x, y, w, h)
        for j, line in enumerate(("✗ its raylet, object store", "and workers are gone")):
            c.text(x + 10, y + (3 + j) * LINE, _clip(line, w - 16), "#c62828")
        return
    c.box(f"{node.label}.node", "node", x, y, w, h, f"{kind} {node.label}")
    inner_x, inner_w, cy = x + 8, w - 16, y + _TITLE + 4
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
    """An arrow from sender to receiver; a dot runs along it, and the label sits on an
    opaque tag at the arrow's highest point (so it never runs over a box's text)."""
    m = scene.motion
    if m is None:
        return
    src, dst = c.boxes.get(m.src), c.boxes.get(m.dst)
    if src is None or dst is None or src == dst:
        return
    (x1, y1), (x2, y2) = _center(src), _center(dst)
    # the label goes in the free band just above the lower box's row of nodes (between
    # the GCS and the nodes, or between two rows of nodes), and the arc passes through it
    lower = max(src[1], dst[1])
    band = max((g for g in c.gaps if g < lower), default=min(y1, y2) - 40)
    bow = 90 if abs(x1 - x2) < 120 else 0       # one above the other: curve out sideways
    cx, cy = (x1 + x2) / 2 + bow, 2 * band - (y1 + y2) / 2
    path = f"M{x1:.0f},{y1:.0f} Q{cx:.0f},{cy:.0f} {x2:.0f},{y2:.0f}"
    color = MOTION_COLORS.get(m.kind, "#e65100")
    label = _clip(m.label, 260)
    tag_w, tag_h = len(label) * CHAR + 14, LINE + 6
    tx, ty = (x1 + 2 * cx + x2) / 4, band                        # the curve's apex
    tx = min(max(tx - tag_w / 2, 4), c.width - tag_w - 4)
    c.parts.append(
        f'<path d="{path}" fill="none" stroke="{color}" stroke-width="2.4" '
        f'stroke-dasharray="6 4" marker-end="url(#raylab-arrow-{m.kind})" class="raylab-motion"/>'
        f'<g class="raylab-token"><circle r="7" fill="{color}"/>'
        f'<animateMotion dur="1.6s" repeatCount="indefinite" path="{path}"/></g>'
        f'<g class="raylab-motion-label"><rect x="{tx:.0f}" y="{ty - tag_h / 2:.0f}" '
        f'width="{tag_w:.0f}" height="{tag_h:.0f}" rx="{tag_h / 2:.0f}" fill="#fff" '
        f'stroke="{color}" stroke-width="1.5"/>'
        f'<text x="{tx + 7:.0f}" y="{ty + FONT_PX * 0.36:.0f}" font-size="{FONT_PX}" '
        f'font-weight="bold" fill="{color}">{escape(label)}</text></g>')


def _defs() -> str:
    markers = "".join(
        f'<marker id="raylab-arrow-{k}" viewBox="0 0 10 10" refX="9" refY="5" '
        f'markerWidth="7" markerHeight="7" orient="auto-start-reverse">'
        f'<path d="M0,0 L10,5 L0,10 z" fill="{v}"/></marker>' for k, v in MOTION_COLORS.items())
    return f"<defs>{markers}</defs>"


def scene_svg(scene: Scene, scale: float = 1.0) -> str:
    """The diagram as an inline ``<svg>`` element; it fills the width it is given, and
    ``scale`` > 1 makes its text larger there (nodes then stack in more rows)."""
    width = round(WIDTH / check_scale(scale))
    c = _Canvas(scene.acting, width)
    gap, band = 12, LINE + 14        # between boxes; the band above a row holds labels
    y = _draw_gcs(c, scene, 10) + band
    nodes = scene.snapshot.nodes
    per_row = max(1, min(len(nodes), 3, int((width - 20 + gap) // (NODE_MIN + gap))))
    w = (width - 20 - gap * (per_row - 1)) / per_row
    for i in range(0, len(nodes), per_row):
        row = nodes[i:i + per_row]
        h = max(_node_height(n, scene) for n in row)
        c.gaps.append(y - band / 2)
        for j, node in enumerate(row):
            _draw_node(c, scene, node, 10 + j * (w + gap), y, w, h)
        y += h + band
    _draw_motion(c, scene)
    height = y + 4
    return (f'<svg class="raylab-diagram" xmlns="http://www.w3.org/2000/svg" '
            f'viewBox="0 0 {width} {height:.0f}" width="100%" '
            f'style="max-width:1000px;{FONT}" role="img" '
            f'aria-label="{escape(scene.headline)}">{_defs()}{"".join(c.parts)}</svg>')


def headline_html(scene: Scene, scale: float = 1.0) -> str:
    """The line above the diagram: which step this is, in the lecture's words."""
    color = "#e65100" if scene.paused else "#1b5e20"
    return (f'<div class="raylab-headline" style="{FONT};font-size:{14 * scale:.0f}px;'
            f'line-height:1.35;font-weight:bold;color:{color};margin:2px 0 4px 0">'
            f'{escape(scene.headline)}</div>')


def scene_html(scene: Scene, scale: float = 1.0) -> str:
    """Headline plus diagram, ready for an ``ipywidgets.HTML`` or a page."""
    return headline_html(scene, scale) + scene_svg(scene, scale)
