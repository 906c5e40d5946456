"""Web configuration file in the exporter-toolkit format: TLS and basic authentication.

The file has the layout of prometheus/exporter-toolkit's `web-config.yml`, so one file
can serve this exporter and Go exporters:

    tls_server_config:
      cert_file: server.crt          # relative paths resolve against the file's folder
      key_file: server.key
      client_auth_type: RequireAndVerifyClientCert
      client_ca_file: ca.crt
      min_version: TLS12
    http_server_config:
      headers:
        Strict-Transport-Security: max-age=31536000
    basic_auth_users:
      alice: $2y$10$...              # bcrypt hashes only

Unknown keys are rejected. Python's `ssl` module has limits that Go's `crypto/tls`
does not, so some toolkit settings are rejected with an error that gives the reason:

- `client_auth_type` RequestClientCert and RequireAnyClientCert. OpenSSL verifies every
  client certificate it requests unless a verify callback overrides the result, and
  `ssl` offers no such callback.
- Inline `cert` and `key`, because `ssl` loads them only from files.
- `cipher_suites`, `curve_preferences`, and `rate_limit` with a non-zero interval.

`http_server_config.http2` is accepted, but the server always speaks HTTP/1.1.
"""

from __future__ import annotations

import base64
import binascii
import difflib
import hashlib
import hmac
import ipaddress
import json
import logging
import os
import re
import secrets
import ssl
import threading
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bcrypt
import yaml

log = logging.getLogger(__name__)

BASIC_AUTH_REALM = "opensrs-migration-exporter"
HTPASSWD_HINT = "generate one with: htpasswd -nBC 10 \"\" | tr -d ':\\n'"

TOP_LEVEL_KEYS = ("tls_server_config", "http_server_config", "basic_auth_users", "rate_limit")
TLS_KEYS = (
    "cert_file", "key_file", "cert", "key", "client_auth_type", "client_ca_file", "client_ca",
    "client_allowed_sans", "min_version", "max_version", "cipher_suites", "prefer_server_cipher_suites",
    "curve_preferences",
)
HTTP_KEYS = ("http2", "headers")

TLS_VERSIONS = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}

# client_auth_type values that Python's ssl module can enforce, as verify modes.
CLIENT_AUTH_MODES = {
    "NoClientCert": ssl.CERT_NONE,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
# Toolkit values that request a client certificate without verifying it, which needs
# an OpenSSL verify callback that Python's ssl module does not offer.
UNVERIFIED_CLIENT_AUTH = ("RequestClientCert", "RequireAnyClientCert", "RequireClientCert")

# Response headers that the toolkit lets a web configuration set, each with its
# accepted values (None: any value).
CONFIGURABLE_HEADERS: dict[str, tuple[str, ...] | None] = {
    "Strict-Transport-Security": None,
    "X-Content-Type-Options": ("nosniff",),
    "X-Frame-Options": ("deny", "sameorigin"),
    "X-XSS-Protection": None,
    "Content-Security-Policy": None,
}

_BCRYPT_HASH = re.compile(r"\$2[abxy]\$(\d\d)\$[./A-Za-z0-9]{53}")

# A bcrypt hash (cost 10) of random bytes that were thrown away. Requests for unknown
# users are checked against it so that they take about as long as those for known users.
_UNKNOWN_USER_HASH = b"$2b$10$AUxoyf.pG7ALID7b8AAteeMLGdauEOHmwWqqzcEKu2MspfKJmkU.6"

# bcrypt uses only the first 72 bytes of a password. The bcrypt package (5.0) raises
# ValueError on longer input, while htpasswd and Go truncate, so truncate here too.
_BCRYPT_MAX_PASSWORD_BYTES = 72


class WebConfigError(Exception):
    """An invalid web configuration file. The message names the file, the key and the fix."""

    def __init__(self, path: Path, problem: str):
        super().__init__(f"invalid web configuration file {path}: {problem}")
        self.path = path
        self.problem = problem


class BasicAuth:
    """HTTP basic authentication against bcrypt hashes.

    bcrypt is slow by design: one check at cost 10 took about 90 ms with bcrypt 5.0 on an
    AMD EPYC core. So a successful check is cached per user as an HMAC of the password
    under a key made for this process, compared in constant time. The cache has
    at most one entry per configured user. Failed checks are not cached, and bcrypt runs
    on one thread at a time, so a flood of wrong passwords costs at most one CPU core.
    """

    def __init__(self, users: Mapping[str, bytes]):
        self._users = dict(users)
        self._cache_key = secrets.token_bytes(32)
        self._verified: dict[str, bytes] = {}
        self._bcrypt_lock = threading.Lock()

    @property
    def users(self) -> tuple[str, ...]:
        return tuple(self._users)

    def check(self, authorization: str | None) -> bool:
        """Return whether an Authorization header value carries valid credentials."""
        credentials = parse_basic_authorization(authorization)
        if credentials is None:
            return False
        user, password = credentials
        stored_hash = self._users.get(user)
        if stored_hash is None:
            self._bcrypt_check(password, _UNKNOWN_USER_HASH)
            return False

        digest = self._digest(user, password)
        cached = self._verified.get(user)
        if cached is not None and hmac.compare_digest(cached, digest):
            return True
        if not self._bcrypt_check(password, stored_hash):
            return False
        self._verified[user] = digest
        return True

    def _digest(self, user: str, password: bytes) -> bytes:
        user_bytes = user.encode("utf-8")
        message = len(user_bytes).to_bytes(4, "big") + user_bytes + password
        return hmac.new(self._cache_key, message, hashlib.sha256).digest()

    def _bcrypt_check(self, password: bytes, stored_hash: bytes) -> bool:
        with self._bcrypt_lock:
            try:
                return bcrypt.checkpw(password[:_BCRYPT_MAX_PASSWORD_BYTES], stored_hash)
            except ValueError:
                # Hashes are validated when the file is loaded, so this is unexpected.
                log.warning("bcrypt rejected a stored password hash")
                return False


def parse_basic_authorization(value: str | None) -> tuple[str, bytes] | None:
    """Split a `Basic` Authorization header value into user and password, or return None."""
    if not value:
        return None
    scheme, _, encoded = value.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True)
        user, separator, password = decoded.partition(b":")
        if not separator:
            return None
        return user.decode("utf-8"), password
    except (binascii.Error, ValueError):
        return None


@dataclass(frozen=True)
class WebConfig:
    """One loaded web configuration: the TLS context, the basic-auth users and extra headers."""

    ssl_context: ssl.SSLContext | None = None
    basic_auth: BasicAuth | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    client_allowed_sans: frozenset[str] = frozenset()

    @property
    def tls(self) -> bool:
        return self.ssl_context is not None

    def check_client_certificate(self, certificate: Mapping[str, Any] | None) -> str | None:
        """Return why a verified client certificate is rejected by client_allowed_sans, or None.

        `certificate` is the dictionary from `SSLSocket.getpeercert()`. A SAN matches when
        it equals an allowed entry; IP addresses are compared as addresses, so `::1`
        matches `0:0:0:0:0:0:0:1`.
        """
        if not self.client_allowed_sans:
            return None
        names = [_normalize_san(value) for _, value in (certificate or {}).get("subjectAltName", ())]
        if any(name in self.client_allowed_sans for name in names):
            return None
        return "no subject alternative name of the client certificate is in client_allowed_sans"


def _normalize_san(value: str) -> str:
    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        return value


def load_web_config(path: Path) -> WebConfig:
    """Read, validate and load a web configuration file.

    Raises WebConfigError with one line that names the file, the key and the fix. The
    message never contains a password hash or a private key.
    """
    return _Loader(Path(path)).load()


FileStatus = tuple[int, int, int, int] | None


class _Loader:
    """Parses one web configuration file.

    `file_status` records the configuration file and every file that it names, with
    their status taken before they are read, so a change during loading is never
    mistaken for the loaded state.
    """

    def __init__(self, path: Path):
        self.path = path
        self.file_status: dict[Path, FileStatus] = {}

    def watch(self, path: Path) -> None:
        self.file_status.setdefault(path, file_status(path))

    def fail(self, problem: str) -> WebConfigError:
        return WebConfigError(self.path, problem)

    def load(self) -> WebConfig:
        document = self._read_yaml()
        self._check_keys(document, TOP_LEVEL_KEYS, "")
        self._check_rate_limit(document.get("rate_limit"))

        tls_section = self._mapping(document.get("tls_server_config"), "tls_server_config")
        self._check_keys(tls_section, TLS_KEYS, "tls_server_config.")
        http_section = self._mapping(document.get("http_server_config"), "http_server_config")
        self._check_keys(http_section, HTTP_KEYS, "http_server_config.")

        users = self._users(document.get("basic_auth_users"))
        headers = self._headers(http_section)
        self._boolean(http_section, "http2", "http_server_config.http2")
        ssl_context, allowed_sans = self._tls(tls_section)
        return WebConfig(
            ssl_context=ssl_context,
            basic_auth=BasicAuth(users) if users else None,
            headers=headers,
            client_allowed_sans=allowed_sans,
        )

    def _read_yaml(self) -> dict[str, Any]:
        self.watch(self.path)
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise self.fail("file not found; check --web.config.file (OPENSRS_WEB_CONFIG_FILE)") from None
        except (OSError, UnicodeDecodeError) as error:
            raise self.fail(f"cannot read it ({_describe_os_error(error)}); it must be a readable UTF-8 YAML file") from None
        try:
            document = yaml.load(text, Loader=_StrictSafeLoader)  # noqa: S506 (a SafeLoader subclass)
        except yaml.MarkedYAMLError as error:
            # The library's own message quotes the offending line, which may contain a
            # password hash, so only the problem and its position are shown.
            raise self.fail(f"invalid YAML{_describe_mark(error)}: {error.problem or error.context}") from None
        except yaml.YAMLError as error:
            raise self.fail(f"invalid YAML ({type(error).__name__})") from None
        if document is None:
            return {}
        if not isinstance(document, dict):
            raise self.fail(f"the top level must be a mapping of keys, not {_type_name(document)}")
        return document

    def _check_keys(self, section: Mapping[Any, Any], known: tuple[str, ...], prefix: str) -> None:
        for key in section:
            if key in known:
                continue
            message = f"unknown key {json.dumps(prefix + str(key))}"
            close = difflib.get_close_matches(str(key), known, n=1)
            if close:
                message += f" (did you mean {json.dumps(prefix + close[0])}?)"
            raise self.fail(message + f"; the keys accepted here are {', '.join(known)}")

    def _check_rate_limit(self, value: Any) -> None:
        rate_limit = self._mapping(value, "rate_limit")
        if str(rate_limit.get("interval", 0)).strip() in ("0", "0s", ""):
            return
        raise self.fail("rate_limit is not supported by this exporter; remove it, or limit the request rate in a "
                        "reverse proxy")

    def _mapping(self, value: Any, name: str) -> dict[Any, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.fail(f"{name} must be a mapping of keys, not {_type_name(value)}")
        return value

    def _string(self, section: Mapping[str, Any], key: str, name: str) -> str:
        value = section.get(key)
        if value is None:
            return ""
        if not isinstance(value, str):
            raise self.fail(f"{name} must be a string, not {_type_name(value)}")
        return value.strip()

    def _boolean(self, section: Mapping[str, Any], key: str, name: str, default: bool = True) -> bool:
        value = section.get(key, default)
        if not isinstance(value, bool):
            raise self.fail(f"{name} must be true or false, not {_type_name(value)}")
        return value

    def _file(self, section: Mapping[str, Any], key: str) -> Path | None:
        text = self._string(section, key, f"tls_server_config.{key}")
        if not text:
            return None
        path = self.path.parent / Path(text).expanduser()
        self.watch(path)
        if not path.is_file():
            raise self.fail(f"tls_server_config.{key} {path} not found or not a regular file; paths are relative to "
                            "the folder of the web configuration file")
        if not os.access(path, os.R_OK):
            raise self.fail(f"tls_server_config.{key} {path} is not readable by this process; fix its permissions")
        return path

    def _users(self, value: Any) -> dict[str, bytes]:
        users: dict[str, bytes] = {}
        for user, stored_hash in self._mapping(value, "basic_auth_users").items():
            if not isinstance(user, str):
                raise self.fail(f"basic_auth_users: user name {user!r} is {_type_name(user)}; quote it to make it a string")
            if ":" in user:
                raise self.fail(f"basic_auth_users: user name {json.dumps(user)} contains ':', which basic "
                                "authentication cannot send; rename the user")
            if not isinstance(stored_hash, str) or not _valid_bcrypt_hash(stored_hash.strip()):
                raise self.fail(f"basic_auth_users: the password of user {json.dumps(user)} is not a bcrypt hash "
                                f"(passwords are stored hashed, never in clear); {HTPASSWD_HINT}")
            users[user] = stored_hash.strip().encode("ascii")
        return users

    def _headers(self, http_section: Mapping[str, Any]) -> dict[str, str]:
        headers: dict[str, str] = {}
        for name, value in self._mapping(http_section.get("headers"), "http_server_config.headers").items():
            if name not in CONFIGURABLE_HEADERS:
                raise self.fail(f"http_server_config.headers: header {json.dumps(str(name))} cannot be configured; "
                                f"the configurable headers are {', '.join(CONFIGURABLE_HEADERS)}")
            if value is None or value == "":
                continue
            if not isinstance(value, str) or not value.isprintable():
                raise self.fail(f"http_server_config.headers.{name} must be a printable string")
            accepted = CONFIGURABLE_HEADERS[name]
            if accepted is not None and value not in accepted:
                raise self.fail(f"http_server_config.headers.{name} is {json.dumps(value)}; "
                                f"expected one of {', '.join(accepted)}")
            headers[name] = value
        return headers

    def _tls(self, section: Mapping[str, Any]) -> tuple[ssl.SSLContext | None, frozenset[str]]:
        """Build the server's SSL context and the allowed client SANs.

        The context is None (plain HTTP) unless a certificate, key, client CA or
        client_auth_type is set, as in the toolkit, so min_version alone leaves TLS off.
        """
        self._reject_unsupported_tls(section)
        client_auth = self._string(section, "client_auth_type", "tls_server_config.client_auth_type")
        verify_mode = self._client_auth_mode(client_auth or "NoClientCert")
        minimum, maximum = self._versions(section)
        prefer_server_ciphers = self._boolean(
            section, "prefer_server_cipher_suites", "tls_server_config.prefer_server_cipher_suites"
        )
        allowed_sans = self._allowed_sans(section, verify_mode)
        cert_file = self._file(section, "cert_file")
        key_file = self._file(section, "key_file")
        client_ca_file = self._file(section, "client_ca_file")
        client_ca_text = self._string(section, "client_ca", "tls_server_config.client_ca")
        if not any((cert_file, key_file, client_ca_file, client_ca_text, client_auth)):
            return None, frozenset()
        if cert_file is None:
            raise self.fail("TLS is configured but tls_server_config.cert_file is missing; set it to the server "
                            "certificate (PEM)")
        if key_file is None:
            raise self.fail("TLS is configured but tls_server_config.key_file is missing; set it to the server "
                            "private key (PEM)")

        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        # Python deprecates TLS 1.0 and 1.1, but a file that names them requests them.
        # NOTE: OpenSSL 3 at its default security level still rejects TLS 1.0 and 1.1
        # handshakes, so those versions may fail even when allowed here.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            context.minimum_version = minimum
            context.maximum_version = maximum
        if not prefer_server_ciphers:
            context.options &= ~ssl.OP_CIPHER_SERVER_PREFERENCE
        self._load_certificate(context, cert_file, key_file)
        if client_ca_file or client_ca_text:
            if verify_mode == ssl.CERT_NONE:
                raise self.fail("a client CA is set but client_auth_type is NoClientCert; set client_auth_type to "
                                "RequireAndVerifyClientCert or remove the client CA")
            self._load_client_ca(context, client_ca_file, client_ca_text)
        elif verify_mode != ssl.CERT_NONE:
            raise self.fail(f"client_auth_type {client_auth} needs the CA that signs client certificates; set "
                            "tls_server_config.client_ca_file")
        context.verify_mode = verify_mode
        return context, allowed_sans

    def _reject_unsupported_tls(self, section: Mapping[str, Any]) -> None:
        for key in ("cert", "key"):
            if section.get(key):
                raise self.fail(f"tls_server_config.{key} (inline PEM) is not supported because Python's ssl module "
                                "loads certificates and keys only from files; put it in a file and set "
                                f"tls_server_config.{key}_file")
        for key in ("cipher_suites", "curve_preferences"):
            if section.get(key):
                raise self.fail(f"tls_server_config.{key} is not supported by this exporter; remove it to use "
                                "OpenSSL's defaults")

    def _versions(self, section: Mapping[str, Any]) -> tuple[ssl.TLSVersion, ssl.TLSVersion]:
        minimum = self._version(section, "min_version", "TLS12")
        maximum = self._version(section, "max_version", "TLS13")
        if minimum > maximum:
            raise self.fail(f"tls_server_config.min_version {minimum.name} is above max_version {maximum.name}")
        return minimum, maximum

    def _version(self, section: Mapping[str, Any], key: str, default: str) -> ssl.TLSVersion:
        text = self._string(section, key, f"tls_server_config.{key}") or default
        version = TLS_VERSIONS.get(text)
        if version is None:
            raise self.fail(f"tls_server_config.{key} {json.dumps(text)} is not a TLS version; expected one of "
                            f"{', '.join(TLS_VERSIONS)}")
        return version

    def _client_auth_mode(self, client_auth: str) -> ssl.VerifyMode:
        if client_auth in UNVERIFIED_CLIENT_AUTH:
            raise self.fail(f"client_auth_type {client_auth} is not supported because Python's ssl module cannot "
                            "accept a client certificate without verifying it; use RequireAndVerifyClientCert "
                            "or VerifyClientCertIfGiven with client_ca_file")
        mode = CLIENT_AUTH_MODES.get(client_auth)
        if mode is None:
            raise self.fail(f"client_auth_type {json.dumps(client_auth[:60])} is not valid; expected one of "
                            f"{', '.join(CLIENT_AUTH_MODES)}")
        return mode

    def _load_certificate(self, context: ssl.SSLContext, cert_file: Path, key_file: Path) -> None:
        probe = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        try:
            probe.load_verify_locations(cafile=str(cert_file))
        except (ssl.SSLError, OSError, UnicodeDecodeError):
            raise self.fail(f"tls_server_config.cert_file {cert_file} contains no PEM certificate") from None
        try:
            context.load_cert_chain(str(cert_file), str(key_file), password=_reject_passphrase)
        except _EncryptedKeyError:
            raise self.fail(f"tls_server_config.key_file {key_file} is encrypted with a passphrase, which this "
                            "format cannot supply; store the key unencrypted (openssl pkey -in KEY -out KEY.plain) "
                            "and restrict its permissions") from None
        except ssl.SSLError as error:
            if error.reason in ("KEY_VALUES_MISMATCH", "NO_CERTIFICATE_ASSIGNED"):
                raise self.fail(f"tls_server_config.key_file {key_file} does not match cert_file {cert_file}; "
                                "use the private key of that certificate") from None
            raise self.fail(f"tls_server_config.key_file {key_file} contains no usable PEM private key "
                            f"({error.reason or 'PEM error'})") from None
        except OSError as error:
            raise self.fail(f"cannot load tls_server_config.cert_file or key_file ({_describe_os_error(error)})") from None

    def _load_client_ca(self, context: ssl.SSLContext, client_ca_file: Path | None, client_ca_text: str) -> None:
        name = f"tls_server_config.client_ca_file {client_ca_file}" if client_ca_file else "tls_server_config.client_ca"
        try:
            if client_ca_file is not None:
                context.load_verify_locations(cafile=str(client_ca_file))
            else:
                context.load_verify_locations(cadata=client_ca_text)
        except (ssl.SSLError, OSError, UnicodeDecodeError):
            raise self.fail(f"{name} contains no PEM CA certificate") from None

    def _allowed_sans(self, section: Mapping[str, Any], verify_mode: ssl.VerifyMode) -> frozenset[str]:
        value = section.get("client_allowed_sans")
        if value is None:
            return frozenset()
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise self.fail("tls_server_config.client_allowed_sans must be a list of strings")
        if verify_mode != ssl.CERT_REQUIRED:
            raise self.fail("tls_server_config.client_allowed_sans needs client_auth_type RequireAndVerifyClientCert, "
                            "because with other types a client can connect without a certificate")
        return frozenset(_normalize_san(item) for item in value)


class _EncryptedKeyError(Exception):
    pass


def _reject_passphrase() -> bytes:
    # Without a callback OpenSSL would prompt for the passphrase on the terminal.
    raise _EncryptedKeyError


class _StrictSafeLoader(yaml.SafeLoader):
    """A SafeLoader that rejects duplicate keys, where yaml.safe_load keeps the last value."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        self.flatten_mapping(node)
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, str | int | float | bool) and key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {json.dumps(str(key))}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _valid_bcrypt_hash(value: str) -> bool:
    match = _BCRYPT_HASH.fullmatch(value)
    return match is not None and 4 <= int(match.group(1)) <= 31


def _describe_mark(error: yaml.MarkedYAMLError) -> str:
    mark = error.problem_mark or error.context_mark
    return f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""


def _describe_os_error(error: Exception) -> str:
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return type(error).__name__


def _type_name(value: Any) -> str:
    names = {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean", int: "a number", float: "a number"}
    return names.get(type(value), type(value).__name__)


class WebConfigFile:
    """The web configuration from one file, re-read when it or a file it names changes.

    `current()` compares the status (mtime, size, inode, ctime) of the configuration
    file and of every file it names at most once per `check_interval` seconds, and
    reloads when one changed, so rotated certificates apply without a restart. A change
    that makes the configuration invalid is logged once, and the last valid
    configuration stays in use. Switching between HTTP and HTTPS needs a restart.
    """

    def __init__(self, path: Path, check_interval: float = 1.0, clock: Callable[[], float] = time.monotonic):
        self.path = Path(path)
        self._check_interval = check_interval
        self._clock = clock
        self._lock = threading.Lock()
        loader = _Loader(self.path)
        self._config = loader.load()
        self._file_status = loader.file_status
        self._next_check = clock() + check_interval

    def current(self) -> WebConfig:
        """Return the configuration in use, reloading it first when a check is due and a file changed."""
        now = self._clock()
        if now < self._next_check:
            return self._config
        with self._lock:
            if now >= self._next_check:
                self._next_check = now + self._check_interval
                if any(file_status(path) != status for path, status in self._file_status.items()):
                    self._reload()
        return self._config

    def _reload(self) -> None:
        loader = _Loader(self.path)
        try:
            config = loader.load()
            if config.tls != self._config.tls:
                raise loader.fail("switching between HTTP and HTTPS needs a restart of the exporter")
        except WebConfigError as error:
            log.error("reloading the web configuration failed; the last valid configuration stays in use",
                      extra={"file": str(self.path), "error": error.problem})
            return
        finally:
            # Also after a failure: the next change to any of these files retries.
            self._file_status = loader.file_status
        self._config = config
        log.info("web configuration reloaded",
                 extra={"file": str(self.path), "tls": config.tls, "basic_auth": config.basic_auth is not None})


def file_status(path: Path) -> FileStatus:
    """Return the status fields that change when a file is written or replaced, or None if it is missing."""
    try:
        status = path.stat()
    except OSError:
        return None
    return status.st_mtime_ns, status.st_size, status.st_ino, status.st_ctime_ns
