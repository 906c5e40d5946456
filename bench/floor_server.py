"""Serve fixed exposition bytes from memory: the scrape floor.

Nothing is rendered per request: a GET of the telemetry path writes the plain body,
or the gzip body with `Content-Encoding: gzip` when the request accepts gzip. So the
measured latency is what `http.server`, the socket and the client cost for a body of
that size. Prints `{"url": ...}` once it listens, then serves until SIGTERM.
"""

from __future__ import annotations

import argparse
import signal
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from common import announce

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class FloorServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, plain: bytes, compressed: bytes, path: str):
        self.plain = plain
        self.compressed = compressed
        self.telemetry_path = path
        super().__init__(("127.0.0.1", 0), FloorHandler)


class FloorHandler(BaseHTTPRequestHandler):
    server: FloorServer
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 (name fixed by http.server)
        if self.path != self.server.telemetry_path:
            self.send_error(404)
            return
        use_gzip = "gzip" in self.headers.get("Accept-Encoding", "")
        body = self.server.compressed if use_gzip else self.server.plain
        self.send_response(200)
        self.send_header("Content-Type", CONTENT_TYPE)
        self.send_header("Content-Length", str(len(body)))
        if use_gzip:
            self.send_header("Content-Encoding", "gzip")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (signature fixed by http.server)
        """Log nothing per request, as the exporter does at its default level."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--plain", type=Path, required=True, help="File with the plain text exposition.")
    parser.add_argument("--gzip", type=Path, required=True, help="File with the same exposition, gzip-compressed.")
    parser.add_argument("--path", default="/metrics", help="Telemetry path to serve (default /metrics).")
    arguments = parser.parse_args()

    server = FloorServer(arguments.plain.read_bytes(), arguments.gzip.read_bytes(), arguments.path)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)
    thread.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    announce(url=f"http://127.0.0.1:{server.server_address[1]}{arguments.path}")
    stop.wait()
    server.shutdown()
    server.server_close()


if __name__ == "__main__":
    main()
