"""Shared fixtures: start the plexus binary (`$PLEXUS_BIN`) and hand tests its base URL."""

import os
import shutil
import sqlite3
import time
import pathlib
import subprocess
import threading

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]


def plexus_bin() -> str:
    """`$PLEXUS_BIN`, else the debug build in the repository."""
    path = os.environ.get("PLEXUS_BIN") or str(REPO / "target" / "debug" / "plexus")
    if not os.access(path, os.X_OK):
        pytest.skip(f"no plexus binary at {path} (set PLEXUS_BIN)")
    return path


class Running:
    """A started plexus process whose first stdout line is `... listening on <url>`."""

    def __init__(self, args, timeout=30.0):
        self.proc = subprocess.Popen(
            [plexus_bin(), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        line = self._first_line(timeout)
        if " listening on " not in line:
            self.stop()
            err = self.proc.stderr.read() if self.proc.stderr else ""
            raise RuntimeError(f"plexus {' '.join(args)} did not start: {line!r} {err}")
        self.first_line = line.rstrip("\n")
        self.url = self.first_line.rsplit(" ", 1)[-1]
        # Keep draining the pipes so that a chatty process never blocks on a full pipe.
        for stream in (self.proc.stdout, self.proc.stderr):
            threading.Thread(target=stream.read, daemon=True).start()

    def _first_line(self, timeout):
        result = []
        reader = threading.Thread(target=lambda: result.append(self.proc.stdout.readline()), daemon=True)
        reader.start()
        reader.join(timeout)
        if not result:
            self.stop()
            raise RuntimeError("plexus printed nothing before the timeout")
        return result[0]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture(scope="session")
def start_plexus():
    """Starts `plexus ARGS...`; every process started is stopped at the end of the session."""
    started = []

    def start(*args):
        running = Running(list(args))
        started.append(running)
        return running

    yield start
    for running in started:
        running.stop()


@pytest.fixture(scope="session")
def mock_server(start_plexus):
    """`plexus mock` on a free port."""
    return start_plexus("mock", "--listen", "127.0.0.1:0")


@pytest.fixture(scope="session")
def mock_url(mock_server):
    return mock_server.url


AGENTS = pathlib.Path(__file__).resolve().parents[2] / ".cache" / "npm-agents"


def npm_agent(binary: str, package: str) -> str:
    """An agent CLI from npm (`claude`, `codex`), installed once into `.cache/npm-agents`."""
    path = AGENTS / "node_modules" / ".bin" / binary
    if not path.exists():
        if not shutil.which("npm"):
            pytest.fail(f"npm is needed to install {package}")
        AGENTS.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["npm", "install", "--prefix", str(AGENTS), "--no-audit", "--no-fund", package],
            check=True,
            capture_output=True,
            timeout=300,
        )
    return str(path)


def agent_providers(mock_url: str) -> list:
    """The simulator as one provider of each wire format."""
    return [
        {"name": "oai", "kind": "openai", "base_url": f"{mock_url}/v1", "api_key": "sk-up"},
        {"name": "claude", "kind": "anthropic", "base_url": mock_url, "api_key": "sk-ant-up"},
        {"name": "gem", "kind": "gemini", "base_url": mock_url, "api_key": "gem-up"},
    ]


AGENT_MODELS = [
    {"name": "agent-oai", "targets": [{"provider": "oai", "model": "gpt-4o-mini+agent"}]},
    {"name": "agent-claude", "targets": [{"provider": "claude", "model": "claude-sonnet-4-5+agent"}]},
    {"name": "agent-gem", "targets": [{"provider": "gem", "model": "gemini-2.5-flash+agent"}]},
]


def logged_rows(database, model: str, at_least: int) -> list:
    """The request log's (model, endpoint, status, stream, provider) rows for `model`, once there
    are `at_least` (the log is written in batches, in the background)."""
    deadline = time.monotonic() + 10
    while True:
        rows = sqlite3.connect(database).execute(
            "SELECT model, endpoint, status, stream, provider FROM request_log WHERE model = ? ORDER BY id",
            (model,),
        ).fetchall()
        if len(rows) >= at_least or time.monotonic() > deadline:
            return rows
        time.sleep(0.05)
