"""Bad input gets a clear error that names the problem, and writes nothing."""

from __future__ import annotations

import subprocess
import sys

import pytest
from harness import ROOT, Cluster

from trine_core.testing import occupied_port


def error(response: object) -> dict[str, object]:
    body = response.json()  # type: ignore[attr-defined]
    assert set(body) == {"error"}, body
    return body["error"]  # type: ignore[no-any-return]


def count_runs(cluster: Cluster) -> int:
    with cluster.client() as http:
        return len(http.get("/v1/runs", params={"limit": 1000}).json()["runs"])


def test_bad_requests_get_clear_errors_and_write_nothing(running: Cluster) -> None:
    with running.client() as http:
        cases = [
            (http.post("/v1/runs", content=b'{"function": "order", ', headers=json_type()), 400),
            (http.post("/v1/runs", json={"function": 5, "input": {}}), 400),
            (http.post("/v1/runs", json={"input": {}}), 400),
            (http.post("/v1/runs", json={"function": "nope", "input": {}}), 404),
            (http.post("/v1/runs", json={"function": "order", "input": "x" * (2 << 20)}), 413),
        ]
        for response, status in cases:
            assert response.status_code == status, response.text
            assert "Traceback" not in response.text
        codes = [error(r)["code"] for r, _ in cases]
        assert codes == [
            "malformed_json",
            "invalid_request",
            "invalid_request",
            "unknown_function",
            "payload_too_large",
        ]
        unknown = error(cases[3][0])
        assert "order" in str(unknown["message"]) or unknown["details"] == {"known": ["order"]}

        missing = http.get("/v1/runs/01NOSUCHRUN0000000000000000")
        assert missing.status_code == 404
        assert error(missing)["code"] == "run_not_found"
        assert http.get("/v1/runs/01NOSUCHRUN0000000000000000/journal").status_code == 404
        assert http.post("/v1/runs/01NOSUCHRUN0000000000000000/cancel").status_code == 404
    assert count_runs(running) == 0


def json_type() -> dict[str, str]:
    return {"content-type": "application/json"}


def trine(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "trine_core.cli", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=60,
    )


def assert_one_line_error(out: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("trine: error: "), out.stderr
    for needle in needles:
        assert needle in last, last


def test_data_dir_of_unknown_format_is_refused_and_left_alone(cluster: Cluster) -> None:
    cluster.start()
    cluster.stop_runtime()
    from rocksdict import Options, Rdict  # only this test writes the database by hand

    db = Rdict(str(cluster.data_dir), options=Options(raw_mode=True))
    meta = db.get_column_family("meta")
    meta[b"format"] = b"99"
    del meta
    db.close()
    out = trine("--data-dir", str(cluster.data_dir), env=cluster.env())
    assert_one_line_error(out, str(cluster.data_dir), "99")


@pytest.mark.parametrize(
    ("config", "needle"),
    [
        ('target = "engine,shredder"', "unknown role 'shredder'"),
        ('[connect]\nbackend = "carrier-pigeon://x"', "carrier-pigeon"),
    ],
)
def test_config_naming_unknown_role_or_transport(
    cluster: Cluster, config: str, needle: str
) -> None:
    path = cluster.workdir / "trine.toml"
    path.write_text(config)
    assert_one_line_error(trine("--config", str(path), env=cluster.env()), needle)


def test_port_in_use_is_named(cluster: Cluster) -> None:
    with occupied_port(cluster.http_port):
        out = trine(env=cluster.env())
    assert_one_line_error(out, f"127.0.0.1:{cluster.http_port}", "in use")
