"""``GET /v1/functions`` and ``GET /healthz``."""

from __future__ import annotations

from conftest import Gateway

from trine_core import Unavailable
from trine_proto.trine.v1 import FunctionSpec, VersioningMode, WorkflowErrorMode

DEFAULTS = {
    "timeout_s": None,
    "versioning": "auto_upgrade",
    "on_workflow_error": "block",
    "build_id": None,
}


async def test_functions_list_their_retry_policies(gateway: Gateway) -> None:
    response = await gateway.http.get("/v1/functions")
    assert response.status_code == 200
    assert response.json() == {  # in name order, as the engine lists them
        "functions": [
            {"name": "echo", "retry": None, **DEFAULTS},
            {
                "name": "order",
                "retry": {
                    "max_attempts": 5,
                    "initial_interval_ms": 100,
                    "max_interval_ms": 10_000,
                    "backoff_coefficient": 1.1,
                },
                **DEFAULTS,
            },
        ]
    }


async def test_functions_show_their_versioning_and_build(gateway: Gateway) -> None:
    gateway.drive.build_id = "b-2"
    await gateway.drive.register(
        FunctionSpec(
            name="approval",
            timeout_ms=90_000,
            versioning=VersioningMode.PINNED,
            on_workflow_error=WorkflowErrorMode.FAIL,
        ),
        FunctionSpec(name="refund", versioning=VersioningMode.AUTO_UPGRADE),
    )
    listed = {f["name"]: f for f in (await gateway.http.get("/v1/functions")).json()["functions"]}
    approval, refund = listed["approval"], listed["refund"]
    assert (approval["versioning"], approval["on_workflow_error"]) == ("pinned", "fail")
    assert (refund["versioning"], refund["on_workflow_error"]) == ("auto_upgrade", "block")
    assert approval["build_id"] == refund["build_id"] == "b-2"
    assert (approval["timeout_s"], refund["timeout_s"]) == (90.0, None)  # the settings in force


async def test_healthz_follows_readiness(gateway: Gateway) -> None:
    ok = await gateway.http.get("/healthz")
    assert (ok.status_code, ok.json()) == (200, {"status": "ok"})
    gateway.readiness.ready = False
    down = await gateway.http.get("/healthz")
    assert (down.status_code, down.json()) == (503, {"status": "unavailable"})


async def test_healthz_is_unavailable_while_the_engine_does_not_answer(gateway: Gateway) -> None:
    gateway.memory.fail_with = Unavailable("cannot reach grpc://127.0.0.1:1")
    down = await gateway.http.get("/healthz")
    assert down.status_code == 503
    assert down.json() == {"status": "unavailable", "reason": "cannot reach grpc://127.0.0.1:1"}
    gateway.memory.fail_with = None
    assert (await gateway.http.get("/healthz")).status_code == 200
