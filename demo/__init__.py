"""The demo scenario (`pssync demo`): deals won in the CRM twin, a duplicate webhook storm, an
exception fixed through the API, a change order, a termination, time to invoice and a
reconciliation pass after drift, each checked against what the systems hold.

Importable without the CLI (`starter`) or typer: tests and benches reuse its moves and waits.
"""

from demo.change_order import change_order_scene
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
from demo.scenario import run_demo, run_scenario
from demo.termination import TerminationOutcome, termination_scene
from demo.time_to_invoice import time_to_invoice_scene
from demo.waits import actor_token, wait_for_open_exception, wait_for_step, wait_for_workflow

__all__ = [
    "Check",
    "DealOutcome",
    "TerminationOutcome",
    "actor_token",
    "change_order_scene",
    "checks_table",
    "deal_from_template",
    "provisionable_templates",
    "reconciliation_scene",
    "redeliver_webhook",
    "run_demo",
    "run_scenario",
    "systems_hold",
    "termination_scene",
    "time_to_invoice_scene",
    "wait_for_open_exception",
    "wait_for_step",
    "wait_for_workflow",
    "win_deal",
]
