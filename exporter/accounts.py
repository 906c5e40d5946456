"""OMA accounts: from a YAML configuration file, or one account from the flat settings.

A configuration file names several accounts, each with its own endpoint, user,
password file, token mode, job IDs and discovery settings:

    accounts:
      - name: cluster-a
        url: https://admin.a.hostedemail.com/api
        user: admin@example.com
        password_file: /run/secrets/cluster-a
        jobs: ["1326229437638"]
        discovery: {enabled: true, interval: 5m, max_age: 7d}

The file is parsed with a safe loader and unknown keys are rejected.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from exporter.settings import (
    Settings, SettingsError, check_ca_bundle, parse_duration, parse_job_ids, validate_oma_url,
)

DEFAULT_ACCOUNT = "default"


@dataclass(frozen=True)
class Discovery:
    enabled: bool = False
    interval: float = 300.0
    """Seconds between two migration_jobs calls."""
    max_age: float = 7 * 86400.0
    """Jobs submitted longer ago than this many seconds are not polled."""


@dataclass(frozen=True)
class Account:
    """One OMA endpoint and admin user, and the jobs to poll there."""

    name: str
    url: str
    user: str
    password_file: Path | None = field(default=None, compare=True)
    session_token: bool = False
    session_token_duration: float = 10800.0
    ca_file: Path | None = None
    jobs: tuple[str, ...] = ()
    discovery: Discovery = Discovery()
    password: str = field(default="", repr=False, compare=False)
    """Read from `password_file`, or OPENSRS_PASSWORD for the flat settings; never logged."""


class ConfigFileError(Exception):
    """An invalid configuration file; the message names the file, the key and the fix."""


def _duration(value: Any) -> float:
    seconds = parse_duration(value)
    if not 0 < seconds < float("inf"):
        raise ValueError("must be a duration greater than 0")
    return seconds


class _DiscoveryModel(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = False
    interval: float = 300.0
    max_age: float = 7 * 86400.0

    @field_validator("interval", "max_age", mode="before")
    @classmethod
    def _parse_durations(cls, value: Any) -> float:
        return _duration(value)


class _AccountModel(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    url: str
    user: str = Field(min_length=1)
    password_file: Path
    session_token: bool = False
    session_token_duration: float = 10800.0
    ca_file: Path | None = None
    jobs: tuple[str, ...] = ()
    discovery: _DiscoveryModel = _DiscoveryModel()

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        return validate_oma_url(value)

    @field_validator("jobs", mode="before")
    @classmethod
    def _parse_jobs(cls, value: Any) -> tuple[str, ...]:
        return parse_job_ids(value)

    @field_validator("session_token_duration", mode="before")
    @classmethod
    def _parse_token_duration(cls, value: Any) -> float:
        seconds = _duration(value)
        if not 1 <= seconds <= 86400:
            raise ValueError("must be from 1s to 24h")
        return seconds

    @model_validator(mode="after")
    def _check_jobs_or_discovery(self) -> _AccountModel:
        if not self.jobs and not self.discovery.enabled:
            raise ValueError("needs job IDs in 'jobs', or 'discovery: {enabled: true}'")
        return self


class _FileModel(BaseModel):
    model_config = ConfigDict(extra="forbid")

    accounts: list[_AccountModel] = Field(min_length=1)


def load_config_file(path: Path) -> list[Account]:
    """Read and validate a configuration file, passwords included.

    Raises ConfigFileError naming the file, the offending key and what is expected.
    Relative paths in the file resolve against the file's folder.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigFileError(f"cannot read configuration file {path}: {type(error).__name__}: {error}") from None
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ConfigFileError(f"configuration file {path} is not valid YAML: {_describe_yaml_error(error)}") from None
    if not isinstance(document, dict):
        raise ConfigFileError(
            f"invalid configuration file {path}: the top level must be a mapping with an 'accounts' list"
        )
    for position, entry in enumerate(document.get("accounts") or []):
        if isinstance(entry, dict) and "password" in entry:
            raise ConfigFileError(
                f"invalid configuration file {path}: accounts.{position}.password: passwords are not accepted "
                "in the file; put the password in its own file and name it with password_file"
            )
    try:
        parsed = _FileModel.model_validate(document)
    except ValidationError as error:
        problem = error.errors(include_url=False)[0]
        location = ".".join(str(part) for part in problem["loc"]) or "(top level)"
        message = str(problem["msg"]).removeprefix("Value error, ")
        if problem["type"] == "extra_forbidden":
            message = "unknown key; check its spelling against the README"
        raise ConfigFileError(f"invalid configuration file {path}: {location}: {message}") from None

    try:
        accounts = [_account_from_model(model, path.parent) for model in parsed.accounts]
    except ConfigFileError as error:
        raise ConfigFileError(f"invalid configuration file {path}: {error}") from None
    check_accounts(accounts, str(path))
    return accounts


def _describe_yaml_error(error: yaml.YAMLError) -> str:
    """Name the problem and its position; PyYAML's own text can quote the file's lines."""
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None) or type(error).__name__
    if mark is None:
        return str(problem)
    return f"{problem} at line {mark.line + 1}, column {mark.column + 1}"


def _account_from_model(model: _AccountModel, folder: Path) -> Account:
    password_file = model.password_file if model.password_file.is_absolute() else folder / model.password_file
    ca_file = model.ca_file if model.ca_file is None or model.ca_file.is_absolute() else folder / model.ca_file
    if ca_file is not None:
        try:
            check_ca_bundle(ca_file)
        except ValueError as error:
            raise ConfigFileError(f"account {model.name!r}: ca_file {ca_file}: {error}") from None
    return Account(
        name=model.name,
        url=model.url,
        user=model.user,
        password_file=password_file,
        session_token=model.session_token,
        session_token_duration=model.session_token_duration,
        ca_file=ca_file,
        jobs=model.jobs,
        discovery=Discovery(model.discovery.enabled, model.discovery.interval, model.discovery.max_age),
        password=_read_password_file(model.name, password_file),
    )


def _read_password_file(account: str, path: Path) -> str:
    try:
        password = path.read_text(encoding="utf-8").removesuffix("\n").removesuffix("\r")
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigFileError(
            f"account {account!r}: cannot read password_file {path} ({type(error).__name__}); "
            "expected a readable file that contains the password"
        ) from None
    if not password:
        raise ConfigFileError(f"account {account!r}: password_file {path} is empty")
    if "\n" in password or "\r" in password:
        raise ConfigFileError(
            f"account {account!r}: password_file {path} contains more than one line; put the password on one line"
        )
    return password


def check_accounts(accounts: list[Account], source: str) -> None:
    """Reject two accounts with one name, or one job ID configured in two accounts."""
    names: set[str] = set()
    owners: dict[str, str] = {}
    for account in accounts:
        if account.name in names:
            raise ConfigFileError(f"{source}: account name {account.name!r} is used twice; names must be unique")
        names.add(account.name)
        for job_id in account.jobs:
            if job_id in owners:
                raise ConfigFileError(
                    f"{source}: job ID {job_id!r} is listed in accounts {owners[job_id]!r} and {account.name!r}; "
                    "a job belongs to exactly one account"
                )
            owners[job_id] = account.name


def account_from_settings(settings: Settings, password: str) -> Account:
    """Build the single account of the flat settings (flags and OPENSRS_* variables)."""
    if not settings.oma_url or not settings.oma_user:
        raise SettingsError("invalid setting --oma.url and --oma.user: both are required without --config.file")
    return Account(
        name=DEFAULT_ACCOUNT,
        url=settings.oma_url,
        user=settings.oma_user,
        session_token=settings.oma_session_token,
        session_token_duration=settings.oma_session_token_duration,
        ca_file=settings.oma_ca_file,
        jobs=settings.jobs,
        discovery=Discovery(settings.discovery, settings.discovery_interval, settings.discovery_max_age),
        password=password,
    )


def shard_of(job_id: str, total_shards: int) -> int:
    """Return the shard, from 0 to total_shards - 1, that polls `job_id`.

    SHA-256 rather than Python's hash(), which differs between processes, so every
    replica computes the same split with no coordination.
    """
    digest = hashlib.sha256(job_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % total_shards
