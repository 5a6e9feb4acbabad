"""Browser-safe defaults end to end (issue 13), in both topologies: what a web page open on the
gateway's host could do to it before — post a run as ``text/plain``, read runs through a
rebound DNS name, post from its own origin — is refused and changes nothing; CORS answers only
the origins ``[gateway] cors_origins`` names; and the gateway will not serve the network without
tokens unless ``--insecure`` says so."""

from __future__ import annotations

import json
import subprocess
import sys

import httpx
import pytest
from harness import ORDER, Cluster, start_order

from trine_core import hash_token, new_token

PAGE = "https://app.example.com"
EVIL = "https://evil.example"


def error_code(response: httpx.Response) -> str:
    code: str = response.json()["error"]["code"]
    return code


def count_runs(http: httpx.Client) -> int:
    return len(http.get("/v1/runs", params={"limit": 1000}).raise_for_status().json()["runs"])


def preflight(origin: str) -> dict[str, str]:
    return {
        "origin": origin,
        "access-control-request-method": "POST",
        "access-control-request-headers": "content-type, authorization",
    }


def test_what_a_web_page_could_send_is_refused(running: Cluster) -> None:
    body = {"function": "order", "input": ORDER}
    with running.client() as http:
        # a page posts text/plain to skip the CORS preflight
        text = http.post(
            "/v1/runs",
            content=json.dumps(body),
            headers={"content-type": "text/plain"},
        )
        assert text.status_code == 415, text.text
        assert error_code(text) == "unsupported_media_type"

        # DNS rebinding: the browser sends the attacker's name as Host
        for request in (
            http.build_request("GET", "/v1/runs", headers={"host": "rebind.evil.example"}),
            http.build_request("POST", "/v1/runs", json=body, headers={"host": "evil.example:80"}),
        ):
            foreign = http.send(request)
            assert foreign.status_code in (400, 421), foreign.text
            assert error_code(foreign) == "invalid_host"

        # a page of another origin posts (a form, or fetch after a preflight it would fail)
        refused = http.post("/v1/runs", json=body, headers={"origin": EVIL})
        assert refused.status_code == 403, refused.text
        assert error_code(refused) == "forbidden_origin"
        assert count_runs(http) == 0

        run_id = start_order(http)  # what a client that is not a browser does: no Origin
        cancel = http.post(f"/v1/runs/{run_id}/cancel", headers={"origin": EVIL})
        assert cancel.status_code == 403
        assert http.get(f"/v1/runs/{run_id}").json()["status"] != "cancelled"

        # the gateway's own pages may post (its origin is its Host)
        own = http.post("/v1/runs", json=body, headers={"origin": running.url})
        assert own.status_code == 201, own.text
        assert count_runs(http) == 2

        # no CORS by default: a preflight is refused and no answer carries CORS headers
        answer = http.options("/v1/runs", headers=preflight(PAGE))
        assert answer.status_code == 403
        assert "access-control-allow-origin" not in answer.headers
        read = http.get("/v1/runs", headers={"origin": PAGE})
        assert "access-control-allow-origin" not in read.headers


def test_cors_answers_the_configured_origins_only(cluster: Cluster) -> None:
    cluster.start(TRINE_GATEWAY_CORS_ORIGINS=f"{PAGE},http://localhost:3000")
    with cluster.client() as http:
        answer = http.options("/v1/runs", headers=preflight(PAGE))
        assert answer.status_code == 204, answer.text
        assert answer.headers["access-control-allow-origin"] == PAGE
        assert "authorization" in answer.headers["access-control-allow-headers"].lower()
        assert "POST" in answer.headers["access-control-allow-methods"]

        other = http.options("/v1/runs", headers=preflight(EVIL))
        assert other.status_code == 403
        assert "access-control-allow-origin" not in other.headers

        read = http.get("/v1/runs", headers={"origin": PAGE})
        assert read.status_code == 200
        assert read.headers["access-control-allow-origin"] == PAGE
        post = http.post("/v1/runs", json={"function": "nope"}, headers={"origin": EVIL})
        assert post.status_code == 403


def boot(cluster: Cluster, target: str, http_addr: str) -> subprocess.CompletedProcess[str]:
    """One runtime process listening on ``http_addr``, expected to refuse to start."""
    return subprocess.run(
        [sys.executable, "-m", "trine_core.cli", f"--target={target}"],
        capture_output=True,
        text=True,
        env=cluster.env(TRINE_HTTP_ADDR=http_addr),
        timeout=60,
    )


def test_the_network_needs_tokens_or_insecure(cluster: Cluster) -> None:
    # In split, the engine and the coordinator run as usual; the gateway is the one tried.
    target = "all" if cluster.topology == "all" else "gateway"
    cluster.start()
    cluster.runtime_proc(target).kill9()
    wildcard = f"0.0.0.0:{cluster.http_port}"

    refused = boot(cluster, target, wildcard)
    assert refused.returncode == 2, refused.stderr
    assert "Traceback" not in refused.stderr
    last = refused.stderr.strip().splitlines()[-1]
    assert last.startswith("trine: error: gateway: http_addr 0.0.0.0:"), refused.stderr
    for needle in ("not a loopback address", "--auth-tokens-file", "--insecure"):
        assert needle in last, last

    insecure = cluster.restart(target, "--insecure", TRINE_HTTP_ADDR=wildcard)
    insecure.log.wait_for(lambda line: "without tokens (insecure)" in line, insecure.popen)
    with cluster.client() as http:
        assert http.get("/v1/runs").status_code == 200  # as 127.0.0.1: a loopback name
        # listening on every interface names none of them: other names need allowed_hosts
        outside = http.get("/v1/runs", headers={"host": f"192.0.2.2:{cluster.http_port}"})
        assert outside.status_code == 400

    tokens = cluster.workdir / "tokens.toml"
    token = new_token()
    tokens.write_text(
        f'[[tokens]]\nname = "ci"\nsha256 = "{hash_token(token)}"\nscopes = ["read"]\n'
    )
    cluster.restart(
        target,
        TRINE_HTTP_ADDR=wildcard,
        TRINE_AUTH_TOKENS_FILE=str(tokens),
        TRINE_GATEWAY_ALLOWED_HOSTS=f"192.0.2.2:{cluster.http_port}",
    )
    with cluster.client() as http:
        assert http.get("/v1/runs").status_code == 401
        headers = {"authorization": f"Bearer {token}", "host": f"192.0.2.2:{cluster.http_port}"}
        assert http.get("/v1/runs", headers=headers).status_code == 200


@pytest.mark.parametrize("origin", ["null", EVIL])
def test_console_forms_refuse_another_site(running: Cluster, origin: str) -> None:
    """The console's forms keep their own check (an HTML 403), under the same Host check."""
    with running.client() as http:
        form = {"function": "order", "input": "{}"}
        refused = http.post("/ui/runs", data=form, headers={"origin": origin})
        assert refused.status_code == 403
        assert refused.headers["content-type"].startswith("text/html")
        rebound = http.get("/ui/runs", headers={"host": "rebind.evil.example"})
        assert rebound.status_code == 400
        assert count_runs(http) == 0
