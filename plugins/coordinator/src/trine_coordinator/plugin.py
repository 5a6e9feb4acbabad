"""The ``coordinator`` role: serves workers on ``worker_addr`` through the worker transport of its
scheme (a bare ``host:port``: ``grpc://``), needs ``Dispatcher``, serves ``WorkerRegistry`` (in a
split, at ``grpc://`` + ``[coordinator] addr``).

With ``[auth] tokens_file`` every worker needs a token with scope ``worker`` (``admission``); the
file is re-read on SIGHUP, and sessions whose token it no longer admits are closed."""

from __future__ import annotations

import ssl
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

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
    WorkerListener,
    WorkerRegistry,
    WorkerServing,
    hookimpl,
)
from trine_core.auth import TokenBook, install_sighup_reload
from trine_core.tls import server_context
from trine_proto.limits import derived_limit


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
        self._listener: WorkerListener | None = None
        self._unhook: Callable[[], None] = lambda: None

    async def start(self, context: RoleContext) -> None:
        tls = worker_tls(self.settings)  # a bad [tls] file: a ConfigError naming it, at boot
        tokens = None
        if path := self.settings[AUTH_TOKENS_FILE]:
            tokens = TokenBook.load(path)  # a bad file: a ConfigError naming it, at boot
        service = WorkerService(context.need(Dispatcher), self.settings, context.log, tokens)
        limit = derived_limit(self.settings[MAX_PAYLOAD_BYTES], self.settings[MAX_MESSAGE_BYTES])
        serving = WorkerServing(limit, MAX_MESSAGE_BYTES.key, tls)
        listener = await context.serve_workers(service, self.settings[WORKER_ADDR], serving)
        service.start()
        if tokens is not None:
            self._unhook = install_sighup_reload(tokens, context.log)
            context.log.info("workers need a token with scope 'worker'", tokens_file=str(path))
        self.service, self._listener = service, listener
        self.registry = CoordinatorRegistry(service, coordinator_name(listener.address))
        context.provide(WorkerRegistry, self.registry)
        context.log.info("coordinator listening for workers", address=listener.address)

    async def stop(self) -> None:
        service, listener = self.service, self._listener
        self.service = self._listener = None
        self._unhook()
        self._unhook = lambda: None
        if service is not None:
            await service.stop()
        if listener is not None:
            await listener.close()

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
