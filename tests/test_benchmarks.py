"""The benchmark suite runs end to end (smoke test; no timing is asserted).

Figures on a shared machine are noise for a test, so this only checks that
``python -m benchmarks`` starts the cases in fresh subprocesses, gets figures
back, and prints them as numbers in the table.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_quick_run_prints_numbers(tmp_path):
    out_json = tmp_path / "bench.json"
    cmd = [sys.executable, "-m", "benchmarks", "--quick", "--impl", "raylab",
           "--cases", "task_rtt,tiny_tasks", "--json", str(out_json),
           "--logdir", str(tmp_path / "logs")]
    p = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    for metric in ("task_rtt_us", "tiny_tasks_per_s"):
        line = re.search(rf"^{metric}\b.*$", p.stdout, re.M)
        assert line, f"no row for {metric} in:\n{p.stdout}"
        raylab_cell = re.split(r"\s{2,}", line.group(0))[2]  # metric, unit, raylab, Ray...
        assert float(raylab_cell.replace(",", "")) > 0, line.group(0)
    data = json.loads(out_json.read_text())
    for case, metric in (("task_rtt", "task_rtt_us"), ("tiny_tasks", "tiny_tasks_per_s")):
        r = data["results"][case]["raylab"]
        assert r["error"] is None, r
        assert r["metrics"][metric] > 0
        assert not r["leftovers"], r["leftovers"]


def test_ratio_is_oriented_so_below_one_means_raylab_faster():
    if str(REPO) not in sys.path:  # benchmarks/ is a top-level package of the repo, not installed
        sys.path.insert(0, str(REPO))
    from benchmarks.metrics import BY_KEY
    rtt, rate = BY_KEY["task_rtt_us"], BY_KEY["tiny_tasks_per_s"]
    assert rtt.ratio(100.0, 400.0) == 0.25 and rtt.verdict(100.0, 400.0) is True
    assert rate.ratio(4000.0, 2000.0) == 0.5 and rate.verdict(4000.0, 2000.0) is True
    assert rate.verdict(3000.0, 2000.0) is False
    assert rate.ratio("error", 2000.0) is None and rate.verdict("error", 2000.0) is None
