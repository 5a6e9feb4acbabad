"""Settings: flags > ``TRINE_*`` environment variables > the TOML config file > defaults.

Every setting is a field below; its environment variable is ``TRINE_`` + the upper-cased name
(``data_dir`` → ``TRINE_DATA_DIR``) and its config-file key is the name itself. Tables in the
file that are not settings (``[engine]``, ``[gateway]``…) are kept whole in ``sections`` for the
plugin of that name; ``[connect]`` names the address each need is dialled at.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from trine_core.errors import ConfigError

ENV_PREFIX = "TRINE_"


@dataclasses.dataclass(frozen=True)
class Settings:
    target: str = "all"
    """Comma-separated roles to run in this process, or ``all``."""
    data_dir: Path = Path(".trine/data")
    """Where the engine keeps its RocksDB database."""
    http_addr: str = "127.0.0.1:7480"
    """The gateway's HTTP listen address."""
    worker_addr: str = "127.0.0.1:7481"
    """The coordinator's gRPC address for workers."""
    engine_addr: str = "127.0.0.1:7482"
    """The engine's gRPC address for a split topology."""
    max_payload_bytes: int = 1 << 20
    """Largest run input, step output or result accepted, in bytes."""
    lease_ttl_ms: int = 30_000
    """How long a dispatch lease lasts without renewal."""
    heartbeat_interval_ms: int = 1_000
    """How often workers heartbeat; a worker silent for 5 intervals is gone."""
    log_level: str = "info"
    log_format: str = "auto"
    """``console``, ``json``, or ``auto`` (console on a terminal, JSON otherwise)."""
    connect: Mapping[str, str] = dataclasses.field(default_factory=dict)
    """Address per need (``backend``, ``dispatcher``); unset: ``inproc://`` when the provider
    runs in this process, else ``grpc://`` + ``engine_addr``."""
    sections: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)
    """Plugin tables from the config file, by plugin name."""

    def section(self, name: str) -> Mapping[str, Any]:
        return self.sections.get(name, {})

    def roles(self) -> list[str]:
        return [part.strip() for part in self.target.split(",") if part.strip()]

    @classmethod
    def load(
        cls,
        flags: Mapping[str, Any] | None = None,
        env: Mapping[str, str] | None = None,
        config_file: Path | None = None,
    ) -> Settings:
        """Merge the sources in precedence order; raise ConfigError naming a bad value."""
        env = os.environ if env is None else env
        if config_file is None and env.get(ENV_PREFIX + "CONFIG"):
            config_file = Path(env[ENV_PREFIX + "CONFIG"])
        values: dict[str, Any] = {}
        sections: dict[str, Mapping[str, Any]] = {}
        connect: dict[str, str] = {}
        if config_file is not None:
            for key, value in _read_toml(config_file).items():
                if key == "connect" and isinstance(value, dict):
                    connect.update({str(k): str(v) for k, v in value.items()})
                elif key in _FIELDS:
                    values[key] = _coerce(key, value, f"{config_file}: {key}")
                elif isinstance(value, dict):
                    sections[key] = value
                else:
                    raise ConfigError(f"{config_file}: unknown setting {key!r}")
        for name in _FIELDS:
            raw = env.get(ENV_PREFIX + name.upper())
            if raw is not None:
                values[name] = _coerce(name, raw, f"{ENV_PREFIX}{name.upper()}")
        for kind in ("backend", "dispatcher"):
            raw = env.get(f"{ENV_PREFIX}CONNECT_{kind.upper()}")
            if raw:
                connect[kind] = raw
        for name, value in (flags or {}).items():
            if value is None:
                continue
            if name == "connect":
                connect.update(value)
            else:
                values[name] = _coerce(name, value, f"--{name.replace('_', '-')}")
        return cls(**values, connect=connect, sections=sections)


_FIELDS = {f.name: f for f in dataclasses.fields(Settings) if f.name not in ("connect", "sections")}


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None


def _coerce(name: str, value: Any, origin: str) -> Any:
    default = _FIELDS[name].default
    try:
        if isinstance(default, bool):
            return value if isinstance(value, bool) else str(value).lower() in ("1", "true", "yes")
        if isinstance(default, int):
            if isinstance(value, bool):
                raise ValueError
            return int(value)
        if isinstance(default, Path):
            return Path(value)
        if not isinstance(value, str):
            raise ValueError
        return value
    except (TypeError, ValueError):
        kind = type(default).__name__
        raise ConfigError(f"{origin}: expected {kind}, got {value!r}") from None


def split_host_port(address: str, what: str) -> tuple[str, int]:
    """``"127.0.0.1:7480"`` → ``("127.0.0.1", 7480)``; a ConfigError naming ``what`` otherwise."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ConfigError(f"{what}: {address!r} is not host:port")
    return host.strip("[]"), int(port)
