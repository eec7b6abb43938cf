"""The store's errors belong to the contracts taxonomy and survive pickling."""

from __future__ import annotations

import pickle

import pytest

from contracts import ConflictError, ErrorKind, NotFoundError, PssyncError
from store import AlreadyResolved, NotFound, StoreError, XrefConflict

CONFLICT = XrefConflict(
    system="CRM",
    tenant="acme",
    object_type="Opportunity",
    external_id="006A1",
    enterprise_id="01J00000000000000000000002",
    existing_enterprise_id="01J00000000000000000000001",
    existing_external_id="006A1",
)


@pytest.mark.parametrize(
    ("error", "base", "kind"),
    [
        (CONFLICT, ConflictError, ErrorKind.CONFLICT),
        (AlreadyResolved("exc-1", {"action": "skip", "actor": "a"}), ConflictError, "conflict"),
        (NotFound("xref", "CRM/acme/Opportunity/x"), NotFoundError, ErrorKind.NOT_FOUND),
    ],
)
def test_taxonomy_and_pickling(error: StoreError, base: type[PssyncError], kind: str) -> None:
    assert isinstance(error, base) and isinstance(error, StoreError)
    assert error.kind == kind and not error.retryable
    assert error.info().kind == kind

    copy = pickle.loads(pickle.dumps(error))

    assert type(copy) is type(error)
    assert copy.__dict__ == error.__dict__
    assert str(copy) == str(error)


def test_conflict_names_the_system_of_record() -> None:
    assert CONFLICT.system == "CRM"
    assert CONFLICT.existing_enterprise_id == "01J00000000000000000000001"
