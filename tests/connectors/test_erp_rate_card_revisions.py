"""Rate card revisions in the ERP: `NetSuiteErp` over HTTP against the twin's custom record
type `customrecord_pssync_rate_card_revision`, and the in-memory `FakeErp`, run the same
scenario: upserted by the revision's key (a repeat writes nothing), a decision rewrites the
one record, and a card's revisions come back in effective order with their rates."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import date
from decimal import Decimal

import pytest

from connectors.erp import FakeErp, NetSuiteErp
from connectors.erp.rate_card_port import ErpRateCardsPort
from contracts.money import Money
from contracts.v1.rate_cards import ErpRateCardRevision, RevisionStatus, RoleRate
from tests.connectors.test_erp import settings
from tests.twins._erp_fixtures import ErpTwin, erp_twin


@pytest.fixture(params=["twin", "fake"])
async def port(
    request: pytest.FixtureRequest,
) -> AsyncIterator[tuple[ErpRateCardsPort, ErpTwin | None]]:
    if request.param == "fake":
        yield FakeErp(), None
        return
    async with erp_twin() as twin:
        connector = NetSuiteErp(
            settings(twin.base_url), backoff_base_s=0.01, backoff_cap_s=0.2, poll_interval_s=0.01
        )
        async with connector:
            yield connector, twin


def revision(
    rid: str, on: date, status: RevisionStatus, applied: date | None
) -> ErpRateCardRevision:
    return ErpRateCardRevision(
        rate_card_id="RC-STD",
        revision_id=rid,
        effective_from=on,
        applied_from=applied,
        status=status,
        currency="USD",
        rates=[
            RoleRate(role="Consultant", bill_rate=Money(Decimal("180.00"), "USD")),
            RoleRate(role="Analyst", bill_rate=Money(Decimal("110.50"), "USD")),
        ],
    )


async def test_revisions_upsert_by_key_and_read_back_in_effective_order(
    port: tuple[ErpRateCardsPort, ErpTwin | None],
) -> None:
    erp, twin = port
    late = revision("7", date(2026, 6, 1), RevisionStatus.APPLIED, date(2026, 6, 1))
    held = revision("5", date(2026, 3, 1), RevisionStatus.HELD, None)
    assert await erp.put_rate_card_revision(late) is True
    assert await erp.put_rate_card_revision(held) is True
    assert await erp.put_rate_card_revision(held) is False  # a repeat writes nothing

    acknowledged = held.model_copy(
        update={"status": RevisionStatus.APPLIED, "applied_from": date(2026, 3, 11)}
    )
    assert await erp.put_rate_card_revision(acknowledged) is True

    assert await erp.list_rate_card_revisions("RC-STD") == [acknowledged, late]
    assert await erp.list_rate_card_revisions("RC-OTHER") == []
    if twin is not None:
        assert await twin.count("customrecord_pssync_rate_card_revision") == 2
