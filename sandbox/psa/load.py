"""Loading the seeded firm into the PSA twin: users (with their HCM worker references) and
rate cards (with theirs); also the helpers tests use to add one of each, and the workspace
custom fields every twin account has."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from decimal import ROUND_HALF_UP, Decimal

from fastapi import FastAPI
from sqlmodel import col, select

from sandbox._twin import TwinState
from sandbox.psa.published import CUSTOM_FIELD_NAMES
from sandbox.psa.tables import (
    PsaCustomField,
    PsaCustomFieldSet,
    PsaExternalReference,
    PsaRateCard,
    PsaRateCardRole,
    PsaUser,
)
from sandbox.seed import Firm

SERVICE_NAME = "pssync"
"""`service_name` of every external reference pssync writes (its integration's name)."""
WORKER_MODEL = "hcm_worker"
RATE_CARD_MODEL = "rate_card"
WORKSPACE_FIELD_SET = "Project Details"
"""The twin's custom field set for workspaces (Kantata: a Project set)."""


def _state_of(app_or_state: FastAPI | TwinState) -> TwinState:
    if isinstance(app_or_state, TwinState):
        return app_or_state
    twin: TwinState = app_or_state.state.twin
    return twin


def _reference(subject_type: str, subject_id: int, model: str, ref: str) -> PsaExternalReference:
    """pssync's (successful) external reference from a twin record to another system's."""
    return PsaExternalReference(
        subject_type=subject_type,
        subject_id=subject_id,
        service_name=SERVICE_NAME,
        service_model=model,
        service_model_ref=ref,
        status="successful",
    )


def add_workspace_custom_fields(
    app_or_state: FastAPI | TwinState, names: Sequence[str] = tuple(CUSTOM_FIELD_NAMES.values())
) -> dict[str, int]:
    """The account's workspace custom fields `names` (text fields of the Workspace set
    `WORKSPACE_FIELD_SET`), created where missing, as an account administrator sets them up
    for pssync; returns their ids by name. Idempotent: the twin calls it at every start."""
    return ensure_custom_fields(app_or_state, "Workspace", WORKSPACE_FIELD_SET, names)


def ensure_custom_fields(
    app_or_state: FastAPI | TwinState, subject_type: str, set_name: str, names: Sequence[str]
) -> dict[str, int]:
    """Text custom fields `names` of the `subject_type` field set `set_name`, created where
    missing; their ids by name. Idempotent."""
    state = _state_of(app_or_state)
    with state.session() as s:
        field_set = s.exec(
            select(PsaCustomFieldSet).where(
                PsaCustomFieldSet.subject_type == subject_type,
                PsaCustomFieldSet.name == set_name,
            )
        ).first()
        if field_set is None:
            field_set = PsaCustomFieldSet(name=set_name, subject_type=subject_type)
            s.add(field_set)
            s.flush()
        assert field_set.id is not None
        ids: dict[str, int] = {}
        for name in names:
            field = s.exec(
                select(PsaCustomField).where(
                    PsaCustomField.custom_field_set_id == field_set.id, PsaCustomField.name == name
                )
            ).first()
            if field is None:
                field = PsaCustomField(custom_field_set_id=field_set.id, name=name)
                s.add(field)
                s.flush()
            assert field.id is not None
            ids[name] = field.id
        s.commit()
        return ids


def add_user(
    app_or_state: FastAPI | TwinState,
    *,
    full_name: str,
    email_address: str | None = None,
    role: str | None = None,
    active: bool = True,
    start_date: date | None = None,
    time_entry_closed_after: date | None = None,
    cost_rate_in_cents: int | None = None,
    currency: str = "USD",
    worker_id: str | None = None,
) -> int:
    """Create a user (Kantata invites users; the twin inserts them) and, with `worker_id`,
    the external reference to the HCM worker. Returns the user's id."""
    state = _state_of(app_or_state)
    with state.session() as s:
        user = PsaUser(
            full_name=full_name,
            email_address=email_address,
            role=role,
            active=active,
            start_date=start_date,
            time_entry_closed_after=time_entry_closed_after,
            cost_rate_in_cents=cost_rate_in_cents,
            currency=currency,
        )
        s.add(user)
        s.flush()
        assert user.id is not None
        if worker_id:
            s.add(_reference("User", user.id, WORKER_MODEL, worker_id))
        s.commit()
        return user.id


def add_rate_card(
    app_or_state: FastAPI | TwinState,
    *,
    title: str,
    currency: str,
    roles: Sequence[tuple[str, int, date, date | None]],
    external_id: str | None = None,
) -> int:
    """Create a rate card with `(role, rate_in_cents, effective_from, effective_to)` roles and,
    with `external_id`, an external reference to it. Returns the rate card's id."""
    state = _state_of(app_or_state)
    with state.session() as s:
        card = PsaRateCard(title=title, currency=currency)
        s.add(card)
        s.flush()
        assert card.id is not None
        for role, cents, start, end in roles:
            s.add(
                PsaRateCardRole(
                    rate_card_id=card.id,
                    role=role,
                    rate_in_cents=cents,
                    effective_from=start,
                    effective_to=end,
                )
            )
        if external_id:
            s.add(_reference("RateCard", card.id, RATE_CARD_MODEL, external_id))
        s.commit()
        return card.id


def _cents(amount: Decimal, currency: str) -> int:
    """Minor units of a seed amount (Kantata's `*_in_cents`)."""
    digits = _ZERO_DECIMAL.get(currency, 2)
    return int((amount * (10**digits)).to_integral_value(rounding=ROUND_HALF_UP))


_ZERO_DECIMAL = dict.fromkeys(
    "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX VND VUV XAF XOF XPF".split(), 0
)


def load_firm(app_or_state: FastAPI | TwinState, firm: Firm) -> None:
    """Users from `firm.workers` and rate cards from `firm.rate_cards`.

    Users get Kantata's own numeric ids; the HCM employee ID is kept, as the vendor does, in an
    external reference (`hcm_worker`). A start date is the hire date (no time before it). A
    termination already in the past is what the PSA has processed: the user is deactivated and
    closed to time after the last day. A future-dated termination is not known to the PSA yet:
    closing the user is the termination saga's job. Rate cards keep the seed's id in an external
    reference (`rate_card`), so opportunities can name them.
    """
    state = _state_of(app_or_state)
    with state.session() as s:
        # Seeding again (every `pssync up`) must not duplicate what the references show exists.
        known = {
            (ref.service_model, ref.service_model_ref)
            for ref in s.exec(
                select(PsaExternalReference).where(
                    PsaExternalReference.service_name == SERVICE_NAME,
                    col(PsaExternalReference.service_model).in_([WORKER_MODEL, RATE_CARD_MODEL]),
                )
            )
        }
        for fw in firm.workers:
            if (WORKER_MODEL, fw.id) in known:
                continue
            past_termination = fw.status == "terminated"
            user = PsaUser(
                full_name=fw.name,
                email_address=fw.email,
                role=fw.role,
                active=not past_termination,
                start_date=fw.hire_date,
                time_entry_closed_after=(
                    (fw.last_day_worked or fw.termination_date) if past_termination else None
                ),
                cost_rate_in_cents=_cents(fw.cost_rate, fw.currency),
                currency=fw.currency,
            )
            s.add(user)
            s.flush()
            assert user.id is not None
            s.add(_reference("User", user.id, WORKER_MODEL, fw.id))
        s.commit()
    for card in firm.rate_cards:
        if (RATE_CARD_MODEL, card.id) in known:
            continue
        add_rate_card(
            state,
            title=card.name,
            currency=card.currency,
            roles=[
                (
                    line.role,
                    _cents(line.bill_rate, card.currency),
                    line.effective_from,
                    line.effective_to,
                )
                for line in card.lines
            ],
            external_id=card.id,
        )
