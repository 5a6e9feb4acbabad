"""The ``coordinator`` role: serves workers over gRPC on ``worker_addr``, needs ``Dispatcher``,
serves ``WorkerRegistry`` (in a split, at ``grpc://`` + ``[coordinator] addr``).

With ``[auth] tokens_file`` every worker needs a token with scope ``worker`` (``admission``); the
file is re-read on SIGHUP, and sessions whose token it no longer admits are closed."""

from __future__ import annotations

import ssl
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

from grpclib.health.check import ServiceCheck
from grpclib.health.service import Health
from grpclib.server import Server

from trine_coordinator.registry import CoordinatorRegistry, coordinator_name
from trine_coordinator.service import WorkerService
from trine_coordinator.settings import (
    COORDINATOR_ADDR,
    MAX_MESSAGE_BYTES,
    REQUIRE_WORKER_CERTS,
    SETTINGS,
    WORKER_ADDR,
    WORKER_CA,
)
from trine_core import (
    AUTH_TOKENS_FILE,
    MAX_PAYLOAD_BYTES,
    Dispatcher,
    RoleContext,
    RoleRegistry,
    Settings,
    SettingsRegistry,
    WorkerRegistry,
    cannot_listen,
    hookimpl,
    split_host_port,
)
from trine_core.auth import TokenBook, install_sighup_reload
from trine_core.tls import server_context
from trine_proto.limits import BoundedCodec, derived_limit


def worker_tls(settings: Settings) -> ssl.SSLContext | None:
    """The worker port's TLS ([tls] cert/key): a worker's client certificate is verified against
    [coordinator] worker_ca (else [tls] ca) when presented, and required only with
    [coordinator] require_worker_certs."""
    mode = ssl.CERT_REQUIRED if settings[REQUIRE_WORKER_CERTS] else ssl.CERT_OPTIONAL
    if settings[WORKER_CA]:
        return server_context(settings, mode, Path(settings[WORKER_CA]), WORKER_CA.key)
    return server_context(settings, mode)


class CoordinatorRole:
    name: ClassVar[str] = "coordinator"
    serves: ClassVar[frozenset[type]] = frozenset({WorkerRegistry})
    needs: ClassVar[frozenset[type]] = frozenset({Dispatcher})

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.service: WorkerService | None = None
        self.registry: CoordinatorRegistry | None = None
        self._server: Server | None = None
        self._unhook: Callable[[], None] = lambda: None

    async def start(self, context: RoleContext) -> None:
        host, port = split_host_port(self.settings[WORKER_ADDR], "worker_addr")
        tls = worker_tls(self.settings)  # a bad [tls] file: a ConfigError naming it, at boot
        tokens = None
        if path := self.settings[AUTH_TOKENS_FILE]:
            tokens = TokenBook.load(path)  # a bad file: a ConfigError naming it, at boot
        service = WorkerService(context.need(Dispatcher), self.settings, context.log, tokens)
        # The standard gRPC health service: SERVING only while the engine answers.
        engine_check = ServiceCheck(service.engine_answers, check_ttl=1.0, check_timeout=2.0)
        # A message over the limit is refused from its length prefix (grpclib has no option).
        limit = derived_limit(self.settings[MAX_PAYLOAD_BYTES], self.settings[MAX_MESSAGE_BYTES])
        codec = BoundedCodec(limit, "coordinator.max_message_bytes")
        server = Server([service, Health({service: [engine_check]})], codec=codec)
        try:
            await server.start(host, port, ssl=tls)
        except OSError as exc:
            raise cannot_listen("coordinator", f"{host}:{port} for workers", exc) from None
        service.start()
        if tokens is not None:
            self._unhook = install_sighup_reload(tokens, context.log)
            context.log.info("workers need a token with scope 'worker'", tokens_file=str(path))
        self.service, self._server = service, server
        self.registry = CoordinatorRegistry(service, coordinator_name(f"{host}:{port}"))
        context.provide(WorkerRegistry, self.registry)
        context.log.info("coordinator listening for workers", address=f"{host}:{port}")

    async def stop(self) -> None:
        service, server = self.service, self._server
        self.service = self._server = None
        self._unhook()
        self._unhook = lambda: None
        if service is not None:
            await service.stop()
        if server is not None:
            server.close()
            await server.wait_closed()

    def workers(self) -> list[dict[str, object]]:
        return self.service.workers() if self.service is not None else []

    def ready(self) -> bool:
        return self.service is not None


@hookimpl
def trine_add_settings(registry: SettingsRegistry) -> None:
    registry.add(*SETTINGS)


@hookimpl
def trine_register_roles(registry: RoleRegistry) -> None:
    registry.add_role(CoordinatorRole.name, CoordinatorRole)


@hookimpl
def trine_contract_address(contract: type, settings: Settings) -> str | None:
    if contract is WorkerRegistry:
        return f"grpc://{settings[COORDINATOR_ADDR]}"
    return None
