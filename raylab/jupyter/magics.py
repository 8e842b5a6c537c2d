"""``%load_ext raylab``: the ``%raylab`` line magic and the ``%%raylab trace`` cell magic.

They are shortcuts for a lecture: each line does what a few lines of Python
would (``ray.init``, ``raylab.stepper.next()``, ``raylab.chaos.kill_node``, ...)
and prints one sentence saying what happened. ``%raylab?`` prints the usage;
a wrong command or option prints it too, with what was wrong, and no traceback.
A value the cluster refuses (a node that does not exist, the head node, a step
name that is not in the catalogue, a second ``init``) prints what was wrong and
that command's usage line, also without a traceback.
"""
from __future__ import annotations

import argparse
import shlex

from IPython.core.magic import Magics, line_cell_magic, magics_class

USAGE = """%raylab COMMAND [options]      (and the cell magic %%raylab trace)

  %raylab init [--nodes N] [--cpus C] [--gpus G] [--store-mb M] [--mode ownership|centralized]
  %raylab status                   the cluster: GCS tables, nodes, stores, workers
  %raylab dashboard [--step] [--large | --scale S]
                                   the live dashboard (--step: pause at every step;
                                   --large: text 1.5 times as big, for a projector)
  %raylab step on|off              step mode: pause the cluster at every lecture step
  %raylab next [N]                 let N paused steps happen (default 1)
  %raylab continue                 run on to the next breakpoint
  %raylab break STEP [--node N]    pause wherever STEP happens (e.g. lease_granted)
  %raylab break --list             the step names a breakpoint can use
  %raylab kill-node NODE           kill a worker node (N2, ...), as if unplugged
  %raylab kill-worker WORKER       kill one worker process (N2.w1, ...)
  %raylab add-node [--cpus C] [--store-mb M]
                                   start one more node (default: shaped like the others)
  %raylab timeline FILE            the last trace's task executions as a Chrome trace
  %raylab replay                   scrub the last %%raylab trace back and forth
  %raylab export FILE              the last %%raylab trace as a standalone HTML replay
  %raylab shutdown                 stop the cluster and close the dashboards

  %%raylab trace [--of NAME] [--flow FLOW] [--expand] [--width W]
      run the cell traced; show its step log and the diagram of its last step
      (--of NAME: only the causal chain of the ObjectRef or actor handle NAME, a
      name or expression the cell defines, so the same steps in the same order
      on every run; the trace is kept in the variable _raylab_trace)
"""


class UsageError(Exception):
    """A bad %raylab command line: printed with the usage, never as a traceback."""


class CommandError(Exception):
    """A %raylab command the cluster refused: printed with that command's usage line."""


def usage_of(command: str) -> str:
    """The usage lines of one command (with their continuation lines)."""
    lines, keep = [], False
    for line in USAGE.splitlines():
        if line.startswith("  %"):
            keep = line.split()[1:2] == [command]
        elif not line.startswith("     "):
            keep = False
        if keep:
            lines.append(line)
    return "\n".join(lines)


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(message)


def parser() -> argparse.ArgumentParser:
    p = _Parser(prog="%raylab", add_help=False)
    sub = p.add_subparsers(dest="command", parser_class=_Parser)
    init = sub.add_parser("init", add_help=False)
    init.add_argument("--nodes", type=int, default=2)
    init.add_argument("--cpus", type=float, default=2)
    init.add_argument("--gpus", type=float, default=None)
    init.add_argument("--store-mb", type=int, default=200)
    init.add_argument("--mode", choices=["ownership", "centralized"], default="ownership")
    dash = sub.add_parser("dashboard", add_help=False)
    dash.add_argument("--step", action="store_true")
    size = dash.add_mutually_exclusive_group()
    size.add_argument("--large", action="store_const", const=1.5, dest="scale")
    size.add_argument("--scale", type=float)
    sub.add_parser("step", add_help=False).add_argument("state", choices=["on", "off"])
    sub.add_parser("next", add_help=False).add_argument("count", type=int, nargs="?", default=1)
    brk = sub.add_parser("break", add_help=False)
    brk.add_argument("step", nargs="?")
    brk.add_argument("--list", action="store_true")
    brk.add_argument("--node")
    sub.add_parser("kill-node", add_help=False).add_argument("node")
    sub.add_parser("kill-worker", add_help=False).add_argument("worker")
    add = sub.add_parser("add-node", add_help=False)
    add.add_argument("--cpus", type=float)
    add.add_argument("--store-mb", type=int)
    sub.add_parser("timeline", add_help=False).add_argument("file")
    sub.add_parser("export", add_help=False).add_argument("file")
    for name in ("status", "continue", "replay", "shutdown"):
        sub.add_parser(name, add_help=False)
    trace = sub.add_parser("trace", add_help=False)
    trace.add_argument("--flow")
    trace.add_argument("--of")
    trace.add_argument("--expand", action="store_true")
    trace.add_argument("--width", type=int, default=100)
    return p


def parse(line: str) -> argparse.Namespace:
    try:
        args = parser().parse_args(shlex.split(line))
    except ValueError as e:      # an unclosed quote
        raise UsageError(str(e)) from None
    if args.command is None:
        raise UsageError("no command given")
    return args


@magics_class
class RaylabMagics(Magics):
    def raylab(self, line: str, cell: str | None = None):
        try:
            args = parse(line)
            if cell is not None and args.command != "trace":
                raise UsageError(f"the cell magic is %%raylab trace (not {args.command!r})")
            if cell is None and args.command == "trace":
                raise UsageError("trace is a cell magic: put %%raylab trace on the first "
                                 "line of a cell")
        except UsageError as e:
            print(f"%raylab: {e}\n\n{USAGE}")
            return None
        from raylab.jupyter import commands
        try:
            if args.command == "trace":
                return commands.trace(self.shell, cell, args)
            return getattr(commands, "cmd_" + args.command.replace("-", "_"))(args)
        except UsageError as e:
            print(f"%raylab: {e}\n\n{USAGE}")
        except (CommandError, ValueError, LookupError, RuntimeError, TimeoutError) as e:
            # a value the cluster refused: say what, and how the command goes
            print(f"%raylab {args.command}: {e}\nusage:\n{usage_of(args.command)}")
        return None

    raylab.__doc__ = USAGE
    raylab = line_cell_magic(raylab)


def load_ipython_extension(ipython) -> None:
    """Register the magics, and make ray.get in step mode suit this kernel."""
    from raylab.jupyter import kernel
    kernel.install()
    ipython.register_magics(RaylabMagics)
