"""The official `openai` Python SDK against `plexus serve`, in front of `plexus mock`.

One gateway process and one simulator process serve the whole module. The gateway has one
configured model per upstream wire format (OpenAI, Anthropic, Gemini), all answered by the
simulator through the real adapters, and most tests run once per format. Behaviours that the
simulator derives from the upstream model name (`tool`, `parallel`, `json`, `think`, and
`+`-directives such as `+fault-429`) are reached by direct `provider/model` addressing.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass

import openai
import pytest

from conftest import Running  # the existing process helper (tests/e2e/conftest.py)

MASTER_KEY = "sk-plexus-e2e-master-key"

# A 1x1 transparent PNG.
TINY_PNG = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk"
    "YPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)


# --------------------------------------------------------------------------------------------
# The three wire formats
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Format:
    """One upstream wire format: the configured model that reaches it and its provider."""

    name: str  # openai | anthropic | gemini
    model: str  # the configured model name clients send
    provider: str  # the configured provider of that kind
    upstream: str  # the configured model's upstream model

    @property
    def served_by(self) -> str:
        return f"{self.provider}/{self.upstream}"

    def variant(self, behaviour: str = "", *directives: str) -> str:
        """A `provider/model` name whose upstream model asks the simulator for `behaviour`
        (`tool`, `tool-parallel`, `json`, `think`) and the given `+`-directives."""
        upstream = f"{self.upstream}-{behaviour}" if behaviour else self.upstream
        return f"{self.provider}/{upstream}" + "".join(f"+{d}" for d in directives)


OPENAI = Format("openai", "gpt", "oai", "gpt-4o-mini")
ANTHROPIC = Format("anthropic", "sonnet", "claude", "claude-sonnet-4-5")
GEMINI = Format("gemini", "flash", "gem", "gemini-2.5-flash")
FORMATS = [OPENAI, ANTHROPIC, GEMINI]

# Configured models; `GET /v1/models` lists exactly these.
EMBED_MODEL = "embed"
CONFIGURED_MODELS = [OPENAI.model, ANTHROPIC.model, GEMINI.model, EMBED_MODEL]


def gateway_config(mock_url: str, database: str) -> dict:
    """The gateway's configuration (written as JSON, which is YAML)."""
    base_urls = {"openai": f"{mock_url}/v1", "anthropic": mock_url, "gemini": mock_url}
    models = [(f.model, f.provider, f.upstream) for f in FORMATS]
    models.append((EMBED_MODEL, OPENAI.provider, "text-embedding-3-small"))
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
        "models": [
            {"name": name, "targets": [{"provider": provider, "model": upstream}]}
            for name, provider, upstream in models
        ],
    }


# --------------------------------------------------------------------------------------------
# Fixtures: both processes live for this module only
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mock_process():
    running = Running(["mock", "--listen", "127.0.0.1:0"])
    yield running
    running.stop()


@pytest.fixture(scope="module")
def gateway(mock_process, tmp_path_factory):
    """`plexus serve` in front of the simulator; yields its base URL."""
    tmp = tmp_path_factory.mktemp("gateway")
    config = tmp / "plexus.yaml"
    config.write_text(json.dumps(gateway_config(mock_process.url, str(tmp / "plexus.db"))))
    running = Running(["serve", "--config", str(config)])
    yield running.url
    running.stop()


@pytest.fixture(scope="module")
def client(gateway):
    """The SDK with the master key and no retries, so that every error surfaces as it is."""
    with openai.OpenAI(
        base_url=f"{gateway}/v1", api_key=MASTER_KEY, max_retries=0, timeout=30
    ) as sdk:
        yield sdk


@pytest.fixture(params=FORMATS, ids=lambda f: f.name)
def fmt(request) -> Format:
    return request.param


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city", "unit"],
        },
    },
}

TIME_TOOL = {
    "type": "function",
    "function": {
        "name": "get_time",
        "description": "Current time in a timezone.",
        "parameters": {
            "type": "object",
            "properties": {"timezone": {"type": "string"}},
            "required": ["timezone"],
        },
    },
}


def assert_tool_calls(message, names: list[str]) -> None:
    """`message.tool_calls` call exactly `names`, in order, with JSON-object arguments."""
    calls = message.tool_calls or []
    assert [c.function.name for c in calls] == names
    for call in calls:
        assert call.type == "function"
        assert call.id, "every tool call has an id"
        args = json.loads(call.function.arguments)
        assert isinstance(args, dict)
    assert len({c.id for c in calls}) == len(calls), "tool call ids are distinct"


def collect_stream(stream):
    """Reads a chat stream: (chunks, text, reasoning, finish_reason)."""
    chunks, text, reasoning, finish = [], [], [], None
    for chunk in stream:
        chunks.append(chunk)
        for choice in chunk.choices:
            text.append(choice.delta.content or "")
            reasoning.append(getattr(choice.delta, "reasoning_content", None) or "")
            finish = choice.finish_reason or finish
    return chunks, "".join(text), "".join(reasoning), finish


def error_body(err: openai.APIStatusError) -> dict:
    """The `error` object of an OpenAI-shaped error response."""
    body = err.response.json()
    assert set(body) == {"error"}, body
    return body["error"]


# --------------------------------------------------------------------------------------------
# Plain and streamed chat
# --------------------------------------------------------------------------------------------


def test_plain_chat(client, fmt):
    raw = client.chat.completions.with_raw_response.create(
        model=fmt.model, messages=user("Say something nice.")
    )
    assert raw.status_code == 200
    assert raw.headers.get("x-request-id")
    assert raw.headers.get("x-plexus-served-by") == fmt.served_by
    assert float(raw.headers["x-plexus-cost-usd"]) > 0

    completion = raw.parse()
    assert completion.object == "chat.completion"
    assert len(completion.choices) == 1
    choice = completion.choices[0]
    assert choice.message.role == "assistant"
    assert isinstance(choice.message.content, str) and choice.message.content.strip()
    assert choice.message.tool_calls is None
    assert choice.finish_reason == "stop"
    usage = completion.usage
    assert usage.prompt_tokens > 0
    assert usage.completion_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


def test_client_request_id_is_echoed(client):
    raw = client.chat.completions.with_raw_response.create(
        model=OPENAI.model, messages=user("hi"), extra_headers={"x-request-id": "e2e-req-42"}
    )
    assert raw.headers.get("x-request-id") == "e2e-req-42"


def test_conversation_reaches_the_provider_intact(client, fmt):
    """A system prompt, earlier turns and non-ASCII text survive the translation: the `echo`
    model repeats the last user message exactly."""
    text = "Grüße aus Köln 🌍 — «quoted» \"text\" and a\nnewline"
    completion = client.chat.completions.create(
        model=fmt.variant("echo"),
        messages=[
            {"role": "system", "content": "You repeat things."},
            {"role": "user", "content": "first question"},
            {"role": "assistant", "content": "first answer"},
            {"role": "user", "content": [{"type": "text", "text": text}]},
        ],
    )
    assert completion.choices[0].message.content == text


def test_streamed_chat(client, fmt):
    prompt = user("Tell me about rivers.")
    plain = client.chat.completions.create(model=fmt.model, messages=prompt)

    raw = client.chat.completions.with_raw_response.create(
        model=fmt.model, messages=prompt, stream=True
    )
    assert raw.headers.get("x-plexus-served-by") == fmt.served_by
    assert raw.headers.get("content-type", "").startswith("text/event-stream")
    chunks, text, _, finish = collect_stream(raw.parse())

    assert len(chunks) > 1
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert len({c.id for c in chunks}) == 1, "all chunks of one completion share its id"
    assert text == plain.choices[0].message.content, "the simulator answers the same prompt alike"
    assert finish == "stop"
    assert all(c.usage is None for c in chunks), "no usage without stream_options.include_usage"


def test_streamed_chat_with_usage(client, fmt):
    stream = client.chat.completions.create(
        model=fmt.model,
        messages=user("Tell me about mountains."),
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks, text, _, finish = collect_stream(stream)

    assert text and finish == "stop"
    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None
    assert last.usage.prompt_tokens > 0 and last.usage.completion_tokens > 0
    assert last.usage.total_tokens == last.usage.prompt_tokens + last.usage.completion_tokens
    assert all(c.usage is None for c in chunks[:-1]), "only the last chunk carries usage"


def test_stream_framing(client, fmt):
    """On the wire: `data:` events, the last one `[DONE]`."""
    with client.chat.completions.with_streaming_response.create(
        model=fmt.model, messages=user("hi"), stream=True
    ) as response:
        events = [line for line in response.iter_lines() if line.strip()]
    assert all(line.startswith("data: ") for line in events), events
    assert events[-1] == "data: [DONE]"
    assert events.count("data: [DONE]") == 1


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
def test_max_tokens_cuts_with_length(client, fmt, stream):
    kwargs = dict(model=fmt.model, messages=user("Write a long story."), max_tokens=3)
    if stream:
        _, text, _, finish = collect_stream(client.chat.completions.create(stream=True, **kwargs))
    else:
        completion = client.chat.completions.create(**kwargs)
        text, finish = completion.choices[0].message.content, completion.choices[0].finish_reason
        assert 0 < completion.usage.completion_tokens <= 3
    assert finish == "length"
    assert text and len(text.split()) <= 3


@pytest.mark.parametrize("fmt", [OPENAI, GEMINI], ids=lambda f: f.name)
def test_n_choices(client, fmt):
    """`n` reaches providers that can express it (Anthropic cannot: see
    `test_parameter_the_provider_cannot_express`)."""
    completion = client.chat.completions.create(
        model=fmt.model, messages=user("Two answers, please."), n=2
    )
    assert [c.index for c in completion.choices] == [0, 1]
    assert all(c.message.content and c.finish_reason == "stop" for c in completion.choices)


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
def test_cached_prompt_tokens(client, fmt, stream):
    """Each provider's way of reporting a prompt-cache hit becomes `prompt_tokens_details`."""
    kwargs = dict(model=fmt.variant("", "cached-100"), messages=user("x" * 40))
    if stream:
        stream_options = {"include_usage": True}
        chunks = list(
            client.chat.completions.create(stream=True, stream_options=stream_options, **kwargs)
        )
        usage = chunks[-1].usage
    else:
        usage = client.chat.completions.create(**kwargs).usage
    assert usage.prompt_tokens_details.cached_tokens == 100
    assert usage.prompt_tokens >= 100


# --------------------------------------------------------------------------------------------
# Tools
# --------------------------------------------------------------------------------------------


def test_tool_call(client, fmt):
    completion = client.chat.completions.create(
        model=fmt.variant("tool"), messages=user("Weather in Paris?"), tools=[WEATHER_TOOL]
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert_tool_calls(choice.message, ["get_weather"])
    args = json.loads(choice.message.tool_calls[0].function.arguments)
    assert isinstance(args["city"], str)
    assert args["unit"] in ("celsius", "fahrenheit")


def test_parallel_tool_calls(client, fmt):
    completion = client.chat.completions.create(
        model=fmt.variant("tool-parallel"),
        messages=user("Weather and time in Paris?"),
        tools=[WEATHER_TOOL, TIME_TOOL],
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert_tool_calls(choice.message, ["get_weather", "get_time"])


@pytest.mark.parametrize(
    "tool_choice, expected",
    [
        ({"type": "function", "function": {"name": "get_time"}}, ["get_time"]),
        ("required", ["get_weather"]),
        ("none", []),
    ],
    ids=["named", "required", "none"],
)
def test_tool_choice(client, fmt, tool_choice, expected):
    """`tool_choice` is translated: a named or required call is made even by a model that
    would not call on its own (the plain model), and `none` prevents one by a model that would."""
    model = fmt.variant("tool") if tool_choice == "none" else fmt.model
    completion = client.chat.completions.create(
        model=model,
        messages=user("Weather?"),
        tools=[WEATHER_TOOL, TIME_TOOL],
        tool_choice=tool_choice,
    )
    choice = completion.choices[0]
    assert_tool_calls(choice.message, expected)
    assert choice.finish_reason == ("tool_calls" if expected else "stop")


def test_parallel_tool_calls_disabled(client, fmt):
    """`parallel_tool_calls: false` is honoured, or refused with a 400 naming it; never
    silently dropped."""
    try:
        completion = client.chat.completions.create(
            model=fmt.variant("tool-parallel"),
            messages=user("Weather and time in Paris?"),
            tools=[WEATHER_TOOL, TIME_TOOL],
            parallel_tool_calls=False,
        )
    except openai.BadRequestError as err:
        assert error_body(err)["param"] == "parallel_tool_calls"
        return
    assert_tool_calls(completion.choices[0].message, ["get_weather"])


def test_tool_result_turn(client, fmt):
    """Sending back the assistant's tool calls and one tool message per call gets a text answer."""
    model = fmt.variant("tool-parallel")
    messages = user("Weather and time in Paris?")
    tools = [WEATHER_TOOL, TIME_TOOL]
    first = client.chat.completions.create(model=model, messages=messages, tools=tools)
    calls = first.choices[0].message.tool_calls
    assert len(calls) == 2

    results = {"get_weather": "sunny, 21 degrees", "get_time": "14:05 CET"}
    messages = messages + [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": c.id,
                    "type": "function",
                    "function": {"name": c.function.name, "arguments": c.function.arguments},
                }
                for c in calls
            ],
        },
        *(
            {"role": "tool", "tool_call_id": c.id, "content": results[c.function.name]}
            for c in calls
        ),
    ]
    second = client.chat.completions.create(model=model, messages=messages, tools=tools)
    choice = second.choices[0]
    assert choice.finish_reason == "stop"
    assert not choice.message.tool_calls
    # The simulator acknowledges the tool results it received, so both must have arrived.
    assert "sunny, 21 degrees" in choice.message.content
    assert "14:05 CET" in choice.message.content


def test_streamed_tool_calls(client, fmt):
    """Streamed tool-call deltas, assembled by index, give the same calls as a plain request."""
    kwargs = dict(
        model=fmt.variant("tool-parallel"),
        messages=user("Weather and time in Berlin?"),
        tools=[WEATHER_TOOL, TIME_TOOL],
    )
    plain = client.chat.completions.create(**kwargs).choices[0].message.tool_calls

    calls: dict[int, dict] = {}
    finish = None
    for chunk in client.chat.completions.create(stream=True, **kwargs):
        for choice in chunk.choices:
            finish = choice.finish_reason or finish
            for delta in choice.delta.tool_calls or []:
                call = calls.setdefault(delta.index, {"id": None, "name": None, "arguments": ""})
                if delta.id:
                    assert call["id"] is None, "a call's id comes once"
                    call["id"] = delta.id
                if delta.function and delta.function.name:
                    assert call["name"] is None, "a call's name comes once"
                    call["name"] = delta.function.name
                if delta.function and delta.function.arguments:
                    call["arguments"] += delta.function.arguments

    assert finish == "tool_calls"
    assert sorted(calls) == [0, 1]
    assembled = [calls[i] for i in sorted(calls)]
    assert all(c["id"] for c in assembled)
    assert [c["name"] for c in assembled] == [c.function.name for c in plain]
    assert [json.loads(c["arguments"]) for c in assembled] == [
        json.loads(c.function.arguments) for c in plain
    ]


# --------------------------------------------------------------------------------------------
# Images, structured output, reasoning
# --------------------------------------------------------------------------------------------


def test_image_parts_are_accepted(client, fmt):
    raw = client.chat.completions.with_raw_response.create(
        model=fmt.model,
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is in these images?"},
                    {
                        "type": "image_url",
                        "image_url": {"url": f"data:image/png;base64,{TINY_PNG}"},
                    },
                    {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
                ],
            }
        ],
    )
    assert raw.status_code == 200
    assert raw.parse().choices[0].message.content


PERSON_SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "age": {"type": "integer"},
        "tags": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["name", "age", "tags"],
    "additionalProperties": False,
}


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
def test_json_schema_response_format(client, fmt, stream):
    kwargs = dict(
        model=fmt.variant("json"),
        messages=user("Describe a person."),
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "person", "schema": PERSON_SCHEMA, "strict": True},
        },
    )
    if stream:
        chunks = client.chat.completions.create(stream=True, **kwargs)
        _, content, _, finish = collect_stream(chunks)
    else:
        choice = client.chat.completions.create(**kwargs).choices[0]
        content, finish = choice.message.content, choice.finish_reason
    assert finish == "stop"
    person = json.loads(content)
    assert set(person) == {"name", "age", "tags"}
    assert isinstance(person["name"], str)
    assert isinstance(person["age"], int)
    assert isinstance(person["tags"], list)


def assert_reasoning(fmt: Format, reasoning: str | None, usage) -> None:
    """Reasoning shows where the format can show it: OpenAI only counts reasoning tokens,
    Anthropic returns thinking blocks as text (no separate count), Gemini returns thought
    parts as text and counts them."""
    details = usage.completion_tokens_details
    tokens = (details.reasoning_tokens or 0) if details else 0
    if fmt in (ANTHROPIC, GEMINI):
        assert isinstance(reasoning, str) and reasoning.strip(), "reasoning_content"
    if fmt in (OPENAI, GEMINI):
        assert tokens > 0, "usage.completion_tokens_details.reasoning_tokens"


def test_reasoning_effort(client, fmt):
    completion = client.chat.completions.create(
        model=fmt.variant("think"), messages=user("Why is the sky blue?"), reasoning_effort="low"
    )
    message = completion.choices[0].message
    assert message.content
    assert_reasoning(fmt, getattr(message, "reasoning_content", None), completion.usage)


def test_streamed_reasoning(client, fmt):
    """Streamed reasoning text arrives as `delta.reasoning_content`."""
    stream = client.chat.completions.create(
        model=fmt.variant("think"),
        messages=user("Why is the sky blue?"),
        reasoning_effort="low",
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks, text, reasoning, finish = collect_stream(stream)
    assert text and finish == "stop"
    assert_reasoning(fmt, reasoning, chunks[-1].usage)


# --------------------------------------------------------------------------------------------
# Embeddings
# --------------------------------------------------------------------------------------------

EMBEDDING_MODELS = {"openai": EMBED_MODEL, "gemini": f"{GEMINI.provider}/text-embedding-004"}


@pytest.mark.parametrize("model", EMBEDDING_MODELS.values(), ids=EMBEDDING_MODELS.keys())
def test_embeddings(client, model):
    """The SDK asks for base64 by default and decodes it; `float` gives the same vectors."""
    inputs = ["hello world", "something else", "hello world"]
    default = client.embeddings.create(model=model, input=inputs)
    assert default.object == "list"
    assert [d.index for d in default.data] == [0, 1, 2]
    vectors = [d.embedding for d in default.data]
    assert all(len(v) > 0 and all(isinstance(x, float) for x in v) for v in vectors)
    assert len({len(v) for v in vectors}) == 1
    assert vectors[0] == vectors[2], "equal inputs give equal vectors"
    assert vectors[0] != vectors[1]

    floats = client.embeddings.create(model=model, input=inputs, encoding_format="float")
    # base64 carries float32; the float answer may carry more digits of the same values.
    for got, want in zip([d.embedding for d in floats.data], vectors, strict=True):
        assert got == pytest.approx(want, rel=1e-6, abs=1e-7)


@pytest.mark.parametrize("model", EMBEDDING_MODELS.values(), ids=EMBEDDING_MODELS.keys())
def test_embeddings_base64_on_the_wire(client, model):
    """What the SDK decodes is little-endian float32 in base64."""
    raw = client.embeddings.with_raw_response.create(
        model=model, input="hello", encoding_format="base64"
    )
    item = raw.http_response.json()["data"][0]
    assert isinstance(item["embedding"], str)
    decoded = base64.b64decode(item["embedding"])
    assert decoded and len(decoded) % 4 == 0


@pytest.mark.parametrize("model", EMBEDDING_MODELS.values(), ids=EMBEDDING_MODELS.keys())
def test_embedding_dimensions(client, model):
    result = client.embeddings.create(model=model, input="hello", dimensions=8)
    assert len(result.data[0].embedding) == 8


def test_embeddings_on_an_anthropic_model_are_refused(client):
    """Anthropic has no embeddings API: a 400 naming `model`."""
    with pytest.raises(openai.BadRequestError) as info:
        client.embeddings.create(model=ANTHROPIC.model, input="hello")
    err = error_body(info.value)
    assert err["param"] == "model"
    assert err["code"] == "unsupported_parameter"


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


def test_wrong_api_key(gateway):
    bad = openai.OpenAI(base_url=f"{gateway}/v1", api_key="sk-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as info:
        bad.chat.completions.create(model=OPENAI.model, messages=user("hi"))
    assert info.value.status_code == 401
    assert info.value.code == "invalid_api_key"


@pytest.mark.parametrize("model", ["no-such-model", "no-such-provider/gpt-4o-mini"])
def test_unknown_model(client, model):
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model=model, messages=user("hi"))
    assert info.value.code == "model_not_found"


def test_invalid_parameter_is_named(client, fmt):
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model=fmt.model, messages=user("hi"), temperature=5)
    err = error_body(info.value)
    assert err["param"] == "temperature"
    assert err["code"] == "invalid_request"
    assert info.value.param == "temperature"


@pytest.mark.parametrize(
    "fmt, kwargs, param",
    [
        pytest.param(fmt, kwargs, param, id=f"{fmt.name}-{param}")
        for fmt, kwargs, param in [
            (ANTHROPIC, {"n": 2}, "n"),
            (ANTHROPIC, {"seed": 7}, "seed"),
            (ANTHROPIC, {"logprobs": True}, "logprobs"),
            (ANTHROPIC, {"logit_bias": {"1": 2}}, "logit_bias"),
            (GEMINI, {"logprobs": True}, "logprobs"),
            (GEMINI, {"logit_bias": {"1": 2}}, "logit_bias"),
        ]
    ],
)
def test_parameter_the_provider_cannot_express(client, fmt, kwargs, param):
    """A valid OpenAI parameter that the target provider cannot express is a 400 with the
    stable code `unsupported_parameter` naming it (docs/errors.md)."""
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model=fmt.model, messages=user("hi"), **kwargs)
    err = error_body(info.value)
    assert err["param"] == param
    assert err["code"] == "unsupported_parameter", err


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
def test_upstream_rate_limit(client, fmt, stream):
    """Raised before any chunk when streaming too: the stream has not started."""
    with pytest.raises(openai.RateLimitError) as info:
        client.chat.completions.create(
            model=fmt.variant("", "fault-429", "retry-after-1"), messages=user("hi"), stream=stream
        )
    assert info.value.status_code == 429
    assert info.value.response.headers.get("retry-after") == "1"
    assert info.value.code == "rate_limit_exceeded"


def test_upstream_auth_failure(client, fmt):
    """The provider refusing the gateway's own credential is a 502, not the client's 401."""
    with pytest.raises(openai.APIStatusError) as info:
        client.chat.completions.create(model=fmt.variant("", "fault-401"), messages=user("hi"))
    assert isinstance(info.value, openai.InternalServerError)
    assert info.value.status_code == 502
    assert info.value.code == "upstream_auth_error"


@pytest.mark.parametrize(
    "fault, error, status, code",
    [
        pytest.param(fault, error, status, code, id=fault)
        for fault, error, status, code in [
            ("fault-400", openai.BadRequestError, 400, "upstream_invalid_request"),
            ("fault-404", openai.NotFoundError, 404, "upstream_invalid_request"),
            ("fault-403", openai.InternalServerError, 502, "upstream_auth_error"),
            ("fault-500", openai.InternalServerError, 502, "upstream_error"),
            ("fault-503", openai.InternalServerError, 502, "upstream_error"),
            ("malformed", openai.InternalServerError, 502, "upstream_error"),
        ]
    ],
)
def test_upstream_failure_mapping(client, fmt, fault, error, status, code):
    """The table in docs/errors.md, for a request that fails before any answer."""
    with pytest.raises(error) as info:
        client.chat.completions.create(model=fmt.variant("", fault), messages=user("hi"))
    assert info.value.status_code == status
    assert info.value.code == code


def iterate_until_error(stream) -> tuple[list, openai.APIError]:
    received = []
    with pytest.raises(openai.APIError) as info:
        for chunk in stream:
            received.append(chunk)
    return received, info.value


def test_malformed_stream_raises(client, fmt):
    """An unreadable event in a started stream ends it with an error event."""
    stream = client.chat.completions.create(
        model=fmt.variant("", "malformed"), messages=user("hi"), stream=True
    )
    _, err = iterate_until_error(stream)
    assert type(err) is openai.APIError, f"not an error event: {err!r}"
    assert err.body["code"] == "upstream_error"


@pytest.mark.parametrize(
    "directives",
    [("cut-after-2",), ("cut-after-2", "tps-100")],
    ids=["unpaced", "paced"],
)
def test_stream_cut_mid_way_raises(client, fmt, directives):
    """A stream that breaks after it started ends with a `data: {"error": ...}` event, which
    the SDK raises as `APIError` (neither a status error nor a connection error)."""
    try:
        stream = client.chat.completions.create(
            model=fmt.variant("", *directives), messages=user("Tell me a story."), stream=True
        )
    except openai.APIStatusError as err:
        pytest.fail(f"the stream never started ({err.code}): {err.message}")
    received, err = iterate_until_error(stream)
    assert type(err) is openai.APIError, f"not an error event: {err!r}"
    assert received, "some chunks arrived before the cut"
    assert err.body["code"] == "upstream_error"


# --------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------


def test_models_list(client):
    models = client.models.list()
    assert sorted(m.id for m in models) == sorted(CONFIGURED_MODELS)
    assert all(m.object == "model" for m in models)
