"""pipeline.tls_preflight without servers: a TLS listener in this process, with a CA and a
server certificate made here (cryptography), stands in for the broker and ClickHouse."""

from __future__ import annotations

import datetime
import ipaddress
import socket
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from pipeline.settings import Settings
from pipeline.tls_preflight import tls_problems


@dataclass(frozen=True)
class Pki:
    ca: Path
    other_ca: Path  # a CA that did not sign the server's certificate
    cert: Path
    key: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _ca(path: Path, name: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(_name(name)).issuer_name(_name(name))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False,
                                         False), critical=True)
            .sign(key, hashes.SHA256()))
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key, cert


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    folder = tmp_path_factory.mktemp("pki")
    ca_key, ca_cert = _ca(folder / "ca.pem", "test CA")
    _ca(folder / "other-ca.pem", "another CA")
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(_name("127.0.0.1"))
            .issuer_name(ca_cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    (folder / "server.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "server.key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    return Pki(folder / "ca.pem", folder / "other-ca.pem", folder / "server.crt",
               folder / "server.key")


def _serve(listener: socket.socket, context: ssl.SSLContext | None,
           stop: threading.Event) -> None:
    listener.settimeout(0.1)  # closing a socket does not wake a blocked accept()
    while not stop.is_set():
        try:
            conn, _ = listener.accept()
        except TimeoutError:
            continue
        conn.settimeout(5)
        try:
            if context is not None:
                with context.wrap_socket(conn, server_side=True):
                    pass  # the handshake is all a preflight does
        except (OSError, ssl.SSLError):
            pass  # a client that refused our certificate
        finally:
            conn.close()


def _listener(context: ssl.SSLContext | None) -> Iterator[int]:
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()
    thread = threading.Thread(target=_serve, args=(listener, context, stop), daemon=True)
    thread.start()
    try:
        yield int(listener.getsockname()[1])
    finally:
        stop.set()
        thread.join(timeout=5)
        listener.close()


@pytest.fixture
def tls_port(pki: Pki) -> Iterator[int]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki.cert, pki.key)
    yield from _listener(context)


@pytest.fixture
def plain_port() -> Iterator[int]:
    """Accepts and closes without TLS, as a plaintext listener does with a ClientHello."""
    yield from _listener(None)


def kafka(port: int, cafile: str, protocol: str = "SSL") -> Settings:
    return Settings.from_env({"PEAKEND_KAFKA_BOOTSTRAP": f"127.0.0.1:{port}",
                              "PEAKEND_KAFKA_SECURITY_PROTOCOL": protocol,
                              "PEAKEND_KAFKA_SSL_CAFILE": cafile})


def test_a_trusted_broker_passes(pki: Pki, tls_port: int) -> None:
    assert tls_problems(kafka(tls_port, str(pki.ca))) == []


def test_without_the_ca_one_line_names_the_broker_and_the_setting(tls_port: int) -> None:
    (line,) = tls_problems(kafka(tls_port, ""))
    assert line.startswith(f"Kafka broker 127.0.0.1:{tls_port} (SSL): its certificate is not "
                           "trusted (")
    assert line.endswith("; set PEAKEND_KAFKA_SSL_CAFILE to the CA that signed it")


def test_the_wrong_ca_is_named(pki: Pki, tls_port: int) -> None:
    (line,) = tls_problems(kafka(tls_port, str(pki.other_ca)))
    assert "not trusted" in line
    assert line.endswith(f"is PEAKEND_KAFKA_SSL_CAFILE={pki.other_ca} the CA that signed it?")


def test_an_unreadable_ca_file_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nope.pem"
    (line,) = tls_problems(kafka(1, str(missing)))
    assert line == (f"PEAKEND_KAFKA_SSL_CAFILE: cannot load the CA file '{missing}': "
                    "No such file or directory")


def test_a_plaintext_port_is_not_blamed_on_the_ca(plain_port: int) -> None:
    (line,) = tls_problems(kafka(plain_port, ""))
    assert "is this a TLS port?" in line and "CAFILE" not in line


def test_an_unreachable_server_is_left_to_the_clients_retries() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    assert tls_problems(kafka(port, "")) == []


def test_plaintext_protocols_are_not_checked(tls_port: int) -> None:
    assert tls_problems(kafka(tls_port, "", protocol="PLAINTEXT")) == []


def test_clickhouses_urls_are_checked_against_their_own_ca(pki: Pki, tls_port: int) -> None:
    def settings(cafile: str) -> Settings:
        return Settings.from_env({
            "PEAKEND_CLICKHOUSE_URL": f"clickhouses://w:p@127.0.0.1:{tls_port}/peakend",
            "PEAKEND_CLICKHOUSE_SSL_CAFILE": cafile})

    assert tls_problems(settings(str(pki.ca))) == []
    (line,) = tls_problems(settings(""))
    assert line.startswith(f"ClickHouse 127.0.0.1:{tls_port} (clickhouses://): its "
                           "certificate is not trusted")
    assert line.endswith("set PEAKEND_CLICKHOUSE_SSL_CAFILE to the CA that signed it")
    for unencrypted in (f"clickhouse://w:p@127.0.0.1:{tls_port}/peakend", "chdb:///tmp/x"):
        assert tls_problems(Settings.from_env({"PEAKEND_CLICKHOUSE_URL": unencrypted})) == []
