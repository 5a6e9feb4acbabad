"""The coordinator's settings (top-level names, kept from before plugins owned their settings;
new ones go in the ``[coordinator]`` section)."""

from __future__ import annotations

from trine_core import Setting

WORKER_ADDR = Setting(
    "worker_addr",
    "127.0.0.1:7481",
    "where workers connect to the coordinator: [grpc://]host:port, or scheme://... of another "
    "installed worker transport",
)
LEASE_TTL_MS = Setting(
    "lease_ttl_ms",
    30_000,
    "how long a run's lease lasts without renewal; a dead coordinator's runs return after it",
)
HEARTBEAT_INTERVAL_MS = Setting(
    "heartbeat_interval_ms",
    1_000,
    "how often workers heartbeat; a worker silent for 5 intervals is gone",
)
MAX_WORKER_LOSSES = Setting(
    "max_worker_losses",
    3,
    "a run whose worker is lost (dropped after missing its heartbeats, or its stream broke) this "
    "many times in a row, with no progress in between, fails with WorkerLost instead of being "
    "dispatched again; 0: dispatch it again forever",
    section="coordinator",
)
COORDINATOR_ADDR = Setting(
    "addr",
    "127.0.0.1:7483",
    "the coordinator's gRPC address in a split deployment: it serves the worker registry "
    "(worker_registry: GET /v1/workers) there, and gateways dial it",
    section="coordinator",
)
REQUIRE_WORKER_CERTS = Setting(
    "require_worker_certs",
    False,
    "workers must present a client certificate signed by [coordinator] worker_ca (else [tls] ca): "
    "mutual TLS on the worker port; false: a certificate a worker presents is verified, none is "
    "needed (tokens are)",
    section="coordinator",
)
WORKER_CA = Setting(
    "worker_ca",
    "",
    "PEM CA bundle workers' client certificates are checked against on the worker port (default: "
    "[tls] ca); a CA of their own keeps a worker's certificate from opening the roles' ports",
    section="coordinator",
)
MAX_MESSAGE_BYTES = Setting(
    "max_message_bytes",
    0,
    "largest gRPC message the worker port accepts, in bytes (refused from its length prefix, "
    "RESOURCE_EXHAUSTED, before its body is read); 0: 64 x max_payload_bytes (a report may batch "
    "several results), at least 4 MiB",
    section="coordinator",
)
SETTINGS = (
    WORKER_ADDR,
    LEASE_TTL_MS,
    HEARTBEAT_INTERVAL_MS,
    MAX_WORKER_LOSSES,
    COORDINATOR_ADDR,
    REQUIRE_WORKER_CERTS,
    WORKER_CA,
    MAX_MESSAGE_BYTES,
)
