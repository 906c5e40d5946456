"""HTTP server: the telemetry path, a landing page and the health endpoints.

The exposition of a view is rendered once per format and served from memory until
the poller publishes a new view, so a scrape costs a dictionary lookup and a socket
write however many series there are.
"""

from __future__ import annotations

import gzip
import logging
import socket
import ssl
import struct
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import choose_encoder
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.registry import Collector
from prometheus_client.metrics_core import Metric

from exporter import __version__
from exporter import metricdefs as m
from exporter.collector import MigrationCollector
from exporter.fleet import FleetState
from exporter.render import (
    DEFLATE_END, GZIP_HEADER, JobFragments, SeriesPlan, deflate_segment, escape_label_value, help_line, plan_series,
    render_job,
)
from exporter.poller import View
from exporter.webconfig import BASIC_AUTH_REALM, WebConfig, WebConfigFile
from exporter.status_page import render_status_page

log = logging.getLogger(__name__)

# Level 1 took a third of the CPU time of level 6 on an 11 MB batch exposition
# (17 ms against 53 ms, measured with bench/). Its body is 39% larger, which is still
# about twenty times smaller than the plain text. Every poll pays this once.
GZIP_LEVEL = 1

OPENMETRICS_CONTENT_TYPE = "application/openmetrics-text; version=1.0.0; charset=utf-8"

# The largest request body read and dropped; no endpoint takes a body.
MAX_REQUEST_BODY = 65536


def accepts_gzip(header: str) -> bool:
    """Return whether an Accept-Encoding header allows gzip (RFC 9110: names ignore case, q=0 refuses)."""
    for item in header.split(","):
        name, _, parameters = item.strip().partition(";")
        if name.strip().lower() not in ("gzip", "x-gzip"):
            continue
        quality = parameters.strip().lower()
        if quality.startswith("q="):
            try:
                return float(quality[2:]) > 0
            except ValueError:
                return False
        return True
    return False


def choose_format(accept: str | None) -> tuple[Callable, str]:
    """Pick the encoder and content type for an Accept header, falling back to text format 0.0.4.

    prometheus_client's choose_encoder raises on some malformed headers (such as
    `version=abc`); a client's bad header must not cost it the metrics.
    """
    try:
        encoder, content_type = choose_encoder(accept or "")
    except (TypeError, ValueError, IndexError):
        return choose_encoder("")
    if content_type.startswith("application/openmetrics-text"):
        # The cached renderer writes OpenMetrics 1.0.0 whatever version was requested,
        # so the content type must name 1.0.0 too.
        return encoder, OPENMETRICS_CONTENT_TYPE
    return encoder, content_type


class Exposition:
    """Serves views as exposition bytes, rendering each view once per format.

    Job, user and folder samples come from each job's `JobFragments`, rendered when
    its poll finished; health families go through the registry on each new view.
    Bodies are lists of byte chunks so the large fragments are never copied into
    one buffer. `?name[]=` filtering goes through the registry on demand, and
    `?job_id=` filtering joins the health lines of those jobs with their fragments.
    """

    def __init__(
        self,
        view_source: Callable[[], View],
        *,
        folders: bool = True,
        series_limit: int = 0,
        fleet_source: Callable[[], FleetState] = FleetState,
    ):
        self._view_source = view_source
        self._folders = folders
        self._series_limit = series_limit
        self._rendering: View | None = None
        self._lock = threading.Lock()
        self._cache: dict[tuple[bool, bool], list[bytes]] = {}
        self._cached_version = -1
        self._fallback: dict[str, JobFragments] = {}
        self.collector = MigrationCollector(
            self._view_being_rendered, folders=folders, series_limit=series_limit, fleet_source=fleet_source
        )
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(self.collector)
        self._health_registry = CollectorRegistry(auto_describe=False)
        self._health_registry.register(_HealthCollector(self))

    def _view_being_rendered(self) -> View:
        return self._rendering if self._rendering is not None else self._view_source()

    def render(self, accept: str | None, use_gzip: bool, names: list[str] | None = None,
               job_ids: list[str] | None = None) -> tuple[list[bytes], str]:
        """Return the body chunks and content type for an Accept header, gzip-compressed on request.

        `names` keeps the families of those names. `job_ids` keeps the samples whose
        `job_id` label is one of those IDs, with the HELP and TYPE lines of their families.
        """
        encoder, content_type = choose_format(accept)
        openmetrics = content_type.startswith("application/openmetrics-text")
        with self._lock:
            view = self._view_source()
            if names or job_ids:
                body = self._filtered(view, encoder, openmetrics, names, job_ids)
                return [gzip.compress(body, GZIP_LEVEL) if use_gzip else body], content_type
            if view.version != self._cached_version:
                self._cache.clear()
                self._cached_version = view.version
            key = (openmetrics, use_gzip)
            chunks = self._cache.get(key)
            if chunks is None:
                chunks = self._assemble(view, openmetrics, use_gzip)
                self._cache[key] = chunks
            return chunks, content_type

    def _with_view(self, view: View, render: Callable[[], bytes]) -> bytes:
        self._rendering = view
        try:
            return render()
        finally:
            self._rendering = None

    def _filtered(self, view: View, encoder: Callable[[CollectorRegistry], bytes], openmetrics: bool,
                  names: list[str] | None, job_ids: list[str] | None) -> bytes:
        if names:
            body = self._with_view(view, lambda: encoder(self.registry.restricted_registry(names)))
            return _keep_job_samples(body, set(job_ids)) if job_ids else body
        assert job_ids
        return self._job_samples(view, openmetrics, set(job_ids))

    def _job_samples(self, view: View, openmetrics: bool, job_ids: set[str]) -> bytes:
        """Render the samples of `job_ids` only: health lines filtered, then those jobs' fragments."""
        health_encoder = generate_openmetrics if openmetrics else generate_latest
        health = self._with_view(view, lambda: health_encoder(self._health_registry))
        parts = [_keep_job_samples(health.removesuffix(b"# EOF\n"), job_ids)]
        fragments = self._fragments(view)
        plan = plan_series(view.jobs, self._folders, self._series_limit)
        for definitions, exported in _exported_jobs(view, plan):
            selected = [job_id for job_id in exported if job_id in job_ids]
            for definition in definitions:
                lines = [fragments[job_id].lines[definition.name] for job_id in selected]
                if any(lines):
                    parts.append(help_line(definition, openmetrics))
                    parts.extend(lines)
        if openmetrics:
            parts.append(b"# EOF\n")
        return b"".join(parts)

    def _assemble(self, view: View, openmetrics: bool, use_gzip: bool) -> list[bytes]:
        health_encoder = generate_openmetrics if openmetrics else generate_latest
        health = self._with_view(view, lambda: health_encoder(self._health_registry))
        if openmetrics:
            health = health.removesuffix(b"# EOF\n")
        plan = plan_series(view.jobs, self._folders, self._series_limit)
        fragments = self._fragments(view)
        pieces: list[tuple[bytes, JobFragments | None, str]] = [(health, None, "")]
        for definitions, job_ids in _exported_jobs(view, plan):
            for definition in definitions:
                pieces.append((help_line(definition, openmetrics), None, ""))
                pieces.extend((fragments[job_id].lines[definition.name], fragments[job_id], definition.name)
                              for job_id in job_ids)
        if openmetrics:
            pieces.append((b"# EOF\n", None, ""))
        if not use_gzip:
            return [data for data, _, _ in pieces if data]
        return _gzip_pieces(pieces)

    def _fragments(self, view: View) -> dict[str, JobFragments]:
        """Return each polled job's fragments, rendering here only when the poller did not."""
        result: dict[str, JobFragments] = {}
        for job in view.jobs:
            if job.status is None:
                continue
            if isinstance(job.rendered, JobFragments):
                result[job.job_id] = job.rendered
                continue
            cached = self._fallback.get(job.job_id)
            if cached is None or cached.status is not job.status:
                cached = render_job(job.status)
                self._fallback[job.job_id] = cached
            result[job.job_id] = cached
        for job_id in set(self._fallback) - set(result):
            del self._fallback[job_id]
        return result


def _exported_jobs(view: View, plan: SeriesPlan) -> tuple[tuple[tuple[m.MetricDef, ...], list[str]], ...]:
    """Return the job, user and folder families, each with the IDs of the jobs exported at that level."""
    return (
        (m.JOB_LEVEL, [job.job_id for job in view.jobs if job.status is not None]),
        (m.USER_LEVEL, [job.job_id for job in view.jobs if job.status is not None and not job.stale]),
        (m.FOLDER_LEVEL, [job.job_id for job in view.jobs if job.job_id in plan.folder_jobs]),
    )


def _keep_job_samples(text: bytes, job_ids: set[str]) -> bytes:
    """Keep the sample lines whose `job_id` label is one of `job_ids`, and their families' comment lines.

    A family whose samples are all dropped loses its HELP and TYPE lines too, and
    `# EOF` stays. Inside an escaped label value every `"` follows a backslash, so
    `job_id="` can only start the label itself.
    """
    labels = [f'job_id="{escape_label_value(job_id)}"'.encode() for job_id in job_ids]
    output: list[bytes] = []
    comments: list[bytes] = []
    for line in text.splitlines(keepends=True):
        if line == b"# EOF\n":
            output.append(line)
        elif line.startswith(b"#"):
            if line.startswith(b"# HELP "):
                comments = []
            comments.append(line)
        elif any(_has_label(line, label) for label in labels):
            output.extend(comments)
            comments = []
            output.append(line)
    return b"".join(output)


def _has_label(line: bytes, label: bytes) -> bool:
    start = line.find(label)
    while start > 0:
        end = start + len(label)
        if line[start - 1:start] in (b"{", b",") and line[end:end + 1] in (b",", b"}"):
            return True
        start = line.find(label, end)
    return False


def _gzip_pieces(pieces: list[tuple[bytes, JobFragments | None, str]]) -> list[bytes]:
    """Build a gzip body from deflate segments, reusing each fragment's compressed segment."""
    chunks = [GZIP_HEADER]
    crc = 0
    size = 0
    for data, fragments, name in pieces:
        if not data:
            continue
        if fragments is None:
            segment = deflate_segment(data, GZIP_LEVEL)
        else:
            segment = fragments.compressed.get(name)
            if segment is None:
                segment = deflate_segment(data, GZIP_LEVEL)
                fragments.compressed[name] = segment
        chunks.append(segment)
        crc = zlib.crc32(data, crc)
        size += len(data)
    chunks.append(DEFLATE_END)
    chunks.append(struct.pack("<II", crc, size & 0xFFFFFFFF))
    return chunks


class _HealthCollector(Collector):
    """The health families of the exposition's view being rendered."""

    def __init__(self, exposition: Exposition):
        self._exposition = exposition

    def collect(self) -> Iterator[Metric]:
        exposition = self._exposition
        view = exposition._view_being_rendered()
        plan = plan_series(view.jobs, exposition._folders, exposition._series_limit)
        return exposition.collector.health(view, plan)


class ExporterServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, host: str, port: int, exposition: Exposition, view_source: Callable[[], View],
                 telemetry_path: str = "/metrics", web_config: WebConfigFile | None = None):
        if ":" in host:
            self.address_family = socket.AF_INET6
        self.web_config = web_config
        self.exposition = exposition
        self.view_source = view_source
        self.reload_handler: Callable[[], tuple[bool, str]] | None = None
        self.telemetry_path = telemetry_path
        super().__init__((host, port), _Handler)

    def server_bind(self) -> None:
        if self.address_family == socket.AF_INET6:
            # Listen on IPv4 too when the host is "::", as Go exporters do.
            self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()

    @property
    def port(self) -> int:
        return self.server_address[1]

    def current_web_config(self) -> WebConfig | None:
        return self.web_config.current() if self.web_config is not None else None

    def finish_request(self, request: socket.socket, client_address: tuple) -> None:  # type: ignore[override]
        """Serve one connection in its own thread, after a TLS handshake when TLS is on.

        The handshake runs here and not in the accept loop, so a slow or broken client
        delays only its own connection.
        """
        config = self.current_web_config()
        if config is None or config.ssl_context is None:
            super().finish_request(request, client_address)
            return
        connection = _tls_handshake(request, client_address, config)
        if connection is None:
            return
        try:
            super().finish_request(connection, client_address)
        finally:
            self.shutdown_request(connection)


# Time a client has to complete the TLS handshake before its connection is dropped.
TLS_HANDSHAKE_TIMEOUT = 10.0


def _tls_handshake(request: socket.socket, client_address: tuple, config: WebConfig) -> ssl.SSLSocket | None:
    """Return the connection wrapped in TLS, or None after logging why the handshake failed."""
    assert config.ssl_context is not None
    client = client_address[0]
    timeout = request.gettimeout()
    try:
        connection = config.ssl_context.wrap_socket(request, server_side=True, do_handshake_on_connect=False)
    except OSError as error:
        log.debug("TLS handshake failed", extra={"client": client, "error": str(error)})
        request.close()
        return None
    try:
        connection.settimeout(TLS_HANDSHAKE_TIMEOUT)
        connection.do_handshake()
        connection.settimeout(timeout)
    except OSError as error:
        # ssl.SSLError and TimeoutError are OSError subclasses.
        log.debug("TLS handshake failed", extra={"client": client, "error": str(error) or type(error).__name__})
        connection.close()
        return None
    problem = config.check_client_certificate(connection.getpeercert())
    if problem is not None:
        log.debug("client certificate rejected", extra={"client": client, "error": problem})
        connection.close()
        return None
    return connection


class _Handler(BaseHTTPRequestHandler):
    server: ExporterServer
    protocol_version = "HTTP/1.1"
    server_version = f"opensrs-migration-exporter/{__version__}"
    # Seconds a connection may sit idle, or a client may take to read one write,
    # before its thread gives up. Prometheus reconnects after an idle close.
    timeout = 120

    def do_GET(self) -> None:  # noqa: N802 (name fixed by http.server)
        self._route(head=False)

    def do_HEAD(self) -> None:  # noqa: N802
        self._route(head=True)

    def do_POST(self) -> None:  # noqa: N802
        if not self._discard_body() or not self._authorized(head=False):
            return
        path = urlsplit(self.path).path
        if path not in ("/-/reload", self.server.telemetry_path, "/", "/-/healthy", "/-/ready"):
            self._send(404, b"Not found. See / for the available paths.\n", "text/plain; charset=utf-8", head=False)
            return
        if path == "/-/reload" and self.server.reload_handler is not None:
            succeeded, message = self.server.reload_handler()
            self._send(200 if succeeded else 500, f"{message}\n".encode(), "text/plain; charset=utf-8", head=False)
            return
        self._method_not_allowed()

    def _method_not_allowed(self) -> None:
        allowed = "POST" if urlsplit(self.path).path == "/-/reload" else "GET, HEAD"
        self._send(405, f"Method {self.command} not allowed here: use {allowed}.\n".encode(),
                   "text/plain; charset=utf-8", head=self.command == "HEAD", extra={"Allow": allowed})

    def do_PUT(self) -> None:  # noqa: N802
        if self._discard_body():
            self._method_not_allowed()

    do_DELETE = do_PATCH = do_OPTIONS = do_TRACE = do_CONNECT = do_PUT  # noqa: N815

    def _discard_body(self) -> bool:
        """Read and drop the request body so the connection can carry the next request.

        Returns False after sending 413 and closing when the body is too large or
        its length is unknown, because no endpoint here takes a body.
        """
        lengths = {value.strip() for value in self.headers.get_all("Content-Length") or ["0"]}
        length = lengths.pop() if len(lengths) == 1 else ""
        if self.headers.get("Transfer-Encoding") is not None:
            return self._reject_body(411, b"Send requests without Transfer-Encoding; no endpoint takes a body.\n")
        if not length.isdigit():
            # A missing, malformed or repeated conflicting length (RFC 9112, section 6.3).
            return self._reject_body(400, b"Invalid Content-Length.\n")
        if int(length) > MAX_REQUEST_BODY:
            return self._reject_body(413, b"Request body too large; no endpoint takes a body.\n")
        if int(length):
            self.rfile.read(int(length))
        return True

    def _reject_body(self, status: int, message: bytes) -> bool:
        self.close_connection = True
        self._send(status, message, "text/plain; charset=utf-8", head=self.command == "HEAD",
                   extra={"Connection": "close"})
        return False

    def _authorized(self, head: bool) -> bool:
        """Send 401 and return False unless basic authentication is off or the request passes it."""
        config = self.server.current_web_config()
        if config is None or config.basic_auth is None or config.basic_auth.check(self.headers.get("Authorization")):
            return True
        log.debug("basic authentication failed", extra={"client": self.client_address[0], "path": self.path})
        extra = {"WWW-Authenticate": f'Basic realm="{BASIC_AUTH_REALM}"'}
        self._send(401, b"Unauthorized: send valid basic-auth credentials.\n", "text/plain; charset=utf-8", head, extra)
        return False

    def end_headers(self) -> None:
        config = self.server.current_web_config()
        for name, value in (config.headers if config is not None else {}).items():
            self.send_header(name, value)
        super().end_headers()

    def _route(self, head: bool) -> None:
        if not self._discard_body() or not self._authorized(head):
            return
        url = urlsplit(self.path)
        if url.path == "/-/reload":
            self._method_not_allowed()
        elif url.path == self.server.telemetry_path:
            self._metrics(url.query, head)
        elif url.path == "/":
            self._send(200, self._landing_page(), "text/html; charset=utf-8", head)
        elif url.path == "/-/healthy":
            self._send(200, b"Healthy\n", "text/plain; charset=utf-8", head)
        elif url.path == "/-/ready":
            if self.server.view_source().ready:
                self._send(200, b"Ready\n", "text/plain; charset=utf-8", head)
            else:
                self._send(503, b"Not ready: the first poll cycle has not finished.\n", "text/plain; charset=utf-8", head)
        else:
            self._send(404, b"Not found. See / for the available paths.\n", "text/plain; charset=utf-8", head)

    def _metrics(self, query: str, head: bool) -> None:
        parameters = parse_qs(query)
        names = parameters.get("name[]")
        job_ids = parameters.get("job_id")
        use_gzip = accepts_gzip(self.headers.get("Accept-Encoding", ""))
        try:
            chunks, content_type = self.server.exposition.render(self.headers.get("Accept"), use_gzip, names, job_ids)
        except Exception:  # noqa: BLE001
            # The boundary of one scrape: a rendering bug must fail this scrape with
            # a 500 and a traceback in the log, not kill the server.
            log.exception("rendering the exposition failed")
            self._send(500, b"Rendering the metrics failed; see the exporter log.\n", "text/plain; charset=utf-8", head)
            return
        extra = {"Vary": "Accept, Accept-Encoding"}
        if use_gzip:
            extra["Content-Encoding"] = "gzip"
        self._send(200, chunks, content_type, head, extra)

    def _landing_page(self) -> bytes:
        return render_status_page(self.server.view_source(), self.server.telemetry_path, time.time()).encode()

    def _send(self, status: int, body: bytes | list[bytes], content_type: str, head: bool,
              extra: dict[str, str] | None = None) -> None:
        chunks = [body] if isinstance(body, bytes) else body
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(sum(len(chunk) for chunk in chunks)))
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if head:
            return
        try:
            for chunk in chunks:
                self.wfile.write(chunk)
        except (BrokenPipeError, ConnectionResetError):
            log.debug("client closed the connection during the response", extra={"client": self.client_address[0]})

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (signature fixed by http.server)
        log.debug("http request", extra={"client": self.client_address[0], "request": format % args})
