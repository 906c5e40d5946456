"""Poller, collector and HTTP server together, against a scripted OMA over real HTTP.

The golden test renders the seed's example response through the real registry and
compares it byte for byte with `tests/golden/seed.prom`. Regenerate that file with
`UPDATE_GOLDEN=1 make test` after a deliberate change, and review the diff.
"""

from __future__ import annotations

import copy
import gzip
import json
import os
import shutil
import subprocess
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from exporter import __version__
from exporter.client import OmaClient
from exporter.poller import Poller
from exporter.server import Exposition, ExporterServer
from tests.scripted_server import Reply, ScriptedServer, json_reply

FIXTURES = Path(__file__).parent / "fixtures"
GOLDEN = Path(__file__).parent / "golden"
SEED_JOB = "1326229437638"
PASSWORD = "test-password-7f3a"


def seed_response() -> dict:
    return json.loads((FIXTURES / "seed_migration_status.json").read_text())


class Clock:
    """A hand-driven clock for the poller: monotonic and Unix time move together."""

    def __init__(self, start: float = 1_700_000_000.0):
        self.now = start

    def monotonic(self) -> float:
        return self.now

    def wall(self) -> float:
        return self.now


class Harness:
    """A scripted OMA, a client and a poller with a fake clock, and an exposition."""

    def __init__(self, server: ScriptedServer, jobs=(SEED_JOB,), stale_after: float = 600.0):
        self.clock = Clock()
        self.client = OmaClient(server.url, "sre@example.com", PASSWORD, client_name="test", retries=0)
        self.poller = Poller(
            self.client, jobs, interval=60, deadline=1e12, stale_after=stale_after,
            clock=self.clock.monotonic, wall_clock=self.clock.wall,
        )
        self.exposition = Exposition(self.poller.view)

    def text(self) -> str:
        chunks, _ = self.exposition.render("text/plain", False)
        return b"".join(chunks).decode()

    def registry_text(self) -> str:
        return generate_latest(self.exposition.registry).decode()

    def samples(self) -> dict[tuple[str, tuple], float]:
        result = {}
        for family in text_string_to_metric_families(self.text()):
            for sample in family.samples:
                result[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
        return result

    def value(self, name: str, **labels: str) -> float | None:
        return self.samples().get((name, tuple(sorted(labels.items()))))


def seed_user() -> str:
    return seed_response()["users"][0]["local"]


def test_golden_seed_exposition():
    with ScriptedServer(lambda method, body: json_reply(seed_response())) as server:
        harness = Harness(server)
        harness.poller.poll_all()
        rendered = harness.registry_text().replace(f'version="{__version__}"', 'version="VERSION"')
        fast = harness.text().replace(f'version="{__version__}"', 'version="VERSION"')
    assert fast == rendered, "the cached renderer differs from the registry"
    golden = GOLDEN / "seed.prom"
    if os.environ.get("UPDATE_GOLDEN"):
        golden.parent.mkdir(exist_ok=True)
        golden.write_text(rendered)
    expected = golden.read_text()
    rendered_lines, expected_lines = rendered.splitlines(), expected.splitlines()
    missing = [line for line in expected_lines if line not in rendered_lines]
    extra = [line for line in rendered_lines if line not in expected_lines]
    assert not missing, f"series missing from the exposition: {missing[:5]}"
    assert not extra, f"series not in the golden file: {extra[:5]}"
    assert rendered == expected, "same series, different order"


def test_golden_file_passes_promtool():
    promtool = shutil.which("promtool")
    assert promtool, "promtool not found: run make test, which installs Debian's prometheus package"
    result = subprocess.run(
        [promtool, "check", "metrics"], input=(GOLDEN / "seed.prom").read_bytes(), capture_output=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == b"", result.stdout


def test_seed_values_match_contract():
    with ScriptedServer(lambda method, body: json_reply(seed_response())) as server:
        harness = Harness(server)
        harness.poller.poll_all()
        user = seed_user()
        job = {"job_id": SEED_JOB}
        assert harness.value("opensrs_migration_job_throughput_bytes_per_second", **job) == 628222.976
        assert harness.value("opensrs_migration_user_migrated_messages", **job, user=user) == 5
        assert harness.value("opensrs_migration_user_skipped_messages", **job, user=user) == 2
        assert harness.value("opensrs_migration_user_remote_messages", **job, user=user) == 7
        assert harness.value("opensrs_migration_folder_skipped_messages", **job, user=user, folder="Trash") == 1
        assert harness.value("opensrs_migration_folder_migrated_messages", **job, user=user, folder="Trash") == 0
        assert harness.value("opensrs_migration_user_state", **job, user=user, state="complete") == 1
        assert harness.value("opensrs_migration_user_state", **job, user=user, state="active") == 0
        assert harness.value("opensrs_migration_job_users", **job, state="complete") == 1
        assert harness.value("opensrs_migration_job_users", **job, state="error") == 0
        assert harness.value("opensrs_migration_job_up", **job) == 1


def test_failed_poll_keeps_last_values():
    replies = [json_reply(seed_response()), Reply(status=502, body=b"<html>bad gateway</html>")]
    with ScriptedServer(lambda method, body: replies.pop(0)) as server:
        harness = Harness(server)
        harness.poller.poll_all()
        first_success = harness.value("opensrs_migration_job_last_success_timestamp_seconds", job_id=SEED_JOB)
        harness.clock.now += 60
        harness.poller.poll_all()
        user = seed_user()
        assert harness.value("opensrs_migration_job_up", job_id=SEED_JOB) == 0
        assert harness.value("opensrs_migration_poll_errors_total", job_id=SEED_JOB, reason="http_status") == 1
        assert harness.value("opensrs_migration_poll_errors_total", job_id=SEED_JOB, reason="timeout") == 0
        assert harness.value("opensrs_migration_job_last_success_timestamp_seconds", job_id=SEED_JOB) == first_success
        assert harness.value("opensrs_migration_user_migrated_messages", job_id=SEED_JOB, user=user) == 5


def test_finished_job_polled_slower_then_retired():
    with ScriptedServer(lambda method, body: json_reply(seed_response())) as server:
        harness = Harness(server)
        harness.poller = Poller(
            harness.client, (SEED_JOB,), interval=60, deadline=1e12, stale_after=600,
            finished_interval=600, finished_retention=3600,
            clock=harness.clock.monotonic, wall_clock=harness.clock.wall,
        )
        harness.exposition = Exposition(harness.poller.view)
        harness.poller.poll_all()
        job = harness.poller.view().jobs[0]
        assert job.finished_since == harness.clock.now
        assert harness.poller._interval_of(job) == 600
        harness.clock.now += 3000
        harness.poller.poll_all()
        harness.poller._expire(harness.clock.now)
        assert harness.value("opensrs_migration_user_migrated_messages", job_id=SEED_JOB, user=seed_user()) == 5
        harness.clock.now += 601
        harness.poller._expire(harness.clock.now)
        assert harness.poller.view().jobs == ()
        assert harness.value("opensrs_migration_jobs") == 0
        harness.poller.set_jobs([SEED_JOB])
        assert harness.poller.view().jobs == (), "a retired job must not come back while it stays configured"


def test_active_job_keeps_normal_interval():
    document = seed_response()
    document["users"][0]["state"] = "active"
    with ScriptedServer(lambda method, body: json_reply(document)) as server:
        harness = Harness(server)
        harness.poller.poll_all()
        job = harness.poller.view().jobs[0]
        assert job.finished_since is None
        assert harness.poller._interval_of(job) == 60


def test_api_error_counted_by_number():
    failure = {"success": False, "error": "Authentication failed", "error_number": 1}
    with ScriptedServer(lambda method, body: json_reply(failure)) as server:
        harness = Harness(server)
        harness.poller.poll_all()
        harness.poller.poll_all()
        assert harness.value("opensrs_migration_api_errors_total", error_number="1") == 2
        assert harness.value("opensrs_migration_poll_errors_total", job_id=SEED_JOB, reason="api_error") == 2
        assert harness.value("opensrs_migration_job_up", job_id=SEED_JOB) == 0


def test_stale_job_loses_user_and_folder_series():
    replies = [json_reply(seed_response())]
    with ScriptedServer(lambda method, body: replies.pop(0) if replies else Reply(status=500)) as server:
        harness = Harness(server, stale_after=120)
        harness.poller.poll_all()
        harness.clock.now += 60
        harness.poller.poll_all()
        harness.poller._expire(harness.clock.now)
        assert harness.value("opensrs_migration_user_migrated_messages", job_id=SEED_JOB, user=seed_user()) == 5
        # The seed's only user is complete, so the job counts as finished: its data
        # may be older by one finished-job interval (60 s here) before it is stale.
        harness.clock.now += 119
        harness.poller._expire(harness.clock.now)
        assert harness.value("opensrs_migration_user_migrated_messages", job_id=SEED_JOB, user=seed_user()) == 5
        harness.clock.now += 2
        harness.poller._expire(harness.clock.now)
        names = {name for name, _ in harness.samples()}
        assert not any(name.startswith("opensrs_migration_user_") for name in names)
        assert not any(name.startswith("opensrs_migration_folder_") for name in names)
        assert harness.value("opensrs_migration_job_up", job_id=SEED_JOB) == 0


def test_vanished_user_and_folder_disappear_at_once():
    second = copy.deepcopy(seed_response())
    second["users"][0]["data"]["folders"].pop("Trash")
    extra_user = copy.deepcopy(second["users"][0])
    extra_user["local"] = "second@example.com"
    full = copy.deepcopy(second)
    full["users"].append(extra_user)
    replies = [json_reply(full), json_reply(second)]
    with ScriptedServer(lambda method, body: replies.pop(0)) as server:
        harness = Harness(server)
        harness.poller.poll_all()
        assert harness.value("opensrs_migration_user_migrated_messages", job_id=SEED_JOB, user="second@example.com") == 5
        harness.poller.poll_all()
        samples = harness.samples()
        assert not any(("user", "second@example.com") in labels for _, labels in samples)
        assert not any(("folder", "Trash") in labels for _, labels in samples)


def test_removed_job_disappears_at_once():
    with ScriptedServer(lambda method, body: json_reply(seed_response())) as server:
        harness = Harness(server, jobs=(SEED_JOB, "00042"))
        harness.poller.poll_all()
        assert harness.value("opensrs_migration_job_up", job_id="00042") == 1
        harness.poller.set_jobs([SEED_JOB])
        samples = harness.samples()
        assert not any(("job_id", "00042") in labels for _, labels in samples)
        assert harness.value("opensrs_migration_jobs") == 1


def test_bad_job_does_not_affect_others():
    def respond(method, body):
        if body["job"] == "broken":
            return Reply(body=b"not json")
        return json_reply(seed_response())

    with ScriptedServer(respond) as server:
        harness = Harness(server, jobs=(SEED_JOB, "broken"))
        harness.poller.poll_all()
        assert harness.value("opensrs_migration_job_up", job_id="broken") == 0
        assert harness.value("opensrs_migration_poll_errors_total", job_id="broken", reason="invalid_response") == 1
        assert harness.value("opensrs_migration_job_up", job_id=SEED_JOB) == 1


def test_invalid_values_counted_without_sample():
    document = seed_response()
    document["users"][0]["data"]["status"]["fail_count"] = "N/A"
    document["rate"] = "fast"
    with ScriptedServer(lambda method, body: json_reply(document)) as server:
        harness = Harness(server)
        harness.poller.poll_all()
        user = seed_user()
        assert harness.value("opensrs_migration_user_failed_messages", job_id=SEED_JOB, user=user) is None
        assert harness.value("opensrs_migration_job_failed_messages", job_id=SEED_JOB) is None
        assert harness.value("opensrs_migration_job_throughput_bytes_per_second", job_id=SEED_JOB) is None
        assert harness.value("opensrs_migration_user_migrated_messages", job_id=SEED_JOB, user=user) == 5
        invalid = {labels: value for (name, labels), value in harness.samples().items()
                   if name == "opensrs_migration_invalid_values_total"}
        assert sum(invalid.values()) == 2


def test_health_metrics_present_before_any_poll():
    with ScriptedServer(lambda method, body: json_reply(seed_response())) as server:
        harness = Harness(server)
        assert harness.value("opensrs_migration_build_info", version=__version__) == 1
        assert harness.value("opensrs_migration_jobs") == 1
        assert harness.value("opensrs_migration_job_up", job_id=SEED_JOB) == 0
        assert harness.poller.view().ready is False


@pytest.fixture
def served():
    """A scripted OMA, a poller and the real HTTP server on a free port."""
    with ScriptedServer(lambda method, body: json_reply(seed_response())) as oma:
        harness = Harness(oma)
        server = ExporterServer("127.0.0.1", 0, harness.exposition, harness.poller.view)
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()
        yield harness, f"http://127.0.0.1:{server.port}"
        server.shutdown()
        server.server_close()


def fetch(url: str, headers: dict[str, str] | None = None, method: str = "GET") -> tuple[int, dict, bytes]:
    request = urllib.request.Request(url, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def test_ready_only_after_first_cycle(served):
    harness, base = served
    assert fetch(base + "/-/ready")[0] == 503
    assert fetch(base + "/-/healthy")[0] == 200
    harness.poller.poll_all()
    assert fetch(base + "/-/ready")[0] == 200


def test_http_routes(served):
    harness, base = served
    harness.poller.poll_all()
    status, headers, body = fetch(base + "/")
    assert status == 200
    assert b'href="/metrics"' in body
    assert __version__.encode() in body
    assert fetch(base + "/nowhere")[0] == 404
    assert fetch(base + "/metrics", method="POST")[0] == 405
    status, headers, body = fetch(base + "/metrics", method="HEAD")
    assert status == 200
    assert body == b""


def test_metrics_plain_gzip_and_openmetrics(served):
    harness, base = served
    harness.poller.poll_all()
    status, headers, plain = fetch(base + "/metrics")
    assert status == 200
    assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert b"opensrs_migration_job_up" in plain

    status, headers, compressed = fetch(base + "/metrics", {"Accept-Encoding": "gzip"})
    assert headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(compressed) == plain

    status, headers, openmetrics = fetch(base + "/metrics", {"Accept": "application/openmetrics-text; version=1.0.0"})
    assert headers["Content-Type"].startswith("application/openmetrics-text")
    assert openmetrics.endswith(b"# EOF\n")


def test_metrics_name_filter(served):
    harness, base = served
    harness.poller.poll_all()
    status, _, body = fetch(base + "/metrics?name[]=opensrs_migration_job_up")
    names = {family.name for family in text_string_to_metric_families(body.decode())}
    assert status == 200
    assert names == {"opensrs_migration_job_up"}


def test_cached_exposition_changes_with_new_poll(served):
    harness, base = served
    harness.poller.poll_all()
    first = fetch(base + "/metrics")[2]
    assert fetch(base + "/metrics")[2] == first
    harness.clock.now += 60
    harness.poller.poll_all()
    second = fetch(base + "/metrics")[2]
    assert second != first
    assert b"1.70000006e+09" in second


def raw_exchange(base: str, request: bytes) -> bytes:
    """Send raw bytes to the server and return everything it sends until it closes or goes quiet."""
    import socket

    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as connection:
        connection.sendall(request)
        connection.settimeout(1.0)
        received = b""
        try:
            while chunk := connection.recv(65536):
                received += chunk
        except TimeoutError:
            pass
    return received


def test_post_body_never_read_as_request(served):
    _, base = served
    smuggled = b"GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n"
    request = (b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(smuggled))
    received = raw_exchange(base, request + smuggled)
    assert received.count(b"HTTP/1.1 ") == 1
    assert received.startswith(b"HTTP/1.1 405")


def test_oversized_body_rejected_and_closed(served):
    _, base = served
    body = b"x" * 70000
    request = b"POST /-/reload HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body)
    received = raw_exchange(base, request + body)
    assert received.startswith(b"HTTP/1.1 413")
    assert received.count(b"HTTP/1.1 ") == 1


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH", "OPTIONS"])
def test_other_methods_get_405(served, method):
    _, base = served
    status, headers, body = fetch(base + "/metrics", method=method)
    assert status == 405
    assert headers["Allow"] == "GET, HEAD"
    assert body.startswith(b"Method " + method.encode())


def test_get_reload_gets_405_with_allow_post(served):
    _, base = served
    status, headers, _ = fetch(base + "/-/reload")
    assert status == 405
    assert headers["Allow"] == "POST"


@pytest.mark.parametrize("accept", ["application/openmetrics-text; version=abc", "application/openmetrics-text; version=1.x"])
def test_malformed_accept_falls_back_to_text(served, accept):
    harness, base = served
    harness.poller.poll_all()
    status, headers, body = fetch(base + "/metrics", {"Accept": accept})
    assert status == 200
    assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert b"opensrs_migration_job_up" in body


@pytest.mark.parametrize(
    "header, compressed",
    [("gzip", True), ("GZIP", True), ("deflate, gzip;q=0.5", True), ("gzip;q=0, identity", False),
     ("notgzip", False), ("identity", False)],
)
def test_gzip_negotiation(served, header, compressed):
    harness, base = served
    harness.poller.poll_all()
    status, headers, _ = fetch(base + "/metrics", {"Accept-Encoding": header})
    assert status == 200
    assert (headers.get("Content-Encoding") == "gzip") is compressed


def test_head_on_reload_sends_no_body(served):
    _, base = served
    request = b"HEAD /-/reload HTTP/1.1\r\nHost: x\r\n\r\nGET /-/healthy HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    received = raw_exchange(base, request)
    assert received.startswith(b"HTTP/1.1 405")
    assert received.count(b"HTTP/1.1 ") == 2
    assert received.endswith(b"Healthy\n")


@pytest.mark.parametrize(
    "headers, status",
    [
        pytest.param(b"Content-Length: 0\r\nContent-Length: 36\r\n", b"400", id="conflicting-lengths"),
        pytest.param(b"Content-Length: -1\r\n", b"400", id="negative-length"),
        pytest.param(b"Transfer-Encoding: chunked\r\n", b"411", id="chunked"),
    ],
)
def test_ambiguous_body_rejected_and_closed(served, headers, status):
    _, base = served
    smuggled = b"GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n"
    received = raw_exchange(base, b"POST /-/reload HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n" + smuggled)
    assert received.startswith(b"HTTP/1.1 " + status)
    assert received.count(b"HTTP/1.1 ") == 1


def test_post_to_unknown_path_is_404(served):
    _, base = served
    status, _, _ = fetch(base + "/nowhere", method="POST")
    assert status == 404


def test_openmetrics_content_type_names_rendered_version(served):
    harness, base = served
    harness.poller.poll_all()
    _, headers, body = fetch(base + "/metrics", {"Accept": "application/openmetrics-text; version=2.0.0"})
    assert headers["Content-Type"] == "application/openmetrics-text; version=1.0.0; charset=utf-8"
    assert body.endswith(b"# EOF\n")
