"""The in-memory PSA: `FakePsa`, one mixin per resource on shared state (`FakePsaBase`)."""

from __future__ import annotations

from dataclasses import dataclass

from connectors.psa.fake._base import FakeInvoice, FakePost, FakeProject, FakePsaBase, FakeUser
from connectors.psa.fake.projects import FakeProjectsMixin
from connectors.psa.fake.rate_cards import FakeRateCardsMixin
from connectors.psa.fake.resources import FakeResourcesMixin
from connectors.psa.fake.staffing import FakeStaffingMixin
from connectors.psa.fake.time import FakeTimeMixin


@dataclass
class FakePsa(
    FakeProjectsMixin,
    FakeRateCardsMixin,
    FakeResourcesMixin,
    FakeStaffingMixin,
    FakeTimeMixin,
    FakePsaBase,
):
    """In-memory `PsaPort` with the twin's business rules, for unit and workflow tests.

    Seed it with `add_user`, `add_rate_card`, `add_time_entry`, `approve_time_entry`,
    `add_expense`, `add_assignment`, `add_change_order`; make an operation fail next with
    `fail_next("create_project_shell", TransientError("boom"))`.
    """


__all__ = ["FakeInvoice", "FakePost", "FakeProject", "FakePsa", "FakePsaBase", "FakeUser"]
