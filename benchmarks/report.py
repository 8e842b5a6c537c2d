"""The printed report: the machine, then one row per metric, then errors and notes.

Columns: the raylab and Ray medians; the cost ratio (below 1 = raylab faster; for
rates ``↑`` it is Ray/raylab, for times raylab/Ray); the same in words ("3.1x
faster"); the project's target with a pass/fail mark. Absolute figures drift on a
shared machine, so the header says what to compare: ratios from one sitting.
"""
from __future__ import annotations

import os
import platform
import sys

from benchmarks import metrics as M

HEAD = ("metric", "unit", "raylab", "Ray", "ratio", "raylab is", "target", "ok")


def machine_info() -> dict:
    import psutil
    info = {"cores": os.cpu_count(), "usable_cores": len(os.sched_getaffinity(0)),
            "memory_gib": round(psutil.virtual_memory().total / 2 ** 30, 1),
            "python": sys.version.split()[0], "platform": platform.platform(),
            "loadavg": [round(x, 2) for x in os.getloadavg()]}
    try:
        with open("/proc/cpuinfo") as f:
            info["cpu"] = next(ln.split(":", 1)[1].strip() for ln in f
                               if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return info


def header(machine: dict, impls: list, quick: bool) -> str:
    names = ", ".join(f"{i.name} {i.version or ''} ({i.python})" for i in impls)
    return "\n".join([
        f"machine: {machine['cores']} cores ({machine['usable_cores']} usable), "
        f"{machine['memory_gib']} GiB RAM, {machine.get('cpu', '?')}; "
        f"load {machine['loadavg']}",
        f"python {machine['python']}; implementations: {names}; "
        f"{'--quick sizes' if quick else 'full sizes'}",
        "Compare the ratios, not the absolute figures: both columns come from this one "
        "sitting,\nand absolute figures drift with the machine and whatever else runs on it.",
    ])


def fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, str):
        return v
    a = abs(v)
    if a >= 1000:
        return f"{v:,.0f}"
    return f"{v:.1f}" if a >= 100 else f"{v:.2f}" if a >= 10 else f"{v:.3f}" if a >= 1 \
        else f"{v:.4f}"


def _cell(result: dict | None, key: str):
    if result is None:
        return "n/a"
    if key in result["metrics"]:
        return result["metrics"][key]
    return "error" if result["error"] else "-"


def _words(ratio) -> str:
    if ratio is None:
        return ""
    return f"{1 / ratio:.1f}x faster" if ratio <= 1 else f"{ratio:.1f}x slower"


def _target(m: M.Metric) -> str:
    if m.absolute is not None:
        return m.goal
    if m.target is None:
        return ""
    return f"ratio <= {m.target:.2f} ({m.goal})"


def rows(results: dict, todo: dict) -> list:
    """Table rows from {case: {impl: merged result}}, in case order."""
    out = []
    for case, by_impl in results.items():
        if case in todo:
            out.append((case, "", "not implemented yet", "", "", "", "", ""))
            continue
        for m in M.for_case(case):
            a, b = _cell(by_impl.get("raylab"), m.key), _cell(by_impl.get("ray"), m.key)
            if m.absolute is not None:
                b = "n/a"
            r = m.ratio(a, b)
            ok = m.verdict(a, b)
            name = m.key + (" ↑" if m.higher_is_better else "")
            out.append((name, m.unit, fmt(a), fmt(b), fmt(r), _words(r), _target(m),
                        {True: "PASS", False: "FAIL", None: ""}[ok]))
    return out


def table(rows_: list) -> str:
    widths = [max(len(str(r[i])) for r in rows_ + [HEAD]) for i in range(len(HEAD))]

    def line(r):
        return "  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip()
    return "\n".join([line(HEAD), "-" * len(line(HEAD))] + [line(r) for r in rows_])


def legend() -> str:
    return ("ratio: raylab cost relative to Ray, below 1 = raylab faster (times: raylab/Ray;"
            " rates marked ↑: Ray/raylab).\n"
            "target: the project's goal for that ratio (or an absolute bound for raylab-only"
            " figures); ok: PASS/FAIL against it.")


def problems(results: dict, todo: dict) -> str:
    """Errors (a feature not there yet is an error row, not a crash), leftovers, notes."""
    lines = [f"  {case}: {text}" for case, text in todo.items()]
    for case, by_impl in results.items():
        for impl, r in by_impl.items():
            if r.get("error"):
                lines.append(f"  {case} [{impl}]: {r['error']}")
            for e in r.get("partial_errors", []):
                lines.append(f"  {case} [{impl}] (one run of several): {e}")
            if r.get("leftovers"):
                lines.append(f"  {case} [{impl}]: processes left after shutdown, ended by "
                             f"pid: {r['leftovers']}")
            for run in r.get("runs", []):
                note = run.get("info", {}).get("note")
                if note:
                    lines.append(f"  {case} [{impl}] note: {note}")
    return "errors and notes:\n" + "\n".join(lines) if lines else ""
