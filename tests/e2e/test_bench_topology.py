"""The opportunity-to-project and time-to-invoice benches at tiny sizes in their default
topology, end to end on the real dev server: the pssync worker (`pssync worker`), the floor's
worker and the gateway (`pssync gateway`, the twins' webhooks pointed at it) each in its own
process, every one of them stopped by its id at the end. The time-to-invoice run keeps the
latency phase (approvals arrive as the PSA twin's webhooks, through the gateway process) and
the quota phase (the worker process restarted with the quota settings). About 60 s."""

from __future__ import annotations

import pytest

from bench import opportunity_to_project as o2p
from bench import time_to_invoice as tti
from bench._harness import process_cpu

pytestmark = pytest.mark.e2e

CHILDREN = {"gateway_process", "floor_worker", "worker_process", "twins"}


@pytest.mark.timeout(240)
async def test_opportunity_to_project_runs_saga_and_floor_with_workers_in_their_processes() -> None:
    result = await o2p.run(
        o2p.parse_args(["--deals", "4", "--concurrency", "2", "--warmup", "1", "--rounds", "1"])
    )

    assert (result["deals"], result["deals_failed"]) == (4, 0), result["errors"]
    assert (result["floor_runs"], result["floor_failed"]) == (4, 0), result["errors"]
    assert result["activities_per_deal"] == sum(result["activity_shape"]) > 0
    assert result["ratio_p50"] > 0
    config = result["config"]
    assert config["worker"] == "own process (pssync worker)"
    assert config["floor_worker"] == "own process (--serve-floor-worker)"
    assert config["gateway"].startswith("own process (pssync gateway")
    assert result["twins_during_saga_phases"]["crm_webhooks"]["undelivered"] == 0
    assert not CHILDREN & process_cpu().keys()  # every child stopped


@pytest.mark.timeout(300)
async def test_time_to_invoice_latency_and_quota_through_gateway_and_worker_processes() -> None:
    args = tti.parse_args(
        [
            *("--phases", "latency,quota", "--projects", "1", "--quota-projects", "1"),
            *("--workers", "4", "--warmup", "2", "--latency-rps", "20", "--latency-s", "1"),
            *("--quota-rps", "5", "--quota-warm-s", "0.5", "--quota-window-s", "1"),
            *("--quota-entries", "20"),
        ]
    )
    result = await tti.run(args)

    assert result["errors"] == {}, result["errors"]
    config = result["config"]
    assert config["worker"] == "own process (pssync worker)"
    assert config["gateway"].startswith("own process (pssync gateway")
    latency = result["latency"]
    assert latency["entries"] == latency["posted"] == 20, latency
    webhooks = latency["webhooks"]
    assert {k: webhooks[k] for k in ("sent", "retried", "undelivered")} == {
        "sent": 20,
        "retried": 0,
        "undelivered": 0,
    }
    # the gateway process answered each of them (its own histogram, scraped from /metrics)
    assert webhooks["in_gateway"]["count"] == 20, webhooks
    assert webhooks["in_gateway"]["share_within_s"]["10.0"] == 1.0, webhooks
    assert latency["cpu"]["gateway_process"]["cpu_s"] > 0, latency["cpu"]
    # what an approval cost the whole stack, and whether 20/s fits this machine
    budget = latency["cpu_per_approval"]
    assert budget["ms_per_unit"].keys() == latency["cpu"].keys(), budget
    assert budget["ms_per_unit_total"] > 0 and budget["cores_needed"] > 0, budget
    assert result["latency_cores_needed"] == budget["cores_needed"]
    assert result["targets"]["latency_p95_s"] == 1.5
    quota = result["quota"]
    assert quota["entries_posted"] == 20 and quota["entries_failed"] == 0, quota
    assert quota["exception_items"] == 0, quota
    assert not CHILDREN & process_cpu().keys()  # every child stopped
