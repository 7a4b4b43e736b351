"""The official SDKs talk to `plexus mock` directly: the simulator must be indistinguishable
from the real APIs for them (plain, streamed, tools, embeddings, errors)."""

import json
import math
import re

import anthropic
import openai
import pytest
from google import genai
from google.genai import types as gtypes

WEATHER_SCHEMA = {
    "type": "object",
    "properties": {
        "city": {"type": "string"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        "days": {"type": "integer"},
    },
    "required": ["city", "unit"],
}


@pytest.fixture
def oai(mock_url):
    return openai.OpenAI(base_url=f"{mock_url}/v1", api_key="sk-test", max_retries=0)


@pytest.fixture
def claude(mock_url):
    return anthropic.Anthropic(base_url=mock_url, api_key="sk-ant-test", max_retries=0)


@pytest.fixture
def gemini(mock_url):
    return genai.Client(api_key="gm-test", http_options=gtypes.HttpOptions(base_url=mock_url))


def openai_tools():
    return [
        {"type": "function", "function": {"name": "get_weather", "description": "Weather", "parameters": WEATHER_SCHEMA}},
        {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {"tz": {"type": "string"}}, "required": ["tz"]}}},
    ]


def test_listening_line(mock_server):
    assert re.fullmatch(r"plexus mock listening on http://127\.0\.0\.1:\d+", mock_server.first_line)


# --- OpenAI -----------------------------------------------------------------------------------


def test_openai_plain(oai):
    r = oai.chat.completions.create(model="gpt-mock", messages=[{"role": "user", "content": "Say hello"}])
    assert r.object == "chat.completion"
    assert r.choices[0].finish_reason == "stop"
    assert len(r.choices[0].message.content.split()) == 12
    assert r.usage.completion_tokens == 12
    assert r.usage.total_tokens == r.usage.prompt_tokens + 12
    again = oai.chat.completions.create(model="gpt-mock", messages=[{"role": "user", "content": "Say hello"}])
    assert again.choices[0].message.content == r.choices[0].message.content


def test_openai_echo_and_max_tokens(oai):
    r = oai.chat.completions.create(model="echo", messages=[{"role": "user", "content": "one two three four"}])
    assert r.choices[0].message.content == "one two three four"
    r = oai.chat.completions.create(
        model="echo", max_completion_tokens=2, messages=[{"role": "user", "content": "one two three four"}]
    )
    assert r.choices[0].message.content == "one two"
    assert r.choices[0].finish_reason == "length"


def test_openai_stream_with_usage(oai):
    stream = oai.chat.completions.create(
        model="gpt-mock+tokens-5",
        messages=[{"role": "user", "content": "Stream please"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert len(text.split()) == 5
    assert chunks[0].choices[0].delta.role == "assistant"
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"]
    assert chunks[-1].choices == []
    assert chunks[-1].usage.completion_tokens == 5
    assert all(c.usage is None for c in chunks[:-1])


def test_openai_tools(oai):
    r = oai.chat.completions.create(
        model="tool", messages=[{"role": "user", "content": "Weather in Paris?"}], tools=openai_tools()
    )
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    (call,) = choice.message.tool_calls
    assert call.function.name == "get_weather"
    assert call.id.startswith("call_")
    args = json.loads(call.function.arguments)
    assert set(args) == {"city", "unit"}
    assert args["unit"] == "celsius"

    follow = oai.chat.completions.create(
        model="tool",
        messages=[
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
            {"role": "tool", "tool_call_id": call.id, "content": "sunny, 21C"},
        ],
        tools=openai_tools(),
    )
    assert follow.choices[0].message.content == "Tool result received: sunny, 21C"
    assert follow.choices[0].finish_reason == "stop"


def test_openai_streamed_parallel_tool_calls(oai):
    stream = oai.chat.completions.create(
        model="tool-parallel",
        messages=[{"role": "user", "content": "Weather and time?"}],
        tools=openai_tools(),
        stream=True,
    )
    calls = {}
    finish = None
    for chunk in stream:
        delta = chunk.choices[0].delta
        for tc in delta.tool_calls or []:
            entry = calls.setdefault(tc.index, {"id": None, "name": None, "args": ""})
            if tc.id:
                entry["id"] = tc.id
            if tc.function and tc.function.name:
                entry["name"] = tc.function.name
            if tc.function and tc.function.arguments:
                entry["args"] += tc.function.arguments
        finish = chunk.choices[0].finish_reason or finish
    assert finish == "tool_calls"
    assert [calls[i]["name"] for i in sorted(calls)] == ["get_weather", "get_time"]
    assert json.loads(calls[0]["args"])["city"]
    assert json.loads(calls[1]["args"]) == {"tz": "mock-tz"}


def test_openai_stream_helper_accumulates(oai):
    with oai.chat.completions.stream(
        model="tool", messages=[{"role": "user", "content": "Weather?"}], tools=openai_tools()
    ) as stream:
        final = stream.get_final_completion()
    call = final.choices[0].message.tool_calls[0]
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments)["unit"] == "celsius"


def test_openai_json_schema(oai):
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
        "required": ["name", "age"],
        "additionalProperties": False,
    }
    r = oai.chat.completions.create(
        model="json",
        messages=[{"role": "user", "content": "A person"}],
        response_format={"type": "json_schema", "json_schema": {"name": "person", "schema": schema, "strict": True}},
    )
    assert json.loads(r.choices[0].message.content) == {"name": "mock-name", "age": 1}


def test_openai_reasoning_tokens(oai):
    r = oai.chat.completions.create(model="o-think", messages=[{"role": "user", "content": "Think"}])
    assert r.usage.completion_tokens_details.reasoning_tokens > 0
    assert r.usage.completion_tokens == 12 + r.usage.completion_tokens_details.reasoning_tokens


def test_openai_embeddings_base64_default(oai):
    r = oai.embeddings.create(model="text-embedding-mock", input=["alpha", "beta", "alpha"])
    vectors = [d.embedding for d in r.data]
    assert [d.index for d in r.data] == [0, 1, 2]
    assert all(len(v) == 16 for v in vectors)
    assert vectors[0] == vectors[2]
    assert vectors[0] != vectors[1]
    assert math.isclose(math.sqrt(sum(x * x for x in vectors[0])), 1.0, rel_tol=1e-5)
    floats = oai.embeddings.create(model="text-embedding-mock", input="alpha", encoding_format="float", dimensions=8)
    assert len(floats.data[0].embedding) == 8
    assert r.usage.prompt_tokens >= 1


@pytest.fixture(scope="module")
def keyed_url(start_plexus, tmp_path_factory):
    """A second simulator from a config file: a required key and a slow profile."""
    cfg = tmp_path_factory.mktemp("mock") / "mock.yaml"
    cfg.write_text('require_key: sk-right\nprofiles:\n  - model: "slow*"\n    latency_ms: 300\n')
    return start_plexus("mock", "--listen", "127.0.0.1:0", "--config", str(cfg)).url


def test_config_file_key_and_profile(keyed_url):
    good = openai.OpenAI(base_url=f"{keyed_url}/v1", api_key="sk-right", max_retries=0)
    r = good.chat.completions.with_raw_response.create(model="slow-model", messages=[{"role": "user", "content": "x"}])
    assert int(r.headers["openai-processing-ms"]) >= 300
    assert r.headers["x-request-id"].startswith("req_")
    with pytest.raises(openai.AuthenticationError) as e:
        openai.OpenAI(base_url=f"{keyed_url}/v1", api_key="sk-wrong", max_retries=0).chat.completions.create(
            model="gpt", messages=[{"role": "user", "content": "x"}]
        )
    assert e.value.code == "invalid_api_key"
    with pytest.raises(anthropic.AuthenticationError):
        anthropic.Anthropic(base_url=keyed_url, api_key="sk-wrong", max_retries=0).messages.create(
            model="claude", max_tokens=10, messages=[{"role": "user", "content": "x"}]
        )


def test_openai_rate_limit_error(oai):
    with pytest.raises(openai.RateLimitError) as e:
        oai.chat.completions.create(model="gpt+fault-429+retry-after-1", messages=[{"role": "user", "content": "x"}])
    assert e.value.status_code == 429
    assert e.value.response.headers["retry-after"] == "1"
    assert e.value.code == "rate_limit_exceeded"
    with pytest.raises(openai.InternalServerError):
        oai.chat.completions.create(
            model="gpt", messages=[{"role": "user", "content": "x"}], extra_headers={"x-mock-fault": "503"}
        )


def test_openai_sdk_retries_fail_first(mock_url):
    client = openai.OpenAI(base_url=f"{mock_url}/v1", api_key="sk-test", max_retries=2)
    # A name of its own: the failure counter is per model name and server-wide.
    r = client.chat.completions.create(model="gpt+fail-first-1+e2e-retry", messages=[{"role": "user", "content": "x"}])
    assert r.choices[0].finish_reason == "stop"


def test_openai_models(oai):
    ids = [m.id for m in oai.models.list()]
    assert "echo" in ids


# --- Anthropic --------------------------------------------------------------------------------


def anthropic_tools():
    return [
        {"name": "get_weather", "description": "Weather", "input_schema": WEATHER_SCHEMA},
        {"name": "get_time", "input_schema": {"type": "object", "properties": {"tz": {"type": "string"}}, "required": ["tz"]}},
    ]


def test_anthropic_plain(claude):
    m = claude.messages.create(model="claude-mock", max_tokens=100, messages=[{"role": "user", "content": "Say hello"}])
    assert m.type == "message"
    assert m.stop_reason == "end_turn"
    assert m.content[0].type == "text"
    assert len(m.content[0].text.split()) == 12
    assert m.usage.output_tokens == 12
    assert m.id.startswith("msg_")


def test_same_prompt_same_answer_across_sdks(oai, claude, gemini):
    prompt = "Deterministic across formats"
    a = oai.chat.completions.create(model="any", messages=[{"role": "user", "content": prompt}]).choices[0].message.content
    b = claude.messages.create(model="any", max_tokens=50, messages=[{"role": "user", "content": prompt}]).content[0].text
    c = gemini.models.generate_content(model="any", contents=prompt).text
    assert a == b == c


def test_anthropic_max_tokens_and_errors(claude):
    m = claude.messages.create(model="claude", max_tokens=3, messages=[{"role": "user", "content": "hi"}])
    assert m.stop_reason == "max_tokens"
    assert m.usage.output_tokens == 3
    with pytest.raises(anthropic.RateLimitError):
        claude.messages.create(model="claude+fault-429", max_tokens=10, messages=[{"role": "user", "content": "x"}])
    # OverloadedError or InternalServerError depending on the SDK version.
    with pytest.raises(anthropic.APIStatusError) as e:
        claude.messages.create(model="claude+fault-529", max_tokens=10, messages=[{"role": "user", "content": "x"}])
    assert e.value.status_code == 529
    assert e.value.body["error"]["type"] == "overloaded_error"


def test_anthropic_stream_with_thinking(claude):
    with claude.messages.stream(
        model="claude-think",
        max_tokens=2000,
        thinking={"type": "enabled", "budget_tokens": 1024},
        messages=[{"role": "user", "content": "Think then answer"}],
    ) as stream:
        events = [e.type for e in stream]
        final = stream.get_final_message()
    assert events[0] == "message_start"
    assert events[-1] == "message_stop"
    assert "ping" not in events or events.index("ping") > events.index("content_block_start")
    thinking, text = final.content
    assert thinking.type == "thinking" and thinking.thinking and thinking.signature
    assert text.type == "text" and len(text.text.split()) == 12
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens > 12


def test_anthropic_text_stream(claude):
    with claude.messages.stream(
        model="echo", max_tokens=100, messages=[{"role": "user", "content": "streamed echo works"}]
    ) as stream:
        text = "".join(stream.text_stream)
    assert text == "streamed echo works"


def test_anthropic_tools_plain_and_streamed(claude):
    m = claude.messages.create(
        model="tool", max_tokens=200, tools=anthropic_tools(), messages=[{"role": "user", "content": "Weather?"}]
    )
    assert m.stop_reason == "tool_use"
    (use,) = [b for b in m.content if b.type == "tool_use"]
    assert use.name == "get_weather"
    assert use.input["unit"] == "celsius" and "city" in use.input

    with claude.messages.stream(
        model="tool-parallel", max_tokens=200, tools=anthropic_tools(), messages=[{"role": "user", "content": "Both?"}]
    ) as stream:
        final = stream.get_final_message()
    uses = [b for b in final.content if b.type == "tool_use"]
    assert [u.name for u in uses] == ["get_weather", "get_time"]
    assert uses[1].input == {"tz": "mock-tz"}

    follow = claude.messages.create(
        model="tool",
        max_tokens=200,
        tools=anthropic_tools(),
        messages=[
            {"role": "user", "content": "Weather?"},
            {"role": "assistant", "content": [use.model_dump()]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "rainy"}]},
        ],
    )
    assert follow.content[0].text == "Tool result received: rainy"


def test_anthropic_forced_tool_choice_on_json_model(claude):
    m = claude.messages.create(
        model="json",
        max_tokens=200,
        tools=anthropic_tools(),
        tool_choice={"type": "tool", "name": "get_time"},
        messages=[{"role": "user", "content": "Time?"}],
    )
    (use,) = m.content
    assert use.type == "tool_use" and use.name == "get_time"


# --- Gemini -----------------------------------------------------------------------------------


def gemini_tools():
    return [
        gtypes.Tool(
            function_declarations=[
                gtypes.FunctionDeclaration(name="get_weather", description="Weather", parameters_json_schema=WEATHER_SCHEMA),
                gtypes.FunctionDeclaration(
                    name="get_time",
                    parameters=gtypes.Schema(
                        type=gtypes.Type.OBJECT, properties={"tz": gtypes.Schema(type=gtypes.Type.STRING)}, required=["tz"]
                    ),
                ),
            ]
        )
    ]


def test_gemini_plain(gemini):
    r = gemini.models.generate_content(model="gemini-mock", contents="Say hello")
    assert len(r.text.split()) == 12
    assert r.candidates[0].finish_reason == gtypes.FinishReason.STOP
    assert r.usage_metadata.candidates_token_count == 12
    assert r.usage_metadata.total_token_count == r.usage_metadata.prompt_token_count + 12


def test_gemini_stream(gemini):
    chunks = list(
        gemini.models.generate_content_stream(
            model="gemini-mock+tokens-6+cached-3",
            contents="Stream please",
            config=gtypes.GenerateContentConfig(max_output_tokens=4),
        )
    )
    text = "".join(c.text or "" for c in chunks)
    assert len(text.split()) == 4
    last = chunks[-1]
    assert last.candidates[0].finish_reason == gtypes.FinishReason.MAX_TOKENS
    assert last.usage_metadata.candidates_token_count == 4
    assert last.usage_metadata.cached_content_token_count == 3
    assert all(c.candidates[0].finish_reason is None for c in chunks[:-1])


def test_gemini_thoughts(gemini):
    r = gemini.models.generate_content(
        model="gemini-think",
        contents="Think",
        config=gtypes.GenerateContentConfig(thinking_config=gtypes.ThinkingConfig(include_thoughts=True)),
    )
    parts = r.candidates[0].content.parts
    assert parts[0].thought is True
    assert r.usage_metadata.thoughts_token_count > 0
    assert len(r.text.split()) == 12


def test_gemini_tools_plain_and_streamed(gemini):
    config = gtypes.GenerateContentConfig(
        tools=gemini_tools(), automatic_function_calling=gtypes.AutomaticFunctionCallingConfig(disable=True)
    )
    r = gemini.models.generate_content(model="gemini-tool", contents="Weather?", config=config)
    (call,) = r.function_calls
    assert call.name == "get_weather"
    assert call.args["unit"] == "celsius" and "city" in call.args

    calls = []
    for chunk in gemini.models.generate_content_stream(model="gemini-tool-parallel", contents="Both?", config=config):
        calls.extend(chunk.function_calls or [])
    assert [c.name for c in calls] == ["get_weather", "get_time"]
    assert calls[1].args == {"tz": "mock-tz"}

    follow = gemini.models.generate_content(
        model="gemini-tool",
        contents=[
            gtypes.Content(role="user", parts=[gtypes.Part(text="Weather?")]),
            gtypes.Content(role="model", parts=[gtypes.Part(function_call=call)]),
            gtypes.Content(
                role="user",
                parts=[gtypes.Part.from_function_response(name="get_weather", response={"result": "windy"})],
            ),
        ],
        config=config,
    )
    assert follow.text == "Tool result received: windy"


def test_gemini_embeddings_and_errors(gemini):
    r = gemini.models.embed_content(model="text-embedding-004", contents=["alpha", "beta", "alpha"])
    values = [e.values for e in r.embeddings]
    assert len(values) == 3 and len(values[0]) == 16
    assert values[0] == values[2] != values[1]
    with pytest.raises(genai.errors.ClientError) as e:
        gemini.models.generate_content(model="gemini+fault-429", contents="x")
    assert e.value.code == 429
    assert e.value.status == "RESOURCE_EXHAUSTED"
