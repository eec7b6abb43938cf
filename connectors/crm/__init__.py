"""CRM connector: Salesforce REST, spoken in canonical contracts.

    crm = SalesforceCrm(settings.crm)
    opp = await crm.get_opportunity("0065g00000keQIVAA2")   # header + line items, re-read
    await crm.write_back_enterprise_id(opp.external_id, project_enterprise_id)
    await crm.mark_provisioning(opp.external_id, ProvisioningStatus.PROVISIONED)

`CrmPort` (`port.py`) is what activities depend on; `SalesforceCrm` (`salesforce.py`) talks to
a real org or the twin in `sandbox.crm`; `FakeCrm` (`fake.py`) keeps the same rules in memory
for unit and workflow tests. Salesforce field names appear only in `mapping.py` and
`salesforce.py` (and in the twin). `create_opportunity` and `set_stage` act as a salesperson
would, for tests and the demo; they are not part of the port. No Temporal imports: activities
decide what a failure means.

Every write is safe to repeat: the port's writes are PATCHes of fields to values, and
`create_opportunity` keys each record it makes by an External ID field (`Pssync_Key__c`, from
`NewOpportunity.key`): it looks the key up first, creates with an upsert by that key (so even
two racing creates make one record), and after a lost answer finds the record by its key
instead of sending again. Salesforce's plain create (POST) has no key and is not used.
"""

from connectors.crm.fake import FakeCrm
from connectors.crm.mapping import (
    CONTRACTED_STAGE,
    ERROR_MAX_LENGTH,
    KEY_FIELD,
    OPPORTUNITY_STAGES,
    customer_from_salesforce,
    opportunity_from_salesforce,
    opportunity_line_from_salesforce,
    parse_error,
)
from connectors.crm.port import CrmPort, NewOpportunity, NewOpportunityLine, ProvisioningStatus
from connectors.crm.salesforce import API_VERSION, SalesforceCrm

__all__ = [
    "API_VERSION",
    "CONTRACTED_STAGE",
    "ERROR_MAX_LENGTH",
    "KEY_FIELD",
    "OPPORTUNITY_STAGES",
    "CrmPort",
    "FakeCrm",
    "NewOpportunity",
    "NewOpportunityLine",
    "ProvisioningStatus",
    "SalesforceCrm",
    "customer_from_salesforce",
    "opportunity_from_salesforce",
    "opportunity_line_from_salesforce",
    "parse_error",
]
