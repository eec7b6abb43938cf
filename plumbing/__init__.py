"""Client-side plumbing shared by the gateway, the CLI and activities (see `plumbing.temporal`).

May import `contracts` and third-party clients; never workflows, activities, connectors or the
store. Workflows import nothing from here but the search-attribute keys (through
`workflows._common`).
"""
