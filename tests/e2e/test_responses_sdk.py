"""The official `openai` Python SDK's Responses API (`client.responses.create`) against
`plexus serve` (`POST /v1/responses`), in front of `plexus mock`, on every upstream wire format
(OpenAI, Anthropic, Gemini).

One gateway process and one simulator process serve the whole module. Behaviours the simulator
derives from the upstream model name (`+agent`, `+tokens-N`) are reached by direct
`provider/model` addressing or configured `agent-*` models. The same gateway has a `select`
model (`auto`) and an orchestration model (`council`, a vote of quiz models), a response cache
and key budgets, so that the pipeline is shown to apply to `/v1/responses`.

Stored responses through the SDK, on every provider kind: `previous_response_id` (two- and
three-turn conversations, plain and streamed, the earlier turns rebuilt from the database),
`responses.retrieve`, `responses.delete`, `responses.input_items.list` (order, pagination),
ownership (another key sees 404 for all of it), and background runs (`background=True`: queued,
polled until completed; `responses.cancel` on a slow model, configured as `slow-*` with the
simulator's `+latency-4000`).
"""

from __future__ import annotations

import json
import time
import urllib.request
import uuid
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
    models += [priced(f"slow-{f.name}", f.provider, f"{f.upstream}+latency-4000") for f in FORMATS]
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
        # Exact-match cache: only requests with temperature 0 are cached (nondeterministic off),
        # so the other tests, which send none, always reach the simulator.
        "cache": {"ttl": "1h"},
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
    assert response.store is True, "stored by default"
    assert response.background is False and response.previous_response_id is None
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


def test_unknown_previous_response_id(client):
    with pytest.raises(openai.NotFoundError) as e:
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


def new_key(gateway: str, **settings) -> str:
    """A new virtual key (`POST /admin/keys`) with these settings."""
    request = urllib.request.Request(
        f"{gateway}/admin/keys",
        data=json.dumps(settings).encode(),
        headers={"Authorization": f"Bearer {MASTER_KEY}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as r:
        return json.loads(r.read())["key"]


def test_virtual_key_limits_apply(gateway, client):
    key = new_key(gateway, name="responses-e2e-rpm", rpm=1)
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


def test_a_cache_hit(client, fmt):
    """The same request with temperature 0, twice: the second answer comes from the cache."""
    kwargs = dict(
        model=fmt.model, input=f"Cache me {uuid.uuid4().hex[:8]}", temperature=0, store=False
    )
    first = client.responses.with_raw_response.create(**kwargs)
    assert first.headers.get("x-plexus-cache") != "hit"
    second = client.responses.with_raw_response.create(**kwargs)
    assert second.headers.get("x-plexus-cache") == "hit", dict(second.headers)
    a, b = first.parse(), second.parse()
    assert b.output_text == a.output_text and b.status == "completed"
    assert b.id != a.id, "a hit is a response of its own"


def test_a_key_budget_is_enforced(gateway, fmt):
    """A key with a tiny budget is served until it has spent it, then refused with 429
    `budget_exceeded` (`insufficient_quota`)."""
    key = new_key(gateway, name=f"responses-e2e-budget-{fmt.name}", max_budget_usd=0.0003)
    served = 0
    with sdk(gateway, key) as limited:
        with pytest.raises(openai.RateLimitError) as e:
            for _ in range(20):
                r = limited.responses.create(
                    model=fmt.model, input="Spend a little", max_output_tokens=16
                )
                assert r.output_text
                served += 1
    assert served >= 1, "the budget admits a first request"
    assert e.value.code == "budget_exceeded", e.value.body
    assert e.value.type == "insufficient_quota", e.value.body


# --------------------------------------------------------------------------------------------
# Stored responses: previous_response_id, retrieve, input_items, delete, ownership
# --------------------------------------------------------------------------------------------


def stored(client: openai.OpenAI, response_id: str):
    """`responses.retrieve`, once the response is stored (written behind the answer)."""
    deadline = time.monotonic() + 5
    while True:
        try:
            return client.responses.retrieve(response_id)
        except openai.NotFoundError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def create(client: openai.OpenAI, stream: bool, **kwargs):
    """A whole response, created plain or streamed (the final event's response)."""
    if stream:
        _, final, text = streamed(client, **kwargs)
        assert text == final.output_text
        return final
    return client.responses.create(**kwargs)


def texts(item) -> str:
    return "".join(getattr(part, "text", "") or "" for part in item.content)


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_previous_response_id_continues_a_conversation(client, fmt, stream):
    marker = f"zebra{uuid.uuid4().hex[:10]}"
    turn1 = f"Remember the secret word {marker}, please; I will ask for it later on."
    r1 = create(client, stream, model=fmt.model, input=turn1, instructions="Only in turn one.")
    assert r1.status == "completed" and r1.store is True and r1.output_text
    assert r1.previous_response_id is None

    r2 = create(client, stream, model=fmt.model, input="Which word?", previous_response_id=r1.id)
    assert r2.id != r1.id and r2.previous_response_id == r1.id
    assert r2.status == "completed" and r2.output_text and r2.model == fmt.model

    # The upstream call of turn two carried turn one (the simulator counts the prompt's
    # characters): more input tokens than the same question alone.
    alone = client.responses.create(model=fmt.model, input="Which word?", store=False)
    extra = r2.usage.input_tokens - alone.usage.input_tokens
    assert extra >= len(turn1) // 4, (r2.usage, alone.usage)
    assert r2.output_text != alone.output_text, "a different prompt, a different answer"

    # Read back as created.
    got = stored(client, r2.id)
    assert got.id == r2.id and got.status == "completed"
    assert got.output_text == r2.output_text
    assert got.previous_response_id == r1.id and got.model == fmt.model
    assert got.usage.output_tokens == r2.usage.output_tokens

    # The items it was generated from: turn one's input and output, then turn two's input,
    # newest first.
    page = client.responses.input_items.list(r2.id)
    items = page.data
    assert [i.type for i in items] == ["message"] * 3, items
    assert [i.role for i in items] == ["user", "assistant", "user"], items
    assert texts(items[0]) == "Which word?"
    assert texts(items[1]) == r1.output_text
    assert marker in texts(items[2])
    assert "Only in turn one." not in json.dumps([i.model_dump() for i in items])
    assert page.has_more is False
    assert page.first_id == items[0].id and page.last_id == items[2].id
    assert len({i.id for i in items}) == 3, "every item has its own id"

    # Oldest first.
    ascending = client.responses.input_items.list(r2.id, order="asc").data
    assert [i.id for i in ascending] == [i.id for i in reversed(items)]

    # One at a time: `limit` and `after` by hand, then the SDK's own pagination.
    first = client.responses.input_items.list(r2.id, limit=1)
    assert [i.id for i in first.data] == [items[0].id] and first.has_more is True
    second = client.responses.input_items.list(r2.id, limit=1, after=first.last_id)
    assert [i.id for i in second.data] == [items[1].id] and second.has_more is True
    last = client.responses.input_items.list(r2.id, limit=1, after=second.last_id)
    assert [i.id for i in last.data] == [items[2].id] and last.has_more is False
    paged = client.responses.input_items.list(r2.id, limit=1, order="asc")
    assert [i.id for i in paged] == [i.id for i in ascending], "auto-pagination"

    # Turn one's own list holds its input only.
    own = client.responses.input_items.list(r1.id).data
    assert len(own) == 1 and marker in texts(own[0])


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_a_three_turn_chain(client, fmt, stream):
    r1 = create(client, stream, model=fmt.model, input="Turn one: apples.")
    r2 = create(
        client, stream, model=fmt.model, input="Turn two: pears.", previous_response_id=r1.id
    )
    r3 = create(
        client, stream, model=fmt.model, input="Turn three: plums.", previous_response_id=r2.id
    )
    assert r3.previous_response_id == r2.id and r3.status == "completed" and r3.output_text
    assert r3.usage.input_tokens > r2.usage.input_tokens > r1.usage.input_tokens

    items = client.responses.input_items.list(r3.id, order="asc").data
    assert [(i.type, i.role) for i in items] == [
        ("message", "user"),
        ("message", "assistant"),
        ("message", "user"),
        ("message", "assistant"),
        ("message", "user"),
    ], items
    assert [texts(i) for i in items] == [
        "Turn one: apples.",
        r1.output_text,
        "Turn two: pears.",
        r2.output_text,
        "Turn three: plums.",
    ]
    assert stored(client, r3.id).output_text == r3.output_text


def assert_not_found(c: openai.OpenAI, response_id: str, cancel: bool = False):
    """Every read and write of `response_id` is a 404 for `c`."""
    calls = [c.responses.retrieve, c.responses.input_items.list, c.responses.delete]
    if cancel:
        calls.append(c.responses.cancel)
    for call in calls:
        with pytest.raises(openai.NotFoundError):
            call(response_id)


def test_delete_and_store_false(client, fmt):
    r = client.responses.create(model=fmt.model, input="Delete me")
    assert stored(client, r.id).id == r.id
    raw = client.responses.with_raw_response.delete(r.id)
    assert json.loads(raw.text) == {"id": r.id, "object": "response", "deleted": True}
    assert_not_found(client, r.id)
    with pytest.raises(openai.NotFoundError) as e:
        client.responses.create(model=fmt.model, input="x", previous_response_id=r.id)
    assert e.value.body["param"] == "previous_response_id"

    kept = client.responses.create(model=fmt.model, input="Forget me", store=False)
    assert kept.store is False and kept.output_text
    # A stored response is readable at once on the instance that answered it.
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(kept.id)


def test_another_key_cannot_see_or_continue_a_response(gateway, client, fmt):
    r = client.responses.create(model=fmt.model, input="Mine alone")
    stored(client, r.id)
    with sdk(gateway, new_key(gateway, name=f"responses-e2e-other-{fmt.name}")) as other:
        # The other key works, but none of the owner's response exists for it.
        assert other.responses.create(model=fmt.model, input="Hello").output_text
        assert_not_found(other, r.id, cancel=True)
        with pytest.raises(openai.NotFoundError) as e:
            other.responses.create(model=fmt.model, input="x", previous_response_id=r.id)
        assert e.value.body["param"] == "previous_response_id"
    # The owner still has it, whole.
    assert client.responses.retrieve(r.id).output_text == r.output_text


# --------------------------------------------------------------------------------------------
# Background runs
# --------------------------------------------------------------------------------------------


def poll(client: openai.OpenAI, response_id: str, until: tuple, seconds: float = 20):
    """`responses.retrieve` until the status is one of `until` (bounded)."""
    deadline = time.monotonic() + seconds
    while True:
        r = client.responses.retrieve(response_id)
        if r.status in until:
            return r
        assert time.monotonic() < deadline, f"still {r.status}: {r}"
        time.sleep(0.05)


def test_background_run_completes(client, fmt):
    queued = client.responses.create(model=fmt.model, input="In the background", background=True)
    assert queued.status == "queued" and queued.background is True
    assert queued.id.startswith("resp_") and queued.model == fmt.model
    assert queued.output == []
    done = poll(client, queued.id, ("completed", "failed", "incomplete"))
    assert done.status == "completed", done.error
    assert done.id == queued.id and done.background is True
    assert done.output_text
    assert done.usage.input_tokens > 0 and done.usage.output_tokens > 0
    # Ended: it cannot be cancelled any more, and it can be continued.
    with pytest.raises(openai.BadRequestError):
        client.responses.cancel(queued.id)
    follow = client.responses.create(
        model=fmt.model, input="And then?", previous_response_id=queued.id
    )
    assert follow.previous_response_id == queued.id and follow.output_text
    assert len(client.responses.input_items.list(follow.id).data) == 3


def test_background_run_is_cancelled(client, fmt):
    queued = client.responses.create(model=f"slow-{fmt.name}", input="Slowly", background=True)
    assert queued.status == "queued"
    poll(client, queued.id, ("in_progress",), seconds=3)
    # Still running: it cannot be continued yet.
    with pytest.raises(openai.BadRequestError) as e:
        client.responses.create(model=fmt.model, input="x", previous_response_id=queued.id)
    assert e.value.body["param"] == "previous_response_id"
    cancelled = client.responses.cancel(queued.id)
    assert cancelled.id == queued.id and cancelled.status == "cancelled"
    # Cancelling a cancelled response returns it.
    assert client.responses.cancel(queued.id).status == "cancelled"
    assert client.responses.retrieve(queued.id).status == "cancelled"


def test_cancel_needs_a_background_response(client):
    r = client.responses.create(model="gpt", input="In the foreground")
    stored(client, r.id)
    with pytest.raises(openai.BadRequestError):
        client.responses.cancel(r.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.cancel("resp_does_not_exist")


def test_background_needs_store_and_no_stream(client):
    with pytest.raises(openai.BadRequestError) as e:
        client.responses.create(model="gpt", input="x", background=True, store=False)
    assert e.value.body["param"] == "store"
    with pytest.raises(openai.BadRequestError) as e:
        client.responses.create(model="gpt", input="x", background=True, stream=True)
    assert e.value.body["param"] == "stream"


# --------------------------------------------------------------------------------------------
# Shutdown: the real binary, SIGTERM
# --------------------------------------------------------------------------------------------


def test_a_background_run_alive_at_shutdown_ends_incomplete(tmp_path):
    """`plexus serve` gets SIGTERM while a background run is in progress: after the grace period
    the run is stopped and its row says `incomplete`, which the next process on the same
    database reports. A run that ends within the grace period completes."""
    mock = Running(["mock", "--listen", "127.0.0.1:0"])
    try:
        config = gateway_config(mock.url, str(tmp_path / "plexus.db"))
        config["shutdown_grace"] = "1500ms"
        path = tmp_path / "plexus.yaml"
        path.write_text(json.dumps(config))
        first = Running(["serve", "--config", str(path)])
        with sdk(first.url) as c:
            slow = c.responses.create(model="slow-anthropic", input="Take long", background=True)
            quick = c.responses.create(
                model=ANTHROPIC.variant("latency-600"), input="Be quick", background=True
            )
            deadline = time.monotonic() + 5
            while c.responses.retrieve(slow.id).status != "in_progress":
                assert time.monotonic() < deadline
                time.sleep(0.05)
        started = time.monotonic()
        first.stop()  # SIGTERM; waits for the process to exit
        assert time.monotonic() - started < 8, "shutdown is bounded by the grace period"
        second = Running(["serve", "--config", str(path)])
        try:
            with sdk(second.url) as c:
                interrupted = c.responses.retrieve(slow.id)
                assert interrupted.status == "incomplete", interrupted
                assert interrupted.incomplete_details.reason == "interrupted"
                finished = c.responses.retrieve(quick.id)
                assert finished.status == "completed" and finished.output_text, finished
        finally:
            second.stop()
    finally:
        mock.stop()
