"""One case, one implementation, one fresh interpreter (run by :mod:`benchmarks.runner`).

    python -m benchmarks.child --impl ray --case task_rtt --result R.json --pidfile P.json

The interpreter may be a different one from the parent's (real Ray installed
elsewhere), so this module needs only the standard library, numpy, psutil and
the module under test. Whatever happens, it writes a result file: the figures,
or the error that stopped the case (a feature the implementation lacks is a
result too), and it always shuts the runtime down.
"""
from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
import traceback


def run(impl: str, case_name: str, quick: bool, pidfile: str | None) -> dict:
    from benchmarks.cases import CASES
    from benchmarks.common import Ctx
    res = {"case": case_name, "impl": impl, "metrics": {}, "info": {}, "error": None}
    ctx = None
    try:
        t0 = time.perf_counter()
        ray = importlib.import_module(impl)
        res["info"]["import_s"] = time.perf_counter() - t0
        res["version"] = getattr(ray, "__version__", None)
        ctx = Ctx(ray, impl, quick, pidfile)
        CASES[case_name].fn(ctx)
    except BaseException as e:  # noqa: BLE001 - any failure is a result row
        first = (str(e).strip().splitlines() or [""])[0]
        res["error"] = f"{type(e).__name__}: {first}"[:300]
        res["traceback"] = traceback.format_exc()
    finally:
        if ctx is not None:
            try:
                ctx.shutdown()
            except BaseException as e:  # noqa: BLE001
                res["info"]["shutdown_error"] = repr(e)
            res["metrics"], res["info"] = ctx.metrics, {**res["info"], **ctx.info}
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--impl", required=True)
    ap.add_argument("--case", required=True)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--result", required=True)
    ap.add_argument("--pidfile")
    a = ap.parse_args(argv)
    res = run(a.impl, a.case, a.quick, a.pidfile)
    with open(a.result, "w") as f:
        json.dump(res, f, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
