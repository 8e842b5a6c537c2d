"""Drive a real Jupyter kernel the way a front end does (for tests, and to see how it works).

A front end and a kernel talk over channels: ``shell`` (run code; widget
messages), ``iopub`` (everything the kernel publishes: outputs, widget state
updates, busy/idle), ``control`` (interrupts, and since ipykernel 7, creating
subshells). :class:`KernelSession` speaks that protocol through
``jupyter_client``, as nbclient and JupyterLab do:

    with KernelSession() as k:
        k.run("import ipywidgets as w; b = w.Button(); b")   # run a cell, wait for it
        k.click(k.value("b.model_id"))                         # what a click sends
        sid = k.create_subshell()                              # what JupyterLab >= 4.4 does
        k.click(model_id, subshell=sid)                        # a click on that subshell
        k.wait_for(lambda: "clicked" in k.state(html_id).get("value", ""))

It keeps every widget's latest state from the kernel's ``comm_open`` and
``comm_msg update`` messages, and numbers every iopub message in arrival
order, so a test can tell that an update arrived while a cell was still busy.
"""
from __future__ import annotations

import queue
import time


class KernelSession:
    def __init__(self, kernel_name: str = "python3", cwd: str | None = None,
                 env: dict | None = None, startup_timeout: float = 60):
        from jupyter_client.manager import KernelManager
        self.km = KernelManager(kernel_name=kernel_name)
        kw = {"cwd": cwd} if cwd else {}
        if env:
            import os
            kw["env"] = {**os.environ, **env}
        self.km.start_kernel(**kw)
        self.kc = self.km.client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=startup_timeout)
        self.widgets: dict[str, dict] = {}     # model id -> latest state
        self.log: list[tuple] = []             # (n, msg_type, parent msg id, content)
        self.outputs: dict[str, list] = {}     # execute msg id -> outputs
        self.replies: dict[str, dict] = {}     # request msg id -> reply content
        self.idle: dict[str, int] = {}         # execute msg id -> n of its idle status
        self.sent: list[str] = []              # execute msg ids, in order

    # -- running code -------------------------------------------------------------------------
    def execute(self, code: str, **kw) -> str:
        """Send a cell to run; returns its message id at once (see :meth:`wait`)."""
        msg_id = self.kc.execute(code, **kw)
        self.sent.append(msg_id)
        return msg_id

    def busy(self) -> bool:
        """Is a cell sent by this session still running (or queued)?"""
        self.pump(0)
        return any(m not in self.idle for m in self.sent)

    def wait(self, msg_id: str, timeout: float = 60) -> dict:
        """Wait for the cell's reply and its idle status; returns the reply's content."""
        self.wait_for(lambda: msg_id in self.replies and msg_id in self.idle, timeout,
                      f"cell {msg_id} to finish")
        return self.replies[msg_id]

    def run(self, code: str, timeout: float = 60, check: bool = True) -> list:
        """Run a cell and wait for it; returns its outputs (raises if it failed)."""
        msg_id = self.execute(code)
        reply = self.wait(msg_id, timeout)
        if check and reply.get("status") != "ok":
            raise AssertionError(f"cell failed: {reply.get('ename')}: {reply.get('evalue')}\n"
                                 f"{self.text(msg_id)}")
        return self.outputs.get(msg_id, [])

    def value(self, expr: str, timeout: float = 30):
        """``eval(expr)`` in the kernel, its ``repr`` turned back into a Python value."""
        import ast
        msg_id = self.execute("", silent=False, store_history=False,
                              user_expressions={"v": expr})
        reply = self.wait(msg_id, timeout)
        v = reply["user_expressions"]["v"]
        if v.get("status") != "ok":
            raise AssertionError(f"{expr!r} failed in the kernel: {v.get('evalue')}")
        text = v["data"]["text/plain"]
        try:
            return ast.literal_eval(text)
        except (ValueError, SyntaxError):
            return text

    def text(self, msg_id: str) -> str:
        """Everything a cell printed or showed as text/plain, joined."""
        parts = []
        for out in self.outputs.get(msg_id, []):
            if out["type"] == "stream":
                parts.append(out["text"])
            elif out["type"] in ("display_data", "execute_result"):
                parts.append(out["data"].get("text/plain", "") + "\n")
            elif out["type"] == "error":
                parts.append(f"{out['ename']}: {out['evalue']}\n")
        return "".join(parts)

    # -- widgets ---------------------------------------------------------------------------------
    def state(self, model_id: str) -> dict:
        return self.widgets.get(model_id, {})

    def click(self, model_id: str, subshell: str | None = None) -> None:
        """Send what a front end sends when a Button is clicked."""
        self._comm_msg(model_id, {"method": "custom", "content": {"event": "click"}}, subshell)

    def set_state(self, model_id: str, subshell: str | None = None, **state) -> None:
        """Send what a front end sends when the user changes a widget (a slider, a dropdown)."""
        self._comm_msg(model_id, {"method": "update", "state": state, "buffer_paths": []},
                       subshell)

    def _comm_msg(self, comm_id: str, data: dict, subshell: str | None) -> None:
        msg = self.kc.session.msg("comm_msg", {"comm_id": comm_id, "data": data})
        if subshell is not None:
            msg["header"]["subshell_id"] = subshell
        self.kc.shell_channel.send(msg)

    def create_subshell(self, timeout: float = 10) -> str:
        """Ask the kernel for a subshell on the control channel (as JupyterLab >= 4.4 does)."""
        msg = self.kc.session.msg("create_subshell_request", {})
        self.kc.control_channel.send(msg)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                reply = self.kc.control_channel.get_msg(timeout=0.1)
            except queue.Empty:
                self.pump(0)
                continue
            if reply["parent_header"].get("msg_id") == msg["header"]["msg_id"]:
                if "subshell_id" not in reply["content"]:
                    raise RuntimeError(f"this kernel has no subshells: {reply['content']}")
                return reply["content"]["subshell_id"]
        raise TimeoutError("no create_subshell_reply")

    # -- reading the channels ----------------------------------------------------------------------
    def pump(self, timeout: float = 0.05) -> int:
        """Read what has arrived (waiting up to ``timeout`` for the first message)."""
        n = 0
        for channel, handle in ((self.kc.iopub_channel, self._on_iopub),
                                (self.kc.shell_channel, self._on_shell)):
            wait = timeout
            while True:
                try:
                    msg = channel.get_msg(timeout=wait)
                except queue.Empty:
                    break
                handle(msg)
                n += 1
                wait = 0
        return n

    def wait_for(self, pred, timeout: float = 30, what: str = "a condition"):
        """Read messages until ``pred()`` is true (it reads real kernel traffic, no sleeps)."""
        deadline = time.monotonic() + timeout
        while True:
            v = pred()
            if v:
                return v
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout} s waiting for {what}")
            self.pump(0.05)

    def _on_shell(self, msg) -> None:
        self.replies[msg["parent_header"].get("msg_id")] = msg["content"]

    def _on_iopub(self, msg) -> None:
        kind, content = msg["msg_type"], msg["content"]
        parent = msg["parent_header"].get("msg_id")
        n = len(self.log)
        self.log.append((n, kind, parent, content))
        if kind == "comm_open":
            self.widgets[content["comm_id"]] = dict(content["data"].get("state", {}))
        elif kind == "comm_msg" and content["data"].get("method") == "update":
            self.widgets.setdefault(content["comm_id"], {}).update(content["data"]["state"])
        elif kind == "status" and content["execution_state"] == "idle":
            self.idle.setdefault(parent, n)
        elif kind in ("stream", "display_data", "execute_result", "error"):
            out = dict(content, type=kind)
            self.outputs.setdefault(parent, []).append(out)

    def updates_of(self, model_id: str, key: str = "value") -> list[tuple]:
        """Every update of ``key`` of a widget: (arrival number, value)."""
        return [(n, c["data"]["state"][key]) for n, kind, _p, c in self.log
                if kind == "comm_msg" and c.get("comm_id") == model_id
                and c["data"].get("method") == "update" and key in c["data"].get("state", {})]

    # -- ending ----------------------------------------------------------------------------------------
    def close(self) -> None:
        self.kc.stop_channels()
        self.km.shutdown_kernel(now=False)

    def __enter__(self) -> "KernelSession":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
