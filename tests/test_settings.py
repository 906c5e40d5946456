"""Settings: job-ID forms, precedence, validation messages and the command line."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from exporter.settings import SettingsError, load_settings, parse_duration, parse_job_ids

PASSWORD = "test-password-7f3a"
BASE_ENV = {
    "OPENSRS_OMA_URL": "http://127.0.0.1:9/api",
    "OPENSRS_OMA_USER": "sre@example.com",
    "OPENSRS_PASSWORD": PASSWORD,
    "OPENSRS_JOBS": "1",
}


@pytest.fixture
def environment(monkeypatch):
    for name in list(os.environ):
        if name.startswith("OPENSRS_"):
            monkeypatch.delenv(name)
    for name, value in BASE_ENV.items():
        monkeypatch.setenv(name, value)
    return monkeypatch


@pytest.mark.parametrize(
    "text, expected",
    [
        pytest.param("a,b", ("a", "b"), id="comma"),
        pytest.param("a, b", ("a", "b"), id="comma-space"),
        pytest.param('["a", "b"]', ("a", "b"), id="json-strings"),
        pytest.param("[1326229437638, 2]", ("1326229437638", "2"), id="json-numbers"),
        pytest.param('["00123", 7]', ("00123", "7"), id="json-mixed"),
        pytest.param("00123", ("00123",), id="bare-leading-zeros"),
        pytest.param(" 1326229437638 ", ("1326229437638",), id="bare-padded"),
        pytest.param("00123,00456", ("00123", "00456"), id="comma-leading-zeros"),
    ],
)
def test_job_id_forms(environment, text, expected):
    environment.setenv("OPENSRS_JOBS", text)
    assert load_settings({}).jobs == expected
    assert load_settings({"jobs": text}).jobs == expected


@pytest.mark.parametrize(
    "text, fragment",
    [
        pytest.param("a,,b", "empty job ID", id="empty-item"),
        pytest.param("a,a", "listed twice", id="duplicate"),
        pytest.param("[1,", "not a valid JSON list", id="broken-json"),
        pytest.param("[1.5]", "neither a string nor a whole number", id="float"),
        pytest.param("[true]", "neither a string nor a whole number", id="bool"),
        pytest.param('[["a"]]', "neither a string nor a whole number", id="nested"),
        pytest.param("a b", "spaces", id="space-inside"),
        pytest.param("x" * 200, "more than 128", id="too-long"),
    ],
)
def test_invalid_job_ids_rejected(environment, text, fragment):
    environment.setenv("OPENSRS_JOBS", text)
    with pytest.raises(SettingsError) as caught:
        load_settings({})
    message = str(caught.value)
    assert fragment in message
    assert "--jobs (OPENSRS_JOBS)" in message
    assert "expected job IDs as" in message


def test_flag_beats_environment_beats_default(environment):
    assert load_settings({}).poll_interval == 60.0
    environment.setenv("OPENSRS_POLL_INTERVAL", "30")
    assert load_settings({}).poll_interval == 30.0
    assert load_settings({"poll_interval": "2m"}).poll_interval == 120.0


@pytest.mark.parametrize(
    "text, seconds",
    [("60", 60.0), ("1.5", 1.5), ("500ms", 0.5), ("1m30s", 90.0), ("2h", 7200.0), ("1d", 86400.0)],
)
def test_duration_forms(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    "flags, setting, fragment",
    [
        pytest.param({"poll_interval": "soon"}, "--poll.interval", "not a duration", id="interval-word"),
        pytest.param({"poll_interval": "0"}, "--poll.interval", "greater than 0", id="interval-zero"),
        pytest.param({"poll_interval": "-5"}, "--poll.interval", "greater than 0", id="interval-negative"),
        pytest.param({"poll_stale_after": "10s"}, "--poll.stale-after", "at least --poll.interval", id="stale-short"),
        pytest.param({"poll_concurrency": "0"}, "--poll.concurrency", "greater than or equal to 1", id="concurrency"),
        pytest.param({"poll_retries": "many"}, "--poll.retries", "integer", id="retries"),
        pytest.param({"oma_url": "ftp://x"}, "--oma.url", "http:// or https://", id="url-scheme"),
        pytest.param({"oma_url": "https://u:p@host/api"}, "--oma.url", "must not contain credentials", id="url-creds"),
        pytest.param({"web_listen_address": "19877"}, "--web.listen-address", "[host]:port", id="address-no-colon"),
        pytest.param({"web_listen_address": ":99999"}, "--web.listen-address", "[host]:port", id="address-port"),
        pytest.param({"web_telemetry_path": "metrics"}, "--web.telemetry-path", "start with /", id="path-relative"),
        pytest.param({"web_telemetry_path": "/-/healthy"}, "--web.telemetry-path", "start with /", id="path-reserved"),
        pytest.param({"log_level": "loud"}, "--log.level", "debug, info, warn or error", id="log-level"),
        pytest.param({"log_format": "xml"}, "--log.format", "logfmt or json", id="log-format"),
        pytest.param({"oma_ca_file": "/nonexistent/ca.pem"}, "--oma.ca-file", "file not found", id="ca-file"),
        pytest.param({"oma_session_token_duration": "2d"}, "--oma.session-token-duration", "1s to 24h", id="token"),
        pytest.param({"poll_max_response_size": "lots"}, "--poll.max-response-size", "not a size", id="size"),
    ],
)
def test_invalid_setting_names_value_and_form(environment, flags, setting, fragment):
    with pytest.raises(SettingsError) as caught:
        load_settings(flags)
    message = str(caught.value)
    assert message.startswith(f"invalid setting {setting} ")
    assert fragment in message
    assert "expected" in message
    assert "\n" not in message


@pytest.mark.parametrize("missing", ["OPENSRS_OMA_URL", "OPENSRS_OMA_USER", "OPENSRS_PASSWORD", "OPENSRS_JOBS"])
def test_required_settings(environment, missing):
    environment.delenv(missing)
    with pytest.raises(SettingsError) as caught:
        load_settings({})
    assert "is required" in str(caught.value)


def test_demo_needs_no_connection_settings(environment):
    for name in BASE_ENV:
        environment.delenv(name)
    assert load_settings({"demo": True}).demo is True


def test_password_file_read_without_newline(environment, tmp_path):
    environment.delenv("OPENSRS_PASSWORD")
    secret_file = tmp_path / "password"
    secret_file.write_text(PASSWORD + "\n")
    environment.setenv("OPENSRS_PASSWORD_FILE", str(secret_file))
    assert load_settings({}).read_password() == PASSWORD


def test_password_and_file_together_rejected(environment, tmp_path):
    secret_file = tmp_path / "password"
    secret_file.write_text(PASSWORD)
    environment.setenv("OPENSRS_PASSWORD_FILE", str(secret_file))
    with pytest.raises(SettingsError) as caught:
        load_settings({})
    assert "not both" in str(caught.value)
    assert PASSWORD not in str(caught.value)


def test_empty_password_file_rejected(environment, tmp_path):
    environment.delenv("OPENSRS_PASSWORD")
    secret_file = tmp_path / "password"
    secret_file.write_text("\n")
    environment.setenv("OPENSRS_PASSWORD_FILE", str(secret_file))
    with pytest.raises(SettingsError) as caught:
        load_settings({}).read_password()
    assert "empty" in str(caught.value)


def test_summary_hides_password(environment):
    summary = load_settings({}).summary()
    assert summary["password"] == "<set>"
    assert PASSWORD not in repr(summary)
    assert PASSWORD not in repr(load_settings({}))


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OPENSRS_")}
    clean.update(BASE_ENV if env is None else env)
    return subprocess.run(
        [sys.executable, "-m", "exporter", *args], env=clean, capture_output=True, text=True, timeout=60
    )


def test_cli_version():
    result = run_cli("--version")
    assert result.returncode == 0
    assert result.stdout.startswith("opensrs-migration-exporter ")


def test_cli_config_check_valid():
    result = run_cli("--config.check", "--jobs", "00123, 456")
    assert result.returncode == 0
    assert "settings are valid (2 jobs)" in result.stdout
    assert PASSWORD not in result.stdout + result.stderr


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--poll.interval", "abc"], '--poll.interval (OPENSRS_POLL_INTERVAL)="abc"'),
        (["--jobs", "a,a"], "listed twice"),
        (["--web.listen-address", "nowhere"], "--web.listen-address"),
    ],
)
def test_cli_invalid_setting_exits_2_with_one_line(args, fragment):
    result = run_cli("--config.check", *args)
    assert result.returncode == 2
    assert fragment in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_cli_invalid_environment_exits_2():
    result = run_cli("--config.check", env={**BASE_ENV, "OPENSRS_POLL_CONCURRENCY": "lots"})
    assert result.returncode == 2
    assert "--poll.concurrency (OPENSRS_POLL_CONCURRENCY)" in result.stderr


def test_cli_password_flag_rejected_without_echo():
    result = run_cli("--config.check", "--oma.password", "hunter2-secret")
    assert result.returncode == 2
    assert "hunter2-secret" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_cli_help_has_no_secret_and_names_env():
    result = run_cli("--help", env={**BASE_ENV})
    assert result.returncode == 0
    assert "OPENSRS_POLL_INTERVAL" in result.stdout
    assert "OPENSRS_PASSWORD_FILE" in result.stdout
    assert PASSWORD not in result.stdout


def test_ca_file_must_hold_certificates(environment, tmp_path):
    not_pem = tmp_path / "ca.pem"
    not_pem.write_text("this is not a certificate\n")
    with pytest.raises(SettingsError) as caught:
        load_settings({"oma_ca_file": str(not_pem)})
    assert "not a readable PEM file of CA certificates" in str(caught.value)
    assert f'="{not_pem}"' in str(caught.value)


@pytest.mark.parametrize("address", ["999.1.1.1:80", "nosuchhost.invalid:80", "[zz]:80"])
def test_listen_host_must_resolve(environment, address):
    with pytest.raises(SettingsError) as caught:
        load_settings({"web_listen_address": address})
    assert "--web.listen-address" in str(caught.value)


@pytest.mark.parametrize("flags", [{"discovery": True}, {"oma_session_token": True}])
def test_config_file_rejects_flat_account_settings(environment, tmp_path, flags):
    for name in ("OPENSRS_OMA_URL", "OPENSRS_OMA_USER", "OPENSRS_JOBS"):
        environment.delenv(name)
    config = tmp_path / "accounts.yml"
    config.write_text("accounts: []\n")
    with pytest.raises(SettingsError) as caught:
        load_settings({"config_file": str(config), **flags})
    assert "cannot be combined with --config.file" in str(caught.value)


@pytest.mark.parametrize("content", ["secret\n\n", "\n\n", "first\nsecond\n"])
def test_multiline_password_file_rejected(environment, tmp_path, content):
    environment.delenv("OPENSRS_PASSWORD")
    secret_file = tmp_path / "password"
    secret_file.write_text(content)
    environment.setenv("OPENSRS_PASSWORD_FILE", str(secret_file))
    with pytest.raises(SettingsError) as caught:
        load_settings({}).read_password()
    assert "OPENSRS_PASSWORD_FILE" in str(caught.value)
    assert "secret" not in str(caught.value)
