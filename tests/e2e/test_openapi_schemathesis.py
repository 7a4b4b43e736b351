"""Schemathesis against `/openapi.json` of a running `plexus serve --demo`.

Every operation of the published spec is exercised with generated requests (the coverage and
fuzzing phases; a fixed seed and a bounded number of examples per operation, set in
`schemathesis.toml`), and the run must find nothing:

- no 5xx for any request (`not_a_server_error`);
- every response matches the spec: its status, content type, headers and body schema (also each
  event of a stream);
- every schema-valid request is accepted (`positive_data_acceptance`), and every schema-invalid
  one is rejected (`negative_data_rejection`): the spec says what the server enforces.

`schemathesis_hooks.py` points half of the chat, Anthropic Messages and embeddings cases at the
demo's models, and every schema-valid orchestration at the demo's simulator, so the pipeline runs
end to end; the test checks that it did.
"""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys
import urllib.request

import pytest

from demo import start_demo

HERE = pathlib.Path(__file__).resolve().parent


def schemathesis_command() -> list[str]:
    """The CLI installed beside this Python (the venv of scripts/test.sh)."""
    script = pathlib.Path(sys.executable).with_name("schemathesis")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "schemathesis.cli"]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    running = start_demo(tmp_path_factory.mktemp("schemathesis-demo"))
    yield running.url
    running.stop()


def served(base: str, endpoint: str, model: str | None) -> int:
    """How many requests of `model` (any, for None) the demo answered with 2xx (from `/metrics`)."""
    with urllib.request.urlopen(f"{base}/metrics", timeout=10) as r:
        text = r.read().decode()
    total = 0
    for line in text.splitlines():
        if (
            line.startswith("plexus_requests_total{")
            and f'endpoint="{endpoint}"' in line
            and (model is None or f'model="{model}"' in line)
            and 'status_class="2xx"' in line
        ):
            total += int(float(line.rsplit(" ", 1)[1]))
    return total


def test_the_server_does_what_its_openapi_spec_says(demo, tmp_path):
    env = {
        **os.environ,
        "SCHEMATHESIS_HOOKS": "schemathesis_hooks",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")])),
    }
    proc = subprocess.run(
        [
            *schemathesis_command(),
            "--config-file",
            str(HERE / "schemathesis.toml"),
            "--no-color",
            "run",
            f"{demo}/openapi.json",
        ],
        cwd=tmp_path,  # where Schemathesis keeps its caches
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-30000:]
    # Sanity: the run covered the spec and tested many cases.
    selected = re.search(r"Selected: (\d+)/(\d+)", output)
    assert selected and selected.group(1) == selected.group(2), output[-5000:]
    cases = re.search(r"(\d+) generated, (\d+) passed", output)
    assert cases and int(cases.group(1)) >= 1000 and cases.group(1) == cases.group(2), output[-5000:]
    # The hooks sent generated requests through the whole pipeline to the demo's models.
    assert served(demo, "chat", "demo") >= 10
    assert served(demo, "embeddings", "demo-embed") >= 10
    assert served(demo, "responses", "demo") >= 5
    # And ran orchestrations over the demo's quiz models (`POST /v1/orchestrations`).
    assert served(demo, "orchestration", None) >= 10
