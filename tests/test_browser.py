"""A real JupyterLab in headless Chromium runs every course notebook and shows its dashboard.

The test set-up installs Debian's Chromium if it is missing (``apt-get install -y
chromium``) and drives it with Playwright from PyPI (``executable_path``, no
browser download). JupyterLab listens on loopback only, with a token. For each
notebook the test opens it, runs all cells, clicks Next when a ``ray.get`` waits
for the paused cluster (JupyterLab >= 4.4 sends the click on a kernel subshell:
case (c) of the dashboard, for real), and takes a screenshot of the dashboard
with its diagram at the lesson's key moment, while its controls are live: when a
``ray.get`` first waits for a click (the cluster paused mid-flow), or else once every
cell but the last (``%raylab shutdown``) has run. Then it runs the last cell.

The server's kernels import raylab from this checkout (``PYTHONPATH``), not from
wherever it is installed.

Screenshots go to a temporary folder; ``RAYLAB_UPDATE_SCREENSHOTS=1`` writes them
to docs/screenshots/ (the ones the README shows).
"""
from __future__ import annotations

import json
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import psutil
import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted(p.name for p in (ROOT / "notebooks").glob("0*.ipynb"))
SHOTS = ROOT / "docs" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
TOKEN = "raylab-browser-test"


def _install_chromium() -> str | None:
    """Chromium from Debian's packages; None (and why) if it cannot be had here."""
    if os.path.exists(CHROMIUM):
        return None
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        return "Chromium is not installed and apt-get (as root) is not available"
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for cmd in (["apt-get", "install", "-y", "chromium"], ["apt-get", "update"],
                ["apt-get", "install", "-y", "chromium"]):
        done = subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, timeout=900)
        if cmd[1] == "install" and done.returncode == 0:
            return None
    return f"apt-get install -y chromium failed: {done.stderr.strip()[-300:]}"


@pytest.fixture(scope="session")
def chromium():
    why = _install_chromium()
    if why:
        pytest.skip(f"browser test skipped: {why}")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("browser test skipped: playwright is not installed (pip install -e '.[test]')")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync"])
        yield browser
        browser.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_until_up(url: str, proc, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"jupyter lab exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/api/status?token={TOKEN}", timeout=2):
                return
        except OSError:
            time.sleep(0.1)     # polling a server that is starting: nothing to wait on
    raise TimeoutError("jupyter lab did not answer")


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """JupyterLab on loopback, serving a copy of the course notebooks."""
    work = tmp_path_factory.mktemp("lab")
    root = work / "notebooks"
    shutil.copytree(ROOT / "notebooks", root)
    settings = work / "settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    port = _free_port()
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    env = dict(os.environ, JUPYTER_CONFIG_DIR=str(work / "config"),
               JUPYTER_RUNTIME_DIR=str(work / "runtime"), JUPYTER_COLUMNS="100",
               PYTHONPATH=path)
    log = open(work / "lab.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root",
         "--ip=127.0.0.1", f"--port={port}", f"--IdentityProvider.token={TOKEN}",
         f"--ServerApp.root_dir={root}", "--LabApp.expose_app_in_browser=True",
         f"--LabApp.user_settings_dir={work / 'settings'}",
         f"--LabApp.workspaces_dir={work / 'workspaces'}"],
        env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(url, proc)
        yield url
    finally:
        family = [proc] + _children(proc)
        proc.send_signal(signal.SIGTERM)        # the server shuts its kernels down
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        gone, alive = psutil.wait_procs([p for p in family if p.pid != proc.pid], timeout=15)
        assert not alive, f"left behind: {[p.pid for p in alive]}"


def _children(proc) -> list:
    try:
        return psutil.Process(proc.pid).children(recursive=True)
    except psutil.Error:
        return []


KERNEL_IDLE = """() => { const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;
    return w && w.sessionContext && w.sessionContext.session &&
           w.sessionContext.session.kernel &&
           w.sessionContext.session.kernel.status === 'idle'; }"""


_AT_LAST = "const nb = window.jupyterapp.shell.currentWidget; " \
           "nb.content.activeCellIndex = nb.content.widgets.length - 1; "
RUN_ALL_BUT_LAST = "() => { " + _AT_LAST + \
    "window.jupyterapp.commands.execute('notebook:run-all-above'); }"
RUN_LAST = "() => { " + _AT_LAST + "window.jupyterapp.commands.execute('notebook:run-cell'); }"
ALL_BUT_LAST_RAN = """() => { const nb = window.jupyterapp.shell.currentWidget;
    return nb.content.widgets.slice(0, -1).every(c => c.model.type !== 'code' ||
        (c.model.executionCount != null &&
         !c.node.querySelector('.jp-InputArea-prompt').textContent.includes('*'))); }"""
A_GET_WAITS = """() => [...document.querySelectorAll('.jp-CodeCell')].some(c =>
    c.querySelector('.jp-InputArea-prompt').textContent.includes('*') &&
    c.textContent.includes('waits for the paused cluster'))"""


def _run_notebook(page, url: str, name: str, shot: pathlib.Path) -> None:
    page.goto(f"{url}/lab/tree/{name}?token={TOKEN}&reset")
    page.wait_for_function(KERNEL_IDLE, timeout=60_000)
    # the stored outputs and prompts go first, so that a prompt [n] means: ran here
    page.evaluate("() => { window.jupyterapp.commands.execute("
                  "'notebook:clear-all-cell-outputs'); }")
    page.wait_for_function("() => !document.querySelector('.jp-OutputArea-output')")
    page.evaluate(RUN_ALL_BUT_LAST)          # no `return`: see jupyter-facts Q4
    waiting = page.locator(".jp-OutputArea-output:visible",
                           has_text="waits for the paused cluster")
    dash = page.locator(".raylab-dashboard:visible").first
    shot_taken = False
    deadline = time.monotonic() + 180
    while not page.evaluate(ALL_BUT_LAST_RAN):
        assert time.monotonic() < deadline, f"{name} did not finish"
        blocked = page.locator(".jp-CodeCell", has=waiting).locator(
            ".jp-InputArea-prompt", has_text="*")
        if blocked.count():
            # case (c) for real: the cell blocks in ray.get, clicks arrive on a subshell
            if not shot_taken:
                _screenshot(page, dash, shot)
                shot_taken = True
            status = dash.locator(".raylab-status")
            before = status.inner_text()
            dash.locator("button:visible", has_text="Next").click()
            page.wait_for_function(
                "([el, text]) => el.innerText !== text",
                arg=[status.element_handle(), before], timeout=15_000)
        else:
            page.wait_for_function(f"() => ({ALL_BUT_LAST_RAN})() || ({A_GET_WAITS})()",
                                   timeout=180_000)
    _no_traceback(page, name)
    if not shot_taken:                       # the lesson's end, its controls still live
        _screenshot(page, dash, shot)
    page.evaluate(RUN_LAST)
    page.locator(".jp-OutputArea-output:visible",
                 has_text="the cluster is shut down").wait_for(timeout=60_000)
    _no_traceback(page, name)


def _no_traceback(page, name: str) -> None:
    assert not page.locator(".jp-OutputArea-output[data-mime-type='application/"
                            "vnd.jupyter.stderr']:visible", has_text="Traceback").count(), name


def _screenshot(page, dash, shot: pathlib.Path) -> None:
    diagram = dash.locator("svg.raylab-diagram")
    diagram.wait_for(state="visible", timeout=30_000)
    assert diagram.locator("[data-box='gcs']").count() == 1
    assert diagram.locator("[data-box='N1.raylet']").count() == 1
    assert dash.locator("button:visible", has_text="Next step").is_enabled(), \
        "the dashboard in the screenshot is closed"
    dash.scroll_into_view_if_needed()
    page.evaluate("(el) => el.scrollIntoView({block: 'start'})", dash.element_handle())
    page.screenshot(path=str(shot))


@pytest.mark.timeout(600)
def test_every_course_notebook_runs_in_jupyterlab_and_shows_its_dashboard(chromium, lab,
                                                                          tmp_path):
    out = SHOTS if os.environ.get("RAYLAB_UPDATE_SCREENSHOTS") == "1" else tmp_path
    out.mkdir(parents=True, exist_ok=True)
    context = chromium.new_context(viewport={"width": 1280, "height": 1100})
    try:
        for name in NOTEBOOKS:
            page = context.new_page()
            shot = out / (name.removesuffix(".ipynb") + ".png")
            _run_notebook(page, lab, name, shot)
            assert shot.stat().st_size > 20_000, f"{shot} looks empty"
            page.close()
    finally:
        context.close()
    for name in NOTEBOOKS:      # the README shows one screenshot per notebook
        assert (SHOTS / (name.removesuffix(".ipynb") + ".png")).exists(), \
            f"no docs/screenshots for {name}: run with RAYLAB_UPDATE_SCREENSHOTS=1"
