"""`/docs` in a real browser: headless Chromium loads the page of `plexus serve --demo`, RapiDoc
renders the operations of `/openapi.json`, and the page asks nothing of any other host.

Needs `chromium` (Debian: `apt-get install chromium`) and `node` with `playwright-core` (npm:
`npm install -g playwright-core`; no browser download, the system's Chromium is used); the test
is skipped without them.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
from urllib.parse import urlsplit

import pytest

from demo import start_demo

HERE = pathlib.Path(__file__).resolve().parent


def chromium_path() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


def node_env() -> dict | None:
    """The environment in which `node` finds `playwright-core` (locally or installed with
    `npm install -g`), or None."""
    if not shutil.which("node"):
        return None
    env = dict(os.environ)
    if shutil.which("npm"):
        root = subprocess.run(["npm", "root", "-g"], capture_output=True, text=True, timeout=30)
        if root.returncode == 0 and root.stdout.strip():
            env["NODE_PATH"] = os.pathsep.join(
                filter(None, [root.stdout.strip(), env.get("NODE_PATH")])
            )
    found = subprocess.run(
        ["node", "-e", "require.resolve('playwright-core')"], env=env, capture_output=True, timeout=30
    )
    return env if found.returncode == 0 else None


@pytest.fixture(scope="module")
def browser_env():
    chromium = chromium_path()
    if chromium is None:
        pytest.skip("no Chromium (apt-get install chromium)")
    env = node_env()
    if env is None:
        pytest.skip("no node with playwright-core (npm install -g playwright-core)")
    return chromium, env


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    running = start_demo(tmp_path_factory.mktemp("docs-demo"))
    yield running.url
    running.stop()


def test_the_docs_render_the_operations_with_nothing_from_elsewhere(browser_env, demo):
    chromium, env = browser_env
    proc = subprocess.run(
        ["node", str(HERE / "docs_browser.cjs"), demo, chromium],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["rendered"], result
    assert "POST" in result["summary"], result
    assert result["errors"] == [], result
    assert result["server"] == demo, "try-it calls this gateway"
    origin = urlsplit(demo).netloc
    elsewhere = [u for u in result["requests"] if urlsplit(u).netloc != origin]
    assert elsewhere == [], f"the page loaded from other hosts: {elsewhere}"
    paths = {urlsplit(u).path for u in result["requests"]}
    assert {"/docs", "/docs/assets/rapidoc-9.3.8.min.js", "/openapi.json"} <= paths, paths
