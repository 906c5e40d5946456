"""Names, types, labels and help texts of every metric the exporter serves.

The names are a contract with dashboards and alert rules: renaming one breaks
them, so a change here is a deliberate decision recorded in the README's metric
table and in CHANGELOG.md.
"""

from __future__ import annotations

from dataclasses import dataclass

PREFIX = "opensrs_migration_"


@dataclass(frozen=True, slots=True)
class MetricDef:
    name: str
    type: str
    labels: tuple[str, ...]
    help: str


def _gauge(name: str, labels: tuple[str, ...], help_text: str) -> MetricDef:
    return MetricDef(PREFIX + name, "gauge", labels, help_text)


def _counter(name: str, labels: tuple[str, ...], help_text: str) -> MetricDef:
    # The name is the family name: the text format adds `_total` to the sample.
    return MetricDef(PREFIX + name, "counter", labels, help_text)


JOB = ("job_id",)
USER = ("job_id", "user")
FOLDER = ("job_id", "user", "folder")

BUILD_INFO = _gauge("build_info", ("version",), "Exporter version, value 1.")
JOBS = _gauge("jobs", (), "Number of migration job IDs this exporter instance polls.")
JOB_UP = _gauge("job_up", JOB, "1 if the most recent poll of the job succeeded, else 0.")
JOB_LAST_SUCCESS = _gauge(
    "job_last_success_timestamp_seconds", JOB, "Unix time of the last successful poll of the job."
)
JOB_POLL_DURATION = _gauge(
    "job_poll_duration_seconds", JOB, "Wall time of the most recent poll of the job, in seconds."
)
POLL_ERRORS = _counter(
    "poll_errors", ("job_id", "reason"), "Failed polls of the job, by reason."
)
API_ERRORS = _counter(
    "api_errors", ("error_number",), "OMA responses with success false, by API error number."
)
INVALID_VALUES = _counter(
    "invalid_values",
    ("job_id", "field"),
    "Values in migration_status responses that are not finite numbers or known rate units; "
    "their series get no sample.",
)
JOB_RENDER_DURATION = _gauge(
    "job_render_duration_seconds",
    JOB,
    "Wall time spent rendering the job's series after its most recent successful poll, in seconds.",
)
EXPOSITION_SERIES = _gauge(
    "exposition_series", (), "Job, user and folder series in the exposition, health series not included."
)
EXPOSITION_OMITTED_SERIES = _gauge(
    "exposition_omitted_series", (), "Folder series left out of the exposition by --collector.series-limit."
)
JOB_INFO = _gauge(
    "job_info", ("job_id", "account", "api_url"), "Account and OMA base URL of each polled job, value 1."
)
SHARD = _gauge("shard", (), "Shard index of this replica, from 0 to total_shards - 1.")
TOTAL_SHARDS = _gauge("total_shards", (), "Number of replicas the jobs are split across (--total-shards).")
DISCOVERY_JOBS = _gauge(
    "discovery_jobs", ("account",), "Jobs that the last successful migration_jobs call listed within the age limit."
)
DISCOVERY_LAST_SUCCESS = _gauge(
    "discovery_last_success_timestamp_seconds", ("account",), "Unix time of the last successful job discovery."
)
DISCOVERY_ERRORS = _counter("discovery_errors", ("account", "reason"), "Failed job discovery calls, by reason.")
DISCOVERY_CHANGES = _counter(
    "discovery_job_changes", ("account", "change"), "Jobs that discovery added or that expired from its window."
)
CONFIG_RELOAD_SUCCESSFUL = _gauge(
    "config_last_reload_successful", (), "1 if the last configuration reload succeeded, else 0."
)
CONFIG_RELOAD_TIMESTAMP = _gauge(
    "config_last_reload_success_timestamp_seconds", (), "Unix time of the last successful configuration load."
)

JOB_THROUGHPUT = _gauge(
    "job_throughput_bytes_per_second", JOB, "Aggregate throughput of the job (rate), in bytes per second."
)
JOB_USERS = _gauge("job_users", ("job_id", "state"), "Number of users of the job in each state.")
JOB_MIGRATED = _gauge("job_migrated_messages", JOB, "Messages migrated, summed over the job's users.")
JOB_SKIPPED = _gauge("job_skipped_messages", JOB, "Messages skipped, summed over the job's users.")
JOB_FAILED = _gauge("job_failed_messages", JOB, "Messages that failed for good, summed over the job's users.")
JOB_REMOTE = _gauge("job_remote_messages", JOB, "Messages on the remote servers, summed over the job's users.")
JOB_BYTES = _gauge("job_migrated_bytes", JOB, "Bytes migrated, summed over the job's users.")
JOB_CRITICAL = _gauge("job_critical_errors", JOB, "Critical errors, summed over the job's users.")

USER_STATE = _gauge(
    "user_state", ("job_id", "user", "state"), "1 for the user's migration state, 0 for every other state."
)
USER_INFO = _gauge(
    "user_info",
    ("job_id", "user", "remote_user", "server", "method", "delimiter"),
    "Remote login, server, method and folder delimiter of the user, value 1.",
)
USER_MIGRATED = _gauge("user_migrated_messages", USER, "Messages migrated for the user.")
USER_SKIPPED = _gauge("user_skipped_messages", USER, "Messages skipped for the user.")
USER_FAILED = _gauge("user_failed_messages", USER, "Messages that failed for good for the user.")
USER_REMOTE = _gauge("user_remote_messages", USER, "Messages on the user's remote server.")
USER_BYTES = _gauge("user_migrated_bytes", USER, "Bytes migrated for the user.")
USER_CRITICAL = _gauge(
    "user_critical_errors", USER, "Critical errors of the user; too many abort the user's migration."
)
USER_FOLDERS = _gauge("user_folders", USER, "Folders on the user's remote server.")
USER_RETRY_PENDING = _gauge(
    "user_retry_pending_messages",
    ("job_id", "user", "attempt"),
    "Messages of the user waiting for their first (attempt 1) or second (attempt 2) retry.",
)

FOLDER_MIGRATED = _gauge("folder_migrated_messages", FOLDER, "Messages migrated from the folder.")
FOLDER_SKIPPED = _gauge("folder_skipped_messages", FOLDER, "Messages skipped in the folder.")
FOLDER_FAILED = _gauge("folder_failed_messages", FOLDER, "Messages of the folder that failed for good.")
FOLDER_REMOTE = _gauge("folder_remote_messages", FOLDER, "Messages in the remote folder.")
FOLDER_RETRY_PENDING = _gauge(
    "folder_retry_pending_messages",
    ("job_id", "user", "folder", "attempt"),
    "Messages of the folder waiting for their first (attempt 1) or second (attempt 2) retry.",
)
FOLDER_BYTES = _gauge("folder_migrated_bytes", FOLDER, "Bytes migrated from the folder.")
FOLDER_NEXT_UID = _gauge("folder_next_uid", FOLDER, "Next IMAP UID the remote server reported for the folder.")

HEALTH = (
    BUILD_INFO, JOBS, JOB_UP, JOB_LAST_SUCCESS, JOB_POLL_DURATION, POLL_ERRORS, API_ERRORS, INVALID_VALUES,
    JOB_RENDER_DURATION, EXPOSITION_SERIES, EXPOSITION_OMITTED_SERIES,
    JOB_INFO, SHARD, TOTAL_SHARDS, DISCOVERY_JOBS, DISCOVERY_LAST_SUCCESS, DISCOVERY_ERRORS, DISCOVERY_CHANGES,
    CONFIG_RELOAD_SUCCESSFUL, CONFIG_RELOAD_TIMESTAMP,
)
JOB_LEVEL = (JOB_THROUGHPUT, JOB_USERS, JOB_MIGRATED, JOB_SKIPPED, JOB_FAILED, JOB_REMOTE, JOB_BYTES, JOB_CRITICAL)
USER_LEVEL = (
    USER_STATE, USER_INFO, USER_MIGRATED, USER_SKIPPED, USER_FAILED, USER_REMOTE,
    USER_BYTES, USER_CRITICAL, USER_FOLDERS, USER_RETRY_PENDING,
)
FOLDER_LEVEL = (
    FOLDER_MIGRATED, FOLDER_SKIPPED, FOLDER_FAILED, FOLDER_REMOTE, FOLDER_RETRY_PENDING,
    FOLDER_BYTES, FOLDER_NEXT_UID,
)
ALL = HEALTH + JOB_LEVEL + USER_LEVEL + FOLDER_LEVEL


def exposed_names() -> frozenset[str]:
    """Return every sample name as it appears in the text format (`_total` on counters)."""
    return frozenset(d.name + "_total" if d.type == "counter" else d.name for d in ALL)
