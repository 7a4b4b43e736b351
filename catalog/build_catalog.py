#!/usr/bin/env python3
"""Build ``catalog/models.json``, the Plexus model catalog, from litellm's price file.

The source is ``litellm/model_prices_and_context_window_backup.json`` as shipped in
the MIT-licensed ``litellm`` wheel on PyPI. This script keeps only the *current*
chat and embedding models of the providers Plexus speaks to, renames the litellm
provider ids to Plexus provider kinds, strips litellm's ``provider/`` routing
prefixes so that ``model`` is the name sent to the upstream API, and keeps only the
fields the gateway uses (prices, context limits, capability flags).

Usage (standard library only, Python >= 3.8):

    pip download --no-deps litellm -d /tmp/litellm
    python3 catalog/build_catalog.py /tmp/litellm/litellm-*.whl

The wheel gives the litellm version (``*.dist-info/METADATA``) and the build date
(the timestamp of the wheel's SBOM). A bare JSON file may be given instead, with
``--version`` and ``--date``:

    python3 catalog/build_catalog.py model_prices_and_context_window_backup.json \\
        --version 1.110.2 --date 2026-11-20

Selection rules, in order (see ``keep``):

* only the providers in ``PROVIDERS``; only ``mode`` chat or embedding
  (``responses``-only, audio, image, realtime, rerank... are dropped);
* entries without an input or output price are dropped;
* entries whose ``deprecation_date`` is before the catalog date are dropped;
* fine-tunes (``ft:``), audio/tts/realtime/image/search-preview/computer-use/robotics
  variants, guard models and litellm's pricing buckets are dropped (``DROP_PATTERNS``),
  as are the explicitly legacy names in ``LEGACY``;
* for the large aggregators (together, fireworks, ollama) an allow rule or list
  keeps the catalogue small;
* a dated snapshot (``gpt-4o-2024-08-06``) is dropped when its undated alias exists
  with identical prices and limits: the gateway's lookup strips date suffixes.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import zipfile
from pathlib import Path

PRICE_FILE = "litellm/model_prices_and_context_window_backup.json"

# litellm provider id -> Plexus provider kind.
PROVIDERS = {
    "openai": "openai",
    "anthropic": "anthropic",
    "gemini": "gemini",
    "mistral": "mistral",
    "groq": "groq",
    "deepseek": "deepseek",
    "xai": "xai",
    "together_ai": "together",
    "fireworks_ai": "fireworks",
    "openrouter": "openrouter",
    "ollama": "ollama",
}

# litellm routing prefixes that are not part of the upstream model name.
PREFIXES = (
    "gemini/",
    "mistral/",
    "groq/",
    "deepseek/",
    "xai/",
    "together_ai/",
    "fireworks_ai/",
    "openrouter/",
    "ollama/",
)

DROP_PATTERNS = [
    re.compile(p)
    for p in (
        r"^ft:",
        r"audio",
        r"realtime",
        r"tts",
        r"transcribe",
        r"voxtral",
        r"image",
        r"search-preview",
        r"computer-use",
        r"robotics",
        r"lyria",
        r"deep-research",
        r"customtools",
        r"guard",
        r"-fim-",
        r"^together-ai-",  # litellm's size-bucket prices, not models
        r"experimental",
        r"-gv2$",
        r"-beta",
        r"^labs-",
        r"vibe-cli",
        r"-spot$",
        r"-ultrafast$",
        r"-us$",  # regional duplicates
        r"^gemini-exp-",
        r"^learnlm-",
        r"^gemini-gemma-2-",
    )
]

# Names the upstream API no longer serves or that litellm keeps only as aliases.
LEGACY = {
    ("mistral", "mistral-tiny"),
    ("mistral", "mistral-small"),
    ("mistral", "codestral-mamba-latest"),
    ("mistral", "mistral-embed-2312"),
    ("deepseek", "deepseek-coder"),
    ("deepseek", "deepseek-r1"),
    ("deepseek", "deepseek-v3"),
    ("deepseek", "deepseek-v3.2"),
    ("openai", "text-embedding-ada-002-v2"),
    ("together", "Qwen/Qwen2-1.5B-Instruct"),
    ("together", "arize-ai/qwen-2-1.5b-instruct"),
    ("together", "deepseek-ai/DeepSeek-V3"),
    ("fireworks", "accounts/fireworks/models/firefunction-v2"),
    ("fireworks", "accounts/fireworks/models/mixtral-8x22b-instruct-hf"),
}

# Fireworks lists hundreds of models: keep the ones litellm marks as tool-capable
# (its recently curated entries) plus these.
FIREWORKS_EXTRA = {
    "accounts/fireworks/models/llama-v3p3-70b-instruct",
    "accounts/fireworks/models/qwen3-235b-a22b-instruct-2507",
    "accounts/fireworks/models/qwen3-coder-480b-a35b-instruct",
    "accounts/fireworks/models/deepseek-r1-0528",
    "accounts/fireworks/models/qwen3-embedding-8b",
}

# Ollama: a handful of common tags (all free).
OLLAMA_KEEP = {
    "llama3.1",
    "llama3",
    "gpt-oss:20b-cloud",
    "gpt-oss:120b-cloud",
    "deepseek-v3.1:671b-cloud",
    "qwen3-coder:480b-cloud",
}

DATE_SUFFIX = re.compile(r"-(\d{4}-\d{2}-\d{2}|\d{8})$")

OPTIONAL_COSTS = (
    "cache_read_input_token_cost",
    "cache_creation_input_token_cost",
    "output_cost_per_reasoning_token",
)


def upstream_name(key: str) -> str:
    for prefix in PREFIXES:
        if key.startswith(prefix):
            return key[len(prefix) :]
    return key


def keep(kind: str, model: str, spec: dict, date: str) -> bool:
    if spec.get("mode") not in ("chat", "embedding"):
        return False
    if spec.get("input_cost_per_token") is None or (
        spec.get("mode") == "chat" and spec.get("output_cost_per_token") is None
    ):
        return False
    deprecation = spec.get("deprecation_date")
    if isinstance(deprecation, str) and re.match(r"^\d{4}-\d{2}-\d{2}$", deprecation):
        if deprecation < date:
            return False
    if any(p.search(model) for p in DROP_PATTERNS):
        return False
    if (kind, model) in LEGACY:
        return False
    if kind == "fireworks":
        if not model.startswith("accounts/fireworks/"):
            return False  # litellm short aliases; the API wants the full path
        return spec.get("supports_function_calling") is True or model in FIREWORKS_EXTRA
    if kind == "ollama":
        return model in OLLAMA_KEEP
    return True


def as_int(value):
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def convert(kind: str, model: str, spec: dict) -> dict:
    entry = {
        "provider": kind,
        "model": model,
        "mode": spec["mode"],
        "input_cost_per_token": float(spec.get("input_cost_per_token") or 0.0),
        "output_cost_per_token": float(spec.get("output_cost_per_token") or 0.0),
    }
    for field in OPTIONAL_COSTS:
        value = spec.get(field)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            entry[field] = float(value)
    for field in ("max_input_tokens", "max_output_tokens"):
        value = as_int(spec.get(field))
        if value is not None:
            entry[field] = value
    caching = spec.get("supports_prompt_caching")
    if caching is None:
        caching = "cache_read_input_token_cost" in entry
    entry.update(
        {
            "supports_tools": spec.get("supports_function_calling") is True,
            "supports_vision": spec.get("supports_vision") is True,
            "supports_response_schema": spec.get("supports_response_schema") is True,
            "supports_reasoning": spec.get("supports_reasoning") is True,
            "supports_prompt_caching": caching is True,
        }
    )
    return entry


def same_terms(a: dict, b: dict) -> bool:
    ignore = {"model"}
    return {k: v for k, v in a.items() if k not in ignore} == {
        k: v for k, v in b.items() if k not in ignore
    }


def build(prices: dict, version: str, date: str) -> dict:
    selected: dict[tuple[str, str], dict] = {}
    prefixed: set[tuple[str, str]] = set()
    for key, spec in prices.items():
        if not isinstance(spec, dict):
            continue
        kind = PROVIDERS.get(spec.get("litellm_provider"))
        if kind is None:
            continue
        model = upstream_name(key)
        if not keep(kind, model, spec, date):
            continue
        ident = (kind, model)
        has_prefix = model != key
        # litellm sometimes lists a model both with and without its routing prefix;
        # the prefixed (provider-specific) entry wins.
        if ident in selected and (ident in prefixed or not has_prefix):
            continue
        selected[ident] = convert(kind, model, spec)
        if has_prefix:
            prefixed.add(ident)

    # Drop dated snapshots that duplicate their undated alias.
    for kind, model in list(selected):
        base = DATE_SUFFIX.sub("", model)
        if base != model and (kind, base) in selected:
            if same_terms(selected[(kind, model)], selected[(kind, base)]):
                del selected[(kind, model)]

    order = list(PROVIDERS.values())
    models = sorted(
        selected.values(),
        key=lambda e: (order.index(e["provider"]), e["mode"], e["model"]),
    )
    return {
        "source": f"litellm {version} model_prices_and_context_window_backup.json (MIT)",
        "generated": date,
        "models": models,
    }


def render(catalog: dict) -> str:
    """Compact JSON, one model per line so that diffs stay readable."""

    def dump(value) -> str:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)

    lines = [
        "{",
        f'"source":{dump(catalog["source"])},',
        f'"generated":{dump(catalog["generated"])},',
        '"models":[',
    ]
    models = catalog["models"]
    for i, entry in enumerate(models):
        lines.append(dump(entry) + ("," if i + 1 < len(models) else ""))
    lines.append("]")
    lines.append("}")
    return "\n".join(lines) + "\n"


def read_wheel(path: Path) -> tuple[dict, str | None, str | None]:
    with zipfile.ZipFile(path) as wheel:
        prices = json.loads(wheel.read(PRICE_FILE))
        version = None
        date = None
        for name in wheel.namelist():
            if name.endswith(".dist-info/METADATA"):
                for line in wheel.read(name).decode("utf-8").splitlines():
                    if line.startswith("Version:"):
                        version = line.split(":", 1)[1].strip()
                        break
            elif "/sboms/" in name and name.endswith(".json"):
                sbom = json.loads(wheel.read(name))
                stamp = sbom.get("metadata", {}).get("timestamp")
                if isinstance(stamp, str) and len(stamp) >= 10:
                    date = stamp[:10]
    return prices, version, date


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("source", type=Path, help="litellm wheel (.whl) or the price JSON file")
    parser.add_argument("--version", help="litellm version (read from the wheel if omitted)")
    parser.add_argument("--date", help="YYYY-MM-DD of the price file (read from the wheel if omitted)")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(__file__).resolve().parent / "models.json",
        help="output path (default: catalog/models.json next to this script)",
    )
    args = parser.parse_args()

    if args.source.suffix == ".whl":
        prices, version, date = read_wheel(args.source)
    else:
        prices, version, date = json.loads(args.source.read_text(encoding="utf-8")), None, None
    version = args.version or version
    date = args.date or date
    if not version or not date:
        parser.error("could not determine --version and --date; pass them explicitly")
    if not re.match(r"^\d{4}-\d{2}-\d{2}$", date):
        parser.error("--date must be YYYY-MM-DD")

    catalog = build(prices, version, date)
    text = render(catalog)
    args.out.write_text(text, encoding="utf-8")
    counts: dict[str, int] = {}
    for entry in catalog["models"]:
        counts[entry["provider"]] = counts.get(entry["provider"], 0) + 1
    print(
        f"wrote {args.out}: {len(catalog['models'])} models, {len(text.encode('utf-8'))} bytes; "
        + ", ".join(f"{k}={v}" for k, v in counts.items()),
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
