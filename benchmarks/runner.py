"""Running one case for one implementation: fresh subprocesses, timeouts, cleanup.

Each run is ``python -m benchmarks.child`` under the implementation's interpreter,
with the repository root on ``PYTHONPATH`` (so another interpreter that has Ray
but not raylab still finds this package). Its output goes to a log file; its
figures come back in a JSON result file. After it exits, every process it
recorded as started is checked and, if still alive, ended by pid
(:mod:`benchmarks.procs`). A case that must be measured in fresh interpreters
several times (``init``) is run several times and the median kept.
"""
from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks import procs
from benchmarks.common import median

REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Impl:
    name: str               # the module to import: "raylab" or "ray"
    python: str             # the interpreter that has it
    version: str | None = None


def run_case(impl: Impl, case, quick: bool, logdir: str, timeout: float) -> dict:
    """All runs of ``case`` for ``impl``, merged: median metrics, first error."""
    n = case.runs[0] if quick else case.runs[1]
    runs = [_run_once(impl, case.name, quick, logdir, timeout, i) for i in range(n)]
    ok = [r for r in runs if not r["error"]]
    metrics = {}
    for key in {k for r in runs for k in r["metrics"]}:
        vals = [r["metrics"][key] for r in runs if key in r["metrics"]]
        metrics[key] = median(vals)
    return {
        "case": case.name, "impl": impl.name, "metrics": metrics,
        "error": None if ok else runs[0]["error"],
        "partial_errors": [r["error"] for r in runs if r["error"]] if ok else [],
        "leftovers": [x for r in runs for x in r["leftovers"]],
        "wall_s": sum(r["wall_s"] for r in runs),
        "runs": runs,
    }


def _run_once(impl: Impl, name: str, quick: bool, logdir: str, timeout: float, i: int) -> dict:
    stem = os.path.join(logdir, f"{name}.{impl.name}.{i}")
    result, pidfile, logfile = stem + ".result.json", stem + ".pids.json", stem + ".log"
    cmd = [impl.python, "-m", "benchmarks.child", "--impl", impl.name, "--case", name,
           "--result", result, "--pidfile", pidfile] + (["--quick"] if quick else [])
    t0 = time.perf_counter()
    with open(logfile, "w") as log:
        proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=_env(impl), stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        timed_out = _wait(proc, timeout)
    wall = time.perf_counter() - t0
    res = _load(result) or _failure(logfile, timed_out, timeout, proc.returncode)
    res["wall_s"] = wall
    res["log"] = logfile
    res["leftovers"] = procs.end_processes(procs.read_pidfile(pidfile))
    return res


def _env(impl: Impl) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
    if impl.name == "ray":
        env["RAY_ADDRESS"] = "local"  # start a private cluster, never attach to another one
    return env


def _wait(proc: subprocess.Popen, timeout: float) -> bool:
    """Wait for the case; on timeout (or Ctrl-C) end it and its descendants by pid.

    Returns True if the case timed out.
    """
    try:
        proc.wait(timeout=timeout)
        return False
    except (subprocess.TimeoutExpired, KeyboardInterrupt) as e:
        kids = procs.descendants(proc.pid)
        proc.kill()
        proc.wait()
        procs.end_processes(kids, grace=0)
        if isinstance(e, KeyboardInterrupt):
            raise
        return True


def _load(path: str) -> dict | None:
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _failure(logfile: str, timed_out: bool, timeout: float, rc) -> dict:
    try:
        with open(logfile) as f:
            tail = f.read()[-2000:]
    except OSError:
        tail = ""
    why = f"timeout after {timeout:.0f} s" if timed_out else f"case process exited rc={rc}"
    return {"metrics": {}, "info": {"log_tail": tail}, "error": why}
