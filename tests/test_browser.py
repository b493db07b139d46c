"""A real browser renders the sparse-term explorer: JupyterLab (headless, loopback) + Chromium via Playwright.

The test copies notebook 03 into a temporary folder (nothing is saved back), starts ``jupyter lab`` on a free
loopback port with a random token and isolated settings, opens the notebook in headless Chromium, runs all
cells, waits for the explorer widget (``.jsd-explorer-widget``: sliders, query box, result cards), types a new
query to check that the kernel-side callbacks update the page, and saves a screenshot of the widget to
``.cache/browser/explorer.png`` (printed by ``.ci/run``).

Skipped, with the reason, when Playwright or a Chromium binary is missing -- unless ``JSDLIB_REQUIRE_BROWSER=1``
(set by ``.ci/run``, which installs both: Debian ``chromium`` and PyPI ``playwright`` driving that system
browser through ``executable_path``, so no ``playwright install`` download is needed).
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "notebooks" / "03_sparse_terms.ipynb"
SHOT = ROOT / ".cache" / "browser" / "explorer.png"
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def _requirement(reason: str):
    if os.environ.get("JSDLIB_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{reason} (JSDLIB_REQUIRE_BROWSER=1: the browser test must run here)")
    pytest.skip(reason)


def _chromium() -> str | None:
    explicit = os.environ.get("JSDLIB_CHROMIUM")
    if explicit:
        return explicit if Path(explicit).is_file() else None
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _api(base: str, token: str, path: str, method: str = "GET"):
    req = urllib.request.Request(f"{base}{path}", method=method, headers={"Authorization": f"token {token}"})
    with urllib.request.urlopen(req, timeout=5) as r:
        body = r.read()
    return json.loads(body) if body else None


@pytest.fixture
def lab(tmp_path):
    """A JupyterLab server on 127.0.0.1:<free port> serving a temporary copy of notebook 03; yields (url, token)."""
    pytest.importorskip("jupyterlab", reason="JupyterLab is not installed")
    if not NOTEBOOK.is_file():
        pytest.fail(f"{NOTEBOOK} is missing: build it with `python -m jsdlib.experiments.notebooks 03`")
    nb_dir = tmp_path / "notebooks"
    nb_dir.mkdir()
    shutil.copy(NOTEBOOK, nb_dir / NOTEBOOK.name)
    port, token = _free_port(), secrets.token_hex(16)
    env = dict(os.environ, JUPYTER_CONFIG_DIR=str(tmp_path / "config"), JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"),
               JUPYTER_DATA_DIR=str(tmp_path / "data"),
               JUPYTERLAB_SETTINGS_DIR=str(tmp_path / "settings"), JUPYTERLAB_WORKSPACES_DIR=str(tmp_path / "ws"),
               HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    news = tmp_path / "settings" / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    news.parent.mkdir(parents=True)
    news.write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))  # no news toast over the widget
    # JupyterLab 4 detaches cells scrolled out of view ("windowing"); keep every cell in the DOM so that the
    # explorer's output can be found while "Run All" moves on to later cells
    tracker = tmp_path / "settings" / "@jupyterlab" / "notebook-extension" / "tracker.jupyterlab-settings"
    tracker.parent.mkdir(parents=True)
    tracker.write_text(json.dumps({"windowingMode": "none"}))
    log = open(tmp_path / "jupyterlab.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={port}", "--ServerApp.port_retries=0",
         "--ServerApp.ip=127.0.0.1", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={nb_dir}",
         "--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
         "--LabApp.extension_manager=readonly", "--ServerApp.terminals_enabled=False",
         *(["--allow-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else [])],
        cwd=nb_dir, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 90
        while True:
            try:
                _api(base, token, "/api/status")
                break
            except OSError:
                if proc.poll() is not None or time.time() > deadline:
                    log.flush()
                    pytest.fail("JupyterLab did not start:\n" + (tmp_path / "jupyterlab.log").read_text()[-3000:])
                time.sleep(0.5)
        yield base, token
    finally:
        try:  # shut the kernels down first, then the server (its own process group)
            for k in _api(base, token, "/api/kernels") or []:
                _api(base, token, f"/api/kernels/{k['id']}", method="DELETE")
        except OSError:
            pass
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        log.close()


def test_explorer_renders_and_updates_in_jupyterlab(lab, tmp_path):
    chromium = _chromium()
    if chromium is None:
        _requirement(f"no Chromium binary ({', '.join(CHROMIUM_NAMES)} or $JSDLIB_CHROMIUM); "
                     "install Debian's `chromium` package")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _requirement("Playwright is not installed (pip install playwright; it drives the system Chromium)")

    base, token = lab
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True,
                                    args=["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1100})
            page.set_default_timeout(60_000)
            page.goto(f"{base}/lab/tree/{NOTEBOOK.name}?token={token}")
            page.wait_for_selector(".jp-Notebook .jp-Cell", state="attached")
            # the notebook's model is loaded and its kernel connected: the status bar reads "<kernel> | Idle"
            page.wait_for_function(
                "() => Array.from(document.querySelectorAll('.jp-StatusBar-Widget'))"
                ".some(e => /\\|\\s*Idle/.test(e.innerText))", timeout=90_000)
            page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
            page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()

            widget = page.locator(".jsd-explorer-widget")
            try:
                widget.wait_for(state="attached", timeout=180_000)
                widget.scroll_into_view_if_needed()
                widget.wait_for(state="visible")
            except Exception:
                SHOT.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(SHOT.with_name("explorer_failed.png")), full_page=True)
                raise AssertionError(f"the explorer widget did not appear (page: {SHOT.with_name('explorer_failed.png')}; "
                                     f"server log: {tmp_path / 'jupyterlab.log'})")
            page.wait_for_selector(".jsd-explorer-widget .jsd-card img", state="attached")
            assert page.locator(".jupyter-widgets").count() > 0
            assert widget.locator(".widget-slider").count() >= 2          # image and k sliders
            assert widget.locator(".jsd-card").count() >= 1                # query results
            assert widget.locator(".jsd-terms tr").count() >= 1           # the image's terms
            first = widget.locator(".jsd-card").first.inner_text()

            # a kernel callback: a new query re-ranks the images and the cards change (the notebook's query is
            # "cat face"; the bundled model ranks a flag first for "flag: Japan")
            box = widget.locator(".widget-text input").first
            box.fill("flag: Japan")
            box.press("Enter")
            page.wait_for_function(
                "() => { const c = document.querySelector('.jsd-explorer-widget .jsd-card');"
                " return c && c.innerText.toLowerCase().includes('flag'); }", timeout=60_000)
            after = widget.locator(".jsd-card").first.inner_text()
            assert after != first and "flag" in after.lower()

            widget.scroll_into_view_if_needed()
            SHOT.parent.mkdir(parents=True, exist_ok=True)
            widget.screenshot(path=str(SHOT))
            page.screenshot(path=str(SHOT.with_name("explorer_page.png")))
        finally:
            browser.close()
    assert SHOT.stat().st_size > 10_000
    print(f"screenshot of the rendered explorer: {SHOT}")
