"""The gateway's settings: where it listens, and which hosts and browser origins it answers.

They live apart from :mod:`trine_gateway.plugin` so that the app (:mod:`trine_gateway.app`) and
the browser checks (:mod:`trine_gateway.browser`) can read them without importing the role.
"""

from __future__ import annotations

from trine_core import Setting

HTTP_ADDR = Setting("http_addr", "127.0.0.1:7480", "the gateway's HTTP listen address (host:port)")
ALLOWED_HOSTS: Setting[tuple[str, ...]] = Setting(
    "allowed_hosts",
    (),
    "more names the gateway answers to in the Host header, besides loopback names and http_addr's "
    "host (name, name:port, *.domain, or * for any): a Host not listed gets 400 invalid_host",
    section="gateway",
)
CORS_ORIGINS: Setting[tuple[str, ...]] = Setting(
    "cors_origins",
    (),
    "browser origins (scheme://host[:port]) allowed to call the API from their pages (CORS); "
    "none by default: no CORS headers, and a state-changing request from another origin gets 403",
    section="gateway",
)

# Connection limits (enforced in trine_gateway.connections, below the app).
MAX_HEADER_BYTES = Setting(
    "max_header_bytes",
    64 * 1024,
    "largest request line and headers accepted, in bytes: a larger head gets 431 "
    "header_too_large and the connection is closed (memory held: this plus one read)",
    section="gateway",
)
READ_TIMEOUT_S = Setting(
    "read_timeout_s",
    30.0,
    "seconds a request's headers and body may take to arrive, from its first byte (or from the "
    "connection's opening): a slower one gets 408 request_timeout and is closed",
    section="gateway",
)
IDLE_TIMEOUT_S = Setting(
    "idle_timeout_s",
    5.0,
    "seconds a kept-alive connection may sit idle between requests before it is closed",
    section="gateway",
)
MAX_CONNECTIONS = Setting(
    "max_connections",
    10_000,
    "open HTTP connections served at once (event streams included): one more gets 503 "
    "too_many_connections and is closed; file descriptors are shared with storage and the "
    "coordinator",
    section="gateway",
)

REQUESTS_PER_TURN = Setting(
    "requests_per_turn",
    16,
    "HTTP requests let into the app in one turn of the event loop; the others wait, in order, "
    "for the next turns (0: no limit). Under a flood of requests the roles sharing the loop "
    "(with --target=all: the engine's commits, dispatch, heartbeats) wait for at most this many",
    section="gateway",
)

# What a request body may be (enforced in trine_gateway.body, as the app decodes it).
MAX_JSON_DEPTH = Setting(
    "max_json_depth",
    64,
    "deepest nesting of arrays and objects a JSON request body may have (input, signal payload): "
    "a deeper one gets 400 malformed_json; keeps every reader (gateway, engine, a worker's json) "
    "far from Python's recursion limit",
    section="gateway",
)
