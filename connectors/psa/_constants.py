"""Constants of the PSA connector: system name, API prefix, external-reference models and the
markers that make Kantata creates findable again.
"""

SYSTEM = "PSA"
API = "/api/v1"
SERVICE_NAME = "pssync"
"""`service_name` of pssync's external references (Kantata: the integration's name)."""
PROJECT_MODEL = "enterprise_project"
WORKER_MODEL = "hcm_worker"
RATE_CARD_MODEL = "rate_card"
PROJECT_MARKER = "pssync:project:"
WBS_MARKER = "pssync:wbs:"
MILESTONE_MARKER = "pssync:milestone:"
DEMAND_MARKER = "pssync:demand:"
POST_MARKER = "pssync:notification:"
REJECTION_PREFIX = "[pssync] "
"""Starts the line of an entry's notes that says why pssync sent it back."""
MAX_PAGE_SIZE = 200
CUSTOM_FIELDS: dict[str, str] = {
    "client_ref": "Customer ID",
    "opportunity_ref": "Opportunity ID",
    "billing_rule": "Billing Rule",
    "cost_center": "Cost Center",
    "practice": "Practice",
    "delivery_manager": "Delivery Manager",
}
"""Workspace facts Kantata has no field for, kept in workspace custom fields (the tenant creates
them with these names): the twin's stand-in column -> the custom field's name. The connector
reads the column when a workspace has it (the twin), else the custom field value."""
