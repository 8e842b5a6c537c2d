"""The session: one running cluster's private directory, token and processes.

``ray.init`` makes a directory only this user can enter (mode 0700) holding
the session token, the config, the sockets of every process, their logs and
the spill files. It starts the GCS and one raylet per simulated node as fresh
interpreters (never forks of the driver: a Jupyter kernel has threads that
hold locks). Each raylet is the leader of its own process group, so killing a
node kills its raylet, its zygote and its workers together.

Every cluster process watches a *lifeline* pipe whose only write end lives in
the driver: if the driver dies, even by SIGKILL, the pipe reads EOF and the
cluster shuts itself down within moments. Shared memory is anonymous
(``memfd``) and dies with the last process that maps it, so nothing is left
in /dev/shm.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

from raylab.config import Config
from raylab.transport import new_token, socket_path_ok, unix_address


@dataclass
class SessionInfo:
    """What every process of the cluster knows about the session."""

    dir: str
    token: bytes
    config: Config

    @property
    def name(self) -> str:
        return os.path.basename(self.dir)

    def socket(self, name: str) -> str:
        path = os.path.join(self.dir, "s", name + ".sock")
        if not socket_path_ok(path):
            raise OSError(f"socket path too long for a Unix socket: {path!r}; "
                          "set RAYLAB_TMPDIR to a shorter directory")
        return unix_address(path)

    @property
    def gcs_address(self) -> str:
        return self.socket("gcs")

    def log_path(self, name: str) -> str:
        return os.path.join(self.dir, "logs", name + ".log")

    def spill_dir(self, label: str) -> str:
        return os.path.join(self.dir, "spill", label)

    @classmethod
    def load(cls, directory: str) -> "SessionInfo":
        with open(os.path.join(directory, "token"), "rb") as f:
            token = f.read()
        with open(os.path.join(directory, "config.json")) as f:
            cfg = Config(**json.load(f))
        return cls(directory, token, cfg)


def _base_dir() -> str:
    base = os.environ.get("RAYLAB_TMPDIR") or os.path.join(tempfile.gettempdir(), "raylab_sessions")
    os.makedirs(base, mode=0o700, exist_ok=True)
    return base


def create_session(config: Config) -> SessionInfo:
    """Make the private session directory with its token and config."""
    stamp = time.strftime("%Y-%m-%d_%H-%M-%S")
    micro = int((time.time() % 1) * 1e6)
    path = os.path.join(_base_dir(), f"session_{stamp}_{micro:06d}_{os.getpid()}")
    os.mkdir(path, 0o700)
    os.chmod(path, 0o700)  # the umask must not widen it
    for sub in ("s", "logs", "spill"):
        os.mkdir(os.path.join(path, sub), 0o700)
    token = new_token()
    fd = os.open(os.path.join(path, "token"), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(token)
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(config.to_dict(), f)
    return SessionInfo(path, token, config)


class ProcessSet:
    """The driver's record of the cluster processes it started, by PID.

    Only PIDs (and process groups) this session created are ever signalled.
    """

    def __init__(self, session: SessionInfo):
        self.session = session
        self.lifeline_r, self.lifeline_w = os.pipe()  # both non-inheritable by default
        self.procs: dict[str, subprocess.Popen] = {}
        self.head_arena = None

    def _spawn(self, name: str, args: list[str], extra_fds: tuple = ()) -> subprocess.Popen:
        log = open(self.session.log_path(name), "ab", buffering=0)
        env = dict(os.environ)
        env["PYTHONUNBUFFERED"] = "1"
        # workers import what the driver can import (modules beside the script, tests, ...)
        paths = [p for p in sys.path if p and os.path.isdir(p)]
        env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
        cmd = [sys.executable, "-m"] + args + ["--session", self.session.dir,
                                               "--lifeline-fd", str(self.lifeline_r)]
        p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                             pass_fds=(self.lifeline_r,) + extra_fds, start_new_session=True,
                             env=env,
                             close_fds=True, cwd=os.getcwd())
        log.close()
        self.procs[name] = p
        return p

    def start_gcs(self) -> subprocess.Popen:
        return self._spawn("gcs", ["raylab.gcs.server"])

    def start_raylet(self, index: int, label: str, resources: dict, object_store_memory: int,
                     head: bool) -> subprocess.Popen:
        """Start a node's raylet with its shared-memory arena (an anonymous memfd: it is
        freed when the last process holding it exits, so nothing lingers in /dev/shm)."""
        from raylab.object_store.arena import create_arena
        arena = create_arena(int(object_store_memory), f"raylab-store-{label}")
        os.set_inheritable(arena, True)
        args = ["raylab.raylet.server", "--index", str(index), "--label", label,
                "--resources", json.dumps(resources),
                "--object-store-memory", str(int(object_store_memory)),
                "--arena-fd", str(arena)]
        if head:
            args.append("--head")
        try:
            return self._spawn("raylet_" + label, args, (arena,))
        finally:
            if head:
                os.set_inheritable(arena, False)
                self.head_arena = arena  # the driver lives on the head node: it maps it too
            else:
                os.close(arena)

    def kill_node(self, label: str, sig: int = signal.SIGKILL) -> bool:
        """Kill a simulated node: its raylet's whole process group (zygote, workers)."""
        p = self.procs.get("raylet_" + label)
        if p is None:
            return False
        try:
            os.killpg(p.pid, sig)  # the raylet leads its own group (start_new_session)
        except ProcessLookupError:
            pass
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        return True

    def alive(self, name: str) -> bool:
        p = self.procs.get(name)
        return p is not None and p.poll() is None

    def shutdown(self, timeout: float = 1.0) -> None:
        """End every process we started: ask nicely (SIGTERM), then SIGKILL the groups."""
        try:
            os.close(self.lifeline_w)  # every process sees EOF on its lifeline and exits
        except OSError:
            pass
        for p in self.procs.values():
            _signal_group(p, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for p in self.procs.values():
            left = max(0.0, deadline - time.monotonic())
            try:
                p.wait(timeout=left)
            except subprocess.TimeoutExpired:
                pass
        for p in self.procs.values():
            # the raylet may be gone while its workers linger: always sweep the group
            _signal_group(p, signal.SIGKILL)
        for p in self.procs.values():
            try:
                p.wait(timeout=1.0)
            except subprocess.TimeoutExpired:
                pass
        for fd in (self.lifeline_r, self.head_arena):
            try:
                if fd is not None:
                    os.close(fd)
            except OSError:
                pass

    def remove_session_dir(self) -> None:
        if os.environ.get("RAYLAB_KEEP_SESSION"):  # for debugging: keep the logs
            shutil.rmtree(os.path.join(self.session.dir, "s"), ignore_errors=True)
            shutil.rmtree(os.path.join(self.session.dir, "spill"), ignore_errors=True)
            return
        shutil.rmtree(self.session.dir, ignore_errors=True)


def _signal_group(p: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(p.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
