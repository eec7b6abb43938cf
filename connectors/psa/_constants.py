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
