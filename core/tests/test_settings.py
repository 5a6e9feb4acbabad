from pathlib import Path

import pytest

from trine_core import MAX_PAYLOAD_BYTES, TARGET, ConfigError, Setting, split_host_port
from trine_core.settings import CORE_SETTINGS, SettingsRegistry, read_settings

ADDR = Setting("http_addr", "127.0.0.1:7480", "an address")
DATA = Setting("data_dir", Path(".data"), "a folder")
CORS = Setting("cors", False, "a flag", section="gateway")


@pytest.fixture
def registry() -> SettingsRegistry:
    registry = SettingsRegistry()
    registry.add(*CORE_SETTINGS, ADDR, DATA, CORS)
    return registry


def test_defaults(registry: SettingsRegistry) -> None:
    s = read_settings(registry, env={})
    assert s[TARGET] == "all"
    assert s[ADDR] == "127.0.0.1:7480"
    assert s[DATA] == Path(".data")
    assert s[MAX_PAYLOAD_BYTES] == 1 << 20


def test_precedence_flags_over_env_over_file(registry: SettingsRegistry, tmp_path: Path) -> None:
    config = tmp_path / "trine.toml"
    config.write_text(
        'data_dir = "/from/file"\nhttp_addr = "127.0.0.1:1"\n'
        '[connect]\nbackend = "grpc://h:1"\n[gateway]\ncors = true\n'
    )
    s = read_settings(
        registry,
        flags={"http_addr": "127.0.0.1:3", "target": None},
        env={"TRINE_HTTP_ADDR": "127.0.0.1:9", "TRINE_TARGET": "engine"},
        config_file=config,
    )
    assert s[DATA] == Path("/from/file")  # only the file set it
    assert s[TARGET] == "engine"  # env beats the default; a None flag is "not given"
    assert s[ADDR] == "127.0.0.1:3"  # flag beats env beats file
    assert s.connect == {"backend": "grpc://h:1"}
    assert s[CORS] is True


def test_connect_from_env(registry: SettingsRegistry) -> None:
    s = read_settings(registry, env={"TRINE_CONNECT_WORKER_REGISTRY": "grpc://h:2"})
    assert s.connect == {"worker_registry": "grpc://h:2"}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("max_payload_bytes = 'lots'", "max_payload_bytes: expected int"),
        ("no_such_setting = 1", "unknown setting 'no_such_setting'"),
        ("[gateway]\nno_such = 1", r"unknown setting 'gateway.no_such'"),
        ("log_format = 'xml'", "expected one of auto, console, json"),
        ("target = [", "not valid TOML"),
    ],
)
def test_bad_config_file_names_the_problem(
    registry: SettingsRegistry, tmp_path: Path, content: str, message: str
) -> None:
    config = tmp_path / "trine.toml"
    config.write_text(content)
    with pytest.raises(ConfigError, match=message):
        read_settings(registry, env={}, config_file=config)


def test_missing_config_file(registry: SettingsRegistry) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        read_settings(registry, env={}, config_file=Path("/nonexistent/trine.toml"))


def test_bad_env_value_names_the_variable(registry: SettingsRegistry) -> None:
    with pytest.raises(ConfigError, match="TRINE_MAX_PAYLOAD_BYTES"):
        read_settings(registry, env={"TRINE_MAX_PAYLOAD_BYTES": "big"})


def test_a_key_declared_twice_names_both_plugins(registry: SettingsRegistry) -> None:
    registry.current_plugin = "trine-other"
    with pytest.raises(ConfigError, match=r"declared twice: by .* and by trine-other"):
        registry.add(Setting("http_addr", "x", "another"))


def test_a_setting_derives_its_names() -> None:
    assert (CORS.key, CORS.env, CORS.flag) == (
        "gateway.cors",
        "TRINE_GATEWAY_CORS",
        "--gateway-cors",
    )
    assert (DATA.key, DATA.env, DATA.flag) == ("data_dir", "TRINE_DATA_DIR", "--data-dir")


def test_split_host_port() -> None:
    assert split_host_port("127.0.0.1:7480", "x") == ("127.0.0.1", 7480)
    assert split_host_port("[::1]:80", "x") == ("::1", 80)
    with pytest.raises(ConfigError, match="http_addr: 'nope' is not host:port"):
        split_host_port("nope", "http_addr")
