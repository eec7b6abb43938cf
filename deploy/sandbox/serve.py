"""The twins for docker-compose's `sandbox` profile: seeded, data in memory, on 0.0.0.0.

`pssync sandbox` binds 127.0.0.1, which other containers cannot reach, and sends no webhooks.
Here the CRM and PSA twins sign their events with the gateway's secrets and deliver them to the
gateway, so winning a deal in the CRM twin starts the saga end to end.

    SANDBOX_GATEWAY_URL   where the webhooks go (default http://pssync-gateway:8000)
    SANDBOX_SEED          the seeded firm (default 7)
    PSSYNC_SANDBOX_PORT   the port (default 8100)
    PSSYNC_WEBHOOK_SECRET_CRM, PSSYNC_WEBHOOK_SECRET_PSA   the gateway's signing secrets
"""

from __future__ import annotations

import os

import uvicorn

from sandbox.app import seeded_sandbox


def main() -> None:
    gateway = os.environ.get("SANDBOX_GATEWAY_URL", "http://pssync-gateway:8000").rstrip("/")
    sandbox = seeded_sandbox(
        None,
        int(os.environ.get("SANDBOX_SEED", "7")),
        crm_webhook_url=f"{gateway}/webhooks/crm",
        psa_webhook_url=f"{gateway}/webhooks/psa",
        webhook_secret=os.environ["PSSYNC_WEBHOOK_SECRET_CRM"],
    )
    psa_webhooks = sandbox.state("psa").webhooks
    if psa_webhooks is not None:
        psa_webhooks.configure(psa_webhooks.url, os.environ["PSSYNC_WEBHOOK_SECRET_PSA"])
    port = int(os.environ.get("PSSYNC_SANDBOX_PORT", "8100"))
    uvicorn.run(sandbox.app, host="0.0.0.0", port=port)


if __name__ == "__main__":
    main()
