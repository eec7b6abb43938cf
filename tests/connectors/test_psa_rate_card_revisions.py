"""Rate card revisions read through the PSA port, the same scenario on the Kantata connector
over HTTP against the twin and on the in-memory fake: the revisions in effective order with
their rates, the card re-priced from each effective date, and the projects on the card."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import date

import pytest

from contracts.errors import NotFoundError
from contracts.money import Money
from contracts.v1.rate_cards import RateCardRevision, RoleRate
from sandbox.psa.rate_card_load import add_rate_card_version
from tests.connectors._psa_fixtures import (
    EID,
    Harness,
    TwinHarness,
    fake_harness,
    make_project,
    twin_harness,
)


@pytest.fixture(params=["twin", "fake"])
async def h(request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    if request.param == "fake":
        yield fake_harness()
        return
    async with twin_harness() as harness:
        yield harness


async def revise(h: Harness, revision_id: str, on: date, **rates: int) -> None:
    """Publish a revision of RC-STD: `role=cents` from `on`."""
    if isinstance(h, TwinHarness):
        cards = (await h.client.get("/api/v1/rate_cards.json")).json()
        (card_id,) = [int(r["id"]) for r in cards["results"]]
        add_rate_card_version(h.app, card_id, on, list(rates.items()))
        return
    h.port.add_rate_card_revision(
        RateCardRevision(
            rate_card_id="RC-STD",
            revision_id=revision_id,
            effective_from=on,
            currency="USD",
            rates=[
                RoleRate(role=role, bill_rate=Money.from_minor(cents, "USD"))
                for role, cents in rates.items()
            ],
        )
    )


async def test_revisions_in_effective_order_reprice_the_card_from_their_dates(h: Harness) -> None:
    await revise(h, "1", date(2026, 6, 1), Consultant=20000)
    await revise(h, "2", date(2026, 3, 1), Consultant=18000, Analyst=11000)

    revisions = await h.port.list_rate_card_revisions("RC-STD")
    assert [(r.effective_from, r.rate_card_id) for r in revisions] == [
        (date(2026, 3, 1), "RC-STD"),
        (date(2026, 6, 1), "RC-STD"),
    ]
    assert {r.role: r.bill_rate for r in revisions[0].rates} == {
        "Consultant": Money("180.00", "USD"),
        "Analyst": Money("110.00", "USD"),
    }
    assert len({r.revision_id for r in revisions}) == 2

    card = await h.port.get_rate_card("RC-STD")
    consultant = [
        card.rate_for("Consultant", d)
        for d in (date(2026, 2, 28), date(2026, 3, 1), date(2026, 5, 31), date(2026, 6, 1))
    ]
    assert consultant == [
        Money("150.00", "USD"),
        Money("180.00", "USD"),
        Money("180.00", "USD"),
        Money("200.00", "USD"),
    ]


async def test_projects_on_the_card_and_an_unknown_card(h: Harness) -> None:
    on_card = await h.port.create_project_shell(make_project(), enterprise_id=EID)
    assert await h.port.list_projects_on_rate_card("RC-STD") == [on_card]
    assert await h.port.list_rate_card_revisions("RC-STD") == []
    with pytest.raises(NotFoundError):
        await h.port.list_rate_card_revisions("RC-NOPE")
