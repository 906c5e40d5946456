"""A real HTTP server on 127.0.0.1 whose answers each test scripts.

Tests for the client and the poller use it to play an OMA endpoint that misbehaves
in one exact way. `respond(method, body)` returns a `Reply`; the server records every
request so tests can check what the client sent.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


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


def json_reply(document: object, status: int = 200) -> Reply:
    return Reply(status=status, body=json.dumps(document).encode(), headers={"Content-Type": "application/json"})


class ScriptedServer:
    def __init__(self, respond: Callable[[str, dict], Reply]):
        self.respond = respond
        self.requests: list[tuple[str, dict, dict[str, str]]] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/api"

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
                    for piece in reply.chunks:
                        self.wfile.write(piece)
                        self.wfile.flush()
                        time.sleep(reply.delay)
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
