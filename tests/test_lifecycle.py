"""Stopping: SIGTERM at awkward moments, and what a stopped poller leaves behind.

The console script must exit with status 0 within 5 s of SIGTERM, without a
traceback, in three cases: while a poll waits for a response that the server holds
back, while a slow client reads a large exposition, and before the first poll has
finished. In process, a stopped poller with its client closed must leave no thread and no
socket behind.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator

import pytest

from exporter.client import OmaClient
from exporter.poller import Poller
from tests.scripted_server import Reply, ScriptedServer, json_reply
from tests.test_e2e import SCRIPT, ExporterProcess

PASSWORD = "test-password-7f3a"
USER = "sre@example.com"
JOB = "1700000000500"
STOP_LIMIT = 5.0


class HoldingOma:
    """Responds to every call only after `release` is set, or after 60 s."""

    def __init__(self):
        self.release = threading.Event()
        self.received = threading.Event()

    def respond(self, method: str, body: dict) -> Reply:
        self.received.set()
        self.release.wait(60)
        return json_reply({"success": True, "rate": "0 B/s", "users": []})


@pytest.fixture
def holding_server() -> Iterator[tuple[HoldingOma, ScriptedServer]]:
    oma = HoldingOma()
    with ScriptedServer(oma.respond) as server:
        yield oma, server
        oma.release.set()


def exporter_env(url: str) -> dict[str, str]:
    return {"OPENSRS_OMA_URL": url, "OPENSRS_OMA_USER": USER, "OPENSRS_PASSWORD": PASSWORD, "OPENSRS_JOBS": JOB}


def assert_stops_cleanly(process: subprocess.Popen, output: Callable[[], str]) -> None:
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    try:
        status = process.wait(timeout=STOP_LIMIT + 5)
    except subprocess.TimeoutExpired:
        process.kill()
        raise AssertionError(f"the exporter ignored SIGTERM; log:\n{output()}") from None
    elapsed = time.monotonic() - started
    assert status == 0, f"exit status {status}; log:\n{output()}"
    assert elapsed < STOP_LIMIT, f"stopping took {elapsed:.1f} s"
    assert "Traceback" not in output()


def test_sigterm_during_poll(holding_server):
    oma, server = holding_server
    exporter = ExporterProcess("--poll.deadline", "60s", "--poll.read-timeout", "60s", env=exporter_env(server.url))
    try:
        assert oma.received.wait(10), "the exporter never called the API"
        assert_stops_cleanly(exporter.process, exporter.output)
    finally:
        if exporter.process.poll() is None:
            exporter.process.kill()


def test_sigterm_during_startup(holding_server):
    """SIGTERM as soon as the first log line appears, long before the first poll ends."""
    oma, server = holding_server
    env = {key: value for key, value in os.environ.items() if not key.startswith("OPENSRS_")}
    env.update(exporter_env(server.url))
    process = subprocess.Popen(
        [str(SCRIPT), "--web.listen-address", "127.0.0.1:0", "--poll.deadline", "60s", "--poll.read-timeout", "60s"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    lines: list[str] = []
    try:
        assert process.stderr is not None
        lines.append(process.stderr.readline())
        assert "msg=starting" in lines[0], lines
        reader = threading.Thread(target=lambda: lines.extend(process.stderr), daemon=True)
        reader.start()
        assert_stops_cleanly(process, lambda: "".join(lines))
        assert not any("first poll cycle finished" in line for line in lines)
    finally:
        if process.poll() is None:
            process.kill()


def large_document(users: int = 150, folders: int = 100) -> dict:
    """A response that renders to an exposition of about 15 MB, more than socket buffers hold."""
    folder_map = {f"Folder {n:03d}": {"migrate_count": n, "remote_count": n, "bytes": n * 1000, "next_uid": n}
                  for n in range(folders)}
    return {
        "success": True,
        "rate": "1 MiB/s",
        "users": [{"local": f"user{n:04d}@example.com", "state": "active",
                   "data": {"status": {"migrate_count": n}, "folders": folder_map}} for n in range(users)],
    }


def test_sigterm_during_slow_scrape():
    document = large_document()
    with ScriptedServer(lambda method, body: json_reply(document)) as server:
        exporter = ExporterProcess(env=exporter_env(server.url))
        try:
            ready = exporter.metrics_url.rsplit("/", 1)[0] + "/-/ready"
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                try:
                    with urllib.request.urlopen(ready, timeout=5) as response:
                        if response.status == 200:
                            break
                except OSError:
                    pass
                time.sleep(0.2)
            else:
                raise AssertionError(f"the exporter never became ready; log:\n{exporter.output()}")

            host, port = re.match(r"http://([^:/]+):(\d+)/", exporter.metrics_url).groups()
            with socket.create_connection((host, int(port)), timeout=10) as reader:
                reader.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                reader.sendall(f"GET /metrics HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
                head = reader.recv(4096)
                assert head.startswith(b"HTTP/1.1 200"), head[:100]
                length = int(re.search(rb"Content-Length: (\d+)", head).group(1))
                assert length > 10_000_000, f"the exposition is only {length} bytes"
                # The reader stops reading here, so the server's write blocks.
                time.sleep(0.5)
                assert_stops_cleanly(exporter.process, exporter.output)
        finally:
            if exporter.process.poll() is None:
                exporter.process.kill()


def open_fds() -> set[str]:
    return {os.readlink(f"/proc/self/fd/{fd}") for fd in os.listdir("/proc/self/fd")
            if os.path.exists(f"/proc/self/fd/{fd}")}


def socket_count() -> int:
    return sum(1 for target in open_fds() if target.startswith("socket:"))


def poller_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name.startswith("poll-")]


def test_stopped_poller_leaves_no_thread_or_socket(holding_server):
    oma, server = holding_server
    # The scripted server's listening socket is open before and after, so only the
    # client's sockets change the count.
    sockets_before = socket_count()
    assert poller_threads() == []

    client = OmaClient(server.url, USER, PASSWORD, client_name="test", retries=0, read_timeout=30)
    poller = Poller(client, [JOB, "1700000000501"], interval=0.2, deadline=1.5, stale_after=60, concurrency=3)
    poller.start()
    assert oma.received.wait(10), "no poll reached the server"
    assert len(poller_threads()) == 4
    assert socket_count() > sockets_before, "no client socket is open while a poll is in flight"

    started = time.monotonic()
    # The polls in flight end at their 1.5 s deadline, inside the stop timeout.
    poller.stop(timeout=3.0)
    client.close()
    assert time.monotonic() - started < 3.0

    assert poller_threads() == []
    # The server's handler threads still hold their end until released; their
    # sockets were opened by the server and may close later, so wait for them.
    oma.release.set()
    deadline = time.monotonic() + 5
    while socket_count() > sockets_before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert socket_count() <= sockets_before, "a socket stayed open after stop and close"


def test_stopped_idle_poller_leaves_no_socket():
    with ScriptedServer(lambda method, body: json_reply({"success": True, "users": []})) as server:
        sockets_before = socket_count()
        client = OmaClient(server.url, USER, PASSWORD, client_name="test", retries=0)
        poller = Poller(client, [JOB], interval=0.1, deadline=5, stale_after=60, concurrency=2).start()
        end = time.monotonic() + 5
        while not poller.view().ready and time.monotonic() < end:
            time.sleep(0.05)
        assert poller.view().ready
        assert socket_count() > sockets_before, "the keep-alive connection is not open"

        poller.stop(timeout=2.0)
        client.close()
        assert poller_threads() == []
        deadline = time.monotonic() + 2
        while socket_count() > sockets_before and time.monotonic() < deadline:
            time.sleep(0.05)
        assert socket_count() <= sockets_before
