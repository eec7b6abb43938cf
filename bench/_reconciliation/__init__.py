"""The reconciliation bench's parts: the world it reconciles (projects linked in PSA, ERP and the
xref, time posted through the pipelines), the drift it injects through the twins' tamper
endpoints, and the passes it measures (through the gateway) against a naive entry-by-entry
baseline."""
