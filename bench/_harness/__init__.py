"""What the benches share: statistics and key tallies, the machine description and the
JSON-on-the-last-line report, waits with deadlines, worker and gateway processes and CPU
accounting, Temporal history timings, the bench's own client for the twins, and projects
linked in PSA and ERP as the saga leaves them (shared with the e2e tests)."""

from bench._harness.linking import LinkedProject, link_projects
from bench._harness.processes import (
    SYSTEMS,
    WorkerRunner,
    cpu_budget,
    cpu_delta,
    free_port,
    process_cpu,
    serve_app,
    start_worker_process,
    stop_worker_process,
    worker_env,
)
from bench._harness.report import (
    TempHome,
    add_flags,
    add_options,
    load_average,
    log,
    log_stamped,
    machine,
    print_json,
    run_cancellable,
)
from bench._harness.stats import (
    brief_summary,
    effect,
    kinds_summary,
    marked,
    percentile,
    summary,
    system_summary,
    tally,
)
from bench._harness.topology import GatewayProcess, start_ready_child
from bench._harness.twins import STATIC_TOKEN, Twins
from bench._harness.waiting import bounded, eventually, gather_limited, must_eventually, until

__all__ = [
    "STATIC_TOKEN",
    "SYSTEMS",
    "GatewayProcess",
    "LinkedProject",
    "TempHome",
    "Twins",
    "WorkerRunner",
    "add_flags",
    "add_options",
    "bounded",
    "brief_summary",
    "cpu_budget",
    "cpu_delta",
    "effect",
    "eventually",
    "free_port",
    "gather_limited",
    "kinds_summary",
    "link_projects",
    "load_average",
    "log",
    "log_stamped",
    "machine",
    "marked",
    "must_eventually",
    "percentile",
    "print_json",
    "process_cpu",
    "run_cancellable",
    "serve_app",
    "start_ready_child",
    "start_worker_process",
    "stop_worker_process",
    "summary",
    "system_summary",
    "tally",
    "until",
    "worker_env",
]
