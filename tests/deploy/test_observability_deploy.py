"""deploy/: the Prometheus config and alert rules pass promtool, an alert fires on the series
it is about, and every metric the dashboards and rules query exists in the code (a renamed
metric breaks this test, not a dashboard in production).

promtool comes from Debian's `prometheus` package (`.ci/run` installs it); without it the
promtool tests skip and say so."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.core import Metric

import activities.time_to_invoice.batch  # noqa: F401 - registers POSTING_LATENCY, ENTRY_OUTCOMES
import connectors._http  # noqa: F401 - registers the vendor request and quota metrics
from gateway.indicators import BusinessIndicators
from gateway.metrics import GatewayMetrics
from gateway.routes.reconciliations import ReconciliationGauges
from store import Store, make_engine, upgrade
from store.repository.indicators import IndicatorThresholds

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "deploy" / "prometheus"
GRAFANA = ROOT / "deploy" / "grafana"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None,
    reason="promtool not installed (apt-get install prometheus; .ci/run does it)",
)

SDK_METRICS = frozenset(
    {
        # Temporal Core SDK metrics the dashboards and rules use (worker_metrics_port). Core
        # exports counters without a `_total` suffix and histograms in milliseconds.
        "temporal_activity_execution_failed",
        "temporal_activity_schedule_to_start_latency_bucket",
        "temporal_workflow_completed",
        "temporal_workflow_failed",
    }
)
PROMETHEUS_BUILTINS = frozenset({"up"})
_NAME = re.compile(r"\b((?:pssync|temporal)_[a-z0-9_]+)\b")
_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("_count", "_sum", "_created"),
}


def _names(families: Iterator[Metric]) -> set[str]:
    out: set[str] = set()
    for family in families:
        out.add(family.name)
        out.update(family.name + s for s in _SUFFIXES.get(family.type, ()))
        out.update(sample.name for sample in family.samples)
    return out


@pytest.fixture(scope="module")
def code_metrics(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    """Every metric name pssync's code exposes: the gateway's registry with the store-read
    collectors (on an empty store), and the default registry the worker serves."""
    url = f"sqlite:///{tmp_path_factory.mktemp('metrics')}/store.db"
    upgrade(url)
    engine = make_engine(url)
    try:
        store = Store(engine)
        gateway = GatewayMetrics(CollectorRegistry())
        gateway.registry.register(ReconciliationGauges(store))
        gateway.registry.register(BusinessIndicators(store, IndicatorThresholds()))
        names = _names(gateway.registry.collect()) | _names(REGISTRY.collect())
    finally:
        engine.dispose()
    # Families a store-read collector yields only with rows (labelled, none yet) still appear.
    assert "pssync_unposted_labor_hours" in names
    assert "pssync_reconciliation_last_success_timestamp_seconds" in names
    return names


def _rules() -> dict[str, Any]:
    return yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())


def _dashboards() -> dict[str, dict[str, Any]]:
    return {
        p.name: json.loads(p.read_text()) for p in sorted((GRAFANA / "dashboards").glob("*.json"))
    }


def queries() -> list[tuple[str, str]]:
    """(where, PromQL) of every alert rule and dashboard target."""
    out = [
        (f"alerts.yml {rule['alert']}", str(rule["expr"]))
        for group in _rules()["groups"]
        for rule in group["rules"]
    ]
    for name, board in _dashboards().items():
        for panel in board["panels"]:
            out += [(f"{name} {panel['title']}", t["expr"]) for t in panel["targets"]]
    return out


def unknown_metrics(expr: str, known: set[str]) -> set[str]:
    return {n for n in _NAME.findall(expr) if n not in known and n not in SDK_METRICS}


def test_every_queried_metric_exists_in_the_code(code_metrics: set[str]) -> None:
    found = queries()
    assert len(found) > 30
    missing = {where: unknown_metrics(expr, code_metrics) for where, expr in found}
    assert not {k: v for k, v in missing.items() if v}


def test_a_renamed_metric_is_caught(code_metrics: set[str]) -> None:
    assert unknown_metrics("max(pssync_unposted_labour_oldest_seconds) > 3600", code_metrics) == {
        "pssync_unposted_labour_oldest_seconds"
    }
    assert unknown_metrics("rate(temporal_activity_execution_failed[5m])", code_metrics) == set()


def test_the_executive_dashboard_shows_each_indicator() -> None:
    exprs = " ".join(
        t["expr"] for p in _dashboards()["executive.json"]["panels"] for t in p["targets"]
    )
    for indicator in (
        "pssync_time_posting_latency_seconds_bucket",
        "pssync_unposted_labor_hours",
        "pssync_unposted_labor_oldest_seconds",
        "pssync_invoice_trigger_delay_max_seconds",
        "pssync_project_records_stale",
        "pssync_forecast_variance_hours",
        "pssync_assignment_budget_overrun_ratio",
        "pssync_exception_items_open",
        "pssync_sla_breaches",
        "pssync_time_postings_reversed",
        "pssync_gateway_relay_replays_total",
    ):
        assert indicator in exprs, indicator


def test_dashboards_use_the_provisioned_datasource() -> None:
    provisioned = yaml.safe_load((GRAFANA / "provisioning/datasources/prometheus.yml").read_text())
    uid = provisioned["datasources"][0]["uid"]
    provider = yaml.safe_load((GRAFANA / "provisioning/dashboards/pssync.yml").read_text())
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"
    for name, board in _dashboards().items():
        ids = [p["id"] for p in board["panels"]]
        assert len(ids) == len(set(ids)), name
        for panel in board["panels"]:
            assert panel["datasource"]["uid"] == uid, (name, panel["title"])


def test_alerts_cover_what_the_issue_asks() -> None:
    exprs = {r["alert"]: str(r["expr"]) for g in _rules()["groups"] for r in g["rules"]}
    assert "pssync_unposted_labor_oldest_seconds" in exprs["PssyncUnpostedLaborOld"]
    assert "pssync_sla_breaches" in exprs["PssyncSlaBreach"]
    assert (
        "pssync_reconciliation_drift_oldest_seconds" in exprs["PssyncDriftOpenAfterReconciliation"]
    )
    assert "pssync_vendor_requests_total" in exprs["PssyncSystemErrorRate"]
    assert "temporal_" not in exprs["PssyncSystemErrorRate"]
    assert "pssync_vendor_quota_used" in exprs["PssyncVendorQuotaSaturated"]
    assert (
        "pssync_reconciliation_last_success_timestamp_seconds"
        in exprs["PssyncReconciliationNotRun"]
    )


def test_per_system_panels_read_the_vendor_request_metrics() -> None:
    """Calls, errors and request time per system come from the connectors' own per-request
    counts, not from activity failures (which stay, per activity, where they mean that)."""
    boards = _dashboards()
    per_system = {
        p["title"]: " ".join(t["expr"] for t in p["targets"])
        for board in boards.values()
        for p in board["panels"]
        if p["title"].startswith("Vendor ")
    }
    for title in (
        "Vendor requests by system and outcome",
        "Vendor error rate by system",
        "Vendor requests by system (1 h)",
        "Vendor error rate by system (1 h)",
    ):
        assert "pssync_vendor_requests_total" in per_system[title], title
    assert (
        "pssync_vendor_request_duration_seconds_bucket"
        in per_system["Vendor request time p95 by system"]
    )
    assert not any("temporal_" in expr for expr in per_system.values())


def _promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run(
        [PROMTOOL, *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )


@needs_promtool
def test_promtool_accepts_the_config() -> None:
    # --syntax-only: the bearer token file exists only in a deployment.
    done = _promtool("check", "config", "--syntax-only", "prometheus.yml", cwd=PROMETHEUS)
    assert done.returncode == 0, done.stdout + done.stderr


@needs_promtool
def test_promtool_accepts_the_rules() -> None:
    done = _promtool("check", "rules", "alerts.yml", cwd=PROMETHEUS)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


@needs_promtool
def test_promtool_rejects_a_broken_rule(tmp_path: Path) -> None:
    (tmp_path / "bad.yml").write_text(
        "groups:\n- name: x\n  rules:\n  - alert: X\n    expr: sum by (\n"
    )
    assert _promtool("check", "rules", "bad.yml", cwd=tmp_path).returncode != 0


@needs_promtool
def test_unposted_labor_and_drift_alerts_fire_on_their_series(tmp_path: Path) -> None:
    """promtool's rule unit test: labor waiting 5 h fires after 10 minutes, 1 h never; a drift
    older than the last successful run fires, a fresh one does not."""
    shutil.copy(PROMETHEUS / "alerts.yml", tmp_path / "alerts.yml")
    labor = 'domain="labor_actuals"'
    billing = 'domain="billing_status"'
    series = [
        ('pssync_unposted_labor_oldest_seconds{state="exception"}', "18000+60x40"),  # 5 h
        ('pssync_unposted_labor_oldest_seconds{state="posting"}', "3600+60x40"),  # 1 h
        # labor: a drift first seen 2 h before the last run (finished at 0) is still there
        (f"pssync_reconciliation_drift_oldest_seconds{{{labor}}}", "7200+60x40"),
        (f"pssync_reconciliation_last_success_timestamp_seconds{{{labor}}}", "0x40"),
        # billing: the run finished at 10 min, the drift was first seen at 20 min
        (f"pssync_reconciliation_drift_oldest_seconds{{{billing}}}", "_x20 0+60x20"),
        (f"pssync_reconciliation_last_success_timestamp_seconds{{{billing}}}", "600x40"),
    ]
    rules = {r["alert"]: r for g in _rules()["groups"] for r in g["rules"]}

    def fired(name: str, labels: dict[str, str], **values: str) -> dict[str, Any]:
        annotations = {
            k: v.replace("{{ $labels.state }}", labels.get("state", ""))
            .replace("{{ $labels.domain }}", labels.get("domain", ""))
            .replace("{{ $value | humanizeDuration }}", values.get("duration", ""))
            for k, v in rules[name]["annotations"].items()
        }
        return {"exp_labels": {"severity": "warning", **labels}, "exp_annotations": annotations}

    (tmp_path / "test.yml").write_text(
        yaml.safe_dump(
            {
                "rule_files": ["alerts.yml"],
                "evaluation_interval": "1m",
                "tests": [
                    {
                        "interval": "1m",
                        "input_series": [{"series": k, "values": v} for k, v in series],
                        "alert_rule_test": [
                            {
                                "eval_time": "5m",
                                "alertname": "PssyncUnpostedLaborOld",
                                "exp_alerts": [],
                            },
                            {
                                "eval_time": "15m",
                                "alertname": "PssyncUnpostedLaborOld",
                                "exp_alerts": [
                                    fired(
                                        "PssyncUnpostedLaborOld",
                                        {"state": "exception"},
                                        duration="5h 15m 0s",
                                    )
                                ],
                            },
                            {
                                "eval_time": "35m",
                                "alertname": "PssyncDriftOpenAfterReconciliation",
                                "exp_alerts": [
                                    fired(
                                        "PssyncDriftOpenAfterReconciliation",
                                        {"domain": "labor_actuals"},
                                    )
                                ],
                            },
                        ],
                    }
                ],
            }
        )
    )
    done = _promtool("test", "rules", "test.yml", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr


@needs_promtool
def test_a_systems_error_rate_alert_fires_on_its_failed_requests(tmp_path: Path) -> None:
    """promtool's rule unit test over the per-request counters: the ERP failing 3 requests in
    10 fires; the PSA at 5 %, the HCM's rate limits (their own alert) and a CRM whose 5
    requests all failed (too few to judge) do not."""
    shutil.copy(PROMETHEUS / "alerts.yml", tmp_path / "alerts.yml")

    def counter(system: str, outcome: str, per_minute: float) -> dict[str, str]:
        labels = f'system="{system}",method="POST",outcome="{outcome}"'
        return {
            "series": f"pssync_vendor_requests_total{{{labels}}}",
            "values": f"0+{per_minute:g}x40",
        }

    rule = next(
        r for g in _rules()["groups"] for r in g["rules"] if r["alert"] == "PssyncSystemErrorRate"
    )
    annotations = {
        k: v.replace("{{ $labels.system }}", "ERP").replace(
            "{{ $value | humanizePercentage }}", "30%"
        )
        for k, v in rule["annotations"].items()
    }
    (tmp_path / "test.yml").write_text(
        yaml.safe_dump(
            {
                "rule_files": ["alerts.yml"],
                "evaluation_interval": "1m",
                "tests": [
                    {
                        "interval": "1m",
                        "input_series": [
                            counter("ERP", "ok", 7),
                            counter("ERP", "server_error", 2),
                            counter("ERP", "timeout", 1),
                            counter("PSA", "ok", 19),
                            counter("PSA", "client_error", 1),
                            counter("HCM", "ok", 5),
                            counter("HCM", "rate_limited", 5),
                            counter("CRM", "connection_error", 0.5),
                        ],
                        "alert_rule_test": [
                            {"eval_time": "5m", "alertname": "PssyncSystemErrorRate"},
                            {
                                "eval_time": "25m",
                                "alertname": "PssyncSystemErrorRate",
                                "exp_alerts": [
                                    {
                                        "exp_labels": {"severity": "warning", "system": "ERP"},
                                        "exp_annotations": annotations,
                                    }
                                ],
                            },
                        ],
                    }
                ],
            }
        )
    )
    done = _promtool("test", "rules", "test.yml", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
