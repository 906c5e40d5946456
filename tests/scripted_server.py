"""A real HTTP server on 127.0.0.1 whose responses each test scripts.

Tests for the client and the poller use it to play an OMA endpoint that misbehaves
in one exact way. `respond(method, body)` returns a `Reply`; the server records every
request so tests can check what the client sent.
"""

from __future__ import annotations

import json
import shutil
import socket
import ssl
import struct
import subprocess
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    chunks: Iterable[bytes] | None = None
    """When set, the body is sent as these pieces with `delay` seconds between them."""
    delay: float = 0.0
    content_length: int | None = None
    """A Content-Length to declare that differs from the body's real size."""
    close_early: bool = False
    reset: bool = False
    """Abort the connection with a TCP RST (SO_LINGER 0, then close) instead of answering."""


def json_reply(document: object, status: int = 200) -> Reply:
    return Reply(status=status, body=json.dumps(document).encode(), headers={"Content-Type": "application/json"})


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        # Failed TLS handshakes and aborted connections are what some tests provoke.
        pass


class ScriptedServer:
    """Serves `respond` on 127.0.0.1; with `ssl_context`, over TLS.

    The TLS handshake runs in each connection's handler thread, so a client that
    rejects the certificate never blocks the accept loop.
    """

    def __init__(self, respond: Callable[[str, dict], Reply], ssl_context: ssl.SSLContext | None = None):
        self.respond = respond
        self.requests: list[tuple[str, dict, dict[str, str]]] = []
        self.handshake_failures = 0
        self._server = _QuietServer(("127.0.0.1", 0), self._handler_class())
        self._tls = ssl_context is not None
        if ssl_context is not None:
            self._server.socket = ssl_context.wrap_socket(
                self._server.socket, server_side=True, do_handshake_on_connect=False
            )
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        scheme = "https" if self._tls else "http"
        return f"{scheme}://127.0.0.1:{self._server.server_address[1]}/api"

    def __enter__(self) -> ScriptedServer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        scripted = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def handle(self) -> None:
                if isinstance(self.connection, ssl.SSLSocket):
                    try:
                        self.connection.settimeout(5.0)
                        self.connection.do_handshake()
                        self.connection.settimeout(None)
                    except (ssl.SSLError, OSError):
                        scripted.handshake_failures += 1
                        return
                super().handle()

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length", "0"))
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = {}
                method = self.path.rsplit("/", 1)[-1]
                scripted.requests.append((method, body, dict(self.headers)))
                self._write(scripted.respond(method, body))

            def _write(self, reply: Reply) -> None:
                if reply.reset:
                    self.close_connection = True
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    # The socket's file descriptor closes only when its file objects
                    # are closed too; closing all three now sends the RST at once.
                    self.rfile.close()
                    self.wfile.close()
                    self.connection.close()
                    return
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                if reply.chunks is not None and reply.content_length is None:
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    self._write_chunked(reply)
                    return
                length = reply.content_length if reply.content_length is not None else len(reply.body)
                self.send_header("Content-Length", str(length))
                self.end_headers()
                if reply.chunks is not None:
                    try:
                        for piece in reply.chunks:
                            self.wfile.write(piece)
                            self.wfile.flush()
                            time.sleep(reply.delay)
                    except OSError:
                        self.close_connection = True
                        return
                else:
                    self.wfile.write(reply.body)
                if reply.close_early or reply.content_length is not None:
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)

            def _write_chunked(self, reply: Reply) -> None:
                try:
                    for piece in reply.chunks or ():
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                        self.wfile.flush()
                        time.sleep(reply.delay)
                    if reply.close_early:
                        self.close_connection = True
                        self.connection.shutdown(socket.SHUT_RDWR)
                        return
                    self.wfile.write(b"0\r\n\r\n")
                except OSError:
                    self.close_connection = True

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

        return Handler


def make_self_signed_certificate(folder: Path) -> tuple[Path, Path]:
    """Write a certificate for 127.0.0.1 that no system CA store trusts, and its key."""
    openssl = shutil.which("openssl")
    assert openssl, "openssl not found: install the Debian package openssl"
    certificate, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(key), "-out", str(certificate), "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True, timeout=60,
    )
    return certificate, key
