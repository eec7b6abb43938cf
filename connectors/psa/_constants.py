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
them, as text fields in a Workspace custom field set, with these names): the twin's legacy
stand-in column -> the custom field's name. The one place the names are set: the connector
finds the fields' ids by these names (`GET /custom_fields.json`), writes the values with
`POST /custom_field_values.json` and reads them back by `custom_field_name`."""
CUSTOM_FIELD_SUBJECT = "Workspace"
"""The `subject_type` of the custom field set the facts' fields belong to, and of the values."""
CUSTOM_FIELD_VALUE_TYPE = "string"
"""The custom fields' `value_type` pssync writes: text (`"value": "CC-100"`). Choice fields
(`single`, `multi`) take choice ids instead and are refused at setup."""
