"""Schemathesis hooks for `test_openapi_schemathesis.py` (loaded through `SCHEMATHESIS_HOOKS`).

A generated model name is almost never configured, so nearly every generated request would
stop at 404 `model_not_found` right after validation. Half of the schema-valid chat and
embeddings cases are pointed at a model the demo serves through the OpenAI wire format instead,
so that the whole pipeline runs, `positive_data_acceptance` means "served", and the real answers
are checked against the response schemas.

- The Anthropic Messages routes (`POST /v1/messages` and `/v1/messages/count_tokens`) are
  treated the same way, with the OpenAI-format `demo` model: their requests are translated onto
  the same pipeline, and the demo's simulator takes every canonical field the translation
  produces.
- The OpenAI Responses route (`POST /v1/responses`) is treated the same way, with `demo`. Its
  schema-valid bodies are adjusted for what the gateway documents but a JSON Schema cannot say:
  `previous_response_id` must name a stored response of the caller's (any other id is 404
  `param: previous_response_id`), which a generator cannot know, so it is dropped (the Rust and
  SDK tests continue real conversations); and `background: true` needs `store` and no `stream`
  (400 `param: store` / `param: stream` otherwise), so with `background: true` a `store: false`
  and a `stream: true` are dropped, and the background path (a `queued` response, checked
  against the response schema) stays in the run.
- The stored-response routes (`/v1/responses/{id}` and below) get random ids, which are 404, as
  documented, and ids of responses the run created. A schema-valid cancel
  (`POST /v1/responses/{id}/cancel`) is refused with 400 unless the response is a background run
  still going, a state no schema can express, so each one is pointed at a new, slow background
  run of the demo's simulator (`+latency-20000`) and cancels it for real (200, `cancelled`). A
  schema-valid `after` of `input_items` must be an item id of that list (400 `param: after`
  otherwise), which a generator cannot know either, so it is dropped.
- Schema-invalid (negative) cases keep their model. The gateway validates before it resolves
  the model, so they are still refused for what the gateway enforces; what it leaves to the
  upstream (an unknown `tool_choice` or `reasoning_effort` value, say) would reach the demo's
  simulator, which is lenient where OpenAI is not.
- `expires_at` of a new key or credential must lie in the future, which a JSON Schema cannot
  say. A schema-valid timestamp that has already passed is moved a year ahead (still within the
  schema's bounds), so `positive_data_acceptance` tests what the schema can express.
- `POST /v1/orchestrations` names models in its fields (`members`, `judge`, `aggregator`), so a
  generated name is refused with 400 `invalid_request`, which a schema-valid request must not be.
  Every schema-valid body with orchestration fields is therefore made runnable over the demo's
  simulator addressed directly (`demo-openai/quiz-...+acc-1`, models that answer arithmetic
  right): the names are replaced, `samples`, `rounds` and `quorum` are brought within what the
  members can give (a JSON Schema cannot relate fields), the judge or aggregator a strategy needs
  is named, `budget_usd` is dropped (the simulator's models have no price, so a budget is 400
  `price_unknown`), `timeout` becomes 30 s, a question the quiz models answer comes first, and
  `answer` kinds the answers cannot be read as (`choice`, `json`) become `number`. The rest of
  the generated request (its chat fields, the strategy) is sent as generated.
- The Anthropic and Gemini demo models are left out on purpose: those adapters refuse, with 400
  `unsupported_parameter`, OpenAI parameters their API cannot express (such as `n` > 1), so a
  schema-valid request is not always one they accept.
"""

import json
import math
import time
import urllib.request
import zlib

import schemathesis
from schemathesis.core.parameters import ParameterLocation
from schemathesis.generation.modes import GenerationMode

U32_MAX = 4294967295

# Operations whose body's `expires_at` must be in the future.
EXPIRING = {("POST", "/admin/keys"), ("POST", "/admin/credentials")}
YEAR_SECONDS = 365 * 24 * 3600

DEMO_MODELS = {
    "/v1/chat/completions": "demo",
    "/v1/embeddings": "demo-embed",
    # The Anthropic Messages API runs the same pipeline: its cases go to the OpenAI-format demo
    # model, which takes every canonical field the translation produces (documents as `file`
    # parts, say, which the Anthropic and Gemini adapters may refuse).
    "/v1/messages": "demo",
    "/v1/messages/count_tokens": "demo",
    # The OpenAI Responses API too (translated onto the same pipeline).
    "/v1/responses": "demo",
}

# Fields a schema-valid body cannot fill in right, because they name stored state (a response
# of the caller's): any other value is 404 by design, so a body that is to be served leaves them
# out.
UNKNOWABLE = {"/v1/responses": ("previous_response_id",)}
# The same for query parameters: `after` must be an item id of the listed response (else 400).
UNKNOWABLE_QUERY = {("GET", "/v1/responses/{id}/input_items"): ("after",)}
CANCEL = ("POST", "/v1/responses/{id}/cancel")
# A background run that is still going when its cancel arrives.
SLOW_MODEL = "demo-openai/gpt-4o-mini+latency-20000"


def _whole(value):
    """An integer as JSON Schema sees it (`2.0` included)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return isinstance(value, int) or (math.isfinite(value) and value.is_integer())


def _schema_valid_body(case):
    meta = case.meta
    if meta is None:
        return False
    body = meta.components.get(ParameterLocation.BODY)
    mode = body.mode if body is not None else meta.generation.mode
    return mode == GenerationMode.POSITIVE


def _mode_of(case, location):
    meta = case.meta
    if meta is None:
        return None
    component = meta.components.get(location)
    return component.mode if component is not None else meta.generation.mode


def _schema_valid_case(case):
    """Every part of the request (path, query, headers, body) generated schema-valid."""
    meta = case.meta
    if meta is None:
        return False
    modes = [c.mode for c in meta.components.values()] or [meta.generation.mode]
    return all(m == GenerationMode.POSITIVE for m in modes)


def _schema_valid_query(case):
    return _mode_of(case, ParameterLocation.QUERY) == GenerationMode.POSITIVE


def _picked(body):
    """Every other body, by a stable hash (the same cases on every run of a seed)."""
    text = json.dumps(body, sort_keys=True, default=str)
    return zlib.crc32(text.encode("utf-8", "surrogatepass")) % 2 == 0


QUIZ = [f"demo-openai/quiz-{c}+acc-1" for c in "abc"]
QUIZ_JUDGE = "demo-openai/quiz-j+acc-1"
QUESTION = {"role": "user", "content": "What is 1,234 + 5?"}


def _runnable_orchestration(body):
    """A schema-valid orchestration body, made runnable over the demo's quiz models."""
    if "strategy" not in body:
        return body  # a configured orchestration model by name: never one in the demo (404)
    out = dict(body)
    strategy = out["strategy"]
    count = min(max(len(out.get("members") or []), 2 if strategy == "refine" else 1), 3)
    out["members"] = [QUIZ[i % len(QUIZ)] for i in range(count)]
    if _whole(out.get("samples")):
        out["samples"] = min(int(out["samples"]), 3)
    if _whole(out.get("rounds")):
        out["rounds"] = min(int(out["rounds"]), 2)
    samples = int(out["samples"]) if _whole(out.get("samples")) else 1
    if _whole(out.get("quorum")):
        out["quorum"] = min(int(out["quorum"]), count * samples)
    if out.get("answer") in ("choice", "json"):
        out["answer"] = "number"
    text = out.get("answer") in (None, "text")
    if out.get("judge") is not None or strategy == "best_of_n" or (strategy == "vote" and text):
        out["judge"] = QUIZ_JUDGE
    if out.get("aggregator") is not None or strategy == "mixture":
        out["aggregator"] = QUIZ_JUDGE
    out.pop("budget_usd", None)
    if out.get("timeout") is not None:
        out["timeout"] = "30s"
    out["messages"] = [QUESTION, *(out.get("messages") or [])]
    return out


def _consistent_background(body):
    """A schema-valid `background: true` body made acceptable: it needs `store` and no `stream`."""
    if body.get("background") is not True:
        return body
    return {
        k: v
        for k, v in body.items()
        if not (k == "store" and v is False) and not (k == "stream" and v is True)
    }


def _running_background_response(base_url):
    """The id of a new background response of the demo that is still running (open mode: the
    same anonymous principal as the generated request)."""
    request = urllib.request.Request(
        f"{base_url.rstrip('/')}/v1/responses",
        data=json.dumps({"model": SLOW_MODEL, "input": "Wait.", "background": True}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as r:
        return json.loads(r.read())["id"]


@schemathesis.hook
def map_case(context, case):
    operation = context.operation
    route = (operation.method.upper(), operation.path) if operation is not None else None
    if route == CANCEL and _schema_valid_case(case):
        case.path_parameters = {
            **(case.path_parameters or {}),
            "id": _running_background_response(operation.base_url),
        }
        return case
    if route in UNKNOWABLE_QUERY and _schema_valid_query(case) and isinstance(case.query, dict):
        case.query = {k: v for k, v in case.query.items() if k not in UNKNOWABLE_QUERY[route]}
        return case
    model = DEMO_MODELS.get(operation.path) if operation is not None else None
    body = case.body
    if (
        operation is not None
        and (operation.method.upper(), operation.path) in EXPIRING
        and isinstance(body, dict)
        and _schema_valid_body(case)
        and _whole(body.get("expires_at"))
        and body["expires_at"] <= time.time() + 60
    ):
        case.body = {**body, "expires_at": int(time.time()) + YEAR_SECONDS}
        return case
    if (
        operation is not None
        and (operation.method.upper(), operation.path) == ("POST", "/v1/orchestrations")
        and isinstance(body, dict)
        and _schema_valid_body(case)
    ):
        case.body = _runnable_orchestration(body)
        return case
    if model is None or not isinstance(body, dict) or not _schema_valid_body(case):
        return case
    if operation.path in UNKNOWABLE:
        body = {k: v for k, v in body.items() if k not in UNKNOWABLE[operation.path]}
        body = _consistent_background(body)
        case.body = body
    if not _picked(body):
        return case
    demo = {**body, "model": model}
    # The simulator answers `dimensions` floats per input (up to 65,536 each), which a debug
    # build takes seconds to pass through for a long list of inputs; a smaller, still valid,
    # size keeps every case fast. (The bounds of `dimensions` are the gateway's own checks,
    # made before the model matters, so the other cases cover them.)
    if _whole(demo.get("dimensions")) and 256 < demo["dimensions"] <= U32_MAX:
        demo["dimensions"] = 256
    case.body = demo
    return case
