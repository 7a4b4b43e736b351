"""`plexus serve --demo` for the tests that need only the built-in simulator: open mode (no
master key), SQLite in a temporary directory, a vault key, and nothing from the environment
that could add a real provider."""

from __future__ import annotations

import base64
import contextlib
import os
import secrets

from conftest import Running  # the existing process helper (tests/e2e/conftest.py)

# Provider keys the gateway would pick up from the environment (and then call the real
# provider), and settings that would change the demo's mode.
_SCRUBBED_SUFFIXES = ("_API_KEY",)
_SCRUBBED_PREFIXES = ("PLEXUS_", "AZURE_OPENAI_")
# Kept: which binary to run (read by conftest), and the log filter.
_KEPT = ("PLEXUS_BIN", "PLEXUS_LOG")


@contextlib.contextmanager
def _environment(**overrides: str):
    """`os.environ` without the scrubbed variables and with `overrides`, for the duration."""
    saved = dict(os.environ)
    try:
        for name in list(os.environ):
            scrubbed = name.endswith(_SCRUBBED_SUFFIXES) or name.startswith(_SCRUBBED_PREFIXES)
            if scrubbed and name not in _KEPT:
                del os.environ[name]
        os.environ.update(overrides)
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def start_demo(tmp_dir) -> Running:
    """Starts the demo gateway on a free port of 127.0.0.1; the caller stops it."""
    kek = base64.b64encode(secrets.token_bytes(32)).decode()
    with _environment(PLEXUS_ENCRYPTION_KEY=kek):
        return Running(
            [
                "serve",
                "--demo",
                "--listen",
                "127.0.0.1:0",
                "--database",
                f"sqlite://{tmp_dir}/plexus.db",
            ]
        )
