"""HTTP server: the telemetry path, a landing page and the health endpoints.

The exposition of a view is rendered once per format and served from memory until
the poller publishes a new view, so a scrape costs a dictionary lookup and a socket
write however many series there are.
"""

from __future__ import annotations

import gzip
import html
import logging
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from exporter import __version__
from exporter.collector import MigrationCollector
from exporter.poller import View

log = logging.getLogger(__name__)

# Text format bodies shrink about tenfold with gzip; level 6 costs a third of the CPU
# time of level 9 for nearly the same size.
GZIP_LEVEL = 6


class Exposition:
    """Renders views through a registry and caches the bytes per view and format."""

    def __init__(self, view_source: Callable[[], View], *, folders: bool = True):
        self._view_source = view_source
        self._rendering: View | None = None
        self._lock = threading.Lock()
        self._cache: dict[tuple[str, bool], bytes] = {}
        self._cached_version = -1
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(MigrationCollector(self._view_being_rendered, folders=folders))

    def _view_being_rendered(self) -> View:
        return self._rendering if self._rendering is not None else self._view_source()

    def render(self, accept: str | None, use_gzip: bool, names: list[str] | None = None) -> tuple[bytes, str]:
        """Return the body and content type for an Accept header, gzip-compressed on request."""
        encoder, content_type = choose_encoder(accept or "")
        with self._lock:
            view = self._view_source()
            if names:
                body = self._render_view(view, lambda: encoder(self.registry.restricted_registry(names)))
                return (gzip.compress(body, GZIP_LEVEL) if use_gzip else body), content_type
            if view.version != self._cached_version:
                self._cache.clear()
                self._cached_version = view.version
            key = (content_type, use_gzip)
            body = self._cache.get(key)
            if body is None:
                plain = self._cache.get((content_type, False))
                if plain is None:
                    plain = self._render_view(view, lambda: encoder(self.registry))
                    self._cache[(content_type, False)] = plain
                body = gzip.compress(plain, GZIP_LEVEL) if use_gzip else plain
                self._cache[key] = body
            return body, content_type

    def _render_view(self, view: View, render: Callable[[], bytes]) -> bytes:
        self._rendering = view
        try:
            return render()
        finally:
            self._rendering = None


class ExporterServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, host: str, port: int, exposition: Exposition, view_source: Callable[[], View],
                 telemetry_path: str = "/metrics"):
        if ":" in host:
            self.address_family = socket.AF_INET6
        self.exposition = exposition
        self.view_source = view_source
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


class _Handler(BaseHTTPRequestHandler):
    server: ExporterServer
    protocol_version = "HTTP/1.1"
    server_version = f"opensrs-migration-exporter/{__version__}"

    def do_GET(self) -> None:  # noqa: N802 (name fixed by http.server)
        self._route(head=False)

    def do_HEAD(self) -> None:  # noqa: N802
        self._route(head=True)

    def do_POST(self) -> None:  # noqa: N802
        self._send(405, b"Method not allowed: use GET.\n", "text/plain; charset=utf-8", head=False,
                   extra={"Allow": "GET, HEAD"})

    def _route(self, head: bool) -> None:
        url = urlsplit(self.path)
        if url.path == self.server.telemetry_path:
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
        names = parse_qs(query).get("name[]")
        use_gzip = "gzip" in self.headers.get("Accept-Encoding", "")
        try:
            body, content_type = self.server.exposition.render(self.headers.get("Accept"), use_gzip, names)
        except Exception:  # noqa: BLE001
            # The boundary of one scrape: a rendering bug must fail this scrape with
            # a 500 and a traceback in the log, not kill the server.
            log.exception("rendering the exposition failed")
            self._send(500, b"Rendering the metrics failed; see the exporter log.\n", "text/plain; charset=utf-8", head)
            return
        extra = {"Content-Encoding": "gzip", "Vary": "Accept, Accept-Encoding"} if use_gzip else {"Vary": "Accept, Accept-Encoding"}
        self._send(200, body, content_type, head, extra)

    def _landing_page(self) -> bytes:
        path = html.escape(self.server.telemetry_path)
        return (
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            "<title>OpenSRS migration exporter</title></head><body>"
            "<h1>OpenSRS migration exporter</h1>"
            f"<p>Version {html.escape(__version__)}</p><ul>"
            f"<li><a href=\"{path}\">Metrics</a></li>"
            "<li><a href=\"/-/healthy\">Health</a></li>"
            "<li><a href=\"/-/ready\">Readiness</a></li>"
            "</ul></body></html>\n"
        ).encode()

    def _send(self, status: int, body: bytes, content_type: str, head: bool, extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (signature fixed by http.server)
        log.debug("http request", extra={"client": self.client_address[0], "request": format % args})
