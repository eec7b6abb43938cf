"""The business indicators on `/metrics`: a Prometheus collector reading the store at scrape
time (`store.repository.indicators`), registered beside `ReconciliationGauges`.

    metrics.registry.register(BusinessIndicators(store, settings.indicators, settings))

Every figure is what the store records, never an estimate:

    pssync_unposted_labor_entries{state}                approved time not live in the ERP
    pssync_unposted_labor_hours{state}                  ... its hours
    pssync_unposted_labor_oldest_seconds{state}         ... how long the oldest has waited
    pssync_invoice_trigger_delay_max_seconds            closed period / milestone -> invoice
    pssync_invoice_trigger_delay_mean_seconds
    pssync_invoice_trigger_delay_invoices               invoices those two summarise
    pssync_invoice_pending_periods                      closed periods still unbilled
    pssync_invoice_pending_oldest_seconds               ... since the oldest closed
    pssync_project_records{system}                      active project records in the ID map
    pssync_project_records_stale{system}                ... not synced for `stale_after_s`
    pssync_project_record_sync_oldest_seconds{system}   age of the least recently synced one
    pssync_forecast_drifts{kind}                        standing forecast-alignment drifts
    pssync_forecast_variance_hours                      sum |staffed - ERP forecast| hours
    pssync_assignment_budget_overrun_amount             sum (assignments' cost - budget)
    pssync_assignment_budget_overrun_ratio              the largest overrun / budget
    pssync_exception_items_open{process, cause}         unresolved exception items
    pssync_exception_items_oldest_seconds{process, cause}
    pssync_sla_breaches{process, sla}                   items past their service level now
    pssync_sla_threshold_seconds{sla}                   the service levels (settings)
    pssync_time_postings_reversed                       compensations: posted time reversed
    pssync_indicators_query_seconds                     what this scrape's queries took

A store that cannot answer leaves the indicators out of that scrape (logged), never fails it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from decimal import Decimal

from prometheus_client.core import GaugeMetricFamily, Metric

from contracts.settings import IndicatorSettings
from contracts.v1.time_to_invoice import PROCESS_TIME_TO_INVOICE
from store import Store
from store.repository.indicators import (
    IndicatorFigures,
    IndicatorThresholds,
    indicator_figures,
)

log = logging.getLogger("pssync.gateway")

SLA_POSTING = "posting"
SLA_INVOICE = "invoice"
SLA_EXCEPTION = "exception_resolution"


def thresholds_of(settings: IndicatorSettings, escalation_after_s: int) -> IndicatorThresholds:
    """The store-side thresholds from the settings (exceptions default to the escalation)."""
    return IndicatorThresholds(
        posting_within_s=settings.posting_within_s,
        invoice_within_s=settings.invoice_within_s,
        exception_within_s=settings.exception_within_s or escalation_after_s,
        stale_after_s=settings.stale_after_s,
    )


class BusinessIndicators:
    """A Prometheus collector: the business indicators read from the store at each scrape."""

    def __init__(
        self,
        store: Store,
        thresholds: IndicatorThresholds,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store = store
        self.thresholds = thresholds
        self.clock = clock

    def describe(self) -> Iterator[Metric]:
        return iter(())

    def collect(self) -> Iterator[Metric]:
        started = time.perf_counter()
        try:
            figures = indicator_figures(self.store, now=self.clock(), thresholds=self.thresholds)
        except Exception as exc:  # the store is down: the rest of /metrics still answers
            log.warning("business indicators unavailable: %s", type(exc).__name__)
            return
        yield from self.families(figures)
        took = GaugeMetricFamily(
            "pssync_indicators_query_seconds",
            "How long this scrape's indicator queries took.",
        )
        took.add_metric([], time.perf_counter() - started)
        yield took

    def families(self, f: IndicatorFigures) -> Iterator[Metric]:
        """The metric families of one set of figures (tests read them directly)."""
        now = f.now

        def age(at: datetime | None) -> float:
            return 0.0 if at is None else max(0.0, (now - at).total_seconds())

        yield from _per_label(
            ["state"],
            [
                (
                    "pssync_unposted_labor_entries",
                    "Approved time entries not live in the ERP, by ledger state (posting: under "
                    "way; exception: waiting for a person).",
                ),
                (
                    "pssync_unposted_labor_hours",
                    "Hours of approved time not live in the ERP, by ledger state.",
                ),
                (
                    "pssync_unposted_labor_oldest_seconds",
                    "How long the oldest approved time entry not live in the ERP has been in its "
                    "state.",
                ),
            ],
            (
                ([state], (u.entries, _float(u.hours), age(u.oldest)))
                for state, u in sorted(f.unposted.items())
            ),
        )

        delays = f.invoices.delays_s
        yield _single(
            "pssync_invoice_trigger_delay_max_seconds",
            "Longest delay from a period's close or a milestone's completion to its invoice, "
            "over invoices billed in the last 30 days (0 when none).",
            max(delays, default=0.0),
        )
        yield _single(
            "pssync_invoice_trigger_delay_mean_seconds",
            "Mean delay from a period's close or a milestone's completion to its invoice, over "
            "invoices billed in the last 30 days (0 when none).",
            sum(delays) / len(delays) if delays else 0.0,
        )
        yield _single(
            "pssync_invoice_trigger_delay_invoices",
            "Invoices for closed periods and completed milestones billed in the last 30 days "
            "(the delays' sample).",
            len(delays),
        )
        yield _single(
            "pssync_invoice_pending_periods",
            "Closed periods (project, month) whose posted, billable time is not invoiced yet.",
            f.invoices.pending_periods,
        )
        yield _single(
            "pssync_invoice_pending_oldest_seconds",
            "Time since the oldest closed period still waiting for its invoice closed.",
            age(f.invoices.oldest_pending_close),
        )

        yield from _per_label(
            ["system"],
            [
                ("pssync_project_records", "Active project records in the ID map, by system."),
                (
                    "pssync_project_records_stale",
                    "Active project records not synced within the staleness threshold, by system.",
                ),
                (
                    "pssync_project_record_sync_oldest_seconds",
                    "Time since the least recently synced active project record was synced, by "
                    "system.",
                ),
            ],
            (
                ([system], (s.records, s.stale, age(s.oldest)))
                for system, s in sorted(f.sync.items())
            ),
        )

        drifts = _gauge(
            "pssync_forecast_drifts",
            "Standing drifts of the forecast-alignment domain, by kind.",
            ["kind"],
        )
        for kind, n in sorted(f.forecast.drifts.items()):
            drifts.add_metric([kind], n)
        yield drifts
        yield _single(
            "pssync_forecast_variance_hours",
            "Sum over standing forecast drifts of |staffed hours - ERP forecast hours|.",
            _float(f.forecast.forecast_hours),
        )
        yield _single(
            "pssync_assignment_budget_overrun_amount",
            "Sum over standing assignment-to-budget variances of the assignments' cost above "
            "the project budget (project currency).",
            _float(f.forecast.budget_overrun),
        )
        yield _single(
            "pssync_assignment_budget_overrun_ratio",
            "The largest (assignments' cost - budget) / budget among standing variances.",
            _float(f.forecast.budget_overrun_ratio_max),
        )

        yield from _per_label(
            ["process", "cause"],
            [
                (
                    "pssync_exception_items_open",
                    "Unresolved (open or escalated) exception items, by process and cause.",
                ),
                (
                    "pssync_exception_items_oldest_seconds",
                    "Age of the oldest unresolved exception item, by process and cause.",
                ),
            ],
            (
                ([process, cause], (g.open, age(g.oldest)))
                for (process, cause), g in sorted(f.exceptions.items())
            ),
        )

        breaches = _gauge(
            "pssync_sla_breaches",
            "What is past its service level now, by process and SLA: approved time not posted "
            "within posting_within_s, closed periods not invoiced within invoice_within_s "
            "(process, month pairs), exception items unresolved within exception_within_s.",
            ["process", "sla"],
        )
        breaches.add_metric([PROCESS_TIME_TO_INVOICE, SLA_POSTING], f.posting_breaches)
        breaches.add_metric([PROCESS_TIME_TO_INVOICE, SLA_INVOICE], f.invoice_breaches)
        for process, n in sorted(f.exception_breaches.items()):
            breaches.add_metric([process, SLA_EXCEPTION], n)
        yield breaches
        levels = _gauge(
            "pssync_sla_threshold_seconds",
            "The service levels the breaches are measured against (settings.indicators).",
            ["sla"],
        )
        levels.add_metric([SLA_POSTING], self.thresholds.posting_within_s)
        levels.add_metric([SLA_INVOICE], self.thresholds.invoice_within_s)
        levels.add_metric([SLA_EXCEPTION], self.thresholds.exception_within_s)
        yield levels
        yield _single(
            "pssync_time_postings_reversed",
            "Compensations of posted time: ledger entries whose ERP posting was reversed.",
            f.reversals,
        )


def _gauge(name: str, doc: str, labels: list[str]) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=labels)


def _per_label(
    labels: list[str],
    families: Sequence[tuple[str, str]],
    rows: Iterable[tuple[list[str], Sequence[float]]],
) -> list[GaugeMetricFamily]:
    """Gauges (name, help) sharing ``labels``, each row giving its label values and one value
    per gauge, in the gauges' order."""
    gauges = [_gauge(name, doc, labels) for name, doc in families]
    for label_values, values in rows:
        for gauge, value in zip(gauges, values, strict=True):
            gauge.add_metric(label_values, value)
    return gauges


def _single(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


def _float(value: Decimal) -> float:
    return float(value)
