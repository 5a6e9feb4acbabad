"""trine-metrics: Prometheus metrics for trine, an observer plugin (``trine.plugins``: ``metrics``).

Installed, it is enabled by default (the ``plugins`` setting is ``all``); ``--plugins=none`` (or a
list without ``metrics``) turns it off. It exports what the roles record into
:data:`trine_core.instruments.REGISTRY` (see docs/operations.md, "Metrics", for every metric),
plus prometheus-client's process and Python metrics, at ``/metrics`` on the gateway's HTTP port
when a gateway runs in the process, and on ``[metrics] addr`` (``--metrics-addr``) when set, in
any process. Nothing in core or in the roles depends on it.
"""

from trine_metrics.collector import TrineCollector, exposition_registry
from trine_metrics.server import MetricsServer

__all__ = ["MetricsServer", "TrineCollector", "exposition_registry"]
