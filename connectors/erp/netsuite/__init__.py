"""`NetSuiteErp`: the `ErpPort` over NetSuite's REST web services, composed of one mixin per
resource on a shared base (`_base`: HTTP, references, SuiteQL, async jobs)."""

from __future__ import annotations

from connectors.erp.netsuite.billing import _BillingMixin
from connectors.erp.netsuite.labor_cost import _LaborCostMixin
from connectors.erp.netsuite.postings import _PostingsMixin
from connectors.erp.netsuite.projects import _ProjectsMixin
from connectors.erp.netsuite.rate_cards import _RateCardsMixin
from connectors.erp.port import ErpPort
from contracts.settings import SystemSettings


class NetSuiteErp(_ProjectsMixin, _PostingsMixin, _BillingMixin, _RateCardsMixin, _LaborCostMixin):
    """`ErpPort` over NetSuite's REST web services (or the twin in `sandbox.erp`)."""


def _check_port() -> ErpPort:  # pragma: no cover - a static check for mypy
    return NetSuiteErp(SystemSettings(base_url="http://localhost"))


__all__ = ["NetSuiteErp"]
