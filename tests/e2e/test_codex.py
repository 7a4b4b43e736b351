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
import subprocess

import pytest

from conftest import AGENT_MODELS, Running, agent_providers, logged_rows, npm_agent

KEY = "sk-plexus-e2e-codex"


def codex_bin() -> str:
    return npm_agent("codex", "@openai/codex")


def config(mock_url: str, database: str) -> dict:
    return {
        "listen": "127.0.0.1:0",
        "database": f"sqlite://{database}",
        "master_key": KEY,
        "providers": agent_providers(mock_url),
        "models": AGENT_MODELS,
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
    rows = logged_rows(database, model, 2)
    assert len(rows) >= 2, rows
    assert all(r[1] == "responses" and r[2] == 200 for r in rows), rows
