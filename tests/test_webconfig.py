"""TLS and basic authentication from --web.config.file, tested with real TLS clients.

Certificates are made for each test session with the `openssl` command: a CA, two
server certificates under it (for rotation), a client certificate under it, and a
client certificate under a second, untrusted CA. Servers listen on 127.0.0.1 with
ephemeral ports.
"""

from __future__ import annotations

import base64
import http.client
import json
import logging
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import bcrypt
import pytest
import yaml

from exporter.client import OmaClient
from exporter.poller import Poller
from exporter.server import Exposition, ExporterServer
from exporter.webconfig import BasicAuth, WebConfigError, WebConfigFile, load_web_config, parse_basic_authorization
from tests.promtools import ManagedProcess, free_port, http_get, require_binary, wait_until
from tests.scripted_server import ScriptedServer, json_reply

SCRIPT = Path(sys.executable).parent / "opensrs-migration-exporter"
FIXTURES = Path(__file__).parent / "fixtures"
SEED_JOB = "1326229437638"
OMA_PASSWORD = "test-password-7f3a"
SCRAPE_USER = "prometheus"
SCRAPE_PASSWORD = "scrape-password-4c1e"
REALM_HEADER = 'Basic realm="opensrs-migration-exporter"'


# Certificates -------------------------------------------------------------------------


@dataclass(frozen=True)
class Certificates:
    folder: Path

    def path(self, name: str) -> Path:
        return self.folder / name


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=30)


def _make_ca(folder: Path, name: str) -> None:
    _openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", f"{name}.key", "-out", f"{name}.crt", "-days", "2", "-subj", f"/CN={name}",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=folder,
    )


def _make_leaf(folder: Path, name: str, ca: str, serial: str, extensions: str) -> None:
    (folder / f"{name}.ext").write_text(extensions + "\nbasicConstraints=CA:FALSE\n")
    _openssl(
        "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}",
        cwd=folder,
    )
    _openssl(
        "x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key", "-set_serial", serial,
        "-days", "2", "-out", f"{name}.crt", "-extfile", f"{name}.ext",
        cwd=folder,
    )


@pytest.fixture(scope="session")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    assert shutil.which("openssl"), "the openssl command is needed to make test certificates"
    folder = tmp_path_factory.mktemp("certificates")
    server_extensions = "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth"
    client_extensions = "subjectAltName=DNS:scraper.example.com,email:sre@example.com\nextendedKeyUsage=clientAuth"
    _make_ca(folder, "ca")
    _make_ca(folder, "other-ca")
    _make_leaf(folder, "server", "ca", "0x5E01", server_extensions)
    _make_leaf(folder, "rotated-server", "ca", "0x5E02", server_extensions)
    _make_leaf(folder, "client", "ca", "0xC001", client_extensions)
    _make_leaf(folder, "untrusted-client", "other-ca", "0xC002", client_extensions)
    return Certificates(folder)


def _config_folder(tmp_path: Path, certificates: Certificates) -> Path:
    """Copy the certificates next to a web configuration file, which names them by relative path."""
    for name in ("server.crt", "server.key", "ca.crt", "rotated-server.crt", "rotated-server.key"):
        shutil.copy(certificates.path(name), tmp_path / name)
    return tmp_path


def _write_config(folder: Path, text: str, name: str = "web.yml") -> Path:
    path = folder / name
    path.write_text(text)
    return path


@pytest.fixture(scope="session")
def scrape_hash() -> str:
    # Cost 4 keeps the tests fast; the format is the same as for cost 10 or more.
    return bcrypt.hashpw(SCRAPE_PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()


TLS_ONLY = """\
tls_server_config:
  cert_file: server.crt
  key_file: server.key
"""


# Servers and clients ------------------------------------------------------------------


@dataclass(frozen=True)
class Backend:
    poller: Poller
    exposition: Exposition


@pytest.fixture(scope="module")
def backend() -> Iterator[Backend]:
    """A poller and its backend, filled by one poll of a scripted OMA over real HTTP."""
    seed = json.loads((FIXTURES / "seed_migration_status.json").read_text())
    with ScriptedServer(lambda method, body: json_reply(seed)) as oma:
        client = OmaClient(oma.url, "sre@example.com", OMA_PASSWORD, client_name="test", retries=0)
        poller = Poller(client, [SEED_JOB], interval=60, deadline=30, stale_after=600)
        poller.poll_all()
        yield Backend(poller, Exposition(poller.view))


@contextmanager
def serve(backend: Backend, web_config: WebConfigFile | None) -> Iterator[int]:
    server = ExporterServer("127.0.0.1", 0, backend.exposition, backend.poller.view, web_config=web_config)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server.port
    finally:
        server.shutdown()
        server.server_close()


def client_context(certificates: Certificates, client: str | None = None,
                   maximum_version: ssl.TLSVersion | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(certificates.path("ca.crt")))
    if client is not None:
        context.load_cert_chain(str(certificates.path(f"{client}.crt")), str(certificates.path(f"{client}.key")))
    if maximum_version is not None:
        context.maximum_version = maximum_version
    return context


@dataclass
class Response:
    status: int
    headers: http.client.HTTPMessage
    body: bytes
    serial: str | None


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def request(port: int, path: str = "/metrics", *, context: ssl.SSLContext | None = None,
            headers: dict[str, str] | None = None, method: str = "GET") -> Response:
    """Send one request on a new connection; HTTPS when a context is given."""
    if context is None:
        connection: http.client.HTTPConnection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    else:
        connection = http.client.HTTPSConnection("127.0.0.1", port, timeout=10, context=context)
    try:
        connection.request(method, path, headers=headers or {})
        response = connection.getresponse()
        body = response.read()
        serial = None
        if isinstance(connection.sock, ssl.SSLSocket):
            serial = connection.sock.getpeercert()["serialNumber"]
        return Response(response.status, response.headers, body, serial)
    finally:
        connection.close()


class RecordingHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def messages(self, level: int = logging.DEBUG) -> list[str]:
        return [record.getMessage() for record in self.records if record.levelno >= level]

    def text(self) -> str:
        return "\n".join(f"{record.getMessage()} {vars(record)}" for record in self.records)


@pytest.fixture
def exporter_log() -> Iterator[RecordingHandler]:
    """Every record of the `exporter` loggers, whatever logs.configure did to propagation."""
    handler = RecordingHandler()
    logger = logging.getLogger("exporter")
    previous_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous_level)


# TLS ----------------------------------------------------------------------------------


def test_https_with_ca(tmp_path, certificates, backend):
    folder = _config_folder(tmp_path, certificates)
    with serve(backend, WebConfigFile(_write_config(folder, TLS_ONLY))) as port:
        response = request(port, context=client_context(certificates))
    assert response.status == 200
    assert b"opensrs_" in response.body
    assert response.serial == "5E01"


def test_plain_http_to_tls_port_fails(tmp_path, certificates, backend, exporter_log):
    folder = _config_folder(tmp_path, certificates)
    with serve(backend, WebConfigFile(_write_config(folder, TLS_ONLY))) as port:
        with pytest.raises((http.client.HTTPException, OSError)):
            request(port)
        after = request(port, context=client_context(certificates))
    assert after.status == 200, "a plain HTTP request must not break the TLS listener"
    handshake_failures = [r for r in exporter_log.records if r.getMessage() == "TLS handshake failed"]
    assert handshake_failures, exporter_log.text()
    assert handshake_failures[0].client == "127.0.0.1"
    assert handshake_failures[0].levelno == logging.DEBUG


def test_untrusted_server_certificate_rejected_by_client(tmp_path, certificates, backend):
    folder = _config_folder(tmp_path, certificates)
    untrusting = ssl.create_default_context(cafile=str(certificates.path("other-ca.crt")))
    with serve(backend, WebConfigFile(_write_config(folder, TLS_ONLY))) as port:
        with pytest.raises(ssl.SSLCertVerificationError):
            request(port, context=untrusting)


def test_stalled_handshake_blocks_no_one(tmp_path, certificates, backend):
    folder = _config_folder(tmp_path, certificates)
    with serve(backend, WebConfigFile(_write_config(folder, TLS_ONLY))) as port:
        silent = socket.create_connection(("127.0.0.1", port), timeout=10)
        half_hello = socket.create_connection(("127.0.0.1", port), timeout=10)
        half_hello.sendall(b"\x16\x03\x01\x02\x00")
        try:
            started = time.monotonic()
            response = request(port, context=client_context(certificates))
            elapsed = time.monotonic() - started
        finally:
            silent.close()
            half_hello.close()
    assert response.status == 200
    assert elapsed < 5, f"a stalled handshake delayed another client by {elapsed:.1f}s"


def test_min_version_tls13_rejects_tls12_client(tmp_path, certificates, backend):
    folder = _config_folder(tmp_path, certificates)
    path = _write_config(folder, TLS_ONLY + "  min_version: TLS13\n")
    with serve(backend, WebConfigFile(path)) as port:
        with pytest.raises(ssl.SSLError):
            request(port, context=client_context(certificates, maximum_version=ssl.TLSVersion.TLSv1_2))
        assert request(port, context=client_context(certificates)).status == 200


def test_max_version_tls12_serves_tls12(tmp_path, certificates, backend):
    folder = _config_folder(tmp_path, certificates)
    path = _write_config(folder, TLS_ONLY + "  max_version: TLS12\n")
    with serve(backend, WebConfigFile(path)) as port:
        connection = http.client.HTTPSConnection("127.0.0.1", port, timeout=10, context=client_context(certificates))
        try:
            connection.request("GET", "/-/healthy")
            assert connection.getresponse().status == 200
            assert connection.sock.version() == "TLSv1.2"
        finally:
            connection.close()


CLIENT_CERT_REQUIRED = TLS_ONLY + """\
  client_auth_type: RequireAndVerifyClientCert
  client_ca_file: ca.crt
"""


def test_client_certificate_required(tmp_path, certificates, backend, exporter_log):
    folder = _config_folder(tmp_path, certificates)
    with serve(backend, WebConfigFile(_write_config(folder, CLIENT_CERT_REQUIRED))) as port:
        with pytest.raises((http.client.HTTPException, OSError)):
            request(port, context=client_context(certificates))
        with pytest.raises((http.client.HTTPException, OSError)):
            request(port, context=client_context(certificates, client="untrusted-client"))
        accepted = request(port, context=client_context(certificates, client="client"))
    assert accepted.status == 200
    assert b"opensrs_" in accepted.body
    failures = [r for r in exporter_log.records if r.getMessage() == "TLS handshake failed"]
    assert len(failures) == 2, exporter_log.text()


def test_client_certificate_optional(tmp_path, certificates, backend):
    folder = _config_folder(tmp_path, certificates)
    text = TLS_ONLY + "  client_auth_type: VerifyClientCertIfGiven\n  client_ca_file: ca.crt\n"
    with serve(backend, WebConfigFile(_write_config(folder, text))) as port:
        assert request(port, context=client_context(certificates)).status == 200
        assert request(port, context=client_context(certificates, client="client")).status == 200
        with pytest.raises((http.client.HTTPException, OSError)):
            request(port, context=client_context(certificates, client="untrusted-client"))


def test_client_allowed_sans(tmp_path, certificates, backend, exporter_log):
    folder = _config_folder(tmp_path, certificates)
    allowed = _write_config(folder, CLIENT_CERT_REQUIRED + "  client_allowed_sans: [scraper.example.com]\n", "a.yml")
    other = _write_config(folder, CLIENT_CERT_REQUIRED + "  client_allowed_sans: [other.example.com]\n", "b.yml")
    with serve(backend, WebConfigFile(allowed)) as port:
        assert request(port, context=client_context(certificates, client="client")).status == 200
    with serve(backend, WebConfigFile(other)) as port:
        with pytest.raises((http.client.HTTPException, OSError)):
            request(port, context=client_context(certificates, client="client"))
    assert "client certificate rejected" in exporter_log.messages()


def test_rotated_certificate_served_without_restart(tmp_path, certificates, backend, exporter_log):
    folder = _config_folder(tmp_path, certificates)
    web_config = WebConfigFile(_write_config(folder, TLS_ONLY), check_interval=0)
    with serve(backend, web_config) as port:
        before = request(port, context=client_context(certificates))
        (folder / "server.key").write_bytes((folder / "rotated-server.key").read_bytes())
        (folder / "server.crt").write_bytes((folder / "rotated-server.crt").read_bytes())
        after = request(port, context=client_context(certificates))
    assert before.serial == "5E01"
    assert after.serial == "5E02"
    assert after.status == 200
    assert "web configuration reloaded" in exporter_log.messages(logging.INFO)


def test_reload_checks_at_most_once_per_interval(tmp_path, certificates):
    folder = _config_folder(tmp_path, certificates)
    now = [1000.0]
    web_config = WebConfigFile(_write_config(folder, TLS_ONLY), check_interval=1.0, clock=lambda: now[0])
    first = web_config.current()
    (folder / "server.key").write_bytes((folder / "rotated-server.key").read_bytes())
    (folder / "server.crt").write_bytes((folder / "rotated-server.crt").read_bytes())
    now[0] += 0.5
    assert web_config.current() is first, "reloaded before the check interval passed"
    now[0] += 0.6
    assert web_config.current() is not first, "the changed certificate was not reloaded"


# Basic authentication -----------------------------------------------------------------


def auth_config(scrape_hash: str, tls: bool = True) -> str:
    text = TLS_ONLY if tls else ""
    return text + f"basic_auth_users:\n  {SCRAPE_USER}: {scrape_hash}\n"


def test_basic_auth_on_every_endpoint(tmp_path, certificates, backend, scrape_hash):
    folder = _config_folder(tmp_path, certificates)
    context = client_context(certificates)
    good = basic(SCRAPE_USER, SCRAPE_PASSWORD)
    with serve(backend, WebConfigFile(_write_config(folder, auth_config(scrape_hash)))) as port:
        for path in ("/metrics", "/", "/-/healthy", "/-/ready", "/no-such-page"):
            anonymous = request(port, path, context=context)
            assert anonymous.status == 401, path
            assert anonymous.headers["WWW-Authenticate"] == REALM_HEADER, path
            assert request(port, path, context=context, headers=good).status != 401, path
        posted = request(port, "/-/reload", context=context, method="POST")
        assert posted.status == 401
        metrics = request(port, context=context, headers=good)
    assert metrics.status == 200
    assert b"opensrs_" in metrics.body


@pytest.mark.parametrize("headers", [
    basic(SCRAPE_USER, "wrong-password"),
    basic("nobody", SCRAPE_PASSWORD),
    basic(SCRAPE_USER, ""),
    {"Authorization": "Bearer " + SCRAPE_PASSWORD},
    {"Authorization": "Basic not-base64!"},
    {"Authorization": "Basic " + base64.b64encode(SCRAPE_USER.encode()).decode()},
    {},
], ids=["wrong-password", "unknown-user", "empty-password", "bearer", "bad-base64", "no-colon", "none"])
def test_basic_auth_rejected(tmp_path, certificates, backend, scrape_hash, headers):
    folder = _config_folder(tmp_path, certificates)
    with serve(backend, WebConfigFile(_write_config(folder, auth_config(scrape_hash)))) as port:
        response = request(port, context=client_context(certificates), headers=headers)
    assert response.status == 401
    assert response.headers["WWW-Authenticate"] == REALM_HEADER
    assert b"opensrs_" not in response.body


def test_basic_auth_over_plain_http(tmp_path, backend, scrape_hash):
    path = _write_config(tmp_path, auth_config(scrape_hash, tls=False))
    with serve(backend, WebConfigFile(path)) as port:
        assert request(port).status == 401
        assert request(port, headers=basic(SCRAPE_USER, SCRAPE_PASSWORD)).status == 200


def test_basic_auth_accepts_htpasswd_2y_hash(tmp_path, backend):
    # htpasswd -B writes $2y$ hashes; the algorithm is the same as $2b$.
    stored = "$2y$" + bcrypt.hashpw(b"htpasswd-password", bcrypt.gensalt(rounds=4)).decode()[4:]
    path = _write_config(tmp_path, f"basic_auth_users:\n  alice: '{stored}'\n")
    with serve(backend, WebConfigFile(path)) as port:
        assert request(port, headers=basic("alice", "htpasswd-password")).status == 200
        assert request(port, headers=basic("alice", "htpasswd-passwore")).status == 401


def test_basic_auth_caches_successful_checks(monkeypatch, scrape_hash):
    calls = []
    real_checkpw = bcrypt.checkpw

    def counting_checkpw(password: bytes, hashed: bytes) -> bool:
        calls.append(hashed)
        return real_checkpw(password, hashed)

    monkeypatch.setattr(bcrypt, "checkpw", counting_checkpw)
    auth = BasicAuth({SCRAPE_USER: scrape_hash.encode()})
    good = basic(SCRAPE_USER, SCRAPE_PASSWORD)["Authorization"]
    wrong = basic(SCRAPE_USER, "wrong-password")["Authorization"]
    unknown = basic("nobody", SCRAPE_PASSWORD)["Authorization"]

    assert auth.check(good)
    assert len(calls) == 1
    for _ in range(5):
        assert auth.check(good)
    assert len(calls) == 1, "a cached password was checked with bcrypt again"
    assert not auth.check(wrong)
    assert len(calls) == 2, "a wrong password must always go through bcrypt"
    assert not auth.check(wrong)
    assert len(calls) == 3
    assert not auth.check(unknown)
    assert len(calls) == 4, "an unknown user must cost a bcrypt check too"
    assert auth.check(good)
    assert len(calls) == 4


def test_basic_auth_long_password_truncated_like_bcrypt():
    password = "p" * 100
    stored = bcrypt.hashpw(password.encode()[:72], bcrypt.gensalt(rounds=4))
    auth = BasicAuth({"alice": stored})
    assert auth.check(basic("alice", password)["Authorization"])
    assert not auth.check(basic("alice", "p" * 71)["Authorization"])


@pytest.mark.parametrize("value, expected", [
    ("Basic " + base64.b64encode(b"alice:secret").decode(), ("alice", b"secret")),
    ("basic " + base64.b64encode(b"alice:se:cret").decode(), ("alice", b"se:cret")),
    ("Basic " + base64.b64encode(b":").decode(), ("", b"")),
    ("Basic " + base64.b64encode(b"alice").decode(), None),
    ("Basic %%%", None),
    ("Basic " + base64.b64encode(b"\xff:x").decode(), None),
    ("Digest username=alice", None),
    ("", None),
    (None, None),
])
def test_parse_basic_authorization(value, expected):
    assert parse_basic_authorization(value) == expected


def test_configured_headers_on_every_response(tmp_path, certificates, backend, scrape_hash):
    folder = _config_folder(tmp_path, certificates)
    text = auth_config(scrape_hash) + "http_server_config:\n  headers:\n    X-Frame-Options: deny\n" \
        "    Strict-Transport-Security: max-age=31536000\n"
    with serve(backend, WebConfigFile(_write_config(folder, text))) as port:
        context = client_context(certificates)
        denied = request(port, context=context)
        served = request(port, context=context, headers=basic(SCRAPE_USER, SCRAPE_PASSWORD))
    for response in (denied, served):
        assert response.headers["X-Frame-Options"] == "deny"
        assert response.headers["Strict-Transport-Security"] == "max-age=31536000"


def test_invalid_rewrite_keeps_last_valid_config(tmp_path, certificates, backend, scrape_hash, exporter_log):
    folder = _config_folder(tmp_path, certificates)
    path = _write_config(folder, auth_config(scrape_hash))
    good = basic(SCRAPE_USER, SCRAPE_PASSWORD)
    context = client_context(certificates)
    with serve(backend, WebConfigFile(path, check_interval=0)) as port:
        assert request(port, context=context, headers=good).status == 200
        path.write_text(auth_config(scrape_hash) + "tls_server_config_typo: {}\n")
        for _ in range(3):
            assert request(port, context=context, headers=good).status == 200
            assert request(port, context=context).status == 401
        errors = [record for record in exporter_log.records if record.levelno == logging.ERROR]
        assert len(errors) == 1, exporter_log.text()
        assert 'unknown key "tls_server_config_typo"' in errors[0].error

        new_hash = bcrypt.hashpw(b"second-password", bcrypt.gensalt(rounds=4)).decode()
        path.write_text(TLS_ONLY + f"basic_auth_users:\n  grafana: {new_hash}\n")
        assert request(port, context=context, headers=basic("grafana", "second-password")).status == 200
        assert request(port, context=context, headers=good).status == 401
    assert scrape_hash not in exporter_log.text()
    assert new_hash not in exporter_log.text()


def test_reload_cannot_switch_off_tls(tmp_path, certificates, backend, exporter_log):
    folder = _config_folder(tmp_path, certificates)
    path = _write_config(folder, TLS_ONLY)
    with serve(backend, WebConfigFile(path, check_interval=0)) as port:
        path.write_text("")
        response = request(port, context=client_context(certificates))
    assert response.status == 200
    errors = [record for record in exporter_log.records if record.levelno == logging.ERROR]
    assert len(errors) == 1
    assert "restart" in errors[0].error


def test_missing_cert_retried_when_it_appears(tmp_path, certificates, backend):
    folder = _config_folder(tmp_path, certificates)
    path = _write_config(folder, TLS_ONLY)
    web_config = WebConfigFile(path, check_interval=0)
    path.write_text(TLS_ONLY.replace("server.crt", "new.crt").replace("server.key", "new.key"))
    assert web_config.current().tls
    with serve(backend, web_config) as port:
        assert request(port, context=client_context(certificates)).serial == "5E01"
        shutil.copy(folder / "rotated-server.key", folder / "new.key")
        shutil.copy(folder / "rotated-server.crt", folder / "new.crt")
        assert request(port, context=client_context(certificates)).serial == "5E02"


# Validation ---------------------------------------------------------------------------


INVALID_FILES = {
    "unknown-key": (TLS_ONLY + "  cert_fil: server.crt\n", ['unknown key "tls_server_config.cert_fil"',
                                                            'did you mean "tls_server_config.cert_file"']),
    "unknown-top-level-key": ("tls_config: {}\n", ['unknown key "tls_config"']),
    "missing-cert": (TLS_ONLY.replace("server.crt", "missing.crt"), ["tls_server_config.cert_file", "missing.crt",
                                                                     "not found"]),
    "missing-key-file-setting": ("tls_server_config:\n  cert_file: server.crt\n", ["key_file is missing"]),
    "mismatched-key": (TLS_ONLY.replace("server.key", "rotated-server.key"), ["does not match cert_file"]),
    "key-as-cert": (TLS_ONLY.replace("server.crt", "server.key"), ["contains no PEM certificate"]),
    "bad-hash": ("basic_auth_users:\n  alice: plain-secret-value\n", ['user "alice" is not a bcrypt hash',
                                                                       "htpasswd"]),
    "bad-client-auth-type": (TLS_ONLY + "  client_auth_type: RequireCert\n",
                             ['client_auth_type "RequireCert" is not valid', "RequireAndVerifyClientCert"]),
    "unverified-client-auth": (TLS_ONLY + "  client_auth_type: RequireAnyClientCert\n  client_ca_file: ca.crt\n",
                               ["RequireAnyClientCert is not supported"]),
    "client-ca-without-auth": (TLS_ONLY + "  client_ca_file: ca.crt\n", ["client_auth_type is NoClientCert"]),
    "verify-without-ca": (TLS_ONLY + "  client_auth_type: RequireAndVerifyClientCert\n", ["client_ca_file"]),
    "bad-version": (TLS_ONLY + "  min_version: TLS14\n", ['min_version "TLS14" is not a TLS version']),
    "min-above-max": (TLS_ONLY + "  min_version: TLS13\n  max_version: TLS12\n", ["above max_version"]),
    "sans-without-required-cert": (TLS_ONLY + "  client_allowed_sans: [a]\n",
                                   ["client_allowed_sans needs client_auth_type RequireAndVerifyClientCert"]),
    "cipher-suites": (TLS_ONLY + "  cipher_suites: [TLS_AES_128_GCM_SHA256]\n", ["cipher_suites is not supported"]),
    "inline-key": (TLS_ONLY + "  key: inline-private-key-text\n", ["inline PEM", "key_file"]),
    "bad-header": ("http_server_config:\n  headers:\n    Server: x\n", ['header "Server" cannot be configured']),
    "bad-header-value": ("http_server_config:\n  headers:\n    X-Frame-Options: allow\n",
                         ["X-Frame-Options", "deny, sameorigin"]),
    "rate-limit": ("rate_limit:\n  interval: 1s\n  burst: 10\n", ["rate_limit is not supported"]),
    "not-a-mapping": ("- a\n- b\n", ["top level must be a mapping"]),
    "section-not-a-mapping": ("tls_server_config: yes\n", ["tls_server_config must be a mapping"]),
    "user-with-colon": ("basic_auth_users:\n  'a:b': x\n", ["contains ':'"]),
    "duplicate-user": ("basic_auth_users:\n  alice: $2b$04$x\n  alice: $2b$04$y\n", ['duplicate key "alice"',
                                                                                   "line 3"]),
    "bad-yaml": ("basic_auth_users:\n  alice: [plain-secret-value\n", ["invalid YAML at line"]),
}
SECRET_VALUES = ("plain-secret-value", "inline-private-key-text", "$2b$04$x", "$2b$04$y")


@pytest.mark.parametrize("case", sorted(INVALID_FILES))
def test_invalid_file_rejected_with_reason(tmp_path, certificates, case):
    text, expected = INVALID_FILES[case]
    folder = _config_folder(tmp_path, certificates)
    path = _write_config(folder, text)
    with pytest.raises(WebConfigError) as caught:
        load_web_config(path)
    message = str(caught.value)
    assert "\n" not in message
    assert str(path) in message
    for fragment in expected:
        assert fragment in message
    for secret in SECRET_VALUES:
        assert secret not in message


def test_missing_web_config_file(tmp_path):
    with pytest.raises(WebConfigError, match="file not found"):
        load_web_config(tmp_path / "absent.yml")


@pytest.mark.parametrize("text", ["", "tls_server_config:\n", "basic_auth_users: {}\n",
                                  "tls_server_config:\n  min_version: TLS13\n", "rate_limit:\n  interval: 0s\n",
                                  "http_server_config:\n  http2: false\n"])
def test_files_without_tls_or_users_serve_plain_http(tmp_path, text):
    config = load_web_config(_write_config(tmp_path, text))
    assert config.ssl_context is None
    assert config.basic_auth is None


def test_encrypted_key_rejected_without_prompt(tmp_path, certificates):
    folder = _config_folder(tmp_path, certificates)
    _openssl("pkey", "-in", "server.key", "-aes256", "-passout", "pass:key-passphrase", "-out", "encrypted.key",
             cwd=folder)
    with pytest.raises(WebConfigError, match="encrypted with a passphrase"):
        load_web_config(_write_config(folder, TLS_ONLY.replace("server.key", "encrypted.key")))


# The console script -------------------------------------------------------------------


def run_script(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    environment = {key: value for key, value in os.environ.items() if not key.startswith("OPENSRS_")}
    return subprocess.run([str(SCRIPT), "--web.listen-address", "127.0.0.1:0", *args], env=environment,
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("case", ["unknown-key", "missing-cert", "bad-hash", "bad-client-auth-type"])
def test_console_script_rejects_invalid_file(tmp_path, certificates, case):
    text, expected = INVALID_FILES[case]
    path = _write_config(_config_folder(tmp_path, certificates), text)
    for extra in ((), ("--config.check",)):
        result = run_script("--demo", "--web.config.file", str(path), *extra)
        assert result.returncode == 2, (extra, result.stderr)
        lines = result.stderr.splitlines()
        assert len(lines) == 1, (extra, lines)
        assert lines[0].startswith("opensrs-migration-exporter: invalid web configuration file ")
        for fragment in expected:
            assert fragment in lines[0], (extra, lines[0])
        assert "plain-secret-value" not in result.stderr + result.stdout


def test_console_script_config_check_accepts_valid_file(tmp_path, certificates, scrape_hash):
    path = _write_config(_config_folder(tmp_path, certificates), CLIENT_CERT_REQUIRED + auth_config(scrape_hash, False))
    result = run_script("--demo", "--web.config.file", str(path), "--config.check")
    assert result.returncode == 0, result.stderr
    assert "settings are valid" in result.stdout
    assert scrape_hash not in result.stdout + result.stderr


def test_console_script_serves_https_with_auth(tmp_path, certificates, scrape_hash):
    path = _write_config(_config_folder(tmp_path, certificates), auth_config(scrape_hash))
    environment = {key: value for key, value in os.environ.items() if not key.startswith("OPENSRS_")}
    process = subprocess.Popen(
        [str(SCRIPT), "--web.listen-address", "127.0.0.1:0", "--demo", "--demo.speed", "1000",
         "--web.config.file", str(path), "--log.level", "debug"],
        env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    lines: list[str] = []
    url_found = threading.Event()

    def read_stderr() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            lines.append(line)
            if 'msg="serving metrics"' in line:
                url_found.set()

    threading.Thread(target=read_stderr, daemon=True).start()
    threading.Thread(target=process.stdout.read, daemon=True).start()  # type: ignore[union-attr]
    try:
        assert url_found.wait(30), f"exporter did not start: {lines}"
        serving = next(line for line in lines if 'msg="serving metrics"' in line)
        url = serving.split("url=", 1)[1].split()[0]
        assert url.startswith("https://127.0.0.1:")
        port = int(url.rsplit(":", 1)[1].split("/", 1)[0])
        context = client_context(certificates)
        assert request(port, context=context).status == 401
        deadline = time.monotonic() + 20
        while True:
            response = request(port, "/-/ready", context=context, headers=basic(SCRAPE_USER, SCRAPE_PASSWORD))
            if response.status == 200 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert response.status == 200
        metrics = request(port, context=context, headers=basic(SCRAPE_USER, SCRAPE_PASSWORD))
        assert metrics.status == 200
        assert b"opensrs_" in metrics.body
    finally:
        process.send_signal(signal.SIGTERM)
        returncode = process.wait(timeout=10)
    assert returncode == 0
    output = "".join(lines)
    assert scrape_hash not in output
    assert SCRAPE_PASSWORD not in output
    assert base64.b64encode(f"{SCRAPE_USER}:{SCRAPE_PASSWORD}".encode()).decode() not in output


def test_curl_scrapes_with_ca_and_credentials(tmp_path, certificates, backend, scrape_hash):
    curl = shutil.which("curl")
    if curl is None:
        pytest.skip("curl is not installed")
    folder = _config_folder(tmp_path, certificates)
    with serve(backend, WebConfigFile(_write_config(folder, auth_config(scrape_hash)))) as port:
        netrc = tmp_path / "netrc"
        netrc.write_text(f"machine 127.0.0.1 login {SCRAPE_USER} password {SCRAPE_PASSWORD}\n")
        result = subprocess.run(
            [curl, "--silent", "--show-error", "--fail", "--cacert", str(certificates.path("ca.crt")),
             "--netrc-file", str(netrc), f"https://127.0.0.1:{port}/metrics"],
            capture_output=True, text=True, timeout=30,
        )
        anonymous = subprocess.run(
            [curl, "--silent", "--output", "/dev/null", "--write-out", "%{http_code}",
             "--cacert", str(certificates.path("ca.crt")), f"https://127.0.0.1:{port}/metrics"],
            capture_output=True, text=True, timeout=30,
        )
    assert result.returncode == 0, result.stderr
    assert "opensrs_" in result.stdout
    assert anonymous.stdout == "401"


@pytest.mark.prometheus
def test_prometheus_scrapes_https_with_auth(tmp_path, certificates, backend, scrape_hash):
    folder = _config_folder(tmp_path, certificates)
    web_config = WebConfigFile(_write_config(folder, CLIENT_CERT_REQUIRED + auth_config(scrape_hash, tls=False)))
    (tmp_path / "password").write_text(SCRAPE_PASSWORD)
    (tmp_path / "wrong-password").write_text("wrong-password")
    with serve(backend, web_config) as port:
        def scrape_job(name: str, password_file: str) -> dict:
            return {
                "job_name": name,
                "scheme": "https",
                "tls_config": {
                    "ca_file": str(certificates.path("ca.crt")),
                    "cert_file": str(certificates.path("client.crt")),
                    "key_file": str(certificates.path("client.key")),
                },
                "basic_auth": {"username": SCRAPE_USER, "password_file": str(tmp_path / password_file)},
                "static_configs": [{"targets": [f"127.0.0.1:{port}"]}],
            }

        config = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
            "scrape_configs": [scrape_job("secured", "password"), scrape_job("wrong-password", "wrong-password")],
        }
        config_path = tmp_path / "prometheus.yml"
        config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        address = f"127.0.0.1:{free_port()}"
        storage = tmp_path / "prometheus-data"
        prometheus = ManagedProcess(
            "prometheus",
            [require_binary("prometheus"), f"--config.file={config_path}", f"--storage.tsdb.path={storage}",
             f"--web.listen-address={address}", "--log.level=warn"],
            tmp_path / "prometheus.log",
        )
        try:
            prometheus.wait_ready(f"http://{address}/-/ready")

            def up_values() -> dict[str, str] | None:
                query = urllib.parse.urlencode({"query": "up"})
                status, body = http_get(f"http://{address}/api/v1/query?{query}")
                results = json.loads(body)["data"]["result"] if status == 200 else []
                values = {result["metric"]["job"]: result["value"][1] for result in results}
                return values if len(values) == 2 else None

            up = wait_until(up_values, 20, "both scrape jobs to report up", interval=0.2)
        finally:
            prometheus.stop()
    assert up["secured"] == "1", (tmp_path / "prometheus.log").read_text()[-3000:]
    assert up["wrong-password"] == "0"
