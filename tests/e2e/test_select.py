"""`model: auto` through the official `openai` SDK: `plexus serve` picks among three simulator
models with different prices and latencies, as docs/selection.md documents.

mini: cheapest and fastest, quality 0.6; mid: 10x the price, +60 ms, quality 0.8; pro: 100x the
price, +150 ms, quality 0.9. With the default `cost_weight: 0.5`, balanced scores are
mini 0.6 - 0.5 * 0.01, mid 0.8 - 0.5 * 0.1, pro 0.9 - 0.5 * 1: mid.
"""

from __future__ import annotations

import json
import uuid

import openai
import pytest

from conftest import Running

MASTER_KEY = "sk-plexus-e2e-select"


def config(mock_url: str, database: str) -> dict:
    def model(name, quality, upstream, price):
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

    return {
        "listen": "127.0.0.1:0",
        "database": f"sqlite://{database}",
        "master_key": MASTER_KEY,
        "providers": [
            {"name": "oai", "kind": "openai", "base_url": f"{mock_url}/v1", "api_key": "upstream-key"}
        ],
        "models": [
            model("mini", 0.6, "sim-mini", 0.1),
            model("mid", 0.8, "sim-mid+latency-60", 1.0),
            model("pro", 0.9, "sim-pro+latency-150", 10.0),
            {"name": "auto", "select": {"candidates": ["mini", "mid", "pro"], "explore": 0}},
        ],
    }


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    mock = Running(["mock", "--listen", "127.0.0.1:0"])
    tmp = tmp_path_factory.mktemp("select")
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


def ask(client, text, **headers):
    raw = client.chat.completions.with_raw_response.create(
        model="auto",
        messages=[{"role": "user", "content": text}],
        extra_headers=headers or None,
    )
    completion = raw.parse()
    assert completion.choices[0].message.content
    return raw.headers["x-plexus-route"].split(";")[0], raw.headers["x-plexus-served-by"], raw


def test_auto_is_listed_and_balanced_by_default(client):
    assert "auto" in [m.id for m in client.models.list().data]
    chosen, served_by, raw = ask(client, f"What is a monad? {uuid.uuid4()}")
    assert chosen == "mid"
    assert served_by == "oai/sim-mid+latency-60"
    assert "best quality for cost" in raw.headers["x-plexus-route"]


@pytest.mark.parametrize(
    "headers, expected",
    [
        ({"x-plexus-objective": "quality"}, "pro"),
        ({"x-plexus-objective": "cost"}, "mini"),
        ({"x-plexus-cost-weight": "0"}, "pro"),
        ({"x-plexus-cost-weight": "50"}, "mini"),
    ],
)
def test_objectives_and_cost_weight(client, headers, expected):
    chosen, served_by, _ = ask(client, f"Explain quicksort. {uuid.uuid4()}", **headers)
    assert chosen == expected
    assert served_by.startswith(f"oai/sim-{expected}")


def test_latency_objective_prefers_the_fastest_once_measured(client):
    for name in ["mini", "mid", "pro"]:
        for _ in range(3):
            client.chat.completions.create(model=name, messages=[{"role": "user", "content": "warm"}])
    chosen, _, _ = ask(client, f"hello {uuid.uuid4()}", **{"x-plexus-objective": "latency"})
    assert chosen == "mini"


def test_a_bad_objective_is_a_400_naming_the_header(client):
    with pytest.raises(openai.BadRequestError) as e:
        ask(client, "hi", **{"x-plexus-objective": "fastest"})
    assert e.value.body["param"] == "x-plexus-objective"


def test_feedback_on_an_auto_request(client, gateway):
    _, _, raw = ask(client, f"Rate me {uuid.uuid4()}")
    request_id = raw.headers["x-plexus-request-id"]
    http = client._client  # the SDK's own httpx client
    resp = http.post(
        f"{gateway}/v1/feedback",
        json={"request_id": request_id, "score": "up", "comment": "good"},
        headers={"authorization": f"Bearer {MASTER_KEY}"},
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["model"] == "mid"
    assert resp.json()["score"] == 1.0
    entry = http.get(
        f"{gateway}/admin/requests/{request_id}", headers={"authorization": f"Bearer {MASTER_KEY}"}
    ).json()
    assert entry["route"]["chosen"] == "mid"
    assert entry["route"]["served"] == "mid"
