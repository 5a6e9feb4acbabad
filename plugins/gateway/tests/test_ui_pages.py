"""The web console's pages (``/ui``): what each one shows of the runs, a run, its timeline, the
functions and the workers; and the setting that turns the console off."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator

import httpx
import pytest
from conftest import Gateway, start
from drive import (
    T0,
    cancel_observed,
    emit,
    sleep,
    start_child,
    step_completed,
    step_failed,
    step_started,
    wait_signal,
)
from html_page import Page

from trine_core import MAX_PAYLOAD_BYTES, Settings, SettingsRegistry, Unavailable, WorkerRegistry
from trine_core.testing.memory import MemoryEngine
from trine_core.testing.workers import MemoryWorkerRegistry
from trine_gateway import GatewayServer, Lifecycle, create_app
from trine_gateway.plugin import HTTP_ADDR, trine_add_settings
from trine_gateway.ui import UI
from trine_proto.trine.v1 import ErrorInfo, FunctionSpec, VersioningMode


async def page(gateway: Gateway, path: str, expect: int = 200, **params: str) -> Page:
    response = await gateway.http.get(path, params=params or None)
    assert response.status_code == expect, response.text
    assert response.headers["content-type"].startswith("text/html")
    return Page(response.text)


async def test_ui_redirects_to_the_runs(gateway: Gateway) -> None:
    response = await gateway.http.get("/ui")
    assert response.status_code in (301, 302, 307, 308)
    assert response.headers["location"].endswith("/ui/runs")


async def test_runs_are_listed_newest_first_with_their_status(gateway: Gateway) -> None:
    first = await start(gateway)
    gateway.clock.now_ms += 1000
    second = await start(gateway, "echo")
    await gateway.drive.complete(first, {"ok": True})
    runs = await page(gateway, "/ui/runs")
    rows = [e for e in runs.elements if e.tag == "tr"][1:]
    assert [row.text.split()[:3] for row in rows] == [
        [second, "echo", "pending"],
        [first, "order", "completed"],
    ]
    assert f"/ui/runs/{first}" in runs.links
    assert "2023-11-14 22:13:21.123 UTC" in rows[0].text


async def test_runs_are_filtered_by_status_function_and_time(gateway: Gateway) -> None:
    old = await start(gateway)
    gateway.clock.now_ms += 3_600_000
    new = await start(gateway)
    echo = await start(gateway, "echo")
    await gateway.drive.complete(new, 1)

    async def listed(**params: str) -> list[str]:
        shown = await page(gateway, "/ui/runs", **params)
        return [e.text for e in shown.by_class("mono") if e.tag == "a"]

    assert await listed(status="completed") == [new]
    assert await listed(function="order") == [new, old]
    assert await listed(function="order", status="pending") == [old]
    # from/to are UTC; T0 + 1 h is 23:13:20.123
    assert await listed(**{"from": "2023-11-14T23:00"}) == [echo, new]
    assert await listed(to="2023-11-14T23:00") == [old]
    assert await listed(**{"from": "2023-11-14T22:00", "to": "2023-11-14T22:30"}) == [old]
    bad = await page(gateway, "/ui/runs", status="sleeping", to="yesterday")
    problems = [e.text for e in bad.by_class("error")]
    assert any("status: 'sleeping'" in p for p in problems), problems
    assert any("to: 'yesterday'" in p for p in problems), problems


async def test_runs_are_paged(gateway: Gateway) -> None:
    ids = [await start(gateway) for _ in range(25)]
    first = await page(gateway, "/ui/runs", limit="20")
    shown = [e.text for e in first.by_class("mono") if e.tag == "a"]
    assert shown == ids[::-1][:20]
    older = [link for link in first.links if "page=" in link]
    assert len(older) == 1
    assert "limit=20" in older[0]
    second = await page(gateway, older[0])
    assert [e.text for e in second.by_class("mono") if e.tag == "a"] == ids[::-1][20:]
    assert not [link for link in second.links if "page=" in link]
    assert "/ui/runs?limit=20" in second.links  # back to the newest


async def test_a_run_shows_its_input_result_and_steps(gateway: Gateway) -> None:
    run_id = (
        await gateway.http.post(
            "/v1/runs", json={"function": "order", "input": {"order_id": "o-1", "note": "<b>hi"}}
        )
    ).json()["id"]
    boom = ErrorInfo(
        type="IOError", message="card declined", traceback="Traceback: line 3", retryable=True
    )
    drive = gateway.drive
    await drive.report(run_id, step_started(0, "charge"))
    gateway.clock.now_ms += 250
    await drive.report(run_id, step_failed(0, "charge", boom))
    gateway.clock.now_ms += 1000
    started = T0 + 1250
    await drive.report(
        run_id,
        step_started(0, "charge", attempt=2),
        step_completed(
            0, "charge", {"txn": "t-1"}, attempt=2, started_at_ms=started, ended_at_ms=started + 40
        ),
    )
    await drive.complete(run_id, {"shipped": True})
    run = await page(gateway, f"/ui/runs/{run_id}")
    assert run.by_id("run-status").text == "completed"
    assert '"order_id": "o-1"' in run.text
    assert "&lt;b&gt;hi" in run.html  # payloads are escaped
    assert '"shipped": true' in run.by_id("run-result").text
    step = run.by_id("entry-0")
    assert step.attrs["data-state"] == "completed"
    attempts = [e.text for e in step_rows(run, "entry-0")]
    assert attempts[0].startswith("1 2023-11-14 22:13:20.123 UTC 250 ms retrying: IOError card")
    assert "retry at" in attempts[0]
    assert attempts[1].startswith("2 2023-11-14 22:13:21.373 UTC 40 ms completed")
    assert '"txn": "t-1"' in step.text
    assert run.by_id("live").attrs["data-final"] == "true"
    assert run.by_id("actions").attrs.get("hidden") is not None  # nothing to do on a final run


def step_rows(run: Page, entry: str) -> list[object]:
    element = run.by_id(entry)
    rows: list[object] = []

    def walk(e: object) -> None:
        for child in e.children:  # type: ignore[attr-defined]
            if child.tag == "tr" and "attempt" in child.classes:
                rows.append(child)
            walk(child)

    walk(element)
    return rows


async def test_a_failed_run_shows_its_error_and_traceback(gateway: Gateway) -> None:
    run_id = await start(gateway)
    error = ErrorInfo(type="ValueError", message="bad order", traceback="File x, line 1\nboom")
    await gateway.drive.fail(run_id, error)
    run = await page(gateway, f"/ui/runs/{run_id}")
    assert run.by_id("run-status").text == "failed"
    shown = run.by_id("run-error").text
    assert "ValueError: bad order" in shown
    assert "File x, line 1 boom" in shown
    retry = run.by_id("retry-form")  # a failed run can be retried
    assert retry.attrs["action"] == f"/ui/runs/{run_id}/retry"
    assert retry.attrs["method"] == "post"


async def test_a_blocked_run_shows_why_its_builds_and_a_retry(gateway: Gateway) -> None:
    gateway.drive.build_id = "b-1"
    await gateway.drive.register(*gateway.memory.functions.values())
    run_id = await start(gateway)
    drift = ErrorInfo(
        type="NonDeterminismError", message="at 1: step 'a' vs step 'b'", traceback="wf.py:3"
    )
    await gateway.drive.block(run_id, drift)
    run = await page(gateway, f"/ui/runs/{run_id}")
    assert run.by_id("run-status").text == "blocked"
    assert "status-blocked" in run.by_id("run-status").classes
    assert run.by_id("live").attrs["data-final"] == "false"  # it follows the run's events
    assert "NonDeterminismError: at 1: step 'a' vs step 'b'" in run.by_id("run-error").text
    assert run.by_id("run-build").text == "b-1"
    assert run.by_id("run-blocked-build").text.startswith("b-1: its code raised the error")
    assert run.by_id("retry-form").attrs["action"] == f"/ui/runs/{run_id}/retry"
    assert not run.has_id("run-retries")
    followed = json.loads(run.by_id("live").attrs["data-event-types"])
    assert {"run.blocked", "run.retried", "run.moved"} <= set(followed)
    live = await page(gateway, f"/ui/runs/{run_id}/live")  # what the page's script swaps in
    assert live.by_id("retry-form").attrs["action"] == f"/ui/runs/{run_id}/retry"
    listed = await page(gateway, "/ui/runs", status="blocked")
    rows = [e for e in listed.elements if e.tag == "tr"][1:]
    assert [row.text.split()[:3] for row in rows] == [[run_id, "order", "blocked"]]
    assert rows[0].text.split()[-1] == "b-1"  # the build column


async def test_a_run_that_is_not_failed_offers_no_retry(gateway: Gateway) -> None:
    run_id = await start(gateway)
    run = await page(gateway, f"/ui/runs/{run_id}")
    assert not run.has_id("retry-form")
    assert run.by_id("run-build").text == "none yet"
    await gateway.drive.complete(run_id, 1)
    assert not (await page(gateway, f"/ui/runs/{run_id}")).has_id("retry-form")


async def test_a_pinned_run_whose_build_is_gone_says_it_waits_for_it(gateway: Gateway) -> None:
    gateway.drive.build_id = "b-1"
    await gateway.drive.register(FunctionSpec(name="order", versioning=VersioningMode.PINNED))
    run_id = await start(gateway)
    await gateway.drive.report(run_id, step_completed(0, "reserve", 1))
    await gateway.drive.release(run_id)
    gateway.clock.now_ms += 60_000
    run = await page(gateway, f"/ui/runs/{run_id}")
    assert run.by_id("run-waiting-for-build").text.startswith("b-1: no worker of it")
    listed = await page(gateway, "/ui/runs")
    assert "waiting for build b-1" in listed.by_class("runs")[0].text


async def test_builds_page_lists_builds_with_their_runs_and_state(gateway: Gateway) -> None:
    empty = await page(gateway, "/ui/builds")
    assert "No build is known yet" in empty.text
    gateway.drive.build_id = "b-1"
    await gateway.drive.register(FunctionSpec(name="order", versioning=VersioningMode.PINNED))
    run_id = await start(gateway)
    await gateway.drive.report(run_id, step_completed(0, "reserve", 1))  # b-1 takes work now
    gateway.drive.build_id = "b-2"
    await gateway.drive.register(FunctionSpec(name="echo"))
    builds = await page(gateway, "/ui/builds")
    assert builds.by_id("build-b-1").text.split()[:4] == ["b-1", "connected", "1", "order"]
    assert builds.by_id("build-b-2").text.split()[:4] == ["b-2", "gone", "0", "echo"]
    assert "/ui/runs?function=order" in builds.links
    assert "/ui/builds" in builds.links  # in the navigation


async def test_waits_children_and_parents_are_shown(gateway: Gateway) -> None:
    run_id = await start(gateway)
    drive = gateway.drive
    await gateway.http.post(f"/v1/runs/{run_id}/signals/early", json=1)  # kept for later
    await drive.suspend_on(
        run_id,
        step_completed(0, "charge", 1),
        sleep(1, until_ms=T0 + 60_000),
        wait_signal(2, "approve", timeout_ms=3_600_000),
        start_child(3, "echo", {"x": 1}),
    )
    child = await drive.child_of(run_id, 3)
    run = await page(gateway, f"/ui/runs/{run_id}")
    assert run.by_id("run-status").text == "suspended"
    assert run.by_id("live").attrs["data-final"] == "false"
    sleeping = run.by_id("entry-1")
    assert sleeping.attrs["data-state"] == "waiting"
    assert "until 2023-11-14 22:14:20.123 UTC" in sleeping.text
    signal = run.by_id("entry-2")
    assert signal.attrs["data-name"] == "approve"
    assert "for signal approve, until 2023-11-14 23:13:20.123 UTC" in signal.text
    assert f"/ui/runs/{child}" in run.links
    kept = run.by_id("kept-signals")  # the run's kept_signals: name, count, bytes
    rows = [e for e in run.elements if e.tag == "tr" and e.attrs.get("data-name")]
    assert [[cell.text for cell in row.children] for row in rows] == [["early", "1", "1"]]
    assert "Signals kept" in kept.text
    assert "Waiting for" in run.text
    assert run.has_id("signal-form")
    assert run.has_id("cancel-form")
    child_page = await page(gateway, f"/ui/runs/{child}")
    assert f"/ui/runs/{run_id}" in child_page.links  # its parent
    # the run goes on: the signal comes, the child ends; then cancelled, with an emit
    gateway.clock.now_ms = T0 + 60_000
    await gateway.http.post(f"/v1/runs/{run_id}/signals/approve", json={"by": "ada"})
    await drive.complete(child, "done")
    await gateway.http.post(f"/v1/runs/{run_id}/cancel")
    await drive.report(run_id, cancel_observed(4), emit("progress", {"pct": 50}, index=5))
    await drive.cancelled(run_id)
    live = await page(gateway, f"/ui/runs/{run_id}/live")
    assert not [e for e in live.elements if e.tag == "html"]  # a part of the page
    states = {
        e.attrs["data-kind"]: e.attrs["data-state"] for e in live.elements if "data-kind" in e.attrs
    }
    assert states == {
        "step": "completed",
        "sleep": "cancelled",
        "signal": "received",
        "child": "completed",
        "cancel": "done",
        "emit": "done",
    }
    assert '"by": "ada"' in live.by_id("entry-2").text
    assert live.by_id("run-status").text == "cancelled"


async def test_an_unknown_run_is_a_404_page(gateway: Gateway) -> None:
    missing = await page(gateway, "/ui/runs/01NOSUCHRUN000000000000000", expect=404)
    assert "run_not_found" in missing.text


async def test_functions_are_counted_by_status(gateway: Gateway) -> None:
    done = await start(gateway)
    await gateway.drive.complete(done, 1)
    await start(gateway)
    await start(gateway)
    await start(gateway, "echo")
    functions = await page(gateway, "/ui/functions")
    order = functions.by_id("function-order").text.split()
    # pending, running, suspended, blocked, completed, failed, cancelled, total
    assert order[:9] == ["order", "2", "0", "0", "0", "1", "0", "0", "3"]
    assert functions.by_id("function-echo").text.split()[:9] == [
        "echo", "1", "0", "0", "0", "0", "0", "0", "1"
    ]  # fmt: skip
    assert "/ui/start?function=order" in functions.links
    assert "/ui/runs?function=order&status=completed" in functions.links


async def test_the_start_page_offers_the_known_functions(gateway: Gateway) -> None:
    form = await page(gateway, "/ui/start", function="echo")
    assert form.by_id("start-function").attrs["value"] == "echo"
    options = [e.attrs["value"] for e in form.elements if e.tag == "option"]
    assert options == ["echo", "order"]


async def test_workers_page_says_when_the_list_is_not_available(gateway: Gateway) -> None:
    workers = await page(gateway, "/ui/workers")  # this gateway has no coordinator wired
    shown = workers.by_id("workers-unavailable").text
    assert shown.startswith("worker list not available: no coordinator is wired")


@contextlib.asynccontextmanager
async def console(*registries: WorkerRegistry) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings({HTTP_ADDR: "127.0.0.1:0", MAX_PAYLOAD_BYTES: 1024})
    lifecycle = Lifecycle()
    app = create_app(
        MemoryEngine(functions=[]).backend, settings, lambda: True, registries=registries
    )
    server = GatewayServer(app, settings[HTTP_ADDR], lifecycle)
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=server.url) as http:
            yield http
    finally:
        await server.stop()


async def test_workers_page_lists_every_coordinators_workers() -> None:
    first, second = (MemoryWorkerRegistry(name, clock=lambda: T0) for name in ("c-1", "c-2"))
    await first.connect("w-1", ["order", "echo"], 4, "0.1.0")
    run_id = await first.dispatch("w-1", "order", "01RUN")
    await first.step("w-1", run_id, "charge")
    await second.connect("w-2", ["approval"], 1)
    await second.drain("w-2")
    async with console(first, second) as http:
        workers = Page((await http.get("/ui/workers")).text)
        one = workers.by_id("worker-w-1").text
        assert one.startswith("w-1sdk 0.1.0 order, echo 1 4 3 ")  # id, sdk (a line below)
        assert " ago 2023-11-14 22:13:20.123 UTC c-1" in one
        assert "draining" in workers.by_id("worker-w-2").text
        in_flight = [e.text for e in workers.by_class("in-flight")]
        assert len(in_flight) == 1
        assert in_flight[0].startswith("Runs in flight: 01RUN (order, step charge, since")
        assert "/ui/runs/01RUN" in workers.links
        second.fail_with = Unavailable("coordinator c-2 is down")
        partial = Page((await http.get("/ui/workers")).text)
        assert partial.has_id("worker-w-1")
        assert not partial.has_id("worker-w-2")
        problems = [e.text for e in partial.by_class("error")]
        assert problems == ["A coordinator did not answer: unavailable: coordinator c-2 is down"]


async def test_pages_carry_a_strict_policy_and_no_inline_script(gateway: Gateway) -> None:
    run_id = await start(gateway)
    for path in ("/ui/runs", f"/ui/runs/{run_id}", "/ui/start", "/ui/functions", "/ui/builds"):
        response = await gateway.http.get(path)
        policy = response.headers["content-security-policy"]
        assert "script-src 'self'" in policy
        assert "frame-ancestors 'none'" in policy
        shown = Page(response.text)
        scripts = [e for e in shown.elements if e.tag == "script"]
        assert all(e.attrs.get("src") and not e.text for e in scripts), path
        assert not any(k.startswith("on") for e in shown.elements for k in e.attrs), path
    for asset in ("/ui/static/console.css", "/ui/static/console.js"):
        response = await gateway.http.get(asset)
        assert response.status_code == 200, asset
    assert "/ui" not in (await gateway.http.get("/schema/openapi.json")).json()["paths"]


def test_the_setting_is_declared_by_the_gateway() -> None:
    registry = SettingsRegistry()
    trine_add_settings(registry)
    assert UI in registry
    assert (UI.key, UI.flag, UI.env, UI.default) == (
        "gateway.ui",
        "--gateway-ui",
        "TRINE_GATEWAY_UI",
        True,
    )


@pytest.mark.parametrize("enabled", [True, False])
async def test_the_setting_turns_the_console_off(enabled: bool) -> None:
    memory = MemoryEngine(functions=[])
    settings = Settings({HTTP_ADDR: "127.0.0.1:0", MAX_PAYLOAD_BYTES: 1024, UI: enabled})
    lifecycle = Lifecycle()
    server = GatewayServer(
        create_app(memory.backend, settings, lambda: True), "127.0.0.1:0", lifecycle
    )
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=server.url) as http:
            runs = await http.get("/ui/runs")
            assert runs.status_code == (200 if enabled else 404)
            static = await http.get("/ui/static/console.css")
            assert static.status_code == (200 if enabled else 404)
            assert (await http.get("/v1/runs")).status_code == 200
    finally:
        await server.stop()


async def test_an_empty_console_says_what_to_do(gateway: Gateway) -> None:
    runs = await page(gateway, "/ui/runs")
    assert "No runs. Start one." in runs.text
    filtered = await page(gateway, "/ui/runs", status="failed")
    assert "No runs match these filters." in filtered.text
