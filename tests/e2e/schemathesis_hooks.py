"""Schemathesis hooks for `test_openapi_schemathesis.py` (loaded through `SCHEMATHESIS_HOOKS`).

A generated model name is almost never configured, so nearly every generated request would
stop at 404 `model_not_found` right after validation. Half of the schema-valid chat and
embeddings cases are pointed at a model the demo serves through the OpenAI wire format instead,
so that the whole pipeline runs, `positive_data_acceptance` means "served", and the real answers
are checked against the response schemas.

- Schema-invalid (negative) cases keep their model. The gateway validates before it resolves
  the model, so they are still refused for what the gateway enforces; what it leaves to the
  upstream (an unknown `tool_choice` or `reasoning_effort` value, say) would reach the demo's
  simulator, which is lenient where OpenAI is not.
- `expires_at` of a new key or credential must lie in the future, which a JSON Schema cannot
  say. A schema-valid timestamp that has already passed is moved a year ahead (still within the
  schema's bounds), so `positive_data_acceptance` tests what the schema can express.
- The Anthropic and Gemini demo models are left out on purpose: those adapters refuse, with 400
  `unsupported_parameter`, OpenAI parameters their API cannot express (such as `n` > 1), so a
  schema-valid request is not always one they accept.
"""

import json
import math
import time
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
}


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


def _picked(body):
    """Every other body, by a stable hash (the same cases on every run of a seed)."""
    text = json.dumps(body, sort_keys=True, default=str)
    return zlib.crc32(text.encode("utf-8", "surrogatepass")) % 2 == 0


@schemathesis.hook
def map_case(context, case):
    operation = context.operation
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
    if model is None or not isinstance(body, dict) or not _schema_valid_body(case):
        return case
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
