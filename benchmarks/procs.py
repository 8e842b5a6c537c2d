"""Which processes a case started, and ending the ones still alive afterwards.

A Ray-like runtime starts daemons and workers (a GCS, raylets, workers...). Its own
``shutdown()`` should end them all; if it does not (a bug, a crash, a timeout), the
benchmark must not leave them running. So the case subprocess records every process
it started in a *pidfile* (pid + creation time, to rule out pid reuse), and the
parent, once the case has exited, waits a little and then ends whatever is still
alive, one pid at a time. Nothing is ever matched by name.

"Started by the case" means: a descendant of the case process, or a process that
did not exist before ``init`` and whose command line carries the session token
(``session_<digits...>``) of one of those descendants (Ray daemons can be
re-parented away from the driver).
"""
from __future__ import annotations

import json
import os
import re
import time

import psutil

SESSION_RE = re.compile(r"session_[A-Za-z0-9_.\-]+")


def snapshot() -> dict:
    """pid -> create_time of every process now (to tell new processes from old)."""
    snap = {}
    for p in psutil.process_iter(["pid", "create_time"]):
        snap[p.info["pid"]] = p.info["create_time"]
    return snap


def descendants(pid: int) -> dict:
    """pid -> create_time of every live descendant of ``pid``."""
    try:
        kids = psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return {}
    out = {}
    for k in kids:
        try:
            out[k.pid] = k.create_time()
        except psutil.Error:
            pass
    return out


def _tokens(pids) -> set:
    toks = set()
    for pid in pids:
        try:
            cmd = " ".join(psutil.Process(pid).cmdline())
        except psutil.Error:
            continue
        for m in SESSION_RE.finditer(cmd):
            if sum(c.isdigit() for c in m.group(0)) >= 8:  # an id, not "session_dir"
                toks.add(m.group(0))
    return toks


def started_since(before: dict) -> dict:
    """Processes this process started since ``before`` (see the module docstring)."""
    mine = descendants(os.getpid())
    toks = _tokens(mine)
    if toks:
        for p in psutil.process_iter(["pid", "create_time", "cmdline"]):
            pid, ct = p.info["pid"], p.info["create_time"]
            if pid in mine or before.get(pid) == ct or pid == os.getpid():
                continue
            cmd = " ".join(p.info["cmdline"] or [])
            if any(t in cmd for t in toks):
                mine[pid] = ct
    return mine


def write_pidfile(path: str | None, procs: dict) -> None:
    if not path:
        return
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump([[pid, ct] for pid, ct in procs.items()], f)
    os.replace(tmp, path)


def read_pidfile(path: str) -> dict:
    try:
        with open(path) as f:
            return {int(pid): ct for pid, ct in json.load(f)}
    except (OSError, ValueError):
        return {}


def _alive(procs: dict) -> list:
    out = []
    for pid, ct in procs.items():
        try:
            p = psutil.Process(pid)
            if abs(p.create_time() - ct) < 1e-3 and p.status() != psutil.STATUS_ZOMBIE:
                out.append(p)
        except psutil.Error:
            pass
    return out


def end_processes(procs: dict, grace: float = 5.0) -> list:
    """Wait up to ``grace`` s for ``procs`` to exit, then terminate (and kill) each by pid.

    Returns descriptions of the processes that had to be ended: a non-empty list
    means the implementation's shutdown left something behind.
    """
    deadline = time.monotonic() + grace
    left = _alive(procs)
    while left and time.monotonic() < deadline:
        time.sleep(0.2)
        left = _alive(procs)
    report = []
    for p in left:
        try:
            report.append(f"{p.pid} {' '.join(p.cmdline())[:80]}")
            p.terminate()
        except psutil.Error:
            pass
    _, still = psutil.wait_procs(left, timeout=3)
    for p in still:
        try:
            p.kill()
        except psutil.Error:
            pass
    return report
