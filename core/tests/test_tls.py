"""trine_core.tls: contexts from the [tls] settings, and a one-line ConfigError naming the setting
and the file for each way the files can be wrong."""

from __future__ import annotations

import os
import ssl
from pathlib import Path

import pytest
from certs import write_pki

from trine_core import INSECURE, TLS_CA, TLS_CERT, TLS_KEY, ConfigError, Settings
from trine_core.tls import (
    TlsFiles,
    check_server_files,
    client_context,
    is_loopback,
    refuse_open_listener,
    server_context,
)


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, Path]:
    return write_pki(tmp_path)


def tls(
    cert: Path | str = "", key: Path | str = "", ca: Path | str = "", insecure: bool = False
) -> Settings:
    return Settings({TLS_CERT: str(cert), TLS_KEY: str(key), TLS_CA: str(ca), INSECURE: insecure})


def test_nothing_configured_is_plain_both_ways() -> None:
    assert server_context(Settings()) is None
    assert client_context(Settings()) is None
    assert not TlsFiles.from_settings(Settings()).mutual


def test_cert_and_key_serve_tls_and_a_ca_makes_it_mutual(pki: dict[str, Path]) -> None:
    one_way = server_context(tls(pki["cert"], pki["key"]))
    assert one_way is not None
    assert one_way.verify_mode == ssl.CERT_NONE
    assert one_way.minimum_version == ssl.TLSVersion.TLSv1_2
    mutual = server_context(tls(pki["cert"], pki["key"], pki["ca"]))
    assert mutual is not None
    assert mutual.verify_mode == ssl.CERT_REQUIRED
    # The coordinator's worker port: a presented certificate is verified, none is needed.
    optional = server_context(tls(pki["cert"], pki["key"], pki["ca"]), ssl.CERT_OPTIONAL)
    assert optional is not None
    assert optional.verify_mode == ssl.CERT_OPTIONAL


def test_clients_verify_servers_and_their_names(pki: dict[str, Path]) -> None:
    dialer = client_context(tls(pki["cert"], pki["key"], pki["ca"]))
    assert dialer is not None
    assert dialer.verify_mode == ssl.CERT_REQUIRED
    assert dialer.check_hostname
    assert [c["subject"] for c in dialer.get_ca_certs()] == [((("commonName", "test CA"),),)]
    assert client_context(tls(ca=pki["ca"])) is not None  # verify only, no client certificate


def test_only_one_of_cert_and_key_is_an_error(pki: dict[str, Path]) -> None:
    with pytest.raises(ConfigError, match=r"tls\.cert is set but tls\.key is not"):
        client_context(tls(cert=pki["cert"]))
    with pytest.raises(ConfigError, match=r"tls\.key is set but tls\.cert is not"):
        server_context(tls(key=pki["key"]))


def test_a_listener_checking_client_certificates_must_serve_tls(pki: dict[str, Path]) -> None:
    with pytest.raises(ConfigError, match=r"tls\.ca is set but tls\.cert and tls\.key are not"):
        server_context(tls(ca=pki["ca"]))
    assert server_context(tls(ca=pki["ca"]), ssl.CERT_NONE) is None  # the gateway's HTTP


@pytest.mark.parametrize(
    ("files", "needle"),
    [
        ({"cert": "missing.pem"}, "tls.cert {missing} does not exist"),
        ({"key": "missing.pem"}, "tls.key {missing} does not exist"),
        ({"ca": "missing.pem"}, "tls.ca {missing} does not exist"),
        ({"cert": "."}, "tls.cert {dir} is a directory"),
        ({"cert": "key"}, "tls.cert {key} holds no PEM certificate"),
        ({"key": "cert"}, "tls.key {cert} holds no PEM private key"),
        ({"ca": "key"}, "tls.ca {key} holds no PEM certificate"),
        ({"key": "other_key"}, "tls.key {other_key} does not match tls.cert {cert}"),
        ({"key": "encrypted_key"}, "tls.key {encrypted_key} is encrypted"),
    ],
)
def test_each_bad_file_is_named(
    pki: dict[str, Path], tmp_path: Path, files: dict[str, str], needle: str
) -> None:
    paths = {"cert": pki["cert"], "key": pki["key"], "ca": pki["ca"]}
    special = {"missing.pem": tmp_path / "missing.pem", ".": tmp_path}
    for setting, name in files.items():
        paths[setting] = special.get(name) or pki[name]
    where = {**{k: str(v) for k, v in pki.items()}, "missing": tmp_path / "missing.pem"}
    expected = needle.format(**where, dir=tmp_path)
    # The gateway's HTTPS (check_server_files) reads no CA: browsers present no certificate.
    builds = [server_context, client_context] + ([] if "ca" in files else [check_server_files])
    for build in builds:
        with pytest.raises(ConfigError) as caught:
            build(tls(**paths))  # type: ignore[operator]
        assert expected in caught.value.message
        assert "\n" not in caught.value.message


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_an_unreadable_key_is_named(pki: dict[str, Path]) -> None:
    pki["key"].chmod(0)
    with pytest.raises(ConfigError, match=r"tls\.key .* cannot be read: Permission denied"):
        server_context(tls(pki["cert"], pki["key"]))


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.0.1", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("10.0.0.7", False),
        ("engine.internal", False),
    ],
)
def test_loopback_hosts(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_a_network_listener_needs_mutual_tls_or_insecure(pki: dict[str, Path]) -> None:
    with pytest.raises(ConfigError) as caught:
        refuse_open_listener(Settings(), "0.0.0.0", "0.0.0.0:7482", "engine")
    message = caught.value.message
    assert message.startswith("engine: refusing to listen on 0.0.0.0:7482 (not loopback)")
    assert "--tls-ca" in message
    assert "--insecure" in message
    with pytest.raises(ConfigError):  # TLS alone does not say who may call
        refuse_open_listener(tls(pki["cert"], pki["key"]), "0.0.0.0", "0.0.0.0:1", "engine")
    refuse_open_listener(Settings(), "127.0.0.1", "127.0.0.1:7482", "engine")
    refuse_open_listener(tls(insecure=True), "0.0.0.0", "0.0.0.0:1", "engine")
    refuse_open_listener(tls(pki["cert"], pki["key"], pki["ca"]), "0.0.0.0", "0.0.0.0:1", "x")


def test_the_worker_port_checks_workers_against_their_own_ca(
    pki: dict[str, Path], tmp_path: Path
) -> None:
    settings = tls(pki["cert"], pki["key"])
    optional = server_context(settings, ssl.CERT_OPTIONAL)
    assert optional is not None
    assert optional.verify_mode == ssl.CERT_NONE  # no CA: nothing to verify a certificate with
    with pytest.raises(ConfigError, match=r"required, but coordinator\.worker_ca .* is not set"):
        server_context(settings, ssl.CERT_REQUIRED, ca_setting="coordinator.worker_ca")
    own = server_context(settings, ssl.CERT_REQUIRED, pki["ca"], "coordinator.worker_ca")
    assert own is not None
    assert own.verify_mode == ssl.CERT_REQUIRED
    assert len(own.get_ca_certs()) == 1
    missing = tmp_path / "workers-ca.pem"
    with pytest.raises(ConfigError, match=f"coordinator.worker_ca {missing} does not exist"):
        server_context(settings, ssl.CERT_OPTIONAL, missing, "coordinator.worker_ca")
