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
