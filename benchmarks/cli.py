"""``python -m benchmarks``: choose implementations and cases, run them, print the table.

Real Ray is optional. It is used when the current interpreter can import it, or
when ``--ray-python`` (or the ``RAYLAB_BENCH_RAY_PYTHON`` environment variable)
names another interpreter that can, so Ray never has to share raylab's
environment. Cases run in case order, raylab then Ray for each, so the two
figures of one row are measured minutes apart at most.
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib.metadata
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time

from benchmarks import report
from benchmarks.cases import CASES
from benchmarks.runner import Impl, run_case

RAY_PYTHON_ENV = "RAYLAB_BENCH_RAY_PYTHON"


def parse(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Run the same workloads on raylab and real Ray; print medians and ratios.")
    ap.add_argument("--quick", action="store_true", help="small sizes and few repetitions")
    ap.add_argument("--cases", help="comma-separated subset of: " + ",".join(CASES))
    ap.add_argument("--impl", choices=["raylab", "ray", "both"],
                    help="default: both if real Ray is available, else raylab")
    ap.add_argument("--ray-python", default=os.environ.get(RAY_PYTHON_ENV),
                    help=f"an interpreter that has ray installed (or set ${RAY_PYTHON_ENV})")
    ap.add_argument("--json", help="also write every figure and detail to this file")
    ap.add_argument("--timeout", type=float, help="per case subprocess, seconds "
                    "(default 180 with --quick, 600 without)")
    ap.add_argument("--logdir", help="keep per-case logs here (default: a new temp dir)")
    ap.add_argument("--list", action="store_true", help="list the cases and exit")
    return ap.parse_args(argv)


def find_ray(ray_python: str | None) -> tuple[Impl | None, str]:
    """The Ray implementation to compare with, or None and why not."""
    if ray_python:
        probe = "import ray, numpy, psutil; print(ray.__version__)"
        try:
            out = subprocess.run([ray_python, "-c", probe], capture_output=True, text=True,
                                 timeout=120, env={**os.environ, "RAY_ADDRESS": "local"})
        except (OSError, subprocess.TimeoutExpired) as e:
            return None, f"{ray_python} did not run: {e}"
        if out.returncode != 0:
            last = (out.stderr.strip().splitlines() or ["?"])[-1]
            return None, f"{ray_python} cannot import ray, numpy and psutil: {last}"
        return Impl("ray", ray_python, out.stdout.strip().splitlines()[-1]), ""
    if importlib.util.find_spec("ray") is not None:
        return Impl("ray", sys.executable, _version("ray")), ""
    return None, ("real Ray is not importable here; install it with "
                  "pip install -e \".[bench]\" or pass --ray-python PATH")


def _version(dist: str):
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def choose_impls(args) -> list:
    want = args.impl
    ray, why = (None, "") if want == "raylab" else find_ray(args.ray_python)
    if want in ("ray", "both") and ray is None:
        sys.exit(f"--impl {want}: {why}")
    if want is None and ray is None:
        print(f"note: comparing nothing, raylab only: {why}", flush=True)
    out = [] if want == "ray" else [Impl("raylab", sys.executable, _version("raylab"))]
    return out + ([ray] if ray is not None else [])


def choose_cases(spec: str | None) -> list:
    names = [c.strip() for c in spec.split(",") if c.strip()] if spec else list(CASES)
    unknown = [n for n in names if n not in CASES]
    if unknown:
        sys.exit(f"unknown case(s) {unknown}; known: {', '.join(CASES)}")
    return [CASES[n] for n in names]


def run_all(cases, impls, args, logdir) -> tuple[dict, dict]:
    timeout = args.timeout or (180 if args.quick else 600)
    results, todo = {}, {}
    for case in cases:
        results[case.name] = {}
        if case.todo:
            todo[case.name] = case.todo
            continue
        for impl in impls:
            if impl.name not in case.impls:
                continue
            print(f"  {case.name:<22} {impl.name:<7}", end="", flush=True)
            r = run_case(impl, case, args.quick, logdir, timeout)
            results[case.name][impl.name] = r
            shown = r["error"] or ", ".join(f"{k}={report.fmt(v)}" for k, v in r["metrics"].items())
            print(f"{r['wall_s']:6.1f} s  {shown}", flush=True)
    return results, todo


def main(argv=None) -> int:
    args = parse(argv)
    if args.list:
        for c in CASES.values():
            print(f"{c.name:<22} {'/'.join(c.impls):<11} {c.todo or c.doc}")
        return 0
    cases = choose_cases(args.cases)
    impls = choose_impls(args)
    logdir = args.logdir or tempfile.mkdtemp(prefix="raylab_bench_")
    os.makedirs(logdir, exist_ok=True)
    machine = report.machine_info()
    print(f"benchmarks: {len(cases)} case(s), logs in {logdir}", flush=True)
    t0 = time.monotonic()
    try:
        results, todo = run_all(cases, impls, args, logdir)
    except KeyboardInterrupt:  # the running case and its processes were ended by pid
        print("\ninterrupted")
        return 130
    rows = report.rows(results, todo)
    print()
    print(report.header(machine, impls, args.quick))
    print()
    print(report.table(rows))
    print(report.legend())
    extra = report.problems(results, todo)
    if extra:
        print()
        print(extra)
    print(f"\ntotal {time.monotonic() - t0:.0f} s")
    if args.json:
        _write_json(args.json, machine, impls, args, results, rows)
    return 0


def _write_json(path, machine, impls, args, results, rows) -> None:
    out = {"machine": machine, "quick": args.quick, "argv": sys.argv,
           "impls": [dataclasses.asdict(i) for i in impls],
           "table": [dict(zip(report.HEAD, r)) for r in rows], "results": results}
    with open(path, "w") as f:
        json.dump(out, f, indent=1, default=str)
    print(f"wrote {path}")
