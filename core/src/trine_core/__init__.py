"""trine-core: the contracts and the boot machinery every trine plugin builds on.

Plugin authors import from here and nothing else of trine's runtime.
"""

from trine_core.auth import (
    SCOPES,
    Token,
    TokenBook,
    hash_token,
    install_sighup_reload,
    new_token,
)
from trine_core.contracts import Contracts, contract_name
from trine_core.errors import (
    ConfigError,
    InvalidArgument,
    KeptSignalsFull,
    LeaseLost,
    PayloadTooLarge,
    PermissionDenied,
    RoleFailed,
    RunExpired,
    RunFinished,
    RunNotFound,
    StorageError,
    TrineError,
    Unauthenticated,
    Unavailable,
    UnknownFunction,
    WorkerIdInUse,
    cannot_listen,
    error_from_code,
)
from trine_core.fallbacks import WorkCredit, refused, report_each, take_work_polling
from trine_core.hookspecs import hookimpl
from trine_core.logging import configure_logging, get_logger
from trine_core.names import MAX_SIGNAL_NAME, check_signal_name
from trine_core.plugins import PluginSet
from trine_core.protocols import Backend, Dispatcher, WorkerRegistry
from trine_core.registry import Command, CommandRegistry, RoleRegistry, TransportRegistry
from trine_core.roles import Role, RoleContext, Transport
from trine_core.runtime import Runtime
from trine_core.settings import (
    AUTH_TOKENS_FILE,
    INSECURE,
    LOG_FORMAT,
    LOG_LEVEL,
    MAX_PAYLOAD_BYTES,
    PLUGINS,
    TARGET,
    TLS_CA,
    TLS_CERT,
    TLS_KEY,
    Setting,
    Settings,
    SettingsRegistry,
    split_host_port,
)
from trine_core.worker_streams import (
    WorkerHub,
    WorkerListener,
    WorkerServing,
    WorkerStream,
    WorkerTransport,
)
from trine_proto.addresses import DEFAULT_WORKER_SCHEME, worker_address

__all__ = [
    "AUTH_TOKENS_FILE",
    "DEFAULT_WORKER_SCHEME",
    "INSECURE",
    "LOG_FORMAT",
    "LOG_LEVEL",
    "MAX_PAYLOAD_BYTES",
    "MAX_SIGNAL_NAME",
    "PLUGINS",
    "SCOPES",
    "TARGET",
    "TLS_CA",
    "TLS_CERT",
    "TLS_KEY",
    "Backend",
    "Command",
    "CommandRegistry",
    "ConfigError",
    "Contracts",
    "Dispatcher",
    "InvalidArgument",
    "KeptSignalsFull",
    "LeaseLost",
    "PayloadTooLarge",
    "PermissionDenied",
    "PluginSet",
    "Role",
    "RoleContext",
    "RoleFailed",
    "RoleRegistry",
    "RunExpired",
    "RunFinished",
    "RunNotFound",
    "Runtime",
    "Setting",
    "Settings",
    "SettingsRegistry",
    "StorageError",
    "Token",
    "TokenBook",
    "Transport",
    "TransportRegistry",
    "TrineError",
    "Unauthenticated",
    "Unavailable",
    "UnknownFunction",
    "WorkCredit",
    "WorkerHub",
    "WorkerIdInUse",
    "WorkerListener",
    "WorkerRegistry",
    "WorkerServing",
    "WorkerStream",
    "WorkerTransport",
    "cannot_listen",
    "check_signal_name",
    "configure_logging",
    "contract_name",
    "error_from_code",
    "get_logger",
    "hash_token",
    "hookimpl",
    "install_sighup_reload",
    "new_token",
    "refused",
    "report_each",
    "split_host_port",
    "take_work_polling",
    "worker_address",
]
