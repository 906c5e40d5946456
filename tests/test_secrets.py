"""The password and session tokens appear in no output, on any path.

The scripted OMA here echoes each request body, credentials included, in every
error it returns, the way a careless proxy or debug endpoint might. The exporter
runs with debug logging through every failure reason, session-token renewal and
revocation, invalid settings, `--config.check`, `--help` and a crash in a poll.
Every byte it writes (stdout, stderr, /metrics in each format, the landing page
and the health endpoints) must be free of the password and of every token.
"""

from __future__ import annotations

import gzip
import io
import json
import logging
import os
import re
import secrets
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request

import pytest

from exporter import logs
from exporter.client import OmaClient
from exporter.poller import Poller
from exporter.server import Exposition
from tests.scripted_server import Reply, ScriptedServer, json_reply
from tests.test_e2e import SCRIPT, ExporterProcess

PASSWORD = "test-password-7f3a"
USER = "sre@example.com"

JOB_OK = "1700000000100"
JOB_TIMEOUT = "1700000000101"
JOB_CONNECTION = "1700000000102"
JOB_HTTP_STATUS = "1700000000103"
JOB_INVALID = "1700000000104"
JOB_API_ERROR = "1700000000105"
JOBS = (JOB_OK, JOB_TIMEOUT, JOB_CONNECTION, JOB_HTTP_STATUS, JOB_INVALID, JOB_API_ERROR)
REASON_OF_JOB = {
    JOB_TIMEOUT: "timeout",
    JOB_CONNECTION: "connection",
    JOB_HTTP_STATUS: "http_status",
    JOB_INVALID: "invalid_response",
    JOB_API_ERROR: "api_error",
}

OK_DOCUMENT = {
    "success": True,
    "rate": "1 KiB/s",
    "users": [{"local": "user@example.com", "state": "active", "data": {
        "config": {"remote": "user@example.com", "server": "imap.example.com:993", "method": "imap4s"},
        "status": {"migrate_count": 1}, "folders": {"INBOX": {"migrate_count": 1, "delim": "/"}}}}],
}


class EchoingOma:
    """An OMA that issues tokens, revokes them now and then, and echoes requests in errors."""

    def __init__(self, revoke_every: int = 0):
        self.issued: list[str] = []
        self._valid: set[str] = set()
        self._revoke_every = revoke_every
        self._status_calls = 0
        self.revocations = 0
        self._lock = threading.Lock()

    def error(self, number: int, body: dict) -> Reply:
        return json_reply({"success": False, "error_number": number, "error": f"rejected request {json.dumps(body)}"})

    def respond(self, method: str, body: dict) -> Reply:
        credentials = body.get("credentials", {})
        if method == "authenticate":
            if credentials.get("password") != PASSWORD:
                return self.error(1, body)
            token = f"session-token-{secrets.token_hex(12)}"
            with self._lock:
                self.issued.append(token)
                self._valid.add(token)
            duration = body.get("session_token_duration", 10800)
            return json_reply({"success": True, "session_token": token, "session_token_duration": duration})

        with self._lock:
            self._status_calls += 1
            if self._revoke_every and self._status_calls % self._revoke_every == 0 and self._valid:
                self._valid.clear()
                self.revocations += 1
            token_valid = credentials.get("token") in self._valid
        if not token_valid and credentials.get("password") != PASSWORD:
            return self.error(1, body)
        return self._job_reply(body)

    def _job_reply(self, body: dict) -> Reply:
        echo = json.dumps(body).encode()
        job = body.get("job")
        if job == JOB_TIMEOUT:
            time.sleep(2.0)
        elif job == JOB_CONNECTION:
            return Reply(reset=True)
        elif job == JOB_HTTP_STATUS:
            return Reply(status=500, body=b"<html><body>Internal error for " + echo + b"</body></html>",
                         headers={"Content-Type": "text/html"})
        elif job == JOB_INVALID:
            return Reply(body=b"<html>not JSON: " + echo + b"</html>", headers={"Content-Type": "text/html"})
        elif job == JOB_API_ERROR:
            return self.error(2, body)
        return json_reply(OK_DOCUMENT)


class LoggingExporter(ExporterProcess):
    """ExporterProcess that also finds the metrics URL in JSON log lines."""

    def _read_stderr(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line)
            match = re.search(r'msg="serving metrics" url=(\S+)', line) or re.search(
                r'"msg": "serving metrics", "url": "([^"]+)"', line
            )
            if match:
                self.metrics_url = match.group(1)
                self._url_found.set()


def fetch(url: str, headers: dict[str, str] | None = None) -> bytes:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            body = response.read()
            return gzip.decompress(body) if response.headers.get("Content-Encoding") == "gzip" else body
    except urllib.error.HTTPError as error:
        return error.read()


def every_page(metrics_url: str) -> dict[str, bytes]:
    base = metrics_url.rsplit("/", 1)[0]
    return {
        "metrics": fetch(metrics_url),
        "metrics-openmetrics": fetch(metrics_url, {"Accept": "application/openmetrics-text; version=1.0.0"}),
        "metrics-gzip": fetch(metrics_url, {"Accept-Encoding": "gzip"}),
        "metrics-filtered": fetch(metrics_url + "?name[]=opensrs_migration_poll_errors_total"),
        "landing": fetch(base + "/"),
        "ready": fetch(base + "/-/ready"),
        "healthy": fetch(base + "/-/healthy"),
        "not-found": fetch(base + "/no-such-page"),
    }


def assert_no_secret(outputs: dict[str, str | bytes], secret_values: list[str]) -> None:
    assert secret_values, "no secret to look for"
    for name, output in outputs.items():
        text = output.decode("utf-8", "replace") if isinstance(output, bytes) else output
        for secret in secret_values:
            assert secret not in text, f"{name} contains a secret"


def wait_for(condition, timeout: float, message: str):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        result = condition()
        if result:
            return result
        time.sleep(0.2)
    raise AssertionError(message)


def run_exporter(
    oma: EchoingOma, *flags: str, password: str = PASSWORD, failures: dict[str, str] = REASON_OF_JOB,
    min_seconds: float = 0.0,
) -> tuple[ExporterProcess, ScriptedServer, dict[str, bytes]]:
    """Run the exporter until each job of `failures` failed twice with its reason, then stop it.

    The run lasts at least `min_seconds`.
    """
    started = time.monotonic()
    server = ScriptedServer(oma.respond).__enter__()
    env = {"OPENSRS_OMA_URL": server.url, "OPENSRS_OMA_USER": USER, "OPENSRS_PASSWORD": password,
           "OPENSRS_JOBS": ",".join(JOBS)}
    exporter = LoggingExporter(
        "--poll.interval", "0.3s", "--poll.deadline", "1.5s", "--poll.read-timeout", "1s",
        "--poll.concurrency", str(len(JOBS)), "--log.level", "debug", *flags, env=env,
    )
    try:
        def all_reasons_counted():
            samples = exporter.samples()
            return all(
                samples.get(("opensrs_migration_poll_errors_total", (("job_id", job), ("reason", reason))), 0) >= 2
                for job, reason in failures.items()
            )

        wait_for(all_reasons_counted, 30, f"not every failure was counted; log:\n{exporter.output()}")
        time.sleep(max(0.0, started + min_seconds - time.monotonic()))
        pages = every_page(exporter.metrics_url)
        assert exporter.stop() == 0
    finally:
        if exporter.process.poll() is None:
            exporter.process.kill()
        server.__exit__(None, None, None)
    return exporter, server, pages


def test_password_mode_every_failure_reason():
    oma = EchoingOma()
    exporter, server, pages = run_exporter(oma)

    # The server did echo the password, so the check below can fail.
    assert any(PASSWORD.encode() in json.dumps(body).encode() for _, body, _ in server.requests)
    assert 'msg="poll failed"' in exporter.output()
    assert "level=debug" in exporter.output()
    assert b"opensrs_migration_job_up" in pages["metrics"]
    assert_no_secret({"output": exporter.output(), **pages}, [PASSWORD])


def test_wrong_password_never_shown():
    wrong = "wrong-password-5c1e"
    exporter, server, pages = run_exporter(EchoingOma(), password=wrong, failures=dict.fromkeys(JOBS, "api_error"))
    assert 'error_number="1"' in pages["metrics"].decode()
    assert any(body["credentials"].get("password") == wrong for _, body, _ in server.requests)
    assert_no_secret({"output": exporter.output(), **pages}, [wrong, PASSWORD])


def test_session_tokens_never_shown():
    # Tokens of 2 s are renewed every 1.8 s, and every seventh status call finds its
    # token revoked, which the client answers by authenticating again.
    oma = EchoingOma(revoke_every=7)
    exporter, server, pages = run_exporter(
        oma, "--oma.session-token", "--oma.session-token-duration", "2s", "--log.format", "json", min_seconds=5.0,
    )

    assert len(oma.issued) >= 3, "tokens were neither renewed nor replaced"
    assert oma.revocations >= 1
    assert any('"session token rejected' in line for line in exporter.lines)
    assert all(line.startswith("{") for line in exporter.lines), "not every log line is JSON"
    assert_no_secret({"output": exporter.output(), **pages}, [PASSWORD, *oma.issued])


def test_session_token_mode_sends_password_only_to_authenticate():
    oma = EchoingOma(revoke_every=5)
    with ScriptedServer(oma.respond) as server:
        client = OmaClient(server.url, USER, PASSWORD, client_name="test", session_token=True,
                           session_token_duration=3600, retries=0)
        for _ in range(12):
            client.migration_status(JOB_OK, time.monotonic() + 5)
        client.close()

    methods = [method for method, _, _ in server.requests]
    assert methods.count("authenticate") >= 3, "revoked tokens were not replaced"
    for method, body, headers in server.requests:
        for value in headers.values():
            assert PASSWORD not in value
            assert not any(token in value for token in oma.issued)
        if method == "authenticate":
            assert body["credentials"] == {"user": USER, "password": PASSWORD}
        else:
            assert PASSWORD not in json.dumps(body)
            assert set(body["credentials"]) == {"user", "token"}


def run_script(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    clean = {key: value for key, value in os.environ.items() if not key.startswith("OPENSRS_")}
    clean.update(env)
    return subprocess.run([str(SCRIPT), *args], env=clean, capture_output=True, text=True, timeout=60)


VALID_ENV = {
    "OPENSRS_OMA_URL": "http://127.0.0.1:9/api",
    "OPENSRS_OMA_USER": USER,
    "OPENSRS_PASSWORD": PASSWORD,
    "OPENSRS_JOBS": JOB_OK,
}


@pytest.mark.parametrize(
    ("args", "env_changes", "expected_status"),
    [
        pytest.param(("--config.check",), {}, 0, id="config-check"),
        pytest.param(("--help",), {}, 0, id="help"),
        pytest.param(("--version",), {}, 0, id="version"),
        pytest.param(("--poll.interval", "soon"), {}, 2, id="invalid-flag-value"),
        pytest.param(("--config.check", "--poll.retries", "99"), {}, 2, id="config-check-invalid"),
        pytest.param(("--password", PASSWORD), {}, 2, id="password-as-flag"),
        pytest.param((f"--oma.password={PASSWORD}",), {}, 2, id="password-as-flag-with-equals"),
        pytest.param((), {"OPENSRS_OMA_URL": f"https://sre:{PASSWORD}@127.0.0.1/api"}, 2, id="password-in-url"),
        pytest.param((), {"OPENSRS_PASSWORD_FILE": "/nonexistent/password"}, 2, id="password-and-file"),
        pytest.param((), {"OPENSRS_JOBS": ""}, 2, id="missing-jobs"),
        pytest.param(("--log.level", "loud"), {}, 2, id="invalid-log-level"),
    ],
)
def test_settings_paths_never_show_password(args, env_changes, expected_status):
    result = run_script(*args, env={**VALID_ENV, **env_changes})
    assert result.returncode == expected_status, result.stderr
    assert result.stdout or result.stderr, "the path printed nothing"
    assert "Traceback" not in result.stderr
    assert_no_secret({"stdout": result.stdout, "stderr": result.stderr}, [PASSWORD])


def test_unreadable_password_file_never_shown(tmp_path):
    password_file = tmp_path / "password"
    password_file.write_bytes(PASSWORD.encode() + b"\xff\xfe")
    env = {**VALID_ENV, "OPENSRS_PASSWORD_FILE": str(password_file)}
    del env["OPENSRS_PASSWORD"]
    result = run_script(env=env)
    assert result.returncode == 2
    assert "OPENSRS_PASSWORD_FILE" in result.stderr
    assert_no_secret({"stdout": result.stdout, "stderr": result.stderr}, [PASSWORD])


def test_listen_failure_never_shows_password():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_script("--web.listen-address", f"127.0.0.1:{port}", "--log.level", "debug", env=VALID_ENV)
    assert result.returncode == 1
    assert "cannot listen" in result.stderr
    assert_no_secret({"stdout": result.stdout, "stderr": result.stderr}, [PASSWORD])


def test_crash_in_poll_never_shows_secrets():
    """A bug after the API call ends the poll at the poller's boundary, traceback logged."""

    def crash(status):
        raise RuntimeError(f"rendering job {status.job_id} failed")

    stream = io.StringIO()
    logger = logging.getLogger("exporter")
    saved = (logger.handlers[:], logger.level, logger.propagate)
    oma = EchoingOma()
    try:
        logs.configure("debug", "json", stream=stream)
        with ScriptedServer(oma.respond) as server:
            client = OmaClient(server.url, USER, PASSWORD, client_name="test", session_token=True, retries=0)
            poller = Poller(client, [JOB_OK, JOB_API_ERROR], interval=60, deadline=5, stale_after=600, prepare=crash)
            poller.poll_all()
            chunks, _ = Exposition(poller.view).render("text/plain", False)
            client.close()
    finally:
        logger.handlers[:], logger.level, logger.propagate = saved

    output = stream.getvalue()
    assert "Traceback" in output and "RuntimeError" in output, "the crash was not logged"
    assert oma.issued, "no token was issued"
    assert_no_secret({"log": output, "metrics": b"".join(chunks)}, [PASSWORD, *oma.issued])
