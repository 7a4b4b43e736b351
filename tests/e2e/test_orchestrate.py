"""Orchestration models through the official `openai` SDK, as docs/orchestration.md documents.

`plexus serve` over the simulator's `quiz` models, which answer "What is A + B?" right with the
probability in their name (`acc-1`: always, `acc-0`: never): two right members, a wrong one,
an always-right judge, and an orchestration model of every strategy over them. Each answers
"What is 1,234 + 5?" with 1239, whether asked through `chat.completions` (plain or streamed) or
`POST /v1/orchestrations`, and the stored evidence graph is readable at
`GET /v1/orchestrations/{id}`.
"""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from conftest import Running

MASTER_KEY = "sk-plexus-e2e-orchestrate"
QUESTION = "What is 1,234 + 5?"

# Orchestration model -> its strategy.
STRATEGIES = {
    "council": "vote",
    "cascade": "cascade",
    "mixture": "mixture",
    "debate": "debate",
    "refine": "refine",
    "best": "best_of_n",
}


def config(mock_url: str, database: str) -> dict:
    def model(name, upstream, price, quality=0.7):
        return {
            "name": name,
            "quality": quality,
            "targets": [
                {
                    "provider": "oai",
                    "model": upstream,
                    "price": {"input_per_mtok": price, "output_per_mtok": price * 4},
                }
            ],
        }

    def orchestration(name, **fields):
        return {"name": name, "orchestrate": fields}

    return {
        "listen": "127.0.0.1:0",
        "database": f"sqlite://{database}",
        "master_key": MASTER_KEY,
        "providers": [
            {"name": "oai", "kind": "openai", "base_url": f"{mock_url}/v1", "api_key": "upstream-key"}
        ],
        "models": [
            model("right-a", "quiz-a+acc-1", 1.0),
            model("right-b", "quiz-b+acc-1", 3.0),
            model("wrong", "quiz-w+acc-0", 0.1),
            model("broken", "quiz-x+fault-500", 1.0),
            model("judge", "quiz-j+acc-1", 3.0),
            orchestration("council", strategy="vote", members=["wrong", "right-a", "right-b"], answer="number"),
            orchestration(
                "cascade", strategy="cascade", members=["right-b", "wrong"], answer="number", judge="judge"
            ),
            orchestration(
                "mixture", strategy="mixture", members=["wrong", "right-a"], aggregator="judge", answer="number"
            ),
            orchestration(
                "debate",
                strategy="debate",
                members=["wrong", "right-a", "right-b"],
                judge="judge",
                answer="number",
                rounds=2,
            ),
            orchestration("refine", strategy="refine", members=["right-a", "judge"], answer="number"),
            orchestration("best", strategy="best_of_n", members=["wrong", "right-a"], judge="judge", answer="number"),
            orchestration(
                "council-failing",
                strategy="vote",
                members=["broken", "broken", "right-a"],
                answer="number",
                quorum=2,
            ),
        ],
    }


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    mock = Running(["mock", "--listen", "127.0.0.1:0"])
    tmp = tmp_path_factory.mktemp("orchestrate")
    path = tmp / "plexus.yaml"
    path.write_text(json.dumps(config(mock.url, str(tmp / "plexus.db"))))
    running = Running(["serve", "--config", str(path)])
    yield running.url
    running.stop()
    mock.stop()


@pytest.fixture(scope="module")
def client(gateway):
    with openai.OpenAI(base_url=f"{gateway}/v1", api_key=MASTER_KEY, max_retries=0, timeout=30) as sdk:
        yield sdk


@pytest.fixture(scope="module")
def http(gateway):
    with httpx.Client(
        base_url=gateway, headers={"authorization": f"Bearer {MASTER_KEY}"}, timeout=30
    ) as c:
        yield c


def ask():
    return [{"role": "user", "content": QUESTION}]


def has_1239(text: str) -> bool:
    return "1239" in text.replace(",", "")


def check_plexus(plexus: dict, strategy: str) -> None:
    assert plexus["strategy"] == strategy
    assert plexus["final_answer"] == "1239", plexus
    assert 0.0 <= plexus["confidence"] <= 1.0
    assert 0.0 <= plexus["agreement"] <= 1.0
    assert plexus["contributors"], plexus
    for c in plexus["contributors"]:
        assert c["model"] in {"right-a", "right-b", "wrong", "judge"}, c
        assert c["calls"] >= 1 and c["roles"], c
    assert plexus["cost_usd"] > 0


@pytest.mark.parametrize("model", list(STRATEGIES))
def test_every_strategy_answers_an_ordinary_chat_completion(client, model):
    raw = client.chat.completions.with_raw_response.create(model=model, messages=ask())
    completion = raw.parse()
    assert completion.object == "chat.completion"
    assert completion.model == model
    assert has_1239(completion.choices[0].message.content)
    plexus = completion.model_extra["plexus"]
    check_plexus(plexus, STRATEGIES[model])
    assert raw.headers["x-plexus-orchestration-id"] == plexus["orchestration_id"]
    assert abs(float(raw.headers["x-plexus-confidence"]) - plexus["confidence"]) < 1e-3
    assert completion.usage.total_tokens > 0


@pytest.mark.parametrize("model", ["council", "mixture"])
def test_a_stream_replays_the_final_answer_and_its_last_chunk_carries_plexus(client, model):
    raw = client.chat.completions.with_raw_response.create(model=model, messages=ask(), stream=True)
    assert raw.headers["x-plexus-orchestration-id"]
    assert raw.headers["x-plexus-confidence"]
    chunks = list(raw.parse())
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert has_1239(text), text
    finished = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finished, chunks
    plexus = finished[-1].model_extra["plexus"]
    check_plexus(plexus, STRATEGIES[model])
    assert plexus["orchestration_id"] == raw.headers["x-plexus-orchestration-id"]


@pytest.mark.parametrize("model", list(STRATEGIES))
def test_the_orchestrations_endpoint_answers_with_the_trace(http, model):
    resp = http.post("/v1/orchestrations", json={"model": model, "messages": ask()})
    assert resp.status_code == 200, resp.text
    o = resp.json()
    assert o["object"] == "orchestration"
    assert o["id"] == resp.headers["x-plexus-orchestration-id"]
    assert o["status"] == "completed"
    assert o["strategy"] == STRATEGIES[model]
    assert o["final_answer"] == "1239"
    assert has_1239(o["answer"]["choices"][0]["message"]["content"])
    assert o["answer"]["plexus"]["orchestration_id"] == o["id"]
    assert 0.0 <= o["confidence"] <= 1.0
    assert o["contributors"]
    calls = [n for n in o["graph"]["nodes"] if n["kind"] == "call"]
    assert calls and any(n["kind"] == "final" for n in o["graph"]["nodes"])
    assert o["usage"]["total_tokens"] == sum(n["prompt_tokens"] + n["completion_tokens"] for n in calls)
    assert o["cost_usd"] == pytest.approx(sum(n["cost_usd"] for n in calls), abs=1e-9)

    stored = http.get(f"/v1/orchestrations/{o['id']}")
    assert stored.status_code == 200, stored.text
    stored = stored.json()
    assert stored["final_answer"] == "1239"
    assert stored["graph"]["edges"] == o["graph"]["edges"]
    assert [n["id"] for n in stored["graph"]["nodes"]] == [n["id"] for n in o["graph"]["nodes"]]
    # The stored floats are re-parsed, so they may differ in the last bit.
    assert stored["confidence"] == pytest.approx(o["confidence"], rel=1e-12)


def test_per_request_parameters_through_the_sdk(client):
    """`client.post` with a body of its own: the chat request plus the `orchestrate` fields."""
    o = client.post(
        "/orchestrations",
        cast_to=object,
        body={
            "messages": ask(),
            "strategy": "vote",
            "members": ["right-a", "right-a", "wrong"],
            "samples": 2,
            "answer": "number",
        },
    )
    assert o["model"] == "orchestration"
    assert o["final_answer"] == "1239"
    edges = {e["kind"] for e in o["graph"]["edges"]}
    assert {"extracted", "voted_for", "selected"} <= edges, edges
    for field in ["id", "answer", "confidence", "contributors", "graph", "usage", "cost_usd"]:
        assert field in o, field

    with pytest.raises(openai.BadRequestError) as e:
        client.post(
            "/orchestrations",
            cast_to=object,
            body={"messages": ask(), "strategy": "best_of_n", "members": ["right-a"]},
        )
    assert e.value.body["param"] == "judge"


def test_a_missed_quorum_is_a_502_quorum_not_met(client, http):
    with pytest.raises(openai.APIStatusError) as e:
        client.chat.completions.create(model="council-failing", messages=ask())
    assert e.value.status_code == 502
    assert e.value.code == "quorum_not_met"
    # The failed orchestration's graph is stored.
    oid = e.value.response.headers["x-plexus-orchestration-id"]
    stored = http.get(f"/v1/orchestrations/{oid}").json()
    assert stored["status"] == "failed"
    assert stored["error"]["code"] == "quorum_not_met"
