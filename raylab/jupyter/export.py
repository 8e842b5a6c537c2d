"""Export a recording as one standalone HTML page that plays without a kernel.

For slides and course pages: every frame (the diagram as SVG, the tables) is
rendered here, in Python, and stored in the page as JSON; a few lines of
JavaScript move between frames (slider, Back / Next, Play, speed, the arrow
keys) and highlight the step in the log. No server, no kernel, no network: the
file can be opened from disk or put on any web page.

    raylab.jupyter.export_html(t, "add.html")        # t: a ray.trace() recording
"""
from __future__ import annotations

import json
from html import escape

from raylab.jupyter.diagram import scene_html
from raylab.jupyter.panels import steplog_html, tables_html

_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: Menlo, 'DejaVu Sans Mono', consolas, monospace; margin: 16px;
       color: #222; max-width: 1000px; }}
#bar {{ display: flex; gap: 8px; align-items: center; margin: 8px 0; }}
#bar button {{ font: inherit; padding: 3px 10px; }}
#log {{ max-height: 260px; overflow-y: auto; border-top: 1px solid #ddd; }}
.raylab-step.current {{ background: #ffe0b2; font-weight: bold; }}
</style></head>
<body>
<h2>{title}</h2>
<div id="bar">
  <button id="play">▶ Play</button><button id="back">◀ Back</button>
  <button id="next">Next ▶</button>
  <input id="slider" type="range" min="0" max="{last}" value="{start}" style="width:360px">
  <span id="pos"></span>
  <label>speed <select id="speed"><option value="1600">slow</option>
  <option value="900" selected>normal</option><option value="350">fast</option></select></label>
</div>
<div id="diagram"></div>
<h3>step log</h3><div id="log">{log}</div>
<div id="tables"></div>
<script id="raylab-frames" type="application/json">{frames}</script>
<script>
const FRAMES = JSON.parse(document.getElementById("raylab-frames").textContent);
const slider = document.getElementById("slider");
let timer = null;
function show(k) {{
  k = Math.max(0, Math.min(FRAMES.length - 1, k));
  slider.value = k;
  document.getElementById("diagram").innerHTML = FRAMES[k].diagram;
  document.getElementById("tables").innerHTML = FRAMES[k].tables;
  document.getElementById("pos").textContent = "step " + k + " of " + (FRAMES.length - 1);
  document.querySelectorAll(".raylab-step").forEach(r => r.classList.remove("current"));
  const row = document.getElementById("raylab-step-" + k);
  if (row) {{ row.classList.add("current"); row.scrollIntoView({{block: "nearest"}}); }}
}}
function stop() {{ clearInterval(timer); timer = null;
  document.getElementById("play").textContent = "▶ Play"; }}
function play() {{
  if (timer) {{ stop(); return; }}
  if (+slider.value >= FRAMES.length - 1) show(0);
  document.getElementById("play").textContent = "‖ Pause";
  timer = setInterval(() => {{ if (+slider.value >= FRAMES.length - 1) stop();
                              else show(+slider.value + 1); }},
                      +document.getElementById("speed").value);
}}
document.getElementById("play").onclick = play;
document.getElementById("back").onclick = () => {{ stop(); show(+slider.value - 1); }};
document.getElementById("next").onclick = () => {{ stop(); show(+slider.value + 1); }};
slider.oninput = () => show(+slider.value);
document.addEventListener("keydown", e => {{
  if (e.key === "ArrowRight") show(+slider.value + 1);
  if (e.key === "ArrowLeft") show(+slider.value - 1);
}});
show({start});
</script></body></html>
"""


def frames_data(frames) -> list[dict]:
    """Every frame's panels (step 0 .. last) as plain data: what the page stores."""
    out = []
    for k in range(len(frames) + 1):
        scene = frames.scene(k)
        out.append({"step": k, "headline": scene.headline, "diagram": scene_html(scene),
                    "tables": tables_html(scene.model)})
    return out


def page_html(frames, title: str = "raylab replay", start: int = 0) -> str:
    """The standalone page for ``frames`` (a :class:`~raylab.jupyter.player.Frames`)."""
    data = json.dumps(frames_data(frames)).replace("</", "<\\/")
    log = steplog_html(frames.events, window=None, row_ids=True)
    return _PAGE.format(title=escape(title), last=len(frames), start=start, log=log,
                        frames=data)


def export_html(source, path, *, title: str = "raylab replay", start: int = 0) -> str:
    """Write a standalone HTML replay of ``source`` (a trace, a dashboard, a replay, a list
    of events) to ``path``; returns the path."""
    from raylab.jupyter.player import Frames, current_base, events_of
    frames = source if isinstance(source, Frames) else getattr(source, "frames", None)
    if not isinstance(frames, Frames):
        frames = Frames(events_of(source), current_base())
    with open(path, "w", encoding="utf-8") as f:
        f.write(page_html(frames, title, start))
    return str(path)
