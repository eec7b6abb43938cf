"""All four twins in one ASGI app: `/crm`, `/psa`, `/erp`, `/hcm` (`pssync sandbox`).

Each twin is also a FastAPI app of its own (`sandbox.erp.create_app()`), runnable apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import HTMLResponse

from contracts.settings import DEV_WEBHOOK_SECRET
from sandbox import crm, erp, hcm, psa
from sandbox._twin import TwinState
from sandbox.seed import Firm, build_firm

SYSTEMS = ("crm", "psa", "erp", "hcm")


@dataclass
class Sandbox:
    app: FastAPI
    twins: dict[str, FastAPI]

    def state(self, system: str) -> TwinState:
        state: TwinState = self.twins[system].state.twin
        return state

    def seed(self, firm: Firm) -> None:
        for module, system in ((hcm, "hcm"), (erp, "erp"), (psa, "psa"), (crm, "crm")):
            module.load_firm(self.state(system), firm)


def create_sandbox(
    home: Path | None,
    *,
    crm_webhook_url: str | None = None,
    psa_webhook_url: str | None = None,
    webhook_secret: str = DEV_WEBHOOK_SECRET,
) -> Sandbox:
    """The twins mounted under one app; `home=None` keeps their data in memory."""

    def db(name: str) -> Path | None:
        return None if home is None else home / "sandbox" / f"{name}.db"

    twins = {
        "crm": crm.create_app(
            db("crm"), webhook_url=crm_webhook_url, webhook_secret=webhook_secret
        ),
        "psa": psa.create_app(
            db("psa"), webhook_url=psa_webhook_url, webhook_secret=webhook_secret
        ),
        "erp": erp.create_app(db("erp")),
        "hcm": hcm.create_app(db("hcm")),
    }
    app = FastAPI(title="pssync sandbox", description="Twins of CRM, PSA, ERP and HCM.")
    for name, twin in twins.items():
        app.mount(f"/{name}", twin)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index() -> str:
        links = "".join(
            f'<li><a href="/{n}/docs">{twins[n].title}</a> — /{n}</li>' for n in SYSTEMS
        )
        return f"<h1>pssync sandbox</h1><ul>{links}</ul>"

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return Sandbox(app=app, twins=twins)


def seeded_sandbox(home: Path | None, seed: int = 7, **kwargs: object) -> Sandbox:
    sandbox = create_sandbox(home, **kwargs)  # type: ignore[arg-type]
    sandbox.seed(build_firm(seed))
    return sandbox
