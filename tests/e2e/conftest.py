"""Shared fixtures: start the plexus binary (`$PLEXUS_BIN`) and hand tests its base URL."""

import os
import pathlib
import subprocess
import threading

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]


def plexus_bin() -> str:
    """`$PLEXUS_BIN`, else the debug build in the repository."""
    path = os.environ.get("PLEXUS_BIN") or str(REPO / "target" / "debug" / "plexus")
    if not os.access(path, os.X_OK):
        pytest.skip(f"no plexus binary at {path} (set PLEXUS_BIN)")
    return path


class Running:
    """A started plexus process whose first stdout line is `... listening on <url>`."""

    def __init__(self, args, timeout=30.0):
        self.proc = subprocess.Popen(
            [plexus_bin(), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        line = self._first_line(timeout)
        if " listening on " not in line:
            self.stop()
            err = self.proc.stderr.read() if self.proc.stderr else ""
            raise RuntimeError(f"plexus {' '.join(args)} did not start: {line!r} {err}")
        self.first_line = line.rstrip("\n")
        self.url = self.first_line.rsplit(" ", 1)[-1]
        # Keep draining the pipes so that a chatty process never blocks on a full pipe.
        for stream in (self.proc.stdout, self.proc.stderr):
            threading.Thread(target=stream.read, daemon=True).start()

    def _first_line(self, timeout):
        result = []
        reader = threading.Thread(target=lambda: result.append(self.proc.stdout.readline()), daemon=True)
        reader.start()
        reader.join(timeout)
        if not result:
            self.stop()
            raise RuntimeError("plexus printed nothing before the timeout")
        return result[0]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture(scope="session")
def start_plexus():
    """Starts `plexus ARGS...`; every process started is stopped at the end of the session."""
    started = []

    def start(*args):
        running = Running(list(args))
        started.append(running)
        return running

    yield start
    for running in started:
        running.stop()


@pytest.fixture(scope="session")
def mock_server(start_plexus):
    """`plexus mock` on a free port."""
    return start_plexus("mock", "--listen", "127.0.0.1:0")


@pytest.fixture(scope="session")
def mock_url(mock_server):
    return mock_server.url
