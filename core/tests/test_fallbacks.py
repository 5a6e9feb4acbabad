"""report_each: one run's reports in batch order, each after the previous one's answer; different
runs' reports concurrently; a failing report failing no other."""

from __future__ import annotations

import asyncio

from trine_core import RunNotFound, report_each
from trine_proto.trine.v1 import ReportBatchRequest, ReportRequest, ReportResponse


async def test_one_runs_reports_go_in_order_and_runs_go_concurrently() -> None:
    answered: list[str] = []
    r2_under_way = asyncio.Event()

    async def report(message: ReportRequest) -> ReportResponse:
        if message.lease_id == "r1-step":
            await r2_under_way.wait()  # never set unless r2 goes while r1's first report waits
        elif message.lease_id == "r2-step":
            r2_under_way.set()
        elif "r1-step" not in answered:  # r1-done
            raise AssertionError("r1's completion went before its step's answer")
        answered.append(message.lease_id)
        return ReportResponse()

    batch = ReportBatchRequest(
        reports=[
            ReportRequest(run_id="r1", lease_id="r1-step"),
            ReportRequest(run_id="r2", lease_id="r2-step"),
            ReportRequest(run_id="r1", lease_id="r1-done"),
        ]
    )
    answer = await asyncio.wait_for(report_each(report, batch), 5)
    assert [result.error_message for result in answer.results] == ["", "", ""]
    assert answered == ["r2-step", "r1-step", "r1-done"]


async def test_a_refused_or_failing_report_fails_no_other() -> None:
    async def report(message: ReportRequest) -> ReportResponse:
        if message.lease_id == "gone":
            raise RunNotFound("no run r1")
        if message.lease_id == "broken":
            raise ValueError("bad bytes")
        return ReportResponse()

    batch = ReportBatchRequest(
        reports=[
            ReportRequest(run_id="r1", lease_id="gone"),
            ReportRequest(run_id="r1", lease_id="fine"),
            ReportRequest(run_id="r2", lease_id="broken"),
        ]
    )
    gone, fine, broken = (await report_each(report, batch)).results
    assert (gone.error_code, gone.error_message) == ("run_not_found", "no run r1")
    assert fine.response is not None
    assert not fine.error_code
    assert broken.error_code == "internal"
    assert broken.error_message == "ValueError: bad bytes"
