"""Fault matrix: the console script against an OMA that misbehaves in one way per test.

Each test starts a scripted server that serves job HEALTHY normally and job FAULTY
with one fault, then the installed console script with short deadlines. It checks
that the process keeps running, that `/metrics` stays valid for both
prometheus_client's parser and `promtool check metrics`, that the healthy job is
unaffected, that the fault is counted under the expected reason, and that one log
line names the faulty job and the reason.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from exporter.errors import REASONS
from tests.scripted_server import Reply, ScriptedServer, json_reply, make_self_signed_certificate
from tests.test_e2e import ExporterProcess

PASSWORD = "test-password-7f3a"
USER = "sre@example.com"
HEALTHY = "1000000000001"
FAULTY = "1000000000002"
HEALTHY_USER = "healthy@example.com"
FAULTY_USER = "faulty@example.com"

# Fast polls and short limits keep each test to a few seconds. No retries: the retry
# logic has its own tests, and here it would only multiply each poll's duration.
FAST_FLAGS = (
    "--poll.interval", "0.3s",
    "--poll.stale-after", "1h",
    "--poll.connect-timeout", "2s",
    "--poll.read-timeout", "2s",
    "--poll.deadline", "3s",
    "--poll.retries", "0",
)

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def user_entry(local: str) -> dict:
    return {
        "local": local,
        "state": "active",
        "data": {
            "config": {"remote": local, "server": "imap.example.com:993", "method": "imap4s"},
            "status": {"migrate_count": 3, "remote_count": 5, "bytes": 2048},
            "folders": {"INBOX": {"migrate_count": 3, "remote_count": 5, "delim": "/"}},
        },
    }


def status_document(local: str) -> dict:
    return {"success": True, "rate": "1 KiB/s", "users": [user_entry(local)]}


def routed(fault: Callable[[], Reply]) -> Callable[[str, dict], Reply]:
    """Respond to FAULTY with `fault()` and to every other job with a healthy response."""

    def respond(method: str, body: dict) -> Reply:
        if body.get("job") == FAULTY:
            return fault()
        return json_reply(status_document(HEALTHY_USER))

    return respond


def raw_body(payload: bytes) -> Callable[[], Reply]:
    return lambda: Reply(body=payload, headers={"Content-Type": "application/json"})


def document_with(change: Callable[[dict], None]) -> Callable[[], Reply]:
    document = status_document(FAULTY_USER)
    change(document)
    return lambda: json_reply(document)


def start_exporter(url: str, *flags: str) -> ExporterProcess:
    env = {
        "OPENSRS_OMA_URL": url,
        "OPENSRS_OMA_USER": USER,
        "OPENSRS_PASSWORD": PASSWORD,
        "OPENSRS_JOBS": f"{HEALTHY},{FAULTY}",
    }
    return ExporterProcess(*FAST_FLAGS, *flags, env=env)


def parse_samples(text: str) -> Samples:
    result: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            result[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return result


def check_with_promtool(text: str) -> None:
    """Fail unless `promtool check metrics` accepts `text` without a finding."""
    promtool = shutil.which("promtool")
    assert promtool, "promtool not found: install the Debian package prometheus"
    result = subprocess.run([promtool, "check", "metrics"], input=text.encode(), capture_output=True, timeout=60)
    assert result.returncode == 0, (result.stdout + result.stderr).decode()
    assert result.stdout.strip() == b"", result.stdout.decode()


def poll_errors(samples: Samples, job_id: str, reason: str) -> float:
    return samples.get(("opensrs_migration_poll_errors_total", (("job_id", job_id), ("reason", reason))), 0.0)


def job_up(samples: Samples, job_id: str) -> float | None:
    return samples.get(("opensrs_migration_job_up", (("job_id", job_id),)))


def wait_for(condition: Callable[[], object], timeout: float, message: str) -> object:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        result = condition()
        if result:
            return result
        time.sleep(0.1)
    raise AssertionError(message)


def warning_lines(exporter: ExporterProcess, job_id: str) -> list[str]:
    return [
        line for line in exporter.lines
        if f"job_id={job_id}" in line and ("level=warn" in line or "level=error" in line)
    ]


def stop_cleanly(exporter: ExporterProcess) -> None:
    assert exporter.process.poll() is None, f"the exporter exited:\n{exporter.output()}"
    assert exporter.stop() == 0
    assert "Traceback" not in exporter.output()


@pytest.fixture
def exporter_for() -> Iterator[Callable[..., tuple[ScriptedServer, ExporterProcess]]]:
    """Start a scripted server and an exporter pointed at it; stop both at the end."""
    started: list[tuple[ScriptedServer, ExporterProcess | None]] = []

    def start(respond: Callable[[str, dict], Reply], *flags: str, server: ScriptedServer | None = None,
              url: str | None = None) -> tuple[ScriptedServer, ExporterProcess]:
        scripted = server or ScriptedServer(respond)
        scripted.__enter__()
        started.append((scripted, None))
        exporter = start_exporter(url or scripted.url, *flags)
        started[-1] = (scripted, exporter)
        return scripted, exporter

    yield start
    for scripted, exporter in started:
        if exporter is not None and exporter.process.poll() is None:
            exporter.process.kill()
            exporter.process.wait(timeout=10)
        scripted.__exit__(None, None, None)


def assert_failure_handled(exporter: ExporterProcess, reason: str, *, polls: int = 2) -> Samples:
    """Wait for `polls` failures of FAULTY under `reason`, then check everything else."""
    samples = wait_for(
        lambda: (s := exporter.samples()) and poll_errors(s, FAULTY, reason) >= polls
        and job_up(s, HEALTHY) == 1 and s,
        20, f"job {FAULTY} never failed {polls} times with reason {reason}; log:\n{exporter.output()}",
    )
    assert job_up(samples, FAULTY) == 0
    for other in REASONS:
        if other != reason:
            assert poll_errors(samples, FAULTY, other) == 0, f"also counted as {other}"
        assert poll_errors(samples, HEALTHY, other) == 0, f"healthy job counted a {other} failure"
    assert samples[("opensrs_migration_user_migrated_messages", (("job_id", HEALTHY), ("user", HEALTHY_USER)))] == 3

    text = exporter.scrape()
    parse_samples(text)
    check_with_promtool(text)

    lines = warning_lines(exporter, FAULTY)
    assert len(lines) == 1, f"expected one log line for the failing job, got {lines}"
    assert 'msg="poll failed"' in lines[0]
    assert f"reason={reason}" in lines[0]
    assert warning_lines(exporter, HEALTHY) == []
    return samples


def test_trickled_body_stopped_by_deadline(exporter_for):
    body = json.dumps(status_document(FAULTY_USER)).encode()
    trickle = lambda: Reply(chunks=[body[i:i + 1] for i in range(len(body))], delay=1.0)  # noqa: E731
    _, exporter = exporter_for(routed(trickle), "--poll.read-timeout", "5s", "--poll.deadline", "2.5s")

    samples = assert_failure_handled(exporter, "timeout", polls=1)

    duration = samples[("opensrs_migration_job_poll_duration_seconds", (("job_id", FAULTY),))]
    # One byte a second never trips the 5 s read timeout, and the whole body would take
    # minutes: only the 2.5 s deadline, checked after each byte, can end the poll.
    assert 2.5 <= duration < 4.5
    assert "body not complete by the poll deadline" in warning_lines(exporter, FAULTY)[0]
    stop_cleanly(exporter)


def test_chunked_body_cut_off(exporter_for):
    cut = lambda: Reply(chunks=[b'{"success": true, "users": [', b'{"local": "a'], close_early=True)  # noqa: E731
    _, exporter = exporter_for(routed(cut))
    assert_failure_handled(exporter, "connection")
    stop_cleanly(exporter)


def test_content_length_longer_than_body(exporter_for):
    short = lambda: Reply(body=b'{"success": true, "users": []}', content_length=4000)  # noqa: E731
    _, exporter = exporter_for(routed(short))
    assert_failure_handled(exporter, "connection")
    stop_cleanly(exporter)


def test_body_over_size_limit_not_read(exporter_for):
    limit = 1024 * 1024
    piece = b" " * (64 * 1024)
    streamed: list[int] = []
    lock = threading.Lock()

    def endless() -> Reply:
        with lock:
            streamed.append(0)
            index = len(streamed) - 1

        def pieces() -> Iterator[bytes]:
            yield b'{"success": true, "users": [], "padding": "'
            for _ in range(4096):  # 256 MiB in all, far more than the limit
                streamed[index] += len(piece)
                yield piece

        return Reply(chunks=pieces())

    _, exporter = exporter_for(routed(endless), "--poll.max-response-size", str(limit))
    assert_failure_handled(exporter, "invalid_response")
    stop_cleanly(exporter)

    # What the server got rid of includes the socket buffers of both sides; the
    # client itself keeps at most the limit plus one read of 256 KiB.
    assert streamed, "the faulty job was never polled"
    assert max(streamed) < 32 * limit, f"the server streamed {max(streamed)} bytes before the client stopped"


def test_deeply_nested_json(exporter_for):
    nested = b'{"success": true, "users": [' + b"[" * 200_000 + b"]" * 200_000 + b"]}"
    _, exporter = exporter_for(routed(raw_body(nested)))
    assert_failure_handled(exporter, "invalid_response")
    stop_cleanly(exporter)


def test_invalid_utf8(exporter_for):
    body = b'{"success": true, "users": [{"local": "caf\xe9@example.com"}]}'
    _, exporter = exporter_for(routed(raw_body(body)))
    assert_failure_handled(exporter, "invalid_response")
    stop_cleanly(exporter)


def test_users_as_object(exporter_for):
    _, exporter = exporter_for(routed(document_with(lambda d: d.update(users={"local": FAULTY_USER}))))
    assert_failure_handled(exporter, "invalid_response")
    stop_cleanly(exporter)


def test_integer_past_python_digit_limit(exporter_for):
    # Python 3.11 refuses to convert integers of more than 4300 digits, which guards
    # against quadratic-time parsing, so json.loads rejects the whole response.
    body = b'{"success": true, "users": [{"local": "a", "data": {"status": {"bytes": ' + b"9" * 5000 + b"}}}]}"
    _, exporter = exporter_for(routed(raw_body(body)))
    assert_failure_handled(exporter, "invalid_response")
    stop_cleanly(exporter)


def test_connection_reset(exporter_for):
    _, exporter = exporter_for(routed(lambda: Reply(reset=True)))
    samples = assert_failure_handled(exporter, "connection")
    assert samples[("opensrs_migration_api_errors_total", (("error_number", "1"),))] == 0
    assert "reset" in warning_lines(exporter, FAULTY)[0].lower()
    stop_cleanly(exporter)


# Responses that parse: each bad value costs its own series only, is counted under
# its field in invalid_values_total, and the job stays up.
NOT_NUMBERS = b"""{"success": true, "rate": NaN, "users": [{"local": "faulty@example.com", "data": {
    "status": {"migrate_count": NaN, "remote_count": Infinity, "skip_count": -Infinity, "bytes": 1e400,
               "fail_count": 1%s},
    "folders": {"INBOX": {"migrate_count": 4, "bytes": -1e400}}}}]}""" % (b"0" * 400)


@pytest.mark.parametrize(
    ("fault", "fields", "missing"),
    [
        pytest.param(
            raw_body(NOT_NUMBERS),
            {"rate", "users.status.migrate_count", "users.status.remote_count", "users.status.skip_count",
             "users.status.bytes", "users.status.fail_count", "users.folders.bytes"},
            ["opensrs_migration_user_migrated_messages", "opensrs_migration_user_remote_messages",
             "opensrs_migration_user_skipped_messages", "opensrs_migration_user_migrated_bytes",
             "opensrs_migration_user_failed_messages", "opensrs_migration_job_throughput_bytes_per_second"],
            id="nan-infinity-and-beyond-float-range",
        ),
        pytest.param(
            document_with(lambda d: d["users"][0]["data"].update(folders=[{"INBOX": {}}])),
            {"users.folders"}, ["opensrs_migration_folder_migrated_messages"], id="folders-as-list",
        ),
        pytest.param(
            document_with(lambda d: d["users"][0]["data"].update(status="migrating")),
            {"users.status"}, [], id="status-as-string",
        ),
        pytest.param(
            document_with(lambda d: d["users"][0].update(data=42)),
            {"users.data"}, ["opensrs_migration_folder_migrated_messages"], id="data-as-number",
        ),
        pytest.param(
            document_with(lambda d: d["users"][0]["data"].update(config=["imap.example.com"])),
            {"users.config"}, [], id="config-as-list",
        ),
        pytest.param(
            document_with(lambda d: d["users"].append("second@example.com")),
            {"users"}, [], id="user-as-string",
        ),
    ],
)
def test_unreadable_values_counted(exporter_for, fault, fields, missing):
    _, exporter = exporter_for(routed(fault))
    key = ("opensrs_migration_invalid_values_total", (("field", sorted(fields)[0]), ("job_id", FAULTY)))
    samples = wait_for(
        lambda: (s := exporter.samples()) and s.get(key) and job_up(s, HEALTHY) == 1 and s,
        20, f"invalid values of job {FAULTY} never counted; log:\n{exporter.output()}",
    )

    assert job_up(samples, FAULTY) == 1
    counted = {dict(labels)["field"] for name, labels in samples
               if name == "opensrs_migration_invalid_values_total" and ("job_id", FAULTY) in labels}
    assert counted == fields
    faulty_series = {name for name, labels in samples if ("job_id", FAULTY) in labels}
    for name in missing:
        assert name not in faulty_series, f"{name} has a sample for an unreadable value"
    assert all(value == value and abs(value) != float("inf") for value in samples.values()), "NaN or Inf exported"
    assert ("opensrs_migration_user_state", (("job_id", FAULTY), ("state", "active"), ("user", FAULTY_USER))) \
        in samples

    text = exporter.scrape()
    check_with_promtool(text)
    lines = warning_lines(exporter, FAULTY)
    assert len(lines) == 1, f"expected one log line for the unreadable values, got {lines}"
    assert "not numbers" in lines[0]
    assert warning_lines(exporter, HEALTHY) == []
    stop_cleanly(exporter)


def test_duplicate_keys_last_wins(exporter_for):
    body = b"""{"success": true, "users": [{"local": "faulty@example.com", "data": {
        "status": {"migrate_count": 1, "migrate_count": 7},
        "folders": {"INBOX": {"migrate_count": 1}, "INBOX": {"migrate_count": 2}}}},
        {"local": "faulty@example.com", "data": {"status": {"migrate_count": 99}}}]}"""
    _, exporter = exporter_for(routed(raw_body(body)))
    user_key = ("opensrs_migration_user_migrated_messages", (("job_id", FAULTY), ("user", FAULTY_USER)))
    samples = wait_for(lambda: (s := exporter.samples()) and user_key in s and s, 20, "faulty job never exported")

    # json.loads keeps the last of duplicate keys, and a repeated user entry is skipped.
    assert samples[user_key] == 7
    folder_key = ("opensrs_migration_folder_migrated_messages",
                  (("folder", "INBOX"), ("job_id", FAULTY), ("user", FAULTY_USER)))
    assert samples[folder_key] == 2
    lines = [line for line in exporter.scrape().splitlines() if line and not line.startswith("#")]
    series = [line.rsplit(" ", 1)[0] for line in lines]
    assert len(series) == len(set(series)), "a series appears twice"
    assert samples[("opensrs_migration_invalid_values_total", (("field", "users.local"), ("job_id", FAULTY)))] >= 1
    stop_cleanly(exporter)


@pytest.fixture(scope="module")
def self_signed_certificate(tmp_path_factory) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 that no system CA store trusts, and its key."""
    return make_self_signed_certificate(tmp_path_factory.mktemp("tls"))


def tls_server(certificate: Path, key: Path) -> ScriptedServer:
    import ssl

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certificate, key)
    return ScriptedServer(routed(lambda: json_reply(status_document(FAULTY_USER))), ssl_context=context)


def assert_every_job_fails(exporter: ExporterProcess, reason: str) -> None:
    """Check a fault that the TLS handshake hits before any job ID is sent."""
    samples = wait_for(
        lambda: (s := exporter.samples()) and all(poll_errors(s, job, reason) >= 2 for job in (HEALTHY, FAULTY))
        and s,
        20, f"jobs never failed with reason {reason}; log:\n{exporter.output()}",
    )
    for job_id in (HEALTHY, FAULTY):
        assert job_up(samples, job_id) == 0
        lines = warning_lines(exporter, job_id)
        assert len(lines) == 1, f"expected one log line for job {job_id}, got {lines}"
        assert f"reason={reason}" in lines[0]
    check_with_promtool(exporter.scrape())


def test_https_url_to_plain_http_server(exporter_for):
    # The handshake precedes the request, so every job on this URL fails alike.
    server = ScriptedServer(routed(lambda: json_reply(status_document(FAULTY_USER))))
    _, exporter = exporter_for(None, server=server, url=server.url.replace("http://", "https://"))
    assert_every_job_fails(exporter, "connection")
    assert server.requests == []
    assert "SSLError" in warning_lines(exporter, FAULTY)[0]
    stop_cleanly(exporter)


def test_untrusted_certificate(exporter_for, self_signed_certificate):
    server = tls_server(*self_signed_certificate)
    _, exporter = exporter_for(None, server=server)
    assert_every_job_fails(exporter, "connection")
    assert server.handshake_failures >= 2
    assert server.requests == []
    assert "certificate" in warning_lines(exporter, FAULTY)[0].lower()
    stop_cleanly(exporter)


def test_trusted_certificate_polls(exporter_for, self_signed_certificate):
    """The TLS server of the test above works once its certificate is trusted."""
    certificate, key = self_signed_certificate
    server = tls_server(certificate, key)
    _, exporter = exporter_for(None, "--oma.ca-file", str(certificate), server=server)
    wait_for(lambda: (s := exporter.samples()) and job_up(s, HEALTHY) == 1 and job_up(s, FAULTY) == 1,
             20, f"jobs never polled over TLS; log:\n{exporter.output()}")
    assert server.handshake_failures == 0
    stop_cleanly(exporter)
