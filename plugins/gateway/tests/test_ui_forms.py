"""The web console's forms: start a run, cancel one, send a signal, retry one. Each posts to
``/ui``, answers 303 to the run's page when it worked, and otherwise renders the form again with
the API's error code and message next to the field, with the status the JSON API would answer."""

from __future__ import annotations

import httpx
from conftest import Gateway, start
from drive import requests, step_completed, wait_signal
from html_page import Page

from trine_proto.trine.v1 import ErrorInfo, GetRunRequest, RunStatus


async def post(gateway: Gateway, path: str, **form: str) -> httpx.Response:
    return await gateway.http.post(path, data=form)


def field_error(response: httpx.Response, id_: str) -> str:
    assert response.headers["content-type"].startswith("text/html"), response.text
    return Page(response.text).by_id(id_).text


async def test_start_redirects_to_the_new_run(gateway: Gateway) -> None:
    response = await post(
        gateway, "/ui/runs", function="order", input='{"order_id": "o-1"}', timeout_s="60"
    )
    assert response.status_code == 303, response.text
    location = response.headers["location"]
    assert location.startswith("/ui/runs/")
    assert location.endswith("?notice=started")
    run_id = location.split("/")[-1].split("?")[0]
    run = await gateway.memory.backend.get_run(GetRunRequest(run_id=run_id))
    assert run.function == "order"
    assert run.input == b'{"order_id":"o-1"}'
    assert run.deadline_ms == run.created_at_ms + 60_000
    shown = Page((await gateway.http.get(location)).text)
    assert "Run started." in shown.text


async def test_start_with_an_empty_input_is_null_and_a_key_is_idempotent(gateway: Gateway) -> None:
    first = await post(gateway, "/ui/runs", function="echo", input="", key="k-1")
    again = await post(gateway, "/ui/runs", function="echo", input="", key="k-1")
    assert first.status_code == again.status_code == 303
    assert first.headers["location"].split("?")[0] == again.headers["location"].split("?")[0]
    assert "notice=started" not in again.headers["location"]
    (request,) = requests(gateway.memory, "start_run")[:1]
    assert request.input == b"null"
    assert request.idempotency_key == "k-1"


async def test_start_with_invalid_json_shows_the_error_at_the_input(gateway: Gateway) -> None:
    response = await post(gateway, "/ui/runs", function="order", input='{"order_id": ')
    assert response.status_code == 400
    error = field_error(response, "start-input-error")
    assert error.startswith("malformed_json: input is not valid JSON")
    form = Page(response.text)
    assert form.by_id("start-input").text == '{"order_id":'  # kept, to be fixed
    assert form.by_id("start-function").attrs["value"] == "order"
    assert form.by_id("start-input").attrs["aria-invalid"] == "true"
    assert not requests(gateway.memory, "start_run")


async def test_start_of_an_unknown_function_shows_the_error_at_the_function(
    gateway: Gateway,
) -> None:
    response = await post(gateway, "/ui/runs", function="nope", input="{}")
    assert response.status_code == 404
    error = field_error(response, "start-function-error")
    assert error == "unknown_function: no worker has registered function 'nope'"
    assert not Page(response.text).has_id("start-input-error")


async def test_start_without_a_function_or_with_a_bad_timeout(gateway: Gateway) -> None:
    response = await post(gateway, "/ui/runs", function=" ", input="{}")
    assert response.status_code == 400
    assert "a function name is needed" in field_error(response, "start-function-error")
    response = await post(gateway, "/ui/runs", function="order", input="{}", timeout_s="-1")
    assert response.status_code == 400
    assert "timeout_s: '-1'" in field_error(response, "start-timeout-error")


async def test_start_of_an_input_over_the_limit_shows_it_at_the_input(gateway: Gateway) -> None:
    big = '"' + "x" * 2000 + '"'  # the fixture's engine takes 1 KiB
    response = await post(gateway, "/ui/runs", function="order", input=big)
    assert response.status_code == 413
    assert field_error(response, "start-input-error").startswith("payload_too_large:")


async def test_cancel_redirects_with_what_happened(gateway: Gateway) -> None:
    pending = await start(gateway)
    response = await post(gateway, f"/ui/runs/{pending}/cancel", reason="by hand")
    assert response.status_code == 303
    assert response.headers["location"] == f"/ui/runs/{pending}?notice=cancelled"
    run = await gateway.memory.backend.get_run(GetRunRequest(run_id=pending))
    assert run.status == RunStatus.CANCELLED
    assert run.error is not None
    assert run.error.message == "by hand"
    running = await start(gateway)
    await gateway.drive.report(running, step_completed(0, "charge", 1))
    response = await post(gateway, f"/ui/runs/{running}/cancel")
    assert response.headers["location"] == f"/ui/runs/{running}?notice=cancel_requested"
    shown = Page((await gateway.http.get(response.headers["location"])).text)
    assert "Cancellation requested" in shown.text
    assert "cancelling" in shown.by_id("live").text


async def test_cancel_of_a_finished_run_shows_run_finished(gateway: Gateway) -> None:
    run_id = await start(gateway)
    await gateway.drive.complete(run_id, 1)
    response = await post(gateway, f"/ui/runs/{run_id}/cancel")
    assert response.status_code == 409
    assert field_error(response, "cancel-error").startswith("run_finished:")
    assert Page(response.text).by_id("actions").attrs.get("hidden") is None  # the error shows


async def test_retry_redirects_and_the_run_resumes(gateway: Gateway) -> None:
    run_id = await start(gateway)
    await gateway.drive.fail(run_id, ErrorInfo(type="ValueError", message="bad card"))
    response = await post(gateway, f"/ui/runs/{run_id}/retry", reason="card fixed")
    assert response.status_code == 303, response.text
    assert response.headers["location"] == f"/ui/runs/{run_id}?notice=retried"
    (sent,) = requests(gateway.memory, "retry_run")
    assert (sent.run_id, sent.reason) == (run_id, "card fixed")
    run = await gateway.memory.backend.get_run(GetRunRequest(run_id=run_id))
    assert (run.status, run.retries) == (RunStatus.PENDING, 1)
    shown = Page((await gateway.http.get(response.headers["location"])).text)
    assert "Run retried" in shown.text
    assert shown.by_id("run-retries").text == "1"
    assert not shown.has_id("retry-form")  # pending again: nothing to retry


async def test_retry_of_a_run_that_is_not_failed_shows_run_not_retryable(
    gateway: Gateway,
) -> None:
    run_id = await start(gateway)
    response = await post(gateway, f"/ui/runs/{run_id}/retry", reason="why not")
    assert response.status_code == 409
    assert field_error(response, "retry-error").startswith("run_not_retryable:")
    assert Page(response.text).by_id("retry-reason").attrs["value"] == "why not"


async def test_signal_delivered_or_kept(gateway: Gateway) -> None:
    run_id = await start(gateway)
    kept = await post(gateway, f"/ui/runs/{run_id}/signal", name="early", payload="")
    assert kept.status_code == 303
    assert kept.headers["location"] == f"/ui/runs/{run_id}?notice=kept"
    await gateway.drive.suspend_on(run_id, wait_signal(0, "approve"))
    sent = await post(gateway, f"/ui/runs/{run_id}/signal", name="approve", payload='{"by": "ada"}')
    assert sent.headers["location"] == f"/ui/runs/{run_id}?notice=delivered"
    signals = requests(gateway.memory, "signal_run")
    assert [(s.name, s.payload) for s in signals] == [
        ("early", b"null"),
        ("approve", b'{"by":"ada"}'),
    ]


async def test_signal_errors_are_shown_at_their_field(gateway: Gateway) -> None:
    run_id = await start(gateway)
    bad_json = await post(gateway, f"/ui/runs/{run_id}/signal", name="go", payload="{nope")
    assert bad_json.status_code == 400
    assert field_error(bad_json, "signal-payload-error").startswith(
        "malformed_json: payload is not valid JSON"
    )
    assert Page(bad_json.text).by_id("signal-name").attrs["value"] == "go"
    bad_name = await post(gateway, f"/ui/runs/{run_id}/signal", name="no spaces", payload="1")
    assert bad_name.status_code == 400
    assert field_error(bad_name, "signal-name-error").startswith("invalid_argument: a signal name")
    await gateway.drive.complete(run_id, 1)
    finished = await post(gateway, f"/ui/runs/{run_id}/signal", name="go", payload="1")
    assert finished.status_code == 409
    assert field_error(finished, "signal-error").startswith("run_finished:")
    assert not requests(gateway.memory, "signal_run")[:-1]  # only the last reached the engine


async def test_forms_of_an_unknown_run_are_a_404_page(gateway: Gateway) -> None:
    for action in ("cancel", "signal", "retry"):
        response = await post(gateway, f"/ui/runs/01NOSUCHRUN000000000000000/{action}", name="go")
        assert response.status_code == 404
        assert "run_not_found" in Page(response.text).text


async def test_posts_from_another_site_are_refused(gateway: Gateway) -> None:
    run_id = await start(gateway)
    foreign = {"origin": "https://evil.example"}
    for path, form in (
        ("/ui/runs", {"function": "order"}),
        (f"/ui/runs/{run_id}/cancel", {}),
        (f"/ui/runs/{run_id}/signal", {"name": "go"}),
        (f"/ui/runs/{run_id}/retry", {}),
    ):
        response = await gateway.http.post(path, data=form, headers=foreign)
        assert response.status_code == 403, path
        response = await gateway.http.post(
            path, data=form, headers={"sec-fetch-site": "cross-site"}
        )
        assert response.status_code == 403, path
    assert len(requests(gateway.memory, "start_run")) == 1  # the fixture's own
    assert not requests(gateway.memory, "cancel_run")
    assert not requests(gateway.memory, "signal_run")
    assert not requests(gateway.memory, "retry_run")
    host = gateway.server.url.removeprefix("http://")
    same = await gateway.http.post(
        f"/ui/runs/{run_id}/cancel",
        headers={"origin": f"http://{host}", "sec-fetch-site": "same-origin"},
    )
    assert same.status_code == 303
    proxied = await gateway.http.post(
        f"/ui/runs/{run_id}/signal",
        data={"name": "go"},
        headers={"origin": "https://trine.example", "x-forwarded-host": "trine.example"},
    )
    assert proxied.status_code == 409  # past the guard: the run is cancelled
