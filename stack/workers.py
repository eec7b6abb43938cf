"""`pssync worker --processes N`: a supervisor that runs N worker processes on the same task
queues, each its own `pssync worker` with its own metrics ports.

It is a supervisor, not a process manager: it restarts nothing. When one worker process exits
on its own (a crash, an OOM kill, someone's SIGKILL) it says so, stops the others gracefully
(SIGTERM by pid: activities in flight get `worker_shutdown_grace_s` to finish) and exits
non-zero, so the process manager above it (systemd, compose's `restart: unless-stopped`,
Kubernetes) restarts the whole group at full capacity. Nothing is lost meanwhile: Temporal
hands the dead process's tasks to the others after their timeouts. SIGINT or SIGTERM stops all
of them the same way and exits 0.

Each child i gets `worker_metrics_port + 2i` and `worker_app_metrics_port + 2i` (0 stays 0):
the defaults stay in pairs, 9464/9465, 9466/9467, ... Only child 0 runs the outbox relay when
events are enabled (one relay per store); the group stops with it, so there is never none.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import FrameType

PORT_STRIDE = 2
"""Ports a child moves up by: the SDK's and pssync's metrics ports sit side by side."""
WORKER_COMMAND = (sys.executable, "-m", "starter", "worker", "--processes", "1")


def _stderr(message: str) -> None:
    print(f"pssync worker supervisor: {message}", file=sys.stderr, flush=True)


def child_env(
    base: Mapping[str, str], index: int, *, metrics_port: int, app_metrics_port: int
) -> dict[str, str]:
    """The environment of worker process `index` (0-based): `base`, with its own metrics ports
    (`port + 2 * index`; 0, not served or OS-chosen, stays 0). Only process 0 may run the
    outbox relay (one relay per store, docs/events.md): the others get events off."""
    env = dict(base)
    if index > 0:
        env["PSSYNC_EVENTS__ENABLED"] = "false"
    env["PSSYNC_WORKER_METRICS_PORT"] = str(
        metrics_port + PORT_STRIDE * index if metrics_port else 0
    )
    env["PSSYNC_WORKER_APP_METRICS_PORT"] = str(
        app_metrics_port + PORT_STRIDE * index if app_metrics_port else 0
    )
    return env


@dataclass
class Supervisor:
    """N worker processes started together, watched, and stopped together by their pids."""

    processes: int
    metrics_port: int
    app_metrics_port: int
    grace_s: float = 30.0
    command: tuple[str, ...] = WORKER_COMMAND
    env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    say: Callable[[str], None] = field(default=lambda m: _stderr(m))
    children: list[subprocess.Popen[bytes]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> None:
        for i in range(self.processes):
            env = child_env(
                self.env,
                i,
                metrics_port=self.metrics_port,
                app_metrics_port=self.app_metrics_port,
            )
            proc = subprocess.Popen(list(self.command), env=env)
            self.children.append(proc)
            self.say(
                f"worker process {i} started (pid {proc.pid}, metrics "
                f"{env['PSSYNC_WORKER_METRICS_PORT']}/{env['PSSYNC_WORKER_APP_METRICS_PORT']})"
            )

    def request_stop(self, signum: int = signal.SIGTERM, _frame: FrameType | None = None) -> None:
        self._stop.set()

    def watch(self, every_s: float = 0.5) -> int:
        """Until a stop is asked for or a child exits; then stop the rest. 0 after a requested
        stop, 1 when a child exited on its own."""
        exited: tuple[int, subprocess.Popen[bytes]] | None = None
        while exited is None and not self._stop.wait(every_s):
            exited = next(
                ((i, p) for i, p in enumerate(self.children) if p.poll() is not None), None
            )
        if exited is not None:
            i, proc = exited
            alive = sum(1 for p in self.children if p.poll() is None)
            self.say(
                f"worker process {i} (pid {proc.pid}) exited with code {proc.returncode}; "
                f"stopping the other {alive} (nothing restarts here: restart the group)"
            )
        self.stop_all()
        return 0 if exited is None else 1

    def stop_all(self) -> None:
        """SIGTERM every live child by its pid, wait `grace_s` (+10 s), then SIGKILL."""
        for proc in self.children:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.children:
            try:
                proc.wait(self.grace_s + 10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


def supervise(processes: int, *, metrics_port: int, app_metrics_port: int, grace_s: float) -> int:
    """Run `processes` worker processes until SIGINT/SIGTERM or until one exits; the exit code
    (see `Supervisor.watch`)."""
    supervisor = Supervisor(
        processes, metrics_port=metrics_port, app_metrics_port=app_metrics_port, grace_s=grace_s
    )
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, supervisor.request_stop)
    try:
        supervisor.start()
        return supervisor.watch()
    finally:
        supervisor.stop_all()
