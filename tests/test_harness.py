"""The harness itself: what keeps the end-to-end suite from failing for reasons of its own."""

from __future__ import annotations

from harness import Cluster

from trine_core.testing import occupied_port


def test_a_port_taken_between_its_pick_and_the_start_is_picked_again(cluster: Cluster) -> None:
    """``free_port`` only saw the port free; another process may take it before trine binds it
    (seen in CI: "cannot listen on 127.0.0.1:57761 ... address already in use")."""
    taken = cluster.engine_port if cluster.topology == "split" else cluster.http_port
    with occupied_port(taken):
        cluster.start()
    assert taken not in (cluster.http_port, cluster.engine_port)
    with cluster.client() as http:
        assert http.get("/healthz").status_code == 200
