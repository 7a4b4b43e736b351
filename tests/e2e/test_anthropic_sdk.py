"""The official `anthropic` Python SDK against `plexus serve` (`POST /v1/messages`), in front of
`plexus mock`, on every upstream wire format (OpenAI, Anthropic, Gemini).

One gateway process and one simulator process serve the whole module. Most tests run once per
format; behaviours the simulator derives from the upstream model name (`tool-parallel`,
`think`, `+agent`, `+fault-429`) are reached by direct `provider/model` addressing. The same
gateway also has a `select` model (`auto`), an orchestration model (`council`, a vote of quiz
models) and the response cache (`cache: {ttl: 1h}`; only deterministic requests, with
`temperature: 0`, are cached), so that the pipeline is shown to apply to `/v1/messages`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import anthropic
import pytest

from conftest import Running  # the existing process helper (tests/e2e/conftest.py)

MASTER_KEY = "sk-plexus-e2e-anthropic"

# A 1x1 transparent PNG.
TINY_PNG = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk"
    "YPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)


@dataclass(frozen=True)
class Format:
    """One upstream wire format: the configured model that reaches it and its provider."""

    name: str  # openai | anthropic | gemini
    model: str  # the configured model name clients send
    provider: str
    upstream: str

    def variant(self, behaviour: str = "", *directives: str) -> str:
        upstream = f"{self.upstream}-{behaviour}" if behaviour else self.upstream
        return f"{self.provider}/{upstream}" + "".join(f"+{d}" for d in directives)


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
        "cache": {"ttl": "1h"},
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
    tmp = tmp_path_factory.mktemp("anthropic-gateway")
    config = tmp / "plexus.yaml"
    config.write_text(json.dumps(gateway_config(mock.url, str(tmp / "plexus.db"))))
    running = Running(["serve", "--config", str(config)])
    yield running.url
    running.stop()
    mock.stop()


def sdk(gateway: str, key: str = MASTER_KEY) -> anthropic.Anthropic:
    """The SDK without retries, so that every error surfaces as it is."""
    return anthropic.Anthropic(base_url=gateway, api_key=key, max_retries=0, timeout=30)


@pytest.fixture(scope="module")
def client(gateway):
    with sdk(gateway) as c:
        yield c


@pytest.fixture(params=FORMATS, ids=lambda f: f.name)
def fmt(request) -> Format:
    return request.param


def user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


WEATHER_TOOL = {
    "name": "get_weather",
    "description": "Current weather in a city.",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}
TIME_TOOL = {
    "name": "get_time",
    "description": "Current time in a city.",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}
BASH_TOOL = {
    "name": "Bash",
    "description": "Run a shell command.",
    "input_schema": {
        "type": "object",
        "properties": {"command": {"type": "string"}},
        "required": ["command"],
    },
}


def text_of(message) -> str:
    return "".join(b.text for b in message.content if b.type == "text")


# --------------------------------------------------------------------------------------------
# Plain and streamed
# --------------------------------------------------------------------------------------------


def test_plain_message(client, fmt):
    raw = client.messages.with_raw_response.create(
        model=fmt.model,
        max_tokens=64,
        system=[{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
        messages=user("Say hello"),
        metadata={"user_id": "u-1"},
        stop_sequences=["NEVER-SEEN"],
    )
    assert raw.headers.get("x-plexus-served-by") == f"{fmt.provider}/{fmt.upstream}"
    message = raw.parse()
    assert message.type == "message" and message.role == "assistant"
    assert message.id.startswith("msg_")
    assert message.model == fmt.model, "the name the client asked for"
    assert text_of(message)
    assert message.stop_reason == "end_turn"
    assert message.usage.input_tokens > 0 and message.usage.output_tokens > 0


def test_streamed_message(client, fmt):
    with client.messages.stream(
        model=fmt.model, max_tokens=64, messages=user("Tell me about rivers")
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text and text == text_of(final)
    assert final.id.startswith("msg_")
    assert final.model == fmt.model
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens > 0


def test_max_tokens_stop_reason(client, fmt):
    message = client.messages.create(
        model=fmt.variant("", "tokens-50"), max_tokens=5, messages=user("Write a long story")
    )
    assert message.stop_reason == "max_tokens"


# --------------------------------------------------------------------------------------------
# Tools
# --------------------------------------------------------------------------------------------


def assert_parallel_calls(message) -> None:
    calls = [b for b in message.content if b.type == "tool_use"]
    assert [c.name for c in calls] == ["get_weather", "get_time"], message.content
    assert all(c.id.startswith("toolu_") for c in calls)
    assert len({c.id for c in calls}) == 2, "distinct ids"
    for c in calls:
        assert isinstance(c.input, dict) and isinstance(c.input.get("city"), str), c.input
    assert message.stop_reason == "tool_use"


def test_parallel_tool_calls(client, fmt):
    message = client.messages.create(
        model=fmt.variant("tool-parallel"),
        max_tokens=256,
        tools=[WEATHER_TOOL, TIME_TOOL],
        messages=user("Weather and time in Paris?"),
    )
    assert_parallel_calls(message)


def test_streamed_parallel_tool_calls(client, fmt):
    with client.messages.stream(
        model=fmt.variant("tool-parallel"),
        max_tokens=256,
        tools=[WEATHER_TOOL, TIME_TOOL],
        messages=user("Weather and time in Paris?"),
    ) as stream:
        events = list(stream)
        final = stream.get_final_message()
    assert_parallel_calls(final)
    # Block indexes: sequential from 0, each started once before its deltas, stopped once.
    started = [e.index for e in events if e.type == "content_block_start"]
    stopped = [e.index for e in events if e.type == "content_block_stop"]
    assert started == list(range(len(final.content))), started
    assert stopped == started
    open_blocks = set()
    for e in events:
        if e.type == "content_block_start":
            open_blocks.add(e.index)
        elif e.type == "content_block_delta":
            assert e.index in open_blocks, "a delta of an open block"
        elif e.type == "content_block_stop":
            open_blocks.remove(e.index)
    # Each tool block's start carries the id and name the final message has.
    starts = {e.index: e.content_block for e in events if e.type == "content_block_start"}
    for i, block in enumerate(final.content):
        if block.type == "tool_use":
            assert starts[i].id == block.id and starts[i].name == block.name
    assert events[0].type == "message_start" and events[-1].type == "message_stop"


def test_tool_choice_named(client, fmt):
    message = client.messages.create(
        model=fmt.variant("tool"),
        max_tokens=256,
        tools=[WEATHER_TOOL, TIME_TOOL],
        tool_choice={"type": "tool", "name": "get_time"},
        messages=user("Time in Paris?"),
    )
    calls = [b for b in message.content if b.type == "tool_use"]
    assert [c.name for c in calls] == ["get_time"]


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_bash_round_trip_with_an_agent_model(client, fmt, stream):
    model = f"agent-{fmt.name}"
    first_turn = user("Run `echo plexus-e2e-77` and tell me what it printed.")
    kwargs = dict(model=model, max_tokens=256, tools=[BASH_TOOL], messages=first_turn)
    if stream:
        with client.messages.stream(**kwargs) as s:
            first = s.get_final_message()
    else:
        first = client.messages.create(**kwargs)
    assert first.stop_reason == "tool_use"
    call = next(b for b in first.content if b.type == "tool_use")
    assert call.name == "Bash" and call.input == {"command": "echo plexus-e2e-77"}
    second = client.messages.create(
        model=model,
        max_tokens=256,
        tools=[BASH_TOOL],
        messages=[
            *first_turn,
            {"role": "assistant", "content": [b.model_dump() for b in first.content]},
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": call.id, "content": "plexus-e2e-77\n"}
                ],
            },
        ],
    )
    assert "plexus-e2e-77" in text_of(second), second.content
    assert second.stop_reason == "end_turn"


# --------------------------------------------------------------------------------------------
# Images and thinking
# --------------------------------------------------------------------------------------------


def test_base64_image(client, fmt):
    message = client.messages.create(
        model=fmt.model,
        max_tokens=64,
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is in this image?"},
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/png", "data": TINY_PNG},
                    },
                ],
            }
        ],
    )
    assert text_of(message)


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_thinking(client, fmt, stream):
    """Thinking shows where the upstream format can show it: Anthropic thinking blocks (with
    their signatures) and Gemini thought parts; an OpenAI upstream returns no reasoning text."""
    kwargs = dict(
        model=fmt.variant("think"),
        max_tokens=4096,
        thinking={"type": "enabled", "budget_tokens": 1024},
        messages=user("Why is the sky blue?"),
    )
    if stream:
        with client.messages.stream(**kwargs) as s:
            events = list(s)
            message = s.get_final_message()
    else:
        message = client.messages.create(**kwargs)
    assert text_of(message)
    thinking = [b for b in message.content if b.type == "thinking"]
    if fmt in (ANTHROPIC, GEMINI):
        assert thinking and thinking[0].thinking.strip(), message.content
        assert message.content[0].type == "thinking", "thinking comes first"
    if fmt is ANTHROPIC:
        assert thinking[0].signature, "the upstream's signature is passed through"
        if stream:
            kinds = {e.delta.type for e in events if e.type == "content_block_delta"}
            assert {"thinking_delta", "signature_delta", "text_delta"} <= kinds, kinds


# --------------------------------------------------------------------------------------------
# count_tokens
# --------------------------------------------------------------------------------------------


def test_count_tokens(client, fmt):
    small = client.messages.count_tokens(model=fmt.model, messages=user("Hello there"))
    large = client.messages.count_tokens(
        model=fmt.model,
        system="You are a terse assistant.",
        messages=user("Hello there, " * 50),
        tools=[WEATHER_TOOL],
    )
    assert 0 < small.input_tokens < large.input_tokens


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


def test_bad_key(gateway):
    with sdk(gateway, "sk-wrong") as c:
        with pytest.raises(anthropic.AuthenticationError) as e:
            c.messages.create(model="gpt", max_tokens=8, messages=user("x"))
    assert e.value.status_code == 401
    assert e.value.body["error"]["type"] == "authentication_error"


def test_unknown_model(client):
    with pytest.raises((anthropic.NotFoundError, anthropic.BadRequestError)) as e:
        client.messages.create(model="no-such-model", max_tokens=8, messages=user("x"))
    assert "no-such-model" in e.value.message


def test_invalid_request(client):
    with pytest.raises(anthropic.BadRequestError) as e:
        client.messages.create(model="gpt", max_tokens=0, messages=user("x"))
    assert e.value.body["error"]["type"] == "invalid_request_error"
    assert "max_tokens" in e.value.message


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_upstream_rate_limit(client, stream):
    with pytest.raises(anthropic.RateLimitError) as e:
        if stream:
            with client.messages.stream(
                model=OPENAI.variant("", "fault-429"), max_tokens=8, messages=user("x")
            ) as s:
                s.get_final_message()
        else:
            client.messages.create(
                model=OPENAI.variant("", "fault-429"), max_tokens=8, messages=user("x")
            )
    assert e.value.status_code == 429
    assert e.value.body["error"]["type"] == "rate_limit_error"


def test_virtual_key_limits_apply(gateway, client):
    created = client.post(
        "/admin/keys",
        cast_to=object,
        body={"name": "anthropic-e2e-rpm", "rpm": 1},
    )
    key = created["key"]
    with sdk(gateway, key) as limited:
        assert text_of(limited.messages.create(model="gpt", max_tokens=16, messages=user("one")))
        with pytest.raises(anthropic.RateLimitError) as e:
            limited.messages.create(model="gpt", max_tokens=16, messages=user("two"))
    assert e.value.body["error"]["type"] == "rate_limit_error"
    assert e.value.response.headers.get("retry-after")
    # The key also authenticates as `Authorization: Bearer` (the limit still applies).
    with anthropic.Anthropic(
        base_url=gateway, auth_token=key, max_retries=0, timeout=30
    ) as bearer:
        with pytest.raises(anthropic.RateLimitError):
            bearer.messages.create(model="gpt", max_tokens=16, messages=user("three"))


# --------------------------------------------------------------------------------------------
# The pipeline: the cache, `model: auto`, orchestration
# --------------------------------------------------------------------------------------------


def test_cache_serves_a_repeated_request(client):
    kwargs = dict(
        model="gpt", max_tokens=32, temperature=0, messages=user("Cache me through Messages")
    )
    first = client.messages.with_raw_response.create(**kwargs)
    assert first.headers.get("x-plexus-cache") == "miss"
    second = client.messages.with_raw_response.create(**kwargs)
    assert second.headers.get("x-plexus-cache") == "hit"
    assert text_of(second.parse()) == text_of(first.parse())
    assert second.parse().model == "gpt"


def test_model_auto(client):
    raw = client.messages.with_raw_response.create(
        model="auto", max_tokens=32, messages=user("Pick a model for me")
    )
    message = raw.parse()
    assert text_of(message)
    assert message.model == "auto"
    assert raw.headers["x-plexus-served-by"] in ("oai/sim-mini", "oai/sim-pro")


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_orchestration_model(client, stream):
    kwargs = dict(model="council", max_tokens=64, messages=user("What is 1,234 + 5?"))
    if stream:
        with client.messages.stream(**kwargs) as s:
            message = s.get_final_message()
    else:
        message = client.messages.create(**kwargs)
    assert "1,239" in text_of(message) or "1239" in text_of(message), message.content
    assert message.model == "council"
