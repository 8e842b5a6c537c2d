"""``python -m raylab demo [NAME] [--step] [--control-plane centralized|ownership]``.

The lecture's scenarios, run for real. With no name, lists the demos. ``--step``
pauses the cluster at every step and lets one happen per press of Enter.
``--control-plane centralized`` (or ``--lecture``) runs the lecture's design: a
GCS object table and a global scheduler; ``ownership`` (the default) is Ray 2's.
``compare`` always runs both.
"""
from __future__ import annotations

import argparse
import sys

CONTROL_PLANES = ("centralized", "ownership")

DEMOS = {
    "task": "the lifecycle of a remote task across two nodes: add(a, b), a on N1, b on N2",
    "get": "ray.get of an object produced on another node (fetch and replicate)",
    "actor": "actor creation through the GCS, then a method call (the Counter example)",
    "lineage": "kill a node mid-run and watch lost objects rebuilt from lineage",
    "compare": "the same program under the lecture's centralized control plane and Ray 2's",
}


def list_demos(out=print) -> None:
    out("raylab demos (python -m raylab demo NAME [--step] "
        "[--control-plane centralized|ownership]):")
    for name, what in DEMOS.items():
        out(f"  {name:<8} {what}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="raylab", description="raylab: a Ray Core you can watch")
    sub = p.add_subparsers(dest="command")
    d = sub.add_parser("demo", help="run a lecture demo")
    d.add_argument("name", nargs="?", choices=sorted(DEMOS), help="which demo (none: list)")
    d.add_argument("--step", action="store_true", help="advance step by step with Enter")
    d.add_argument("--control-plane", choices=CONTROL_PLANES, default=None,
                   help="the lecture's centralized design or Ray 2's ownership (default)")
    d.add_argument("--lecture", action="store_const", const="centralized",
                   dest="control_plane", help="same as --control-plane centralized")
    args = p.parse_args(argv)
    if args.command != "demo":
        p.print_help()
        return 2
    if args.name is None:
        list_demos()
        return 0
    from raylab.demo import runner
    runner.run_demo(args.name, step=args.step, plane=args.control_plane)
    return 0


if __name__ == "__main__":
    sys.exit(main())
