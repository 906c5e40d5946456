"""HTTP front end of the simulator: the OMA JSON protocol over `http.server`.

Every call is `POST /api/<method>` with a JSON object body. HTTP status codes follow the
OMA: 200 for every well-formed call (API failures included), 400 for a body that is not
a JSON object and 404 for an unknown method. Keep-alive works because every response
carries a Content-Length.
"""

from __future__ import annotations

import hmac
import html
import http
import json
import logging
import math
import secrets
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from socketserver import TCPServer
from urllib.parse import quote, unquote, urlsplit

from exporter.simulator.simulation import RequestError, Simulation, UnknownJobError

log = logging.getLogger(__name__)

API_METHODS = ("authenticate", "migration_add", "migration_jobs", "migration_status", "migration_trace")
MAX_BODY_BYTES = 16 * 1024 * 1024
DEFAULT_TOKEN_SECONDS = 10800
MAX_TOKEN_SECONDS = 86400

ERROR_TEXTS = {
    0: "Internal server error",
    1: "Authentication failed",
    2: "Object does not exist",
    5: "Request is badly formatted",
    6: "Attribute is badly formatted",
    7: "Object already exists",
    19: "A migration job with that ID already exists",
    20: "Transient system error, try again later",
    21: "Requests from this IP address are not allowed",
    22: "Object is temporarily unavailable",
    25: "Could not get the provisioning lock",
}
"""Error texts for the `api_error` fault, by OMA `error_number`."""

AUDIT = {"audit": {"source": "opensrs-oma-simulator"}}
"""Extra key in some responses that clients must ignore, as the real OMA sends one."""


@dataclass(frozen=True)
class Faults:
    """Failures the server injects into API calls, checked in the order of the fields.

    `latency` (seconds) delays the response and combines with any other fault.
    `http_status` responds with that status and an HTML body, `invalid_json` responds
    200 with a body that is not JSON, and `api_error` responds
    `{"success": false, "error_number": <api_error>}`. `job_ids` limits the faults to
    calls whose `job` is in the set, and None applies them to every API call.
    """

    latency: float = 0.0
    http_status: int | None = None
    invalid_json: bool = False
    api_error: int | None = None
    job_ids: Iterable[str] | None = None

    def __post_init__(self):
        if not (math.isfinite(self.latency) and self.latency >= 0):
            raise ValueError(f"latency must be a non-negative number of seconds, got {self.latency!r}")
        if self.http_status is not None and not 100 <= self.http_status <= 599:
            raise ValueError(f"http_status must be an HTTP status code, got {self.http_status!r}")
        if self.job_ids is not None:
            object.__setattr__(self, "job_ids", frozenset(str(job) for job in self.job_ids))

    def applies_to(self, job_id: str | None) -> bool:
        return self.job_ids is None or job_id in self.job_ids


class StaticResponses:
    """Pre-rendered migration_status bodies by job ID, for benchmarks."""

    def __init__(self, responses: dict[str, bytes]):
        self._responses = dict(responses)

    def status_body(self, job_id: str) -> bytes:
        body = self._responses.get(job_id)
        if body is None:
            raise UnknownJobError(job_id)
        return body

    def jobs(self) -> list[dict]:
        return [{"date": _job_date(job_id), "job": job_id} for job_id in self._responses]

    def add_job(self, users, job) -> str:
        raise RequestError(0, "this simulator serves fixed responses and cannot add jobs")

    def has_user(self, job_id: str, user: str) -> bool:
        self.status_body(job_id)
        return True

    def trace(self, job_id: str, user: str) -> str:
        self.status_body(job_id)
        return f"job {job_id} user {user}: the static simulator records no migration log\n"


class _SimulationResponses:
    """Adapter that serves a Simulation to the request handler."""

    def __init__(self, simulation: Simulation):
        self._simulation = simulation

    def status_body(self, job_id: str) -> bytes:
        return json.dumps(self._simulation.status(job_id)).encode()

    def jobs(self) -> list[dict]:
        return self._simulation.jobs()

    def add_job(self, users, job) -> str:
        return self._simulation.add_job(users, job)

    def has_user(self, job_id: str, user: str) -> bool:
        return self._simulation.has_user(job_id, user)

    def trace(self, job_id: str, user: str) -> str:
        return self._simulation.trace(job_id, user)


def _job_date(job_id: str) -> int:
    """Return the Unix seconds that an epoch-milliseconds job ID encodes, or 0."""
    return int(job_id) // 1000 if job_id.isdigit() else 0


class SimulatorServer:
    """An OMA endpoint on a local port that serves a Simulation or static responses.

    The socket is bound at construction, so `url` is known before `start()`.
    `token_clock` (seconds) measures session token lifetimes, which run in real time
    and not in simulated time.
    """

    def __init__(
        self,
        sim: Simulation | StaticResponses,
        user: str = "demo@example.com",
        password: str = "demo-password",
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        token_clock: Callable[[], float] = time.monotonic,
    ):
        self.simulation = sim
        self._responses = sim if isinstance(sim, StaticResponses) else _SimulationResponses(sim)
        self.user = user
        self._password = password
        self._token_clock = token_clock
        self._tokens: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        self.faults = Faults()
        self.requests: list[tuple[str, dict]] = []

        server_class = _IPv6Server if ":" in host else _Server
        self._httpd = server_class((host, port), _RequestHandler)
        self._httpd.owner = self
        self.host = host
        self.port = self._httpd.server_address[1]
        url_host = f"[{host}]" if ":" in host else host
        self.url = f"http://{url_host}:{self.port}/api"
        self._thread: threading.Thread | None = None
        self._stopped = False

    @classmethod
    def static(
        cls,
        responses: dict[str, bytes],
        user: str = "demo@example.com",
        password: str = "demo-password",
        host: str = "127.0.0.1",
        port: int = 0,
        **kwargs,
    ) -> SimulatorServer:
        """Build a server whose migration_status returns `responses[job]` unchanged."""
        return cls(StaticResponses(responses), user, password, host, port, **kwargs)

    def start(self) -> SimulatorServer:
        """Serve in a daemon thread and return self."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._httpd.serve_forever,
                kwargs={"poll_interval": 0.1},
                name=f"oma-simulator-{self.port}",
                daemon=True,
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close open keep-alive connections and the socket.

        Calling it again does nothing.
        """
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
        if self._thread is not None:
            self._httpd.shutdown()
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def expire_tokens(self) -> None:
        """Invalidate every session token issued so far."""
        with self._lock:
            self._tokens.clear()

    def __enter__(self) -> SimulatorServer:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    # Request handling, called from handler threads.

    def _record(self, method: str, body: dict) -> None:
        with self._lock:
            self.requests.append((method, body))

    def _track(self, connection: socket.socket, open_: bool) -> None:
        with self._lock:
            if open_:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)

    def _call(self, method: str, body: dict, base_url: str) -> dict | bytes:
        """Run one API call and return the response object, or pre-encoded JSON."""
        try:
            _check_client(body)
            self._check_credentials(body.get("credentials"))
            if method == "authenticate":
                return self._authenticate(body)
            if method == "migration_status":
                return self._responses.status_body(_required_job(body))
            if method == "migration_jobs":
                return {"success": True, "jobs": self._responses.jobs()}
            if method == "migration_add":
                if "users" not in body:
                    raise RequestError(5, "users is missing")
                job_id = self._responses.add_job(body["users"], request_job_id(body))
                return {"success": True, "job": job_id}
            if method == "migration_trace":
                return self._trace(body, base_url)
        except RequestError as error:
            return {"success": False, "error": str(error), "error_number": error.error_number}
        raise AssertionError(f"unrouted API method {method}")

    def _check_credentials(self, credentials) -> None:
        if not isinstance(credentials, dict):
            raise RequestError(1, "Authentication failed: credentials are missing")
        user = credentials.get("user")
        if not isinstance(user, str) or user != self.user:
            raise RequestError(1, "Authentication failed")

        token = credentials.get("token")
        if token is not None:
            with self._lock:
                issued = self._tokens.get(token) if isinstance(token, str) else None
            if issued is None or issued[0] != user or self._token_clock() >= issued[1]:
                raise RequestError(1, "Authentication failed: session token is invalid or expired")
            return

        password = credentials.get("password")
        if not isinstance(password, str) or not hmac.compare_digest(password.encode(), self._password.encode()):
            raise RequestError(1, "Authentication failed")

    def _authenticate(self, body: dict) -> dict:
        generate = body.get("generate_session_token", False)
        if not isinstance(generate, bool):
            raise RequestError(5, "generate_session_token must be true or false")
        if not generate:
            return {"success": True, **AUDIT}

        duration = body.get("session_token_duration", DEFAULT_TOKEN_SECONDS)
        if isinstance(duration, bool) or not isinstance(duration, int):
            raise RequestError(5, "session_token_duration must be an integer number of seconds")
        if not 1 <= duration <= MAX_TOKEN_SECONDS:
            raise RequestError(6, f"session_token_duration must be 1 to {MAX_TOKEN_SECONDS} seconds, got {duration}")

        token = secrets.token_urlsafe(24)
        with self._lock:
            self._tokens[token] = (self.user, self._token_clock() + duration)
        return {"success": True, "session_token": token, "session_token_duration": duration, **AUDIT}

    def _trace(self, body: dict, base_url: str) -> dict:
        job_id = _required_job(body)
        user = body.get("user")
        if not isinstance(user, str) or not user:
            raise RequestError(5, "user must be a local address")
        if not self._responses.has_user(job_id, user):
            raise RequestError(2, f"user {user!r} is not part of migration job {job_id!r}")
        trace_url = f"{base_url}/trace/{quote(job_id, safe='')}/{quote(user, safe='@')}.log"
        return {"success": True, "trace": trace_url}


def _check_client(body: dict) -> None:
    if "client" in body and not isinstance(body["client"], str):
        raise RequestError(5, "client must be a string")


def request_job_id(body: dict) -> str | None:
    """Return the `job` of a request as a string: numbers are converted, strings kept
    as sent (leading zeros included). Returns None when `job` is missing or null."""
    job = body.get("job")
    if job is None:
        return None
    if isinstance(job, str):
        return job
    if isinstance(job, int) and not isinstance(job, bool):
        return str(job)
    if isinstance(job, float) and job.is_integer():
        return str(int(job))
    raise RequestError(5, f"job must be a string, got {type(job).__name__}")


def _required_job(body: dict) -> str:
    job_id = request_job_id(body)
    if job_id is None:
        raise RequestError(5, "job is missing")
    return job_id


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    owner: SimulatorServer

    def server_bind(self):
        # HTTPServer.server_bind resolves the host name with getfqdn, which can wait on
        # DNS; the simulator never needs that name.
        TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = host
        self.server_port = port

    def handle_error(self, request, client_address):
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return
        log.exception("Simulator request from %s failed", client_address[0])


class _IPv6Server(_Server):
    address_family = socket.AF_INET6


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "opensrs-oma-simulator"
    # Headers and body go out in separate writes, which Nagle's algorithm would hold
    # back until the client's delayed ACK, about 40 ms per response.
    disable_nagle_algorithm = True
    server: _Server

    def version_string(self):
        return self.server_version

    def setup(self):
        super().setup()
        self.server.owner._track(self.connection, True)

    def finish(self):
        try:
            super().finish()
        finally:
            self.server.owner._track(self.connection, False)

    def log_message(self, format, *args):
        """Keep the simulator quiet: it logs nothing per request."""

    def handle_one_request(self):
        try:
            super().handle_one_request()
        except ConnectionError:
            # The client went away mid-request, which is normal for a closed keep-alive.
            self.close_connection = True

    def do_POST(self):
        body_bytes = self._read_body()
        if body_bytes is None:
            return
        method = self._api_method()
        if method is None:
            self._send_text(404, f"Not found: {self.path}")
            return
        if method not in API_METHODS:
            self._send_text(404, f"Unknown API method: {method}")
            return

        try:
            body = json.loads(body_bytes)
        except (UnicodeDecodeError, json.JSONDecodeError):
            self._send_text(400, "Request body is not valid JSON")
            return
        if not isinstance(body, dict):
            self._send_text(400, "Request body must be a JSON object")
            return

        owner = self.server.owner
        owner._record(method, body)
        if self._inject_fault(owner.faults, body):
            return

        response = owner._call(method, body, self._base_url())
        if isinstance(response, dict):
            response = json.dumps(response).encode()
        self._send(200, "application/json", response)

    def do_GET(self):
        if self._api_method() is not None:
            self._send_not_allowed()
            return
        parts = urlsplit(self.path).path.split("/")
        if len(parts) == 4 and parts[1] == "trace" and parts[3].endswith(".log"):
            job_id, user = unquote(parts[2]), unquote(parts[3][: -len(".log")])
            try:
                if self.server.owner._responses.has_user(job_id, user):
                    text = self.server.owner._responses.trace(job_id, user)
                    self._send(200, "text/plain; charset=utf-8", text.encode())
                    return
            except UnknownJobError:
                pass
        self._send_text(404, f"Not found: {self.path}")

    def do_HEAD(self):
        self._send_not_allowed_or_missing(head=True)

    def do_PUT(self):
        self._send_not_allowed_or_missing()

    do_DELETE = do_PATCH = do_OPTIONS = do_PUT

    def _send_not_allowed_or_missing(self, head: bool = False):
        if self._read_body() is None:
            return
        if self._api_method() is not None:
            self._send_not_allowed(head)
        else:
            self._send_text(404, f"Not found: {self.path}", head)

    def _send_not_allowed(self, head: bool = False):
        self._send_text(405, "Only POST is allowed on API methods", head, extra_headers={"Allow": "POST"})

    def _api_method(self) -> str | None:
        """Return the method name of an /api/<method> path, or None for other paths."""
        path = urlsplit(self.path).path
        prefix = "/api/"
        if not path.startswith(prefix) or "/" in path[len(prefix):] or path == prefix:
            return None
        return path[len(prefix):]

    def _read_body(self) -> bytes | None:
        """Read the request body, or send an error response and return None for an invalid length."""
        header = self.headers.get("Content-Length")
        if header is None:
            return b""
        try:
            length = int(header)
        except ValueError:
            length = -1
        if length < 0:
            self.close_connection = True
            self._send_text(400, f"Invalid Content-Length: {header}")
            return None
        if length > MAX_BODY_BYTES:
            self.close_connection = True
            self._send_text(413, f"Request body larger than {MAX_BODY_BYTES} bytes")
            return None
        return self.rfile.read(length)

    def _inject_fault(self, faults: Faults, body: dict) -> bool:
        """Apply the configured faults and return True when a fault has sent the response."""
        try:
            job_id = request_job_id(body)
        except RequestError:
            job_id = None
        if not faults.applies_to(job_id):
            return False
        if faults.latency:
            time.sleep(faults.latency)
        if faults.http_status is not None:
            self._send_html_error(faults.http_status)
            return True
        if faults.invalid_json:
            self._send(200, "application/json", b'{"success": true, "users": [{"data": ')
            return True
        if faults.api_error is not None:
            text = ERROR_TEXTS.get(faults.api_error, "Unknown error")
            response = {"success": False, "error": text, "error_number": faults.api_error}
            self._send(200, "application/json", json.dumps(response).encode())
            return True
        return False

    def _base_url(self) -> str:
        """Return scheme, host and port that clients reach this server at."""
        owner = self.server.owner
        if owner.host in ("0.0.0.0", "::", ""):
            host = self.headers.get("Host")
            if host:
                return f"http://{host}"
        return owner.url[: -len("/api")]

    def _send_html_error(self, status: int):
        try:
            phrase = http.HTTPStatus(status).phrase
        except ValueError:
            phrase = "Error"
        title = html.escape(f"{status} {phrase}")
        page = f"<html><head><title>{title}</title></head><body><h1>{title}</h1></body></html>\n"
        self._send(status, "text/html; charset=utf-8", page.encode())

    def _send_text(self, status: int, text: str, head: bool = False, extra_headers: dict | None = None):
        self._send(status, "text/plain; charset=utf-8", (text + "\n").encode(), head, extra_headers)

    def _send(self, status: int, content_type: str, body: bytes, head: bool = False,
              extra_headers: dict | None = None):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (extra_headers or {}).items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if not head:
            self.wfile.write(body)
