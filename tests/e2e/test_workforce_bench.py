"""The workforce bench at a tiny size, end to end on the real dev server (`bench/workforce.py`:
20 workers, 100 lifecycle changes entered in the HCM twin, read by the HCM poller and routed by
signal-with-start into one `WorkerLifecycle` run per worker, some delivered twice), through the
real Kantata and NetSuite adapters against the PSA and ERP twins (the bench's default): every
change routed once, every duplicate dropped, and no PSA or ERP write goes back to an older
change. Every worker's fields, leave calendar and ERP labor cost (same-day corrections included)
end at the last change's value, as the twins hold them. About 25 s."""

from __future__ import annotations

import pytest

from bench.workforce import main, parser

pytestmark = pytest.mark.e2e


@pytest.mark.timeout(180)
async def test_tiny_bench_applies_every_change_in_order() -> None:
    result = await main(
        parser().parse_args(["--workers", "20", "--changes", "100", "--naive-workers", "5"])
    )

    life = result["lifecycle"]
    assert result["systems"] == "twins"
    assert result["changes"] == life["poll"]["first"]["signalled"] == 100, life["poll"]
    assert life["poll"]["second"]["seen_before"] == 100, life["poll"]
    assert life["duplicates_dropped_by_runs"] == life["redelivered"] == 5, life
    assert life["out_of_order_writes"] == 0, life["examples"]
    assert life["final_leaves_wrong"] == 0, life["examples"]
    assert not life["wrong_by_field"], life["examples"]
    assert life["out_of_order_applications"] == 0, life["examples"]
    assert life["writes"]["erp_labor_cost_rows"] > 0 and life["vendor_calls"]["erp"] > 0, life
    assert result["naive"]["changes"] > 0
