"""Project master in the reconciliation bench: won deals provisioned by the real saga, drift
made through the twins, and a pass (then a second) through the gateway.

`per_kind` of each (all escalated: the ERP copy of a PSA field, and a deal never provisioned,
are for a person):

- `field_mismatch` `erp_renamed`: ERP `job/{id}/edit {"name"}` (keys: field `name`);
- `field_mismatch` `erp_currency`: ERP `job/{id}/edit {"currency": "EUR"}` (field `currency`);
- `missing_psa_project` `won_webhook_dropped`: CRM `drop-webhooks` for `opportunity.won`, then
  the deal won: no saga, no project anywhere.

Not made here: `xref_missing` (only pssync's own store can lose a link: no twin tampers it) and
a project gone from the PSA or the ERP (no tamper deletes one)."""

from __future__ import annotations

import asyncio
from dataclasses import asdict
from typing import Any

import httpx

from bench._harness import log
from bench._reconciliation.drifts import ESCALATED, Injected
from bench._reconciliation.passes import Pass, run_pass, score
from bench._time_to_invoice.world import Bench
from contracts.naming import opportunity_workflow_id
from contracts.v1.processes import ProvisionProjectResult
from demo import deal_from_template, provisionable_templates, wait_for_workflow

WON = "opportunity.won"


def master_key(d: dict[str, Any]) -> tuple[str, str, str]:
    keys = d["keys"]
    return (d["kind"], keys.get("opportunity", ""), keys.get("field") or keys.get("system") or "")


async def _deals(bench: Bench, count: int, *, provisioned: bool) -> list[tuple[str, str | None]]:
    """`count` deals won in the CRM twin (USD templates): (opportunity id, ERP job id) once
    the saga provisioned each, or (opportunity id, None) without waiting."""
    from connectors.crm import SalesforceCrm

    firm = bench.firm
    templates = [
        i for i in provisionable_templates(firm) if firm.opportunities[i].currency == "USD"
    ]
    crm = SalesforceCrm(bench.stack.settings.crm)
    start = bench.deal_counter
    bench.deal_counter += count

    async def one(n: int) -> tuple[str, str | None]:
        index = templates[n % len(templates)]
        name = f"{firm.opportunities[index].name} (recon bench {n})"
        opp_id = await crm.create_opportunity(deal_from_template(firm, index, name=name))
        await crm.set_stage(opp_id, "Closed Won")
        if not provisioned:
            return opp_id, None
        wf_id = opportunity_workflow_id(bench.stack.settings.crm.tenant, opp_id)
        handle = await wait_for_workflow(
            bench.client, wf_id, timeout_s=120, result_type=ProvisionProjectResult
        )
        result: ProvisionProjectResult = await asyncio.wait_for(handle.result(), 120)
        return opp_id, result.erp_project_id

    try:
        return list(await asyncio.gather(*(one(start + n) for n in range(count))))
    finally:
        await crm.aclose()


async def project_master(
    bench: Bench, gateway: httpx.AsyncClient, per_kind: int, *, timeout_s: float
) -> dict[str, Any]:
    """Provision `2 * per_kind` deals, drift them, and reconcile project master twice."""
    base, http = bench.twins.base, bench.twins.http

    async def tamper(path: str, body: dict[str, Any]) -> None:
        r = await http.post(f"{base}{path}", json=body)
        if r.status_code >= 400:
            raise RuntimeError(f"tamper {path}: {r.status_code} {r.text[:300]}")

    log(f"project master: {2 * per_kind} deals through the saga, {per_kind} never provisioned")
    made = await _deals(bench, 2 * per_kind, provisioned=True)
    injected: list[Injected] = []
    for n, (opp, job) in enumerate(made):
        if n < per_kind:
            await tamper(f"/erp/_admin/tamper/job/{job}/edit", {"name": f"Renamed by hand {n}"})
            injected.append(Injected("field_mismatch", "erp_renamed", opp, ESCALATED, entry="name"))
        else:
            await tamper(f"/erp/_admin/tamper/job/{job}/edit", {"currency": "EUR"})
            injected.append(
                Injected("field_mismatch", "erp_currency", opp, ESCALATED, entry="currency")
            )
    await tamper("/crm/_admin/tamper/drop-webhooks", {"type": WON, "count": per_kind})
    for opp, _ in await _deals(bench, per_kind, provisioned=False):
        injected.append(
            Injected("missing_psa_project", "won_webhook_dropped", opp, ESCALATED, entry="")
        )
    first = await run_pass(gateway, bench.twins, timeout_s=timeout_s, domain="project_master")
    second = await run_pass(gateway, bench.twins, timeout_s=timeout_s, domain="project_master")
    scored = score(injected, first, master_key)
    r2 = second.report
    return {
        "deals": 3 * per_kind,
        "drifts_injected": scored["drifts_injected"],
        "drifts_found": scored["drifts_found"],
        "recall": scored["recall"],
        "false_positives": scored["false_positives"],
        "escalated": scored["escalated"],
        "seconds": round(first.wall_s, 2),
        "vendor_calls": first.requests["total"],
        "second_pass": {k: r2.get(k) for k in ("found", "new", "repaired", "escalated", "kept")},
        "scored": scored,
        "injected": [asdict(d) for d in injected],
        "pass_1": _brief(first),
        "pass_2": _brief(second),
    }


def _brief(p: Pass) -> dict[str, Any]:
    return {"report": p.report, "requests": p.requests, "wall_s": round(p.wall_s, 2), "cpu": p.cpu}
