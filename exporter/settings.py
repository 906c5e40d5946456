"""Exporter settings from flags, `OPENSRS_*` environment variables and defaults.

Flags win over environment variables, which win over defaults. The password comes
only from `OPENSRS_PASSWORD` or the file named by `OPENSRS_PASSWORD_FILE`, never
from a flag, so it never shows in `ps`.
"""

from __future__ import annotations

import ipaddress
import json
import re
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from exporter import __version__

MAX_JOB_ID_LENGTH = 128


class SettingsError(Exception):
    """An invalid setting; the message names the setting, the value and the accepted form."""


@dataclass(frozen=True)
class Option:
    """The command-line and environment spelling of one setting."""

    flag: str | None
    env: str
    accepted: str
    secret: bool = False


OPTIONS: dict[str, Option] = {
    "oma_url": Option("--oma.url", "OPENSRS_OMA_URL", "an http:// or https:// URL such as https://admin.a.hostedemail.com/api"),
    "oma_user": Option("--oma.user", "OPENSRS_OMA_USER", "the OMA admin user, e.g. admin@example.com"),
    "password": Option(None, "OPENSRS_PASSWORD", "the OMA admin password (or OPENSRS_PASSWORD_FILE)", secret=True),
    "password_file": Option(None, "OPENSRS_PASSWORD_FILE", "a readable file that contains the password"),
    "oma_client": Option("--oma.client", "OPENSRS_OMA_CLIENT", "a short printable string, at most 100 characters"),
    "oma_ca_file": Option("--oma.ca-file", "OPENSRS_OMA_CA_FILE", "a readable PEM file of CA certificates"),
    "oma_session_token": Option("--oma.session-token", "OPENSRS_OMA_SESSION_TOKEN", "true or false"),
    "oma_session_token_duration": Option(
        "--oma.session-token-duration", "OPENSRS_OMA_SESSION_TOKEN_DURATION", "a duration from 1s to 24h, e.g. 3h"
    ),
    "config_file": Option(
        "--config.file", "OPENSRS_CONFIG_FILE", "a readable YAML file with an accounts list (see the README)"
    ),
    "discovery": Option("--discovery", "OPENSRS_DISCOVERY", "true or false"),
    "discovery_interval": Option("--discovery.interval", "OPENSRS_DISCOVERY_INTERVAL", "a duration greater than 0, e.g. 5m"),
    "discovery_max_age": Option("--discovery.max-age", "OPENSRS_DISCOVERY_MAX_AGE", "a duration greater than 0, e.g. 7d"),
    "shard": Option("--shard", "OPENSRS_SHARD", "a whole number from 0 to --total-shards minus 1"),
    "total_shards": Option("--total-shards", "OPENSRS_TOTAL_SHARDS", "a whole number from 1 to 1000"),
    "jobs": Option("--jobs", "OPENSRS_JOBS", 'job IDs as "a,b", a JSON list such as ["a", 123], or one ID'),
    "poll_interval": Option("--poll.interval", "OPENSRS_POLL_INTERVAL", "a duration greater than 0, e.g. 60 or 1m"),
    "poll_connect_timeout": Option(
        "--poll.connect-timeout", "OPENSRS_POLL_CONNECT_TIMEOUT", "a duration greater than 0, e.g. 5s"
    ),
    "poll_read_timeout": Option("--poll.read-timeout", "OPENSRS_POLL_READ_TIMEOUT", "a duration greater than 0, e.g. 30s"),
    "poll_deadline": Option("--poll.deadline", "OPENSRS_POLL_DEADLINE", "a duration greater than 0, e.g. 45s"),
    "poll_retries": Option("--poll.retries", "OPENSRS_POLL_RETRIES", "a whole number from 0 to 10"),
    "poll_concurrency": Option("--poll.concurrency", "OPENSRS_POLL_CONCURRENCY", "a whole number from 1 to 64"),
    "poll_stale_after": Option(
        "--poll.stale-after", "OPENSRS_POLL_STALE_AFTER", "a duration at least as long as --poll.interval, e.g. 10m"
    ),
    "poll_finished_interval": Option(
        "--poll.finished-interval", "OPENSRS_POLL_FINISHED_INTERVAL", "a duration at least as long as --poll.interval, e.g. 10m"
    ),
    "poll_finished_retention": Option(
        "--poll.finished-retention", "OPENSRS_POLL_FINISHED_RETENTION", "a duration greater than 0, e.g. 24h"
    ),
    "poll_max_response_size": Option(
        "--poll.max-response-size", "OPENSRS_POLL_MAX_RESPONSE_SIZE", "a size in bytes greater than 0, e.g. 64MiB"
    ),
    "collector_folders": Option("--collector.folders", "OPENSRS_COLLECTOR_FOLDERS", "true or false"),
    "collector_series_limit": Option(
        "--collector.series-limit", "OPENSRS_COLLECTOR_SERIES_LIMIT", "a whole number of series, 0 for no limit"
    ),
    "web_listen_address": Option(
        "--web.listen-address", "OPENSRS_WEB_LISTEN_ADDRESS", "[host]:port such as :19877, 127.0.0.1:19877 or [::1]:19877"
    ),
    "web_config_file": Option(
        "--web.config.file", "OPENSRS_WEB_CONFIG_FILE", "a readable YAML file in the exporter-toolkit web configuration format"
    ),
    "web_telemetry_path": Option(
        "--web.telemetry-path", "OPENSRS_WEB_TELEMETRY_PATH", "a path that starts with / and is not / or /-/..."
    ),
    "log_level": Option("--log.level", "OPENSRS_LOG_LEVEL", "debug, info, warn or error"),
    "log_format": Option("--log.format", "OPENSRS_LOG_FORMAT", "logfmt or json"),
    "demo": Option("--demo", "OPENSRS_DEMO", "true or false"),
    "demo_speed": Option("--demo.speed", "OPENSRS_DEMO_SPEED", "a number of simulated seconds per second, from 0.1 to 100000"),
}

_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_SIZE_UNITS = {"": 1, "B": 1, "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3, "kB": 1000, "MB": 1000**2, "GB": 1000**3}
_SIZE = re.compile(r"(\d+)\s*([A-Za-z]*)")


def parse_duration(value: Any) -> float:
    """Parse seconds as a number, or a Prometheus-style duration such as `1m30s` or `500ms`."""
    if isinstance(value, bool):
        raise ValueError("not a duration")
    if isinstance(value, int | float):
        return float(value)
    text = str(value).strip()
    try:
        return float(text)
    except ValueError:
        pass
    parts = _DURATION_PART.findall(text)
    if not parts or "".join(number + unit for number, unit in parts) != text:
        raise ValueError("not a duration")
    return sum(float(number) * _DURATION_UNITS[unit] for number, unit in parts)


def parse_size(value: Any) -> int:
    """Parse a byte count such as `1048576`, `64MiB` or `10MB`."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    match = _SIZE.fullmatch(str(value).strip())
    if not match or match.group(2) not in _SIZE_UNITS:
        raise ValueError("not a size")
    return int(match.group(1)) * _SIZE_UNITS[match.group(2)]


def parse_job_ids(value: Any) -> tuple[str, ...]:
    """Parse job IDs from `a,b`, `a, b`, a JSON list of strings or numbers, or one bare ID.

    IDs stay strings, so `00123` keeps its leading zeros.
    """
    if value is None:
        return ()
    if isinstance(value, list | tuple):
        items = list(value)
    else:
        text = str(value).strip()
        if text.startswith("["):
            try:
                items = json.loads(text)
            except ValueError as error:
                raise ValueError(f"not a valid JSON list ({error.msg})") from None
        else:
            items = [part.strip() for part in text.split(",")] if text else []
    ids: list[str] = []
    for item in items:
        if isinstance(item, bool) or not isinstance(item, str | int):
            raise ValueError(f"job ID {item!r} is neither a string nor a whole number")
        job_id = str(item).strip()
        problem = job_id_problem(job_id)
        if problem:
            raise ValueError(problem)
        if job_id in ids:
            raise ValueError(f"job ID {job_id!r} is listed twice")
        ids.append(job_id)
    return tuple(ids)


def job_id_problem(job_id: str) -> str:
    """Return why `job_id` cannot be a job ID, or "" when it can."""
    if not job_id:
        return "contains an empty job ID"
    if len(job_id) > MAX_JOB_ID_LENGTH or not job_id.isprintable() or any(c.isspace() for c in job_id):
        return f"job ID {job_id[:40]!r} has spaces, control characters or more than {MAX_JOB_ID_LENGTH} characters"
    return ""


def parse_listen_address(value: str) -> tuple[str, int]:
    """Split `[host]:port` into a host ("" for every address) and a port."""
    host, separator, port_text = value.rpartition(":")
    if not separator or not port_text.isdigit() or int(port_text) > 65535:
        raise ValueError("not of the form [host]:port")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"{host!r} in brackets is not an IPv6 address") from None
    elif ":" in host:
        raise ValueError("an IPv6 host needs brackets")
    return host, int(port_text)


def check_listen_host(host: str, port: int) -> None:
    """Raise ValueError unless `host` is empty, an IP address or a name that resolves."""
    if not host:
        return
    try:
        ipaddress.ip_address(host)
        return
    except ValueError:
        pass
    try:
        socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        raise ValueError(f"host {host!r} is not an IP address and does not resolve") from None


def check_ca_bundle(path: Path) -> None:
    """Raise ValueError unless `path` contains at least one PEM CA certificate."""
    try:
        ssl.create_default_context(cafile=str(path))
    except (ssl.SSLError, OSError) as error:
        raise ValueError(f"not a readable PEM file of CA certificates ({type(error).__name__})") from None


def validate_oma_url(value: str) -> str:
    """Return the OMA base URL without a trailing slash, or raise ValueError."""
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http:// or https:// URL with a host")
    if parts.username or parts.password:
        raise ValueError("must not contain credentials; set the user and password separately")
    return value.strip().rstrip("/")


class Settings(BaseSettings):
    """Validated exporter settings; field names are the flags with `.` and `-` as `_`."""

    model_config = SettingsConfigDict(env_prefix="OPENSRS_", extra="forbid", validate_default=True)

    oma_url: str | None = None
    oma_user: str | None = None
    password: SecretStr | None = Field(default=None, repr=False)
    password_file: Path | None = None
    oma_client: str = f"opensrs-migration-exporter/{__version__}"
    oma_ca_file: Path | None = None
    oma_session_token: bool = False
    oma_session_token_duration: float = 10800.0
    jobs: Annotated[tuple[str, ...], NoDecode] = ()
    config_file: Path | None = None
    discovery: bool = False
    discovery_interval: float = 300.0
    discovery_max_age: float = 7 * 86400.0
    shard: int = Field(default=0, ge=0)
    total_shards: int = Field(default=1, ge=1, le=1000)
    poll_interval: float = 60.0
    poll_connect_timeout: float = 5.0
    poll_read_timeout: float = 30.0
    poll_deadline: float = 45.0
    poll_retries: int = Field(default=2, ge=0, le=10)
    poll_concurrency: int = Field(default=4, ge=1, le=64)
    poll_stale_after: float = 600.0
    poll_finished_interval: float = 600.0
    poll_finished_retention: float = 86400.0
    poll_max_response_size: int = 64 * 1024 * 1024
    collector_folders: bool = True
    collector_series_limit: int = Field(default=2_000_000, ge=0)
    web_listen_address: str = ":19877"
    web_telemetry_path: str = "/metrics"
    web_config_file: Path | None = None
    log_level: Literal["debug", "info", "warn", "error"] = "info"
    log_format: Literal["logfmt", "json"] = "logfmt"
    demo: bool = False
    demo_speed: float = Field(default=60.0, ge=0.1, le=100000.0)

    @field_validator("jobs", mode="before")
    @classmethod
    def _parse_jobs(cls, value: Any) -> tuple[str, ...]:
        return parse_job_ids(value)

    @field_validator(
        "poll_interval", "poll_connect_timeout", "poll_read_timeout", "poll_deadline", "poll_stale_after",
        "poll_finished_interval", "poll_finished_retention", "discovery_interval", "discovery_max_age",
        "oma_session_token_duration", mode="before",
    )
    @classmethod
    def _parse_duration(cls, value: Any) -> float:
        seconds = parse_duration(value)
        if not 0 < seconds < float("inf"):
            raise ValueError("must be greater than 0")
        return seconds

    @field_validator("poll_max_response_size", mode="before")
    @classmethod
    def _parse_size(cls, value: Any) -> int:
        size = parse_size(value)
        if size <= 0:
            raise ValueError("must be greater than 0")
        return size

    @field_validator("oma_session_token_duration")
    @classmethod
    def _check_token_duration(cls, value: float) -> float:
        # OMA accepts session_token_duration from 1 to 86400 seconds.
        if not 1 <= value <= 86400:
            raise ValueError("must be from 1s to 24h")
        return value

    @field_validator("oma_url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        return None if value is None else validate_oma_url(value)

    @field_validator("oma_client")
    @classmethod
    def _check_client(cls, value: str) -> str:
        if not value.isprintable() or len(value) > 100:
            raise ValueError("must be printable and at most 100 characters")
        return value

    @field_validator("web_listen_address")
    @classmethod
    def _check_listen_address(cls, value: str) -> str:
        check_listen_host(*parse_listen_address(value))
        return value

    @field_validator("web_telemetry_path")
    @classmethod
    def _check_telemetry_path(cls, value: str) -> str:
        if not value.startswith("/") or value == "/" or value.startswith("/-/") or "?" in value or "#" in value:
            raise ValueError("must start with / and must not be / or under /-/")
        return value

    @field_validator("oma_ca_file", "web_config_file", "config_file")
    @classmethod
    def _check_readable(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError("file not found or not a regular file")
        return value

    @field_validator("oma_ca_file")
    @classmethod
    def _check_ca_bundle(cls, value: Path | None) -> Path | None:
        if value is not None:
            check_ca_bundle(value)
        return value

    @model_validator(mode="after")
    def _check_together(self) -> Settings:
        if self.shard >= self.total_shards:
            raise _FieldError("shard", self.shard, f"must be less than --total-shards ({self.total_shards})")
        if self.poll_finished_interval < self.poll_interval:
            raise _FieldError("poll_finished_interval", self.poll_finished_interval,
                              f"must be at least --poll.interval ({self.poll_interval:g}s)")
        if self.poll_stale_after < self.poll_interval:
            raise _FieldError("poll_stale_after", self.poll_stale_after,
                              f"must be at least --poll.interval ({self.poll_interval:g}s)")
        if self.password is not None and self.password_file is not None:
            raise _FieldError("password_file", self.password_file, "set either OPENSRS_PASSWORD or OPENSRS_PASSWORD_FILE, not both")
        if self.demo:
            # Demo mode makes up its own password, so a password file that an image
            # or unit names by default need not exist.
            return self
        if self.config_file is not None:
            # Each account in the file has its own endpoint, credentials, CA file, token
            # mode and discovery, so the flat form of those settings would be ignored.
            for name in ("oma_url", "oma_user", "jobs", "oma_ca_file", "oma_session_token", "discovery"):
                if getattr(self, name):
                    raise _FieldError(name, getattr(self, name), "cannot be combined with --config.file, "
                                      "which names the accounts and their jobs")
            return self
        if self.password_file is not None and not self.password_file.is_file():
            raise _FieldError("password_file", self.password_file, "file not found or not a regular file")
        for name in ("oma_url", "oma_user"):
            if not getattr(self, name):
                raise _FieldError(name, None, "is required")
        if self.password is None and self.password_file is None:
            raise _FieldError("password", None, "is required")
        if not self.jobs and not self.discovery:
            raise _FieldError("jobs", None, "is required unless --discovery is on: name at least one job ID")
        return self

    def read_password(self) -> str:
        """Return the password from OPENSRS_PASSWORD or from the password file ("" in demo mode).

        A trailing newline in the file is dropped because editors add one.
        """
        if self.demo or self.config_file is not None:
            return ""
        if self.password is not None:
            secret = self.password.get_secret_value()
        elif self.password_file is not None:
            try:
                secret = self.password_file.read_text(encoding="utf-8").removesuffix("\n").removesuffix("\r")
            except (OSError, UnicodeDecodeError) as error:
                raise SettingsError(
                    f"invalid setting OPENSRS_PASSWORD_FILE={self.password_file}: cannot read it "
                    f"({type(error).__name__}); expected {OPTIONS['password_file'].accepted}"
                ) from None
        else:
            return ""
        source = "OPENSRS_PASSWORD_FILE" if self.password is None else "OPENSRS_PASSWORD"
        if not secret:
            raise SettingsError(f"invalid setting {source}: the password is empty; expected the OMA admin password")
        if "\n" in secret or "\r" in secret:
            raise SettingsError(
                f"invalid setting {source}: the password contains a line break; expected the password on one line"
            )
        return secret

    def summary(self) -> dict[str, object]:
        """Return the settings for the start-up log line, without the password."""
        values = self.model_dump(exclude={"password"})
        values["password"] = "<set>" if self.password is not None or self.password_file is not None else "<unset>"
        values["jobs"] = ",".join(self.jobs)
        return {key: str(value) for key, value in values.items()}


class _FieldError(ValueError):
    def __init__(self, field: str, value: Any, problem: str):
        super().__init__(problem)
        self.field = field
        self.value = value
        self.problem = problem


# The password part of `scheme://user:password@host` in a rejected URL.
_URL_PASSWORD = re.compile(r"(?<=://)([^/@\s:]*):[^/@\s]*@")


def _describe_value(option: Option, value: Any) -> str:
    if value is None:
        return "<unset>"
    if option.secret:
        return "<hidden>"
    if isinstance(value, Path):
        value = str(value)
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    text = _URL_PASSWORD.sub(r"\1:<hidden>@", text)
    return json.dumps(text[:200], ensure_ascii=False)


def _setting_name(option: Option) -> str:
    return f"{option.flag} ({option.env})" if option.flag else option.env


def load_settings(flags: dict[str, Any]) -> Settings:
    """Build Settings from the given flag values over the environment.

    Raises SettingsError with one line that names the setting, the bad value (never a
    secret) and the accepted form.
    """
    try:
        return Settings(**flags)
    except ValidationError as error:
        raise SettingsError(_first_problem(error)) from None


def _first_problem(error: ValidationError) -> str:
    problem = error.errors(include_url=False)[0]
    cause = (problem.get("ctx") or {}).get("error")
    if isinstance(cause, _FieldError):
        option = OPTIONS[cause.field]
        return (
            f"invalid setting {_setting_name(option)}={_describe_value(option, cause.value)}: "
            f"{cause.problem}; expected {option.accepted}"
        )
    location = problem["loc"][0] if problem["loc"] else ""
    if location not in OPTIONS:
        return f"invalid setting {location}: {problem['msg']}"
    option = OPTIONS[str(location)]
    context = problem.get("ctx") or {}
    message = str(context.get("error") or problem["msg"]).removeprefix("Value error, ")
    return (
        f"invalid setting {_setting_name(option)}={_describe_value(option, problem.get('input'))}: "
        f"{message}; expected {option.accepted}"
    )
