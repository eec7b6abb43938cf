"""The PSA connector: Kantata (Mavenlink) API v1 behind a port that speaks canonical types.

    psa = KantataPsa(settings.psa)
    psa_id = await psa.create_project_shell(project, enterprise_id=eid)   # idempotent
    async for entry in psa.list_approved_time(since=watermark):
        ...

`PsaPort` is what activities depend on; `KantataPsa` is the HTTP adapter on `VendorHttp`;
`FakePsa` is an in-memory PSA with the same business rules for unit and workflow tests.

Kantata has no idempotency keys, so every create here is made idempotent by a business key
the connector can find again. Creates never go through the blind retries other requests get:
`VendorHttp.create` sends a POST, and after an answer that may hide an applied write (5xx, a
lost response, a dropped connection) it looks the record up by its key before sending again;
a repeated call (a Temporal activity retry) looks first too. The keys:

- projects: the vendor's own ID map, an external reference (Workspace -> enterprise project
  ID), written `pending` right after the workspace exists and `successful` once the WBS and
  milestones are complete; the workspace also carries a searchable marker so a crash between
  creating it and writing the reference is found again rather than duplicated;
- the workspace's custom field values (the facts Kantata has no workspace field for:
  customer, opportunity, billing rule, cost center, practice, delivery manager): no key
  needed, Kantata's create overrides a workspace's value of the same field, so the one
  `POST /custom_field_values` is retried like a read and repeated by a resumed call;
- WBS stories and billing milestones: a marker with the WBS / milestone code in their
  description; a resumed call creates only the missing ones;
- resource requests: a marker with the demand key in their notes;
- invoices (marking entries invoiced): the invoice's reference number is the ERP invoice ref,
  and what it covers tells which entries still need one;
- notification posts on a workspace's activity feed: a marker with the notification key in
  their message (a post without a key is sent at most once: nothing could find it again);
- restored assignments (a compensation): the assignment itself — same workspace, person, role,
  dates and minutes — so a repeat finds the one restored before;
- rejections back to the submitter: the entry is unapproved in the same write that adds the
  reason to its notes (`[pssync] <reason>`), so a repeat finds it unapproved and stops.

Vendor field names stay in `mapping` (which reads both the twin's shape and the one Kantata
publishes, and raises `UnmappableRecord` on a record it cannot read) and `kantata/`. Workers
are HCM worker IDs on the canonical side; Kantata users are mapped to them through external
references (`hcm_worker`). No Temporal here.

Layout: `port` (the port, split by use: `PsaProjectsPort`, `PsaTimePort`, `PsaStaffingPort`;
`PsaPort` is all three), `mapping` (Kantata JSON <-> canonical), `_values` (reading Kantata's
dates, money and ids), `kantata/` (the HTTP client, one mixin per resource), `fake/` (the
in-memory PSA), `_constants` (markers, models, custom field names, limits).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from connectors.psa._constants import (
    API,
    CUSTOM_FIELDS,
    DEMAND_MARKER,
    MAX_PAGE_SIZE,
    MILESTONE_MARKER,
    POST_MARKER,
    PROJECT_MARKER,
    PROJECT_MODEL,
    RATE_CARD_MODEL,
    REJECTION_PREFIX,
    SERVICE_NAME,
    SYSTEM,
    WBS_MARKER,
    WORKER_MODEL,
)
from connectors.psa.fake import FakeInvoice, FakePost, FakeProject, FakePsa, FakeUser
from connectors.psa.kantata import KantataPsa, parse_error
from connectors.psa.mapping import (
    assignment_from_kantata,
    budget_from_kantata,
    change_order_from_kantata,
    custom_field_values_by_name,
    expense_from_kantata,
    milestone_from_kantata,
    notes_with,
    project_from_kantata,
    rate_card_from_kantata,
    reference_from_kantata,
    resource_request_from_kantata,
    time_entry_from_kantata,
    wbs_in_creation_order,
)
from connectors.psa.port import PsaPort, PsaProjectsPort, PsaStaffingPort, PsaTimePort

if TYPE_CHECKING:

    def _both_implement_the_port(kantata: KantataPsa, fake: FakePsa) -> list[PsaPort]:
        """mypy proves here that both adapters satisfy `PsaPort`."""
        return [kantata, fake]


__all__ = [
    "API",
    "CUSTOM_FIELDS",
    "DEMAND_MARKER",
    "MAX_PAGE_SIZE",
    "MILESTONE_MARKER",
    "POST_MARKER",
    "PROJECT_MARKER",
    "PROJECT_MODEL",
    "RATE_CARD_MODEL",
    "REJECTION_PREFIX",
    "SERVICE_NAME",
    "SYSTEM",
    "WBS_MARKER",
    "WORKER_MODEL",
    "FakeInvoice",
    "FakePost",
    "FakeProject",
    "FakePsa",
    "FakeUser",
    "KantataPsa",
    "PsaPort",
    "PsaProjectsPort",
    "PsaStaffingPort",
    "PsaTimePort",
    "assignment_from_kantata",
    "budget_from_kantata",
    "change_order_from_kantata",
    "custom_field_values_by_name",
    "expense_from_kantata",
    "milestone_from_kantata",
    "notes_with",
    "parse_error",
    "project_from_kantata",
    "rate_card_from_kantata",
    "reference_from_kantata",
    "resource_request_from_kantata",
    "time_entry_from_kantata",
    "wbs_in_creation_order",
]
