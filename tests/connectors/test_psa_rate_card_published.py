"""The rate card versions the PSA published since a time (the sweep's window), on the Kantata
connector over HTTP against the twin (`GET /rate_card_versions.json?created_after=`) and on the
in-memory fake: oldest first, each naming its card as the PSA's webhook does."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta

import pytest

from contracts.money import Money
from contracts.v1.rate_cards import RateCardRevision, RoleRate
from sandbox.psa.rate_card_load import add_rate_card_version
from tests.connectors._psa_fixtures import Harness, TwinHarness, fake_harness, twin_harness


@pytest.fixture(params=["twin", "fake"])
async def h(request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    if request.param == "fake":
        yield fake_harness()
        return
    async with twin_harness() as harness:
        yield harness


async def card_id(h: Harness) -> str:
    """RC-STD as the PSA's webhook names it: the twin's Kantata id, the fake's own id."""
    if isinstance(h, TwinHarness):
        cards = (await h.client.get("/api/v1/rate_cards.json")).json()
        (ident,) = [str(r["id"]) for r in cards["results"]]
        return ident
    return "RC-STD"


async def publish(h: Harness, revision_id: str, on: date, cents: int) -> str:
    """Publish a revision of RC-STD (Consultant at `cents` from `on`); its revision id."""
    if isinstance(h, TwinHarness):
        return str(add_rate_card_version(h.app, int(await card_id(h)), on, [("Consultant", cents)]))
    h.port.add_rate_card_revision(
        RateCardRevision(
            rate_card_id="RC-STD",
            revision_id=revision_id,
            effective_from=on,
            currency="USD",
            rates=[RoleRate(role="Consultant", bill_rate=Money.from_minor(cents, "USD"))],
        )
    )
    return revision_id


async def test_versions_published_since_a_time_oldest_first(h: Harness) -> None:
    before = datetime.now(UTC) - timedelta(seconds=1)
    first = await publish(h, "1", date(2026, 6, 1), 20000)
    between = datetime.now(UTC)
    second = await publish(h, "2", date(2026, 3, 1), 18000)
    card = await card_id(h)

    both = await h.port.list_revisions_published_since(before)
    assert [(p.rate_card_id, p.revision_id) for p in both] == [(card, first), (card, second)]
    assert before < both[0].published_at <= between < both[1].published_at

    later = await h.port.list_revisions_published_since(between)
    assert [p.revision_id for p in later] == [second]
    assert await h.port.list_revisions_published_since(datetime.now(UTC)) == []
