from pathlib import Path

import pytest

from trine_core import ConfigError, Settings, split_host_port


def test_defaults() -> None:
    s = Settings.load(env={})
    assert s.target == "all"
    assert s.data_dir == Path(".trine/data")
    assert s.http_addr == "127.0.0.1:7480"
    assert s.worker_addr == "127.0.0.1:7481"
    assert s.engine_addr == "127.0.0.1:7482"


def test_precedence_flags_over_env_over_file(tmp_path: Path) -> None:
    config = tmp_path / "trine.toml"
    config.write_text(
        'data_dir = "/from/file"\nhttp_addr = "127.0.0.1:1"\nworker_addr = "127.0.0.1:2"\n'
        '[connect]\nbackend = "inproc://"\n[gateway]\ncors = true\n'
    )
    s = Settings.load(
        flags={"http_addr": "127.0.0.1:3", "worker_addr": None},
        env={"TRINE_HTTP_ADDR": "127.0.0.1:9", "TRINE_WORKER_ADDR": "127.0.0.1:8"},
        config_file=config,
    )
    assert s.data_dir == Path("/from/file")  # only the file set it
    assert s.worker_addr == "127.0.0.1:8"  # env beats file; a None flag is "not given"
    assert s.http_addr == "127.0.0.1:3"  # flag beats env
    assert s.connect == {"backend": "inproc://"}
    assert s.section("gateway") == {"cors": True}


def test_config_file_from_env(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('target = "engine"\n')
    assert Settings.load(env={"TRINE_CONFIG": str(config)}).target == "engine"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("max_payload_bytes = 'lots'", "expected int"),
        ("no_such_setting = 1", "unknown setting 'no_such_setting'"),
        ("target = [", "not valid TOML"),
    ],
)
def test_bad_config_file_names_the_problem(tmp_path: Path, content: str, message: str) -> None:
    config = tmp_path / "trine.toml"
    config.write_text(content)
    with pytest.raises(ConfigError, match=message):
        Settings.load(env={}, config_file=config)


def test_missing_config_file() -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        Settings.load(env={}, config_file=Path("/nonexistent/trine.toml"))


def test_bad_env_value_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="TRINE_MAX_PAYLOAD_BYTES"):
        Settings.load(env={"TRINE_MAX_PAYLOAD_BYTES": "big"})


def test_split_host_port() -> None:
    assert split_host_port("127.0.0.1:7480", "x") == ("127.0.0.1", 7480)
    assert split_host_port("[::1]:80", "x") == ("::1", 80)
    with pytest.raises(ConfigError, match="http_addr: 'nope' is not host:port"):
        split_host_port("nope", "http_addr")
