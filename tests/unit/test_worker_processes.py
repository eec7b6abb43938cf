"""`pssync worker --processes N`: the argument, each child's metrics ports, and what the
supervisor does when a child dies or a stop is asked for (children here are tiny Python
processes; tests/e2e/test_scale_out.py runs real worker processes)."""

from __future__ import annotations

import signal
import sys
from typing import Any

import pytest
from typer.testing import CliRunner

import starter
from stack import workers
from stack.workers import Supervisor, child_env

runner = CliRunner()


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """What `pssync worker` ran: worker.main (one process) or the supervisor (several)."""
    import worker

    seen: dict[str, Any] = {}
    monkeypatch.setenv("PSSYNC_WORKER_METRICS_PORT", "9500")
    monkeypatch.setenv("PSSYNC_WORKER_APP_METRICS_PORT", "9501")
    monkeypatch.setattr(worker, "main", lambda: seen.setdefault("main", True))

    def supervise(processes: int, **ports: Any) -> int:
        seen["supervise"] = (processes, ports)
        return 1

    monkeypatch.setattr(workers, "supervise", supervise)
    return seen


def test_one_process_by_default_runs_the_worker_itself(calls: dict[str, Any]) -> None:
    result = runner.invoke(starter.app, ["worker"])
    assert result.exit_code == 0, result.output
    assert calls == {"main": True}


def test_several_processes_go_to_the_supervisor_with_the_configured_ports(
    calls: dict[str, Any],
) -> None:
    result = runner.invoke(starter.app, ["worker", "--processes", "3"])
    assert result.exit_code == 1  # the supervisor's code is the command's
    processes, options = calls["supervise"]
    assert processes == 3
    assert (options["metrics_port"], options["app_metrics_port"]) == (9500, 9501)
    assert "main" not in calls


@pytest.mark.parametrize("bad", ["0", "-1", "two"])
def test_a_count_below_one_is_refused(calls: dict[str, Any], bad: str) -> None:
    result = runner.invoke(starter.app, ["worker", "--processes", bad])
    assert result.exit_code == 2
    assert calls == {}


def test_each_child_gets_its_own_pair_of_metrics_ports() -> None:
    base = {"PATH": "/bin", "PSSYNC_HOME": "/srv/pssync"}
    ports = [child_env(base, i, metrics_port=9464, app_metrics_port=9465) for i in range(3)]
    pairs = [(e["PSSYNC_WORKER_METRICS_PORT"], e["PSSYNC_WORKER_APP_METRICS_PORT"]) for e in ports]
    assert pairs == [("9464", "9465"), ("9466", "9467"), ("9468", "9469")]
    every = [p for pair in pairs for p in pair]
    assert len(set(every)) == len(every)
    assert all(e["PATH"] == "/bin" and e["PSSYNC_HOME"] == "/srv/pssync" for e in ports)


def test_only_the_first_child_relays_the_outbox() -> None:
    base = {"PSSYNC_EVENTS__ENABLED": "true"}
    relays = [
        child_env(base, i, metrics_port=0, app_metrics_port=0)["PSSYNC_EVENTS__ENABLED"]
        for i in range(3)
    ]
    assert relays == ["true", "false", "false"]


def test_ports_that_are_off_stay_off() -> None:
    env = child_env({}, 2, metrics_port=0, app_metrics_port=0)
    assert (env["PSSYNC_WORKER_METRICS_PORT"], env["PSSYNC_WORKER_APP_METRICS_PORT"]) == ("0", "0")


# --------------------------------------------------------------------------- the supervisor

WAIT_FOR_TERM = (
    "import signal, sys, threading\n"
    "done = threading.Event()\n"
    "signal.signal(signal.SIGTERM, lambda *_: done.set())\n"
    "done.wait(120)\n"
    "sys.exit(0 if done.is_set() else 9)\n"
)


def supervisor(processes: int, messages: list[str]) -> Supervisor:
    return Supervisor(
        processes,
        metrics_port=0,
        app_metrics_port=0,
        grace_s=5,
        command=(sys.executable, "-c", WAIT_FOR_TERM),
        say=messages.append,
    )


def test_when_one_child_dies_the_others_are_stopped_and_the_code_says_so() -> None:
    messages: list[str] = []
    sup = supervisor(3, messages)
    sup.start()
    try:
        sup.children[1].send_signal(signal.SIGKILL)
        code = sup.watch(every_s=0.05)
    finally:
        sup.stop_all()
    assert code == 1
    stopped = (0, -signal.SIGTERM)  # by its handler, or before it had one
    codes = [p.returncode for p in sup.children]
    assert codes[1] == -signal.SIGKILL and codes[0] in stopped and codes[2] in stopped, codes
    assert any("worker process 1" in m and "stopping the other 2" in m for m in messages)


def test_a_requested_stop_stops_every_child_and_exits_0() -> None:
    messages: list[str] = []
    sup = supervisor(2, messages)
    sup.start()
    sup.request_stop()  # what SIGINT / SIGTERM do
    try:
        code = sup.watch(every_s=0.05)
    finally:
        sup.stop_all()
    assert code == 0
    assert all(p.returncode in (0, -signal.SIGTERM) for p in sup.children)
    assert len({p.pid for p in sup.children}) == 2
