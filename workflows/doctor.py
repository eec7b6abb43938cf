"""DoctorWorkflow: the smallest real run — one activity, search attributes, current details.

`pssync doctor` starts it to prove the stack works end to end (client -> server -> worker ->
activity -> result). Accepts no signals, updates or queries.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

from workflows._common import BUSINESS_PROCESS

with workflow.unsafe.imports_passed_through():
    from activities.doctor import PingInput, PingResult, ping


@workflow.defn(name="Doctor")
class DoctorWorkflow:
    @workflow.run
    async def run(self, request: PingInput) -> PingResult:
        workflow.upsert_search_attributes([BUSINESS_PROCESS.value_set("doctor")])
        workflow.set_current_details(f"pinging a worker with {request.message!r}")
        result = await workflow.execute_activity(
            ping,
            request,
            start_to_close_timeout=timedelta(seconds=30),
            summary="ping a worker",
        )
        workflow.set_current_details("done")
        return result
