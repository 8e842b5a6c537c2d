"""``python -m raylab demo [NAME]``: run a lecture demo in the terminal."""
from __future__ import annotations

import argparse
import importlib
import sys

DEMOS = {
    "task": "the lifecycle of a remote task across two nodes (add(a, b))",
    "actor": "actor creation through the GCS, then a method call (the Counter example)",
}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="raylab", description="raylab: a Ray Core you can watch")
    sub = p.add_subparsers(dest="command")
    d = sub.add_parser("demo", help="run a lecture demo")
    d.add_argument("name", nargs="?", default="task", choices=sorted(DEMOS))
    d.add_argument("--step", action="store_true", help="advance step by step with Enter")
    args = p.parse_args(argv)
    if args.command != "demo":
        p.print_help()
        return 2
    module = importlib.import_module(f"raylab.demo.{args.name}")
    module.run(step=args.step)
    return 0


if __name__ == "__main__":
    sys.exit(main())
