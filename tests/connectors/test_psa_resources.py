"""The PSA resource pool (`PsaResourcesPort`): the Kantata connector over HTTP against the twin
and the in-memory fake run the same scenario — a hired worker becomes one resource with their
role, location, practice, manager, FTE, first bookable day and leave calendar, read back as
written; a repeat changes nothing and a later upsert updates the same user. On the twin, a new
worker joins the account once even when the PSA's answers are lost, and can log time from
their first bookable day (not before)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import date
from decimal import Decimal

import pytest

from connectors.psa.resources import LeavePeriod, PsaResource, PsaResourcesPort
from contracts.errors import BusinessRuleViolation
from sandbox.psa.tables import PsaExternalReference, PsaUser
from tests.connectors._psa_fixtures import (
    Harness,
    TwinHarness,
    fake_harness,
    make_project,
    psa_resource,
    twin_harness,
)
from tests.connectors.test_lost_responses import like_temporal, lose, psa_state, rows

WORKER = "W-07001"


@pytest.fixture(params=["twin", "fake"])
async def h(request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    if request.param == "fake":
        yield fake_harness()
        return
    async with twin_harness() as harness:
        yield harness


def hired(**changes: object) -> PsaResource:
    return psa_resource(
        WORKER, **({"name": "Grace Hopper", "email": "grace.hopper@example.com"} | changes)
    )


async def test_a_hire_is_one_resource_read_back_as_written_and_updated_in_place(
    h: Harness,
) -> None:
    port = h.port
    assert isinstance(port, PsaResourcesPort)
    assert await port.get_resource(WORKER) is None

    await port.upsert_resource(hired())
    await port.upsert_resource(hired())  # a repeat
    assert await port.get_resource(WORKER) == hired()

    on_leave = hired(
        practice="Data",
        fte=Decimal(1),
        leaves=[
            LeavePeriod(start=date(2026, 4, 1), end=date(2026, 4, 30)),
            LeavePeriod(start=date(2026, 6, 1)),
        ],
    )
    await port.upsert_resource(on_leave)
    assert await port.get_resource(WORKER) == on_leave
    if isinstance(h, TwinHarness):
        users = rows(psa_state(h), PsaUser, PsaUser.email_address == "grace.hopper@example.com")
        assert len(users) == 1
        assert users[0].start_date == date(2026, 3, 10)


async def test_a_new_worker_joins_the_account_once_when_answers_are_lost() -> None:
    async with twin_harness(retry_budget_s=0.3) as h:
        await lose(h.client, "psa", 0.5, seed=3)
        await like_temporal(lambda: h.port.upsert_resource(hired()))
        assert await lose(h.client, "psa", 0.0) > 0  # answers were lost
        state = psa_state(h)
        users = rows(state, PsaUser, PsaUser.email_address == "grace.hopper@example.com")
        assert len(users) == 1
        refs = rows(
            state,
            PsaExternalReference,
            PsaExternalReference.subject_type == "User",
            PsaExternalReference.service_model_ref == WORKER,
        )
        assert [r.subject_id for r in refs] == [users[0].id]
        assert await h.port.get_resource(WORKER) == hired()


async def test_a_hire_logs_time_from_the_first_bookable_day() -> None:
    async with twin_harness() as h:
        await h.port.upsert_resource(hired())
        pid = await h.port.create_project_shell(make_project(), enterprise_id="PRJ-7001")
        user_id = rows(psa_state(h), PsaUser, PsaUser.email_address == "grace.hopper@example.com")[
            0
        ].id
        assert user_id is not None
        h.users[WORKER] = user_id
        await h.add_time(pid, WORKER, date(2026, 3, 10), 60)
        with pytest.raises(BusinessRuleViolation):
            await h.add_time(pid, WORKER, date(2026, 3, 9), 60)
        assert [e.worker_id for e in await h.port.list_worker_time(WORKER)] == [WORKER]


async def test_a_worker_without_email_is_refused_typed() -> None:
    async with twin_harness() as h:
        with pytest.raises(BusinessRuleViolation) as refused:
            await h.port.upsert_resource(hired(email=None))
        assert refused.value.code == "RESOURCE_WITHOUT_EMAIL"
        assert rows(psa_state(h), PsaUser) == []
