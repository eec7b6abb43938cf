"""`plumbing.temporal` defines the search-attribute keys once, from the registered names, and
workflows see the very same keys (no I/O here; the helpers run against a server in
tests/gateway/test_plumbing.py)."""

from __future__ import annotations

from temporalio.common import SearchAttributeIndexedValueType

import workflows._common as common
from contracts.naming import SEARCH_ATTRIBUTES
from plumbing import temporal as plumbing


def test_every_registered_search_attribute_has_one_typed_key() -> None:
    assert set(plumbing.SEARCH_ATTRIBUTE_KEYS) == set(SEARCH_ATTRIBUTES)
    for name, kind in SEARCH_ATTRIBUTES.items():
        key = plumbing.SEARCH_ATTRIBUTE_KEYS[name]
        assert key.name == name
        assert key.indexed_value_type == SearchAttributeIndexedValueType[kind.upper()]


def test_workflows_re_export_the_same_keys() -> None:
    for name in (
        "BUSINESS_PROCESS",
        "ENTERPRISE_PROJECT_ID",
        "CRM_OPPORTUNITY_ID",
        "CUSTOMER_NAME",
        "CHANGE_ORDER_ID",
        "WORKER_ID",
        "EXCEPTION_OPEN",
    ):
        assert getattr(common, name) is getattr(plumbing, name)
    assert plumbing.EXCEPTION_OPEN.indexed_value_type is SearchAttributeIndexedValueType.BOOL
    assert plumbing.BUSINESS_PROCESS == plumbing.SEARCH_ATTRIBUTE_KEYS["BusinessProcess"]
