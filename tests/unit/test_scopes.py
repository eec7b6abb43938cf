"""What an actor's scopes reach (`contracts.scopes`): no I/O."""

from __future__ import annotations

import pytest

from contracts import scopes
from contracts.naming import opportunity_workflow_id, termination_workflow_id

OPP = "006000000000001AAA"
RUN = scopes.keys_of_workflow(opportunity_workflow_id("Acme", OPP))


def test_a_run_names_its_tenant_and_business_key() -> None:
    assert RUN == {"tenant:acme", f"opportunity:{OPP}"}
    worker = scopes.keys_of_workflow(termination_workflow_id("acme", "W-1", "2026-12-01"))
    assert worker == {"tenant:acme", "worker:W-1"}
    assert scopes.keys_of_workflow("something-else/acme/1") == set()


@pytest.mark.parametrize(
    ("actor_scopes", "reached"),
    [
        ([], False),
        (["*"], True),
        (["tenant:ACME"], True),  # tenants compare case-insensitively
        (["tenant:globex"], False),
        ([f"opportunity:{OPP}"], True),
        ([OPP], True),  # the older bare form
        (["project:" + OPP], False),  # a key of another kind is not this one
        (["worker:W-1"], False),
    ],
)
def test_covers(actor_scopes: list[str], reached: bool) -> None:
    assert scopes.covers(actor_scopes, RUN) is reached


def test_context_keys_and_validity() -> None:
    keys = scopes.keys_of_context({"enterprise_id": "E1", "practice": "cloud", "other": "x"})
    assert keys == {"project:E1", "practice:cloud"}
    assert scopes.is_valid_scope("project:E1") and scopes.is_valid_scope("*")
    for bad in ("", "bogus:x", "tenant:", " project:E1", "x" * 201):
        assert not scopes.is_valid_scope(bad)


def test_workflows_hear_bare_values_and_a_covering_tenant_as_everything() -> None:
    assert scopes.workflow_scopes(["project:E1"]) == ["E1", "project:E1"]
    assert "*" in scopes.workflow_scopes(["tenant:Acme"], RUN)
    assert "*" not in scopes.workflow_scopes(["tenant:globex"], RUN)
    assert "*" not in scopes.workflow_scopes(["tenant:acme"])  # no run: nothing widened
