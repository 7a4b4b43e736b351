"""The official `openai` Python SDK's Responses API (`client.responses.create`) against
`plexus serve` (`POST /v1/responses`), in front of `plexus mock`, on every upstream wire format
(OpenAI, Anthropic, Gemini).

One gateway process and one simulator process serve the whole module. Behaviours the simulator
derives from the upstream model name (`+agent`, `+tokens-N`) are reached by direct
`provider/model` addressing or configured `agent-*` models. The same gateway has a `select`
model (`auto`) and an orchestration model (`council`, a vote of quiz models), so that the
pipeline is shown to apply to `/v1/responses`. Not in this version (and refused with 400):
`previous_response_id` and `background`.
"""

from __future__ import annotations

import json
import urllib.request
from dataclasses import dataclass

import openai
import pytest

from conftest import Running  # the existing process helper (tests/e2e/conftest.py)

MASTER_KEY = "sk-plexus-e2e-responses"


@dataclass(frozen=True)
class Format:
    """One upstream wire format: the configured model that reaches it and its provider."""

    name: str  # openai | anthropic | gemini
    model: str  # the configured model name clients send
    provider: str
    upstream: str

    def variant(self, *directives: str) -> str:
        return f"{self.provider}/{self.upstream}" + "".join(f"+{d}" for d in directives)


OPENAI = Format("openai", "gpt", "oai", "gpt-4o-mini")
ANTHROPIC = Format("anthropic", "sonnet", "claude", "claude-sonnet-4-5")
GEMINI = Format("gemini", "flash", "gem", "gemini-2.5-flash")
FORMATS = [OPENAI, ANTHROPIC, GEMINI]


def gateway_config(mock_url: str, database: str) -> dict:
    base_urls = {"openai": f"{mock_url}/v1", "anthropic": mock_url, "gemini": mock_url}

    def priced(name, provider, upstream, price=1.0, **extra):
        target = {
            "provider": provider,
            "model": upstream,
            "price": {"input_per_mtok": price, "output_per_mtok": price * 4},
        }
        return {"name": name, "targets": [target], **extra}

    models = [priced(f.model, f.provider, f.upstream) for f in FORMATS]
    models += [priced(f"agent-{f.name}", f.provider, f"{f.upstream}+agent") for f in FORMATS]
    models += [
        priced("mini", "oai", "sim-mini", 0.1, quality=0.6),
        priced("pro", "oai", "sim-pro", 10.0, quality=0.9),
        {"name": "auto", "select": {"candidates": ["mini", "pro"], "explore": 0}},
        priced("right-a", "oai", "quiz-a+acc-1"),
        priced("right-b", "oai", "quiz-b+acc-1"),
        priced("wrong", "oai", "quiz-w+acc-0"),
        {
            "name": "council",
            "orchestrate": {
                "strategy": "vote",
                "members": ["wrong", "right-a", "right-b"],
                "answer": "number",
            },
        },
    ]
    return {
        "listen": "127.0.0.1:0",
        "database": f"sqlite://{database}",
        "master_key": MASTER_KEY,
        "providers": [
            {
                "name": f.provider,
                "kind": f.name,
                "base_url": base_urls[f.name],
                "api_key": f"upstream-key-{f.name}",
            }
            for f in FORMATS
        ],
        "models": models,
    }


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    mock = Running(["mock", "--listen", "127.0.0.1:0"])
    tmp = tmp_path_factory.mktemp("responses-gateway")
    config = tmp / "plexus.yaml"
    config.write_text(json.dumps(gateway_config(mock.url, str(tmp / "plexus.db"))))
    running = Running(["serve", "--config", str(config)])
    yield running.url
    running.stop()
    mock.stop()


def sdk(gateway: str, key: str = MASTER_KEY) -> openai.OpenAI:
    """The SDK without retries, so that every error surfaces as it is."""
    return openai.OpenAI(base_url=f"{gateway}/v1", api_key=key, max_retries=0, timeout=30)


@pytest.fixture(scope="module")
def client(gateway):
    with sdk(gateway) as c:
        yield c


@pytest.fixture(params=FORMATS, ids=lambda f: f.name)
def fmt(request) -> Format:
    return request.param


EXEC_TOOL = {
    "type": "function",
    "name": "exec_command",
    "description": "Run a shell command.",
    "parameters": {
        "type": "object",
        "properties": {"cmd": {"type": "string"}},
        "required": ["cmd"],
    },
}


def streamed(client: openai.OpenAI, **kwargs):
    """The events of a streamed response, checked for order; returns (events, final, text)."""
    with client.responses.create(stream=True, **kwargs) as stream:
        events = list(stream)
    assert events, "no events"
    assert events[0].type == "response.created", [e.type for e in events[:3]]
    assert events[-1].type in ("response.completed", "response.incomplete"), events[-1].type
    numbers = [e.sequence_number for e in events]
    assert numbers == sorted(numbers) and len(set(numbers)) == len(numbers), numbers
    final = events[-1].response
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    return events, final, text


# --------------------------------------------------------------------------------------------
# Plain and streamed
# --------------------------------------------------------------------------------------------


def test_plain_response(client, fmt):
    raw = client.responses.with_raw_response.create(
        model=fmt.model, input="Say hello", metadata={"trace": "t-1"}
    )
    assert raw.headers.get("x-plexus-served-by") == f"{fmt.provider}/{fmt.upstream}"
    response = raw.parse()
    assert response.object == "response" and response.id.startswith("resp_")
    assert response.status == "completed"
    assert response.model == fmt.model, "the name the client asked for"
    assert response.output_text
    assert response.output[0].type == "message" and response.output[0].role == "assistant"
    assert response.store is False, "responses are not stored in this version"
    assert response.metadata == {"trace": "t-1"}
    usage = response.usage
    assert usage.input_tokens > 0 and usage.output_tokens > 0
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens


def test_streamed_response(client, fmt):
    events, final, text = streamed(client, model=fmt.model, input="Tell me about rivers")
    assert events[-1].type == "response.completed"
    assert text and text == final.output_text
    assert final.status == "completed" and final.model == fmt.model
    assert final.usage.output_tokens > 0


def test_instructions_and_message_items(client, fmt):
    response = client.responses.create(
        model=fmt.model,
        instructions="Be brief.",
        input=[
            {"role": "developer", "content": "Answer in English."},
            {"role": "user", "content": [{"type": "input_text", "text": "Say hello"}]},
        ],
    )
    assert response.instructions == "Be brief."
    assert response.output_text


def test_max_output_tokens_cuts_the_answer(client, fmt):
    kwargs = dict(model=fmt.variant("tokens-50"), input="Write a long story", max_output_tokens=5)
    response = client.responses.create(**kwargs)
    assert response.status == "incomplete"
    assert response.incomplete_details.reason == "max_output_tokens"
    events, final, _ = streamed(client, **kwargs)
    assert events[-1].type == "response.incomplete" and final.status == "incomplete"


# --------------------------------------------------------------------------------------------
# Function tools
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_function_round_trip_with_an_agent_model(client, fmt, stream):
    model = f"agent-{fmt.name}"
    first_turn = [{"role": "user", "content": "Run `echo plexus-e2e-42` and say what it printed."}]
    kwargs = dict(model=model, tools=[EXEC_TOOL], input=first_turn)
    if stream:
        _, first, _ = streamed(client, **kwargs)
    else:
        first = client.responses.create(**kwargs)
    calls = [item for item in first.output if item.type == "function_call"]
    assert len(calls) == 1, first.output
    call = calls[0]
    assert call.name == "exec_command"
    assert json.loads(call.arguments) == {"cmd": "echo plexus-e2e-42"}
    second = client.responses.create(
        model=model,
        tools=[EXEC_TOOL],
        input=[
            *first_turn,
            {
                "type": "function_call",
                "call_id": call.call_id,
                "name": call.name,
                "arguments": call.arguments,
            },
            {"type": "function_call_output", "call_id": call.call_id, "output": "plexus-e2e-42\n"},
        ],
    )
    assert "plexus-e2e-42" in second.output_text, second.output
    assert second.status == "completed"


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


def test_previous_response_id_is_refused(client):
    with pytest.raises(openai.BadRequestError) as e:
        client.responses.create(model="gpt", input="x", previous_response_id="resp_123")
    assert e.value.body["param"] == "previous_response_id"


def test_unknown_model(client):
    with pytest.raises(openai.NotFoundError) as e:
        client.responses.create(model="no-such-model", input="x")
    assert "no-such-model" in e.value.message


def test_bad_key(gateway):
    with sdk(gateway, "sk-wrong") as c:
        with pytest.raises(openai.AuthenticationError):
            c.responses.create(model="gpt", input="x")


def test_virtual_key_limits_apply(gateway, client):
    request = urllib.request.Request(
        f"{gateway}/admin/keys",
        data=json.dumps({"name": "responses-e2e-rpm", "rpm": 1}).encode(),
        headers={"Authorization": f"Bearer {MASTER_KEY}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as r:
        key = json.loads(r.read())["key"]
    with sdk(gateway, key) as limited:
        assert limited.responses.create(model="gpt", input="one").output_text
        with pytest.raises(openai.RateLimitError) as e:
            limited.responses.create(model="gpt", input="two")
    assert e.value.response.headers.get("retry-after")


# --------------------------------------------------------------------------------------------
# The pipeline: `model: auto`, orchestration
# --------------------------------------------------------------------------------------------


def test_model_auto(client):
    raw = client.responses.with_raw_response.create(model="auto", input="Pick a model for me")
    response = raw.parse()
    assert response.output_text and response.model == "auto"
    assert raw.headers["x-plexus-served-by"] in ("oai/sim-mini", "oai/sim-pro")


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_orchestration_model(client, stream):
    kwargs = dict(model="council", input="What is 1,234 + 5?")
    if stream:
        _, response, text = streamed(client, **kwargs)
        assert text == response.output_text
    else:
        response = client.responses.create(**kwargs)
    assert "1,239" in response.output_text or "1239" in response.output_text, response.output
    assert response.model == "council"
