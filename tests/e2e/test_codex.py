"""Codex CLI (`@openai/codex` from npm, `codex exec`) through Plexus's `/v1/responses`, served in
turn by an OpenAI-, an Anthropic- and a Gemini-format simulator model.

The simulator's agent behaviour calls Codex's shell tool (`exec_command` with `cmd`) with the
command quoted in backticks, then answers quoting the tool's output. The command computes
something (`$((6*7))`), so the number in the final answer can only come from Codex really running
it and sending its output back through the gateway.

Codex is installed once into `.cache/npm-agents` (npm registry only; it runs offline).
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import sqlite3
import subprocess
import time

import pytest

from conftest import Running

KEY = "sk-plexus-e2e-codex"
ROOT = pathlib.Path(__file__).resolve().parents[2]
PREFIX = ROOT / ".cache" / "npm-agents"
PACKAGE = "@openai/codex"


def codex_bin() -> str:
    binary = PREFIX / "node_modules" / ".bin" / "codex"
    if not binary.exists():
        if not shutil.which("npm"):
            pytest.fail("npm is needed to install Codex")
        PREFIX.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["npm", "install", "--prefix", str(PREFIX), "--no-audit", "--no-fund", PACKAGE],
            check=True,
            capture_output=True,
            timeout=300,
        )
    return str(binary)


def config(mock_url: str, database: str) -> dict:
    return {
        "listen": "127.0.0.1:0",
        "database": f"sqlite://{database}",
        "master_key": KEY,
        "providers": [
            {"name": "oai", "kind": "openai", "base_url": f"{mock_url}/v1", "api_key": "sk-up"},
            {"name": "claude", "kind": "anthropic", "base_url": mock_url, "api_key": "sk-ant-up"},
            {"name": "gem", "kind": "gemini", "base_url": mock_url, "api_key": "gem-up"},
        ],
        "models": [
            {"name": "agent-oai", "targets": [{"provider": "oai", "model": "gpt-4o-mini+agent"}]},
            {"name": "agent-claude", "targets": [{"provider": "claude", "model": "claude-sonnet-4-5+agent"}]},
            {"name": "agent-gem", "targets": [{"provider": "gem", "model": "gemini-2.5-flash+agent"}]},
        ],
    }


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    mock = Running(["mock", "--listen", "127.0.0.1:0"])
    tmp = tmp_path_factory.mktemp("codex")
    path = tmp / "plexus.yaml"
    database = tmp / "plexus.db"
    path.write_text(json.dumps(config(mock.url, str(database))))
    running = Running(["serve", "--config", str(path)])
    yield running.url, database
    running.stop()
    mock.stop()


def rows_of(database: pathlib.Path, model: str, at_least: int) -> list:
    """The request log's rows for `model` once there are `at_least` (written in the background)."""
    deadline = time.monotonic() + 10
    while True:
        rows = sqlite3.connect(database).execute(
            "SELECT model, endpoint, status, stream FROM request_log WHERE model = ? ORDER BY id",
            (model,),
        ).fetchall()
        if len(rows) >= at_least or time.monotonic() > deadline:
            return rows
        time.sleep(0.05)


@pytest.mark.parametrize("model", ["agent-oai", "agent-claude", "agent-gem"])
def test_codex_runs_a_shell_round_trip(gateway, model, tmp_path):
    url, database = gateway
    home = tmp_path / "codex-home"
    home.mkdir()
    (home / "config.toml").write_text(
        f'model = "{model}"\nmodel_provider = "plexus"\n\n'
        "[model_providers.plexus]\n"
        'name = "Plexus"\n'
        f'base_url = "{url}/v1"\n'
        'env_key = "PLEXUS_KEY"\n'
        'wire_api = "responses"\n'
    )
    tag = model.replace("agent-", "")
    env = {**os.environ, "CODEX_HOME": str(home), "PLEXUS_KEY": KEY, "HOME": str(tmp_path)}
    done = subprocess.run(
        [
            codex_bin(),
            "exec",
            "--skip-git-repo-check",
            "--dangerously-bypass-approvals-and-sandbox",
            f"Run `echo codex-{tag}-$((6*7))` and tell me its output.",
        ],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, (done.stdout[-2000:], done.stderr[-2000:])
    # 42 exists only in the shell's output: the command ran, and its output came back.
    assert f"The command printed:" in done.stdout + done.stderr, (done.stdout, done.stderr[-2000:])
    assert f"codex-{tag}-42" in done.stdout, (done.stdout, done.stderr[-2000:])
    rows = rows_of(database, model, 2)
    assert len(rows) >= 2, rows
    assert all(r[1] == "responses" and r[2] == 200 for r in rows), rows
