"""Typed errors the store raises, so callers can tell a conflict from a missing row.

They are part of the ``contracts.errors`` taxonomy (``XrefConflict`` and ``AlreadyResolved`` are
``ConflictError``s, ``NotFound`` is a ``NotFoundError``, all with ``system`` = PSSYNC unless a
system of record is involved), so activities translate them by ``kind`` like any other error.
Must never: import Temporal or decide retries. Database errors other than these propagate
unchanged, as SQLAlchemy errors.
"""

from __future__ import annotations

from typing import Any

from contracts.errors import ConflictError, NotFoundError, PssyncError
from contracts.systems import System


class StoreError(PssyncError):
    """Base of every error the store raises on purpose."""


class NotFound(StoreError, NotFoundError):
    """The row addressed by ``key`` does not exist in ``table``."""

    def __init__(self, table: str, key: str) -> None:
        super().__init__(f"{table} {key!r} not found", system=System.PSSYNC.value)
        self.table = table
        self.key = key

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.table, self.key))


class XrefConflict(StoreError, ConflictError):
    """A link would map one external object to two enterprise entities, or one enterprise
    entity to two objects of the same system and object type.

    ``existing_enterprise_id``/``existing_external_id`` describe the link already there.
    """

    def __init__(
        self,
        *,
        system: str,
        tenant: str,
        object_type: str,
        external_id: str,
        enterprise_id: str,
        existing_enterprise_id: str,
        existing_external_id: str,
    ) -> None:
        super().__init__(
            f"{system}/{tenant}/{object_type}/{external_id} cannot be linked to {enterprise_id}: "
            f"{system}/{object_type} {existing_external_id} is already linked to "
            f"{existing_enterprise_id}",
            system=system,
        )
        self.tenant = tenant
        self.object_type = object_type
        self.external_id = external_id
        self.enterprise_id = enterprise_id
        self.existing_enterprise_id = existing_enterprise_id
        self.existing_external_id = existing_external_id

    def __reduce__(self) -> tuple[Any, ...]:
        state = {k: v for k, v in self.__dict__.items() if k != "message"}
        return (_rebuild, (type(self), state))


class AlreadyResolved(StoreError, ConflictError):
    """The exception item was resolved before; ``resolution`` is what was recorded then
    (including its ``actor``), so a caller replaying its own resolution can recognise it."""

    def __init__(self, item_id: str, resolution: dict[str, Any] | None) -> None:
        super().__init__(
            f"exception item {item_id!r} is already resolved", system=System.PSSYNC.value
        )
        self.item_id = item_id
        self.resolution = resolution

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.item_id, self.resolution))


def _rebuild(cls: type[XrefConflict], state: dict[str, Any]) -> XrefConflict:
    return cls(**state)
