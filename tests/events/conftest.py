"""A nats-server with JetStream each test starts itself (OS-chosen port, store in tmp), and a
SQLite store. The broker is stopped by its pid at the end, also when the test fails."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from store import Store, make_engine, upgrade

NATS_SERVER = shutil.which("nats-server") or "/usr/sbin/nats-server"
_LISTENING = re.compile(rb"Listening for client connections on [^:]+:(\d+)")


class Broker:
    """One nats-server process; `kill()` is an outage (SIGKILL), `start()` brings it back on
    the same port and store directory."""

    def __init__(self, store_dir: Path) -> None:
        self.store_dir = store_dir
        self.port = -1
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                NATS_SERVER,
                "-a",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-js",
                "-sd",
                str(self.store_dir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        assert self.proc.stderr is not None
        for line in iter(self.proc.stderr.readline, b""):  # the log, until the server is ready
            found = _LISTENING.search(line)
            if found:
                self.port = int(found.group(1))
            if b"Server is ready" in line:
                return
        raise RuntimeError(f"nats-server exited with {self.proc.wait()}")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.proc = None


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    if not Path(NATS_SERVER).exists():
        pytest.skip("nats-server is not installed")
    running = Broker(tmp_path / "jetstream")
    running.start()
    try:
        yield running
    finally:
        running.kill()


@pytest.fixture
def store(tmp_path: Path) -> Store:
    url = f"sqlite:///{tmp_path / 'pssync.db'}"
    upgrade(url)
    return Store(make_engine(url))
