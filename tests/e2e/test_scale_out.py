"""Scale-out on PostgreSQL, end to end on the real dev server: 2 `pssync worker` processes and 2
`pssync gateway` processes (behind a round-robin balancer on loopback) share one PostgreSQL
store. Won deals, approved time entries and a change order flow through them, while one worker
process is SIGKILLed and one gateway stopped in the middle: the twins hold exactly one PSA
workspace and one ERP job per deal, one timebill per entry, the change order applied once
(`bench/scale_out.py` at its `--quick` size, chaos on).

And `pssync worker --processes 2`: both processes poll the task queue; when one dies, the
supervisor stops the other and exits 1.

Needs PSSYNC_TEST_DATABASE_URL (skipped without it).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.client import Client

from bench._harness.processes import pollers
from bench.scale_out import PG_ENV, QUICK, pg_schema, run_configuration
from contracts.naming import TASK_QUEUE
from contracts.settings import load_settings
from stack import running_stack
from stack.processes import process_env

WORKFLOW_TASKS = TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW

ADMIN_URL = os.environ.get(PG_ENV)
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.postgres,
    pytest.mark.skipif(
        not ADMIN_URL, reason=f"{PG_ENV} is not set: the scale-out needs PostgreSQL"
    ),
]


@pytest.mark.timeout(600)
async def test_two_workers_and_two_gateways_lose_and_duplicate_nothing_through_a_kill(
    tmp_path: Path,
) -> None:
    assert ADMIN_URL is not None
    report = await run_configuration(
        ADMIN_URL, tmp_path / ".pssync", workers=2, gateways=2, chaos=True, **QUICK
    )

    assert report["chaos_events"] and report["alive_at_end"] == {"workers": 1, "gateways": 1}
    assert (report["deals"], report["entries"]) == (QUICK["deals"], QUICK["entries"])
    assert report["lost_by_kind"] == dict.fromkeys(report["lost_by_kind"], 0), report
    assert report["duplicates_by_kind"] == dict.fromkeys(report["duplicates_by_kind"], 0), report
    assert report["change_order"]["applied"] == 1, report["change_order"]
    assert all(code == 200 for code in report["change_order"]["codes"])
    # Both gateways took webhooks before one was stopped; the other took the rest.
    assert len(report["balancer"]["forwarded"]) == 2, report["balancer"]


@pytest.mark.timeout(300)
async def test_worker_processes_all_poll_and_a_death_stops_the_group(tmp_path: Path) -> None:
    assert ADMIN_URL is not None
    with pg_schema(ADMIN_URL) as database_url:
        settings = load_settings(home=tmp_path / ".pssync", database_url=database_url)
        async with running_stack(settings, ephemeral_ports=True, run_worker=False) as stack:
            env = process_env(
                stack.settings,
                {"PSSYNC_WORKER_METRICS_PORT": "0", "PSSYNC_WORKER_APP_METRICS_PORT": "0"},
            )
            with (tmp_path / "supervisor.log").open("ab") as out:
                supervisor = subprocess.Popen(  # noqa: ASYNC220  (returns at once)
                    [sys.executable, "-m", "starter", "worker", "--processes", "2"],
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            try:
                children = await _children_polling(stack.client, supervisor, 2)
                os.kill(children[0], signal.SIGKILL)
                code = await asyncio.to_thread(supervisor.wait, 120)
            finally:
                if supervisor.poll() is None:
                    supervisor.terminate()
                    supervisor.wait(60)
            log = (tmp_path / "supervisor.log").read_text()
            assert code == 1, log
            assert f"pid {children[0]}) exited with code -9" in log
            assert all(_gone(pid) for pid in children)  # the other one stopped too


async def _children_polling(
    client: Client, supervisor: subprocess.Popen[bytes], n: int
) -> list[int]:
    """The supervisor's `n` worker processes, once each of them polls the task queue (their
    identities are `pid@host`)."""
    deadline = asyncio.get_running_loop().time() + 120
    while True:
        assert supervisor.poll() is None, "the supervisor exited"
        identities = await pollers(client, TASK_QUEUE, WORKFLOW_TASKS)
        pids = sorted({int(i.split("@", 1)[0]) for i in identities if i.split("@", 1)[0].isdigit()})
        kids = _children_of(supervisor.pid)
        if len(kids) == n and set(kids) <= set(pids):
            return kids
        assert asyncio.get_running_loop().time() < deadline, (identities, kids)
        await asyncio.sleep(0.5)


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def _children_of(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return sorted(int(p) for p in path.read_text().split()) if path.exists() else []
