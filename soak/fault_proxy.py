"""An HTTP proxy in front of the OMA simulator that injects faults at random.

Usage: fault_proxy.py --upstream http://127.0.0.1:PORT/api [--seed N] [--fault-rate R]

It forwards each POST to the upstream base URL. A fraction `--fault-rate` of the
requests instead gets one of: HTTP 503 with an HTML body, a TCP reset, a response
delayed by `--slow-seconds`, a body that is not JSON, or a body cut off before its
declared Content-Length. When the upstream is down, the proxy responds with HTTP 502. It prints
`fault proxy serving at URL` on stdout once it listens, and stops on SIGTERM.
"""

from __future__ import annotations

import argparse
import random
import signal
import socket
import struct
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

FAULTS = ("http_503", "reset", "slow", "invalid_json", "truncated")


class FaultProxy(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, upstream: str, fault_rate: float, slow_seconds: float, seed: int):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.upstream = upstream.rstrip("/")
        self.fault_rate = fault_rate
        self.slow_seconds = slow_seconds
        self._random = random.Random(seed)
        self._lock = threading.Lock()

    def choose_fault(self) -> str | None:
        with self._lock:
            if self._random.random() >= self.fault_rate:
                return None
            return self._random.choice(FAULTS)

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # the faults abort connections on purpose


class _Handler(BaseHTTPRequestHandler):
    server: FaultProxy
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:  # noqa: N802 (name fixed by http.server)
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        fault = self.server.choose_fault()
        if fault == "reset":
            self.close_connection = True
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.rfile.close()
            self.wfile.close()
            self.connection.close()
            return
        if fault == "http_503":
            self._answer(503, b"<html><body>Service unavailable</body></html>", "text/html")
            return
        if fault == "invalid_json":
            self._answer(200, b"<html>maintenance</html>", "application/json")
            return
        if fault == "slow":
            time.sleep(self.server.slow_seconds)

        status, payload = self._forward(body)
        if fault == "truncated":
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload) + 100))
            self.end_headers()
            self.wfile.write(payload[: len(payload) // 2])
            self.close_connection = True
            return
        self._answer(status, payload, "application/json")

    def _forward(self, body: bytes) -> tuple[int, bytes]:
        request = urllib.request.Request(
            self.server.upstream + "/" + self.path.rsplit("/", 1)[-1], data=body,
            headers={"Content-Type": "application/json"}, method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()
        except OSError:
            return 502, b"<html><body>Bad gateway: the simulator is down</body></html>"

    def _answer(self, status: int, payload: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (signature fixed by http.server)
        pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Forward OMA calls to the simulator, injecting faults at random.")
    parser.add_argument("--upstream", required=True, help="simulator base URL, e.g. http://127.0.0.1:8080/api")
    parser.add_argument("--fault-rate", type=float, default=0.1, help="fraction of requests that get a fault")
    parser.add_argument("--slow-seconds", type=float, default=3.0, help="delay of a slow response, in seconds")
    parser.add_argument("--seed", type=int, default=1, help="seed of the fault choices")
    args = parser.parse_args(argv)

    proxy = FaultProxy(args.upstream, args.fault_rate, args.slow_seconds, args.seed)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    signal.signal(signal.SIGINT, lambda signum, frame: stop.set())
    threading.Thread(target=proxy.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
    print(f"fault proxy serving at http://127.0.0.1:{proxy.server_address[1]}/api", flush=True)
    while not stop.wait(0.5):
        pass
    proxy.shutdown()
    proxy.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
