"""Claude Code (`@anthropic-ai/claude-code` from npm, `claude -p`) through Plexus's
`/v1/messages`, served in turn by an OpenAI-, an Anthropic- and a Gemini-format simulator model.

The simulator's agent behaviour calls the client's `Bash` tool with the command quoted in
backticks, then answers quoting the tool's result. The command computes something
(`$((6*7))`), so the number in the final answer can only come from Claude Code really running
it in a shell and sending its output back through the gateway.

Claude Code is installed once into `.cache/npm-agents` (npm registry only; it runs offline).
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess

import pytest

from conftest import AGENT_MODELS, Running, agent_providers, logged_rows, npm_agent

KEY = "sk-plexus-e2e-claude-code"


def claude_bin() -> str:
    return npm_agent("claude", "@anthropic-ai/claude-code@2")


def config(mock_url: str, database: str) -> dict:
    return {
        "listen": "127.0.0.1:0",
        "database": f"sqlite://{database}",
        "master_key": KEY,
        "providers": agent_providers(mock_url),
        "models": AGENT_MODELS,
        # Claude Code's own model names reach the simulator models through aliases.
        "aliases": {"claude-haiku-*": "agent-oai", "claude-*": "agent-claude"},
    }


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    mock = Running(["mock", "--listen", "127.0.0.1:0"])
    tmp = tmp_path_factory.mktemp("claude-code")
    path = tmp / "plexus.yaml"
    database = tmp / "plexus.db"
    path.write_text(json.dumps(config(mock.url, str(database))))
    running = Running(["serve", "--config", str(path)])
    yield running.url, database
    running.stop()
    mock.stop()


def run_claude(url: str, model: str, prompt: str, tmp: pathlib.Path) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "ANTHROPIC_BASE_URL": url,
        "ANTHROPIC_API_KEY": KEY,
        "ANTHROPIC_SMALL_FAST_MODEL": model,
        "DISABLE_TELEMETRY": "1",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_AUTOUPDATER": "1",
        "HOME": str(tmp),
    }
    return subprocess.run(
        [claude_bin(), "-p", prompt, "--model", model, "--allowedTools", "Bash"],
        env=env,
        cwd=tmp,
        capture_output=True,
        text=True,
        timeout=180,
    )


@pytest.mark.parametrize("model", ["agent-oai", "agent-claude", "agent-gem"])
def test_claude_code_runs_a_bash_round_trip(gateway, model, tmp_path):
    url, database = gateway
    tag = model.replace("agent-", "")
    done = run_claude(url, model, f"Run `echo plexus-{tag}-$((6*7))` and tell me its output.", tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    # 42 exists only in the shell's output: the command ran, and its output came back.
    assert f"plexus-{tag}-42" in done.stdout, (done.stdout, done.stderr[-2000:])
    rows = logged_rows(database, model, 2)
    # The tool call, then the answer with the result: both through /v1/messages, streamed.
    assert len(rows) >= 2, rows
    assert all(r[1] == "messages" and r[2] == 200 and r[3] == 1 for r in rows), rows


def test_claude_codes_own_model_names_follow_the_aliases(gateway, tmp_path):
    url, database = gateway
    done = run_claude(url, "claude-sonnet-4-5-20250929", "Run `echo aliased-$((40+2))` and tell me its output.", tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "aliased-42" in done.stdout, (done.stdout, done.stderr[-2000:])
    rows = logged_rows(database, "agent-claude", 4)
    assert all(r[4] == "claude" for r in rows), rows
