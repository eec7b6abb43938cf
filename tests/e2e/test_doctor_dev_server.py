"""The doctor workflow on the real dev server, found again through a custom search attribute."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from temporalio.common import SearchAttributeKey
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.doctor import PingInput, ping
from workflows.doctor import DoctorWorkflow

pytestmark = pytest.mark.e2e

BUSINESS_PROCESS = SearchAttributeKey.for_keyword("BusinessProcess")


async def test_doctor_on_the_dev_server_is_searchable_by_business_process(
    dev_env: WorkflowEnvironment,
) -> None:
    queue = f"q-{uuid.uuid4()}"
    wf_id = f"doctor-{uuid.uuid4()}"
    async with Worker(
        dev_env.client, task_queue=queue, workflows=[DoctorWorkflow], activities=[ping]
    ):
        handle = await dev_env.client.start_workflow(
            DoctorWorkflow.run, PingInput(message="hi"), id=wf_id, task_queue=queue
        )
        assert (await handle.result()).message == "hi"
    desc = await handle.describe()
    assert desc.typed_search_attributes.get(BUSINESS_PROCESS) == "doctor"
    # Visibility (list) is eventually consistent on the dev server: wait for it, bounded.
    query = f"BusinessProcess = 'doctor' AND WorkflowId = '{wf_id}'"
    found: list[str] = []
    deadline = asyncio.get_running_loop().time() + 10
    while not found and asyncio.get_running_loop().time() < deadline:
        found = [wf.id async for wf in dev_env.client.list_workflows(query)]
        if not found:
            await asyncio.sleep(0.2)
    assert found == [wf_id]
