"""Settings: flags > ``TRINE_*`` environment variables > the TOML config file > defaults.

A setting is declared once, as a :class:`Setting`, by the plugin that uses it (core declares only
its own: the target, logging, the payload limit, observer plugins); the plugin hands it to the
runtime through ``trine_add_settings``. From that one declaration follow its config-file key, its
environment variable and its command-line flag, so the precedence rule holds for a third party's
settings exactly as for ours::

    CANCEL_GRACE_MS = Setting("cancel_grace_ms", 30_000, "…", section="engine")
    # file: [engine] cancel_grace_ms = 5000
    # env:  TRINE_ENGINE_CANCEL_GRACE_MS
    # flag: --engine-cancel-grace-ms

A plugin reads its values with ``settings[CANCEL_GRACE_MS]``, typed by the declaration. The
``[connect]`` table (``--connect NAME=ADDRESS``, ``TRINE_CONNECT_<NAME>``) says where a role's
need for a contract is dialled (several addresses, comma-separated or as a TOML array, for a
contract a role wants); see :mod:`trine_core.runtime`.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, Generic, TypeVar

from trine_core.errors import ConfigError

T = TypeVar("T")
V = TypeVar("V", covariant=True)
ENV_PREFIX = "TRINE_"
CONNECT = "connect"
RESERVED = frozenset({CONNECT, "config", "help"})
"""Names of core's own flags and tables, which no setting may take."""


@dataclasses.dataclass(frozen=True, eq=False)
class Setting(Generic[V]):
    """One setting: its name, default (whose type is the setting's type), and a line of help.

    ``section`` groups a plugin's settings under ``[section]`` in the file and prefixes the
    variable and the flag; settings without one are top-level (a few long-standing names such as
    ``data_dir``; new settings belong in their plugin's section). ``choices`` limits the values.
    """

    name: str
    default: V
    help: str
    section: str = ""
    choices: tuple[V, ...] = ()

    @property
    def key(self) -> str:
        """How errors and ``--help`` name it: ``data_dir``, ``engine.cancel_grace_ms``."""
        return f"{self.section}.{self.name}" if self.section else self.name

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.key.replace(".", "_").upper()

    @property
    def flag(self) -> str:
        return "--" + self.key.replace(".", "-").replace("_", "-")

    def parse(self, value: object, origin: str) -> V:
        """``value`` (from the file, a variable or a flag) as this setting's type; a ConfigError
        naming ``origin`` and the expected type otherwise."""
        parsed = _coerce(self.default, value)
        if parsed is _INVALID:
            kind = type(self.default).__name__
            raise ConfigError(f"{origin}: expected {kind}, got {value!r}")
        if self.choices and isinstance(parsed, str):
            parsed = parsed.lower()  # TRINE_LOG_LEVEL=INFO means info
        if self.choices and parsed not in self.choices:
            allowed = ", ".join(map(str, self.choices))
            raise ConfigError(f"{origin}: expected one of {allowed}, got {value!r}")
        result: V = parsed
        return result


_INVALID: Any = object()


def _coerce(default: object, value: object) -> Any:
    try:
        if isinstance(default, bool):
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            return _INVALID
        if isinstance(default, int):
            return _INVALID if isinstance(value, bool | float) else int(str(value))
        if isinstance(default, float):
            return _INVALID if isinstance(value, bool) else float(str(value))
        if isinstance(default, Path):
            return Path(value) if isinstance(value, str | Path) else _INVALID
        if isinstance(default, tuple):  # a list: TOML array, or comma-separated text
            items = value if isinstance(value, list | tuple) else str(value).split(",")
            return tuple(str(item).strip() for item in items if str(item).strip())
        return value if isinstance(value, str) else _INVALID
    except (TypeError, ValueError):
        return _INVALID


class SettingsRegistry:
    """Every setting the loaded plugins declared; handed to ``trine_add_settings``. Two plugins
    declaring one key is a boot error naming both."""

    def __init__(self) -> None:
        self._by_key: dict[str, Setting[Any]] = {}
        self._owners: dict[str, str] = {}
        self.current_plugin = ""

    def add(self, *settings: Setting[Any]) -> None:
        for setting in settings:
            if setting.section == CONNECT or setting.key in RESERVED:
                raise ConfigError(f"setting {setting.key!r}: that name is core's own")
            if self._by_key.get(setting.key) is setting:
                continue
            # Two keys can spell one variable or flag ("engine_addr" and "[engine] addr").
            clash = next(
                (
                    s
                    for s in self._by_key.values()
                    if setting.env == s.env or setting.flag == s.flag
                ),
                None,
            )
            if clash is not None:
                raise ConfigError(
                    f"setting {setting.key!r} ({setting.env}, {setting.flag}) is declared twice: "
                    f"by {self._owners[clash.key]} (as {clash.key!r}) and by "
                    f"{self.current_plugin or 'another plugin'}"
                )
            self._by_key[setting.key] = setting
            self._owners[setting.key] = self.current_plugin or "?"

    def __iter__(self) -> Iterator[Setting[Any]]:
        return iter(self._by_key.values())

    def get(self, key: str) -> Setting[Any] | None:
        return self._by_key.get(key)

    def owner(self, setting: Setting[Any]) -> str:
        return self._owners.get(setting.key, "?")

    def sections(self) -> set[str]:
        return {s.section for s in self._by_key.values() if s.section}


class Settings:
    """The values one process runs with. Reading a setting nobody set gives its default, so a
    test builds exactly what it needs: ``Settings({DATA_DIR: tmp_path})``."""

    def __init__(
        self,
        values: Mapping[Setting[Any], Any] | None = None,
        connect: Mapping[str, str] | None = None,
    ) -> None:
        self._values: dict[Setting[Any], Any] = dict(values or {})
        self.connect: Mapping[str, str] = dict(connect or {})
        """Where each need is dialled, by contract name (``backend = "grpc://…"``)."""

    def __getitem__(self, setting: Setting[T]) -> T:
        value: T = self._values.get(setting, setting.default)
        return value


def read_settings(
    registry: SettingsRegistry,
    flags: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    config_file: Path | None = None,
    *,
    strict: bool = True,
) -> Settings:
    """Merge the sources in precedence order; a ConfigError names a bad or unknown value.

    ``flags`` are by setting key (``None`` means not given), plus ``connect``: a mapping.
    ``strict=False`` passes over keys the registry does not know (a first, partial read).
    """
    env = os.environ if env is None else env
    values: dict[Setting[Any], Any] = {}
    connect: dict[str, str] = {}
    if config_file is not None:
        for origin, key, value in _file_entries(config_file):
            if key.startswith(f"{CONNECT}."):  # an array: several addresses (a role's want)
                joined = ",".join(map(str, value)) if isinstance(value, list) else str(value)
                connect[key.split(".", 1)[1]] = joined
                continue
            setting = registry.get(key)
            if setting is None:
                if not strict:
                    continue
                raise ConfigError(f"{origin}: unknown setting {key!r}{_known(registry, key)}")
            values[setting] = setting.parse(value, origin)
    for setting in registry:
        raw = env.get(setting.env)
        if raw is not None:
            values[setting] = setting.parse(raw, setting.env)
    for name, address in env.items():
        if name.startswith(f"{ENV_PREFIX}CONNECT_") and address:
            connect[name.removeprefix(f"{ENV_PREFIX}CONNECT_").lower()] = address
    for key, value in (flags or {}).items():
        if value is None:
            continue
        if key == CONNECT:
            connect.update(value)
            continue
        setting = registry.get(key)
        if setting is None:
            if not strict:
                continue
            raise ConfigError(f"unknown setting {key!r}")
        values[setting] = setting.parse(value, setting.flag)
    return Settings(values, connect)


def config_path(flag: Path | None, env: Mapping[str, str]) -> Path | None:
    """The config file: ``--config``, else ``TRINE_CONFIG``, else none."""
    if flag is not None:
        return flag
    named = env.get(ENV_PREFIX + "CONFIG")
    return Path(named) if named else None


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"config file {path} cannot be read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None


def _file_entries(path: Path) -> Iterable[tuple[str, str, object]]:
    """``(origin, key, value)`` for every setting in the file; tables are sections."""
    for name, value in read_toml(path).items():
        if isinstance(value, dict):
            for key, inner in value.items():
                yield f"{path}: [{name}] {key}", f"{name}.{key}", inner
        else:
            yield f"{path}: {name}", name, value


def _known(registry: SettingsRegistry, key: str) -> str:
    section = key.split(".", 1)[0] if "." in key else ""
    if section and section not in registry.sections():
        return f" (no installed plugin has a [{section}] section)"
    return ""


def split_host_port(address: str, what: str) -> tuple[str, int]:
    """``"127.0.0.1:7480"`` → ``("127.0.0.1", 7480)``; a ConfigError naming ``what`` otherwise."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ConfigError(f"{what}: {address!r} is not host:port")
    return host.strip("[]"), int(port)


def join_host_port(host: str, port: int) -> str:
    """``("::1", 7481)`` → ``"[::1]:7481"``: what :func:`split_host_port` reads back."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


# -- core's own settings -------------------------------------------------------------------------

TARGET = Setting(
    "target",
    "all",
    "roles to run in this process: all (every installed role), or a comma list, e.g. engine",
)
PLUGINS: Setting[tuple[str, ...]] = Setting(
    "plugins",
    ("all",),
    "observer plugins (trine.plugins) to enable: all installed (default), none, or a comma list",
)
OWN_LOOP: Setting[tuple[str, ...]] = Setting(
    "own_loop",
    (),
    "roles to run on a thread and event loop of their own when this process runs other roles "
    "too (a comma list, e.g. gateway; default none): a flood of HTTP requests then no longer "
    "holds up the engine and the coordinator, for more CPU per run (docs/deployment.md)",
)
MAX_PAYLOAD_BYTES = Setting(
    "max_payload_bytes",
    1 << 20,
    "largest run input, step output, result, event or signal payload accepted, in bytes",
)
LOG_LEVEL = Setting(
    "log_level",
    "info",
    "debug, info, warning or error",
    choices=("debug", "info", "warning", "error"),
)
LOG_FORMAT = Setting(
    "log_format",
    "auto",
    "console, json, or auto (console on a terminal, JSON otherwise)",
    choices=("auto", "console", "json"),
)
# Security (docs/security.md): every role reads them, so they are core's.
AUTH_TOKENS_FILE = Setting(
    "tokens_file",
    "",
    "a TOML file of API tokens (their SHA-256 and scopes): every HTTP request and every worker "
    "then needs a token; re-read on SIGHUP",
    section="auth",
)
TLS_CERT = Setting(
    "cert",
    "",
    "PEM certificate (chain) this process serves HTTPS and gRPC with, and presents as a client",
    section="tls",
)
TLS_KEY = Setting("key", "", "PEM private key of tls.cert", section="tls")
TLS_CA = Setting(
    "ca",
    "",
    "PEM CA bundle: peers' certificates are verified against it, and gRPC listeners require "
    "client certificates it signed (mutual TLS)",
    section="tls",
)
INSECURE = Setting(
    "insecure",
    False,
    "allow listening on a non-loopback address without authentication (no tokens file, or no "
    "mutual TLS on the engine's port)",
)
CORE_SETTINGS = (
    TARGET,
    PLUGINS,
    OWN_LOOP,
    MAX_PAYLOAD_BYTES,
    LOG_LEVEL,
    LOG_FORMAT,
    AUTH_TOKENS_FILE,
    TLS_CERT,
    TLS_KEY,
    TLS_CA,
    INSECURE,
)
