"""The doctor workflow on the time-skipping server: one activity, search attribute, result."""

from __future__ import annotations

import uuid

from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.doctor import PingInput, PingResult, ping
from workflows.doctor import DoctorWorkflow


async def test_doctor_runs_its_activity_on_the_time_skipping_server(
    ts_env: WorkflowEnvironment,
) -> None:
    queue = f"q-{uuid.uuid4()}"
    async with Worker(
        ts_env.client, task_queue=queue, workflows=[DoctorWorkflow], activities=[ping]
    ):
        result = await ts_env.client.execute_workflow(
            DoctorWorkflow.run,
            PingInput(message="hi"),
            id=f"doctor-{uuid.uuid4()}",
            task_queue=queue,
        )
    assert isinstance(result, PingResult)
    assert result.message == "hi"
