"""The composition root: builds clients, connectors and the store from settings, registers
workflows and activities, and runs the workers. Nothing else constructs infrastructure.

    pssync worker            # connect to settings.temporal and run until Ctrl-C
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Sequence
from typing import Any

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.envconfig import ClientConfig
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.worker import Worker

from activities import doctor as doctor_activities
from contracts.naming import TASK_QUEUE
from contracts.settings import Settings, load_settings
from workflows.doctor import DoctorWorkflow

log = logging.getLogger("pssync.worker")

WORKFLOWS: Sequence[type] = (DoctorWorkflow,)


def prometheus_runtime(port: int) -> Runtime:
    """A Temporal runtime exporting SDK metrics for Prometheus on 127.0.0.1:`port`."""
    return Runtime(
        telemetry=TelemetryConfig(metrics=PrometheusConfig(bind_address=f"127.0.0.1:{port}"))
    )


async def connect_client(
    settings: Settings, *, target: str | None = None, runtime: Runtime | None = None
) -> Client:
    """A client with the one pydantic data converter pssync uses everywhere.

    Connection options come from a Temporal envconfig profile when one is named, then from
    pssync's own settings (address, namespace, TLS, API key)."""
    options: dict[str, Any] = {}
    if settings.temporal.envconfig_profile:
        options.update(
            ClientConfig.load_client_connect_config(profile=settings.temporal.envconfig_profile)
        )
    options["target_host"] = target or settings.temporal.address
    options["namespace"] = settings.temporal.namespace
    if settings.temporal.api_key is not None:
        options["api_key"] = settings.temporal.api_key.get_secret_value()
        options["tls"] = True
    elif settings.temporal.tls:
        options["tls"] = True
    if runtime is not None:
        options["runtime"] = runtime
    return await Client.connect(data_converter=pydantic_data_converter, **options)


def activity_callables(settings: Settings) -> list[Any]:
    """Every activity this deployment runs, bound to its connectors and store."""
    return [doctor_activities.ping]


def build_workers(client: Client, settings: Settings) -> list[Worker]:
    return [
        Worker(
            client,
            task_queue=TASK_QUEUE,
            workflows=list(WORKFLOWS),
            activities=activity_callables(settings),
        )
    ]


async def run_workers(client: Client, settings: Settings, stop: asyncio.Event) -> None:
    """Run every worker until `stop` is set, then shut them down gracefully."""
    workers = build_workers(client, settings)
    async with contextlib.AsyncExitStack() as stack:
        for w in workers:
            await stack.enter_async_context(w)
        log.info("workers polling %s", ", ".join(w.task_queue for w in workers))
        await stop.wait()


async def _main(settings: Settings) -> None:
    runtime = prometheus_runtime(settings.worker_metrics_port)
    client = await connect_client(settings, runtime=runtime)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await run_workers(client, settings, stop)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    asyncio.run(_main(load_settings()))


if __name__ == "__main__":
    main()
