"""The demo scenario end to end (`run_scenario`) and `pssync demo` itself (`run_demo`): the
stack started, the scenes driven, every check printed."""

from __future__ import annotations

import asyncio
from typing import Any

from rich.console import Console
from rich.table import Table

from contracts.settings import DEV_TOKENS, Settings
from demo.change_order import change_order_scene, submit_change_order
from demo.checks import Check, checks_table
from demo.deals import (
    DealOutcome,
    deal_from_template,
    provisionable_templates,
    redeliver_webhook,
    systems_hold,
    win_deal,
)
from demo.reconciliation import reconciliation_scene
from demo.termination import termination_scene
from demo.time_to_invoice import RATED_ROLE, hold_missing_rate_card, time_to_invoice_scene
from demo.waits import actor_token, wait_for_open_exception, wait_for_workflow
from demo.workforce import workforce_scene
from stack import Stack, print_urls, running_stack, stop_on_signal

console = Console()


async def run_scenario(
    stack: Stack, *, deals: int = 3, say: Any = print, won: list[DealOutcome] | None = None
) -> list[Check]:
    """The demo: several deals won, one webhook delivered 50 times at once, one deal with a
    bad cost center fixed through the exceptions API, then the scenes on the projects (a change
    order, a termination, two people joining, time to invoice, reconciliation). Returns every
    check; the deals won are appended to `won` when given."""
    from sandbox.seed import build_firm

    firm = build_firm(7)
    templates = provisionable_templates(firm)
    checks: list[Check] = []
    outcomes: list[DealOutcome] = [] if won is None else won

    say(f"winning {deals} deals in the CRM twin")
    for i in range(deals):
        outcomes.append(await win_deal(stack, deal_from_template(firm, templates[i])))

    say("delivering one won-deal webhook 50 times at once")
    codes = await redeliver_webhook(stack, outcomes[0].opportunity_id, 50)
    refused = [c for c in codes if c >= 400]
    checks.append(Check("50 copies of one webhook, none refused", not refused, str(set(codes))))

    say("winning a deal with an unknown cost center")
    bad = await win_deal(stack, deal_from_template(firm, templates[deals], cost_center="CC-404"))
    outcomes.append(bad)
    good_cc = firm.opportunities[templates[deals]].cost_center
    checks.append(await _fix_cost_center(stack, bad, good_cc, say))

    for outcome in outcomes:
        say(f"waiting for {outcome.name}")
        checks.extend(await _provisioned(stack, outcome))

    say("a change order on the first project, approved through the gateway")
    checks.extend(await change_order_scene(stack, outcomes[0], say))

    say("a consultant on the second project leaves the firm")
    checks.extend((await termination_scene(stack, outcomes[1], say)).checks)

    say("two people join in Sydney: a hire staffed the same day, raises from their own dates")
    # On the last project: the first one's time, invoice and reconciliation stay its scenes'.
    workforce = await workforce_scene(stack, outcomes[-1], say)
    checks.extend(workforce.checks)

    say("time and expense on the first project, to the ERP and an invoice")
    checks.extend(await time_to_invoice_scene(stack, outcomes[0], say))

    say("a lost webhook and an ERP posting edited by hand, then a reconciliation pass")
    # On the first project, after its time was posted and invoiced: invoicing moved the
    # entries' PSA versions, which must not read as drift.
    checks.extend(await reconciliation_scene(stack, outcomes[0], say))

    runs = [
        wf.run_id
        async for wf in stack.client.list_workflows(f"WorkflowId = '{outcomes[0].workflow_id}'")
    ]
    checks.append(Check("50 duplicate webhooks made one run", len(runs) <= 1, f"{len(runs)} run"))
    console.print(_holdings_table(outcomes))
    console.print(workforce.table)
    return checks


async def _fix_cost_center(stack: Stack, bad: DealOutcome, good_cc: str, say: Any) -> Check:
    """Wait for the bad deal's exception item and resolve it through the API with `good_cc`."""
    import httpx

    item = await wait_for_open_exception(stack, bad.workflow_id)
    say(f"exception {item.cause_code} on {item.field}: resolving with cost center {good_cc}")
    token = actor_token(stack, "ops")
    async with httpx.AsyncClient(timeout=60) as http:
        response = await http.post(
            f"{stack.urls['gateway']}/api/exceptions/{item.id}/resolution",
            headers={"Authorization": f"Bearer {token}"},
            json={"action": "retry_with_data", "corrections": {"cost_center": good_cc}},
        )
    return Check(
        f"exception {item.cause_code} resolved through the API",
        response.status_code == 200,
        f"HTTP {response.status_code}",
    )


async def _provisioned(stack: Stack, outcome: DealOutcome) -> list[Check]:
    """Wait for the deal's saga to finish, note its IDs, and check what each system holds."""
    from contracts.v1.processes import ProvisionProjectResult

    handle = await wait_for_workflow(
        stack.client, outcome.workflow_id, result_type=ProvisionProjectResult
    )
    result = await asyncio.wait_for(handle.result(), timeout=120)
    outcome.enterprise_id = result.enterprise_id
    outcome.psa_project_id = result.psa_project_id
    outcome.erp_project_id = result.erp_project_id
    outcome.status = "provisioned"
    return await systems_hold(stack, outcome)


def _holdings_table(outcomes: list[DealOutcome]) -> Table:
    """The "what each system now holds" table: one row per deal."""
    table = Table(title="what each system now holds")
    for column in ("deal", "enterprise ID", "PSA project", "ERP project", "status"):
        table.add_column(column)
    for o in outcomes:
        table.add_row(
            o.name, o.enterprise_id or "", o.psa_project_id or "", o.erp_project_id or "", o.status
        )
    return table


async def run_demo(settings: Settings, *, seed: int, keep_running: bool) -> bool:
    """Start the stack, drive the scenario, check what each system holds. True if all held.
    `keep_running`: once every check held, leave work for the console on the last deal won (a
    `MissingRateCard` item, a change order waiting for approval) and stay up until Ctrl-C."""
    async with running_stack(settings, seed=seed) as stack:
        print_urls(stack, console)
        won: list[DealOutcome] = []
        try:
            checks = await run_scenario(stack, say=_say, won=won)
        except Exception as exc:  # the demo reports, it does not crash
            checks = [Check("scenario ran to the end", False, f"{type(exc).__name__}: {exc}")]
        console.print(checks_table(checks))
        if keep_running:
            if won and all(check.held for check in checks):
                await _leave_for_the_console(stack, won[-1], _say)
            console.print("--keep-running: the stack stays up; Ctrl-C stops everything.")
            await stop_on_signal().wait()
    return all(check.held for check in checks)


def _say(message: str) -> None:
    console.print(f"[cyan]>[/cyan] {message}")


async def _leave_for_the_console(stack: Stack, deal: DealOutcome, say: Any) -> None:
    """`--keep-running`: leave one `MissingRateCard` item open and one change order waiting
    for approval on `deal`'s project, and say where to sign in to handle them."""
    try:
        say(f"for the console: an entry on {deal.name} for a role its rate card lacks")
        _entry, item = await hold_missing_rate_card(stack, deal)
        say(f"for the console: a change order on {deal.name}, left waiting for approval")
        co_id, _run, status = await submit_change_order(stack, deal)
    except Exception as exc:  # the checks already held; the stack stays up regardless
        console.print(f"[yellow]could not leave work for the console: {exc!r}[/yellow]")
        return
    url = stack.urls.get("console", f"{stack.urls['gateway']}/console")
    tokens = {role: DEV_TOKENS[role] for role in status["required_roles"] if role in DEV_TOKENS}
    console.print(f"The console: {url}")
    console.print(
        f"  sign in with [bold]{DEV_TOKENS['delivery_manager']}[/bold]: {item.cause_code} item "
        f"{item.id} waits in {url}/exceptions (correct its role to {RATED_ROLE} and retry)"
    )
    console.print(f"  change order {co_id} waits in {url}/approvals for:")
    for role, token in tokens.items():
        console.print(f"    {role}: sign in with [bold]{token}[/bold]")
