"""Plans of simulated migrations and the migration_status objects they produce.

A plan fixes everything about a user's migration up front: folders, message counts,
phase durations, speed and failure ratios. Every function here is a pure function of a
plan and a simulated time, so one seed and one clock always produce the same bytes.
Times are simulated seconds since the job started.

The output keeps the quirks of the example response in the OMA documentation:

- `remote_count`, `next_uid` and `status.critical_errors` are JSON strings.
- `skip_count` is a string in folders that have not started and a number in the others.
- A folder that has not started leaves out its transfer counters.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

RATE_WINDOW_SECONDS = 60.0
"""Simulated seconds of transfer that `rate` averages over."""

RATIO_SCALE = 1000
"""Failure ratios are integers per mille, so counters use exact integer arithmetic."""


@dataclass(frozen=True, slots=True)
class FolderPlan:
    """One remote folder as the remote server lists it."""

    name: str
    """Remote name, in IMAP modified UTF-7 when it contains non-ASCII text."""
    delim: str
    remote_count: int
    skip_count: int
    """Messages migrated by an earlier run, which this run does not transfer."""
    next_uid: int
    message_size: int
    """Bytes per migrated message."""
    skipped: bool = False
    """True when the request listed the folder in `skip`: nothing in it is transferred."""

    @property
    def reported_skip_count(self) -> int:
        return self.remote_count if self.skipped else self.skip_count

    @property
    def transfer_count(self) -> int:
        """Messages this run transfers from the folder."""
        return 0 if self.skipped else self.remote_count - self.skip_count


@dataclass(frozen=True, slots=True)
class UserPlan:
    """One mailbox of a job, with the phase durations and rates that drive it."""

    local: str
    remote: str
    server: str
    method: str
    folders: tuple[FolderPlan, ...]
    pending_seconds: float
    validating_seconds: float
    validated_seconds: float
    active_seconds: float
    """Time that the first transfer attempt of every message takes, retries excluded."""
    first_failure_ratio: int = 0
    """Per mille of messages whose first attempt fails and that go to `retry1count`."""
    second_failure_ratio: int = 0
    """Per mille of first retries that fail again and go to `retry2count`."""
    final_failure_ratio: int = 0
    """Per mille of second retries that fail and count in `fail_count`."""
    retry1_delay: float = 60.0
    retry2_delay: float = 120.0
    login_failures: int = 0
    """Failed logins during validation. Any number above zero ends the user in `error`."""
    stall_after: float | None = None
    """Seconds after the start of `active` at which all progress stops for good."""
    remote_key: str = "remote"
    """Key of the remote login in `config`: `remote` (as in the example) or `username`."""

    @property
    def validating_at(self) -> float:
        return self.pending_seconds

    @property
    def validated_at(self) -> float:
        return self.pending_seconds + self.validating_seconds

    @property
    def active_at(self) -> float:
        return self.validated_at + self.validated_seconds

    @property
    def transfer_count(self) -> int:
        return sum(folder.transfer_count for folder in self.folders)

    @property
    def complete_at(self) -> float:
        """Time at which the last retry has finished, or infinity for a stalled user."""
        if self.stall_after is not None:
            return math.inf
        if self.transfer_count == 0:
            return self.active_at
        return self.active_at + self.active_seconds + self.retry1_delay + self.retry2_delay


@dataclass(frozen=True, slots=True)
class JobPlan:
    """A migration job: its users, or a fixed response for the documentation example."""

    job_id: str
    date: int
    """Submission time in Unix seconds, as migration_jobs reports it."""
    start: float = 0.0
    """Simulated seconds since the simulation started at which the job starts."""
    users: tuple[UserPlan, ...] = ()
    fixed_response: dict | None = None
    audit: bool = False
    """Whether migration_status adds an `audit` key that clients must ignore."""


@dataclass(frozen=True, slots=True)
class FolderProgress:
    """Counters of one folder at one simulated time."""

    plan: FolderPlan
    started: bool
    migrate_count: int = 0
    retry1count: int = 0
    retry2count: int = 0
    fail_count: int = 0
    bytes: int = 0


@dataclass(frozen=True, slots=True)
class UserProgress:
    """State and folder counters of one user at one simulated time."""

    state: str
    critical_errors: int
    folders: tuple[FolderProgress, ...] = field(default=())

    @property
    def bytes(self) -> int:
        return sum(folder.bytes for folder in self.folders)


def user_state(plan: UserPlan, t: float) -> str:
    if t < plan.validating_at:
        return "pending"
    if t < plan.validated_at:
        return "validating"
    if plan.login_failures:
        return "error"
    if t < plan.active_at:
        return "validated"
    if t < plan.complete_at:
        return "active"
    return "complete"


def user_progress(plan: UserPlan, t: float) -> UserProgress:
    """Compute the state and every folder counter of a user at time `t`."""
    state = user_state(plan, t)
    if state == "pending":
        return UserProgress(state, 0)

    if state == "validating":
        # Validation lists the folders one by one, and a failing login counts one
        # critical error per attempt.
        done = (t - plan.validating_at) / plan.validating_seconds
        if plan.login_failures:
            return UserProgress(state, math.floor(plan.login_failures * done))
        listed = plan.folders[: math.floor(len(plan.folders) * done)]
        return UserProgress(state, 0, tuple(FolderProgress(folder, False) for folder in listed))

    if state == "error":
        return UserProgress(state, plan.login_failures)

    attempts = _attempt_positions(plan, t, complete=state == "complete")
    return UserProgress(state, 0, _folder_counters(plan, attempts))


def _attempt_positions(plan: UserPlan, t: float, complete: bool) -> tuple[int, int, int]:
    """Return how many messages of the user have had their first attempt, first retry and
    second retry by time `t`, counted in folder order."""
    total = plan.transfer_count
    if complete or total == 0:
        return total, total, total

    if plan.stall_after is not None:
        t = min(t, plan.active_at + plan.stall_after)
    messages_per_second = total / plan.active_seconds

    def position(active_time: float) -> int:
        return min(total, math.floor(messages_per_second * max(0.0, active_time)))

    active_time = t - plan.active_at
    return (
        position(active_time),
        position(active_time - plan.retry1_delay),
        position(active_time - plan.retry1_delay - plan.retry2_delay),
    )


def _folder_counters(plan: UserPlan, attempts: tuple[int, int, int]) -> tuple[FolderProgress, ...]:
    """Split the user's attempt positions over folders, which migrate one after another.

    Failures nest: the first retries that fail are a share of the first failures, and
    the final failures a share of the second retries. Each count is an integer floor of
    a non-decreasing position, so no counter ever decreases. `retry1count` and
    `retry2count` count every message that has entered that retry so far.
    """
    first_done, retry1_done, retry2_done = attempts
    folders = []
    offset = 0
    for folder in plan.folders:
        size = folder.transfer_count

        def attempted(position: int) -> int:
            return min(size, max(0, position - offset))

        first = attempted(first_done)
        retried_once = attempted(retry1_done)
        retried_twice = attempted(retry2_done)
        offset += size
        if first == 0:
            folders.append(FolderProgress(folder, False))
            continue

        retry1count = _share(first, plan.first_failure_ratio)
        retry2count = _share(_share(retried_once, plan.first_failure_ratio), plan.second_failure_ratio)
        second_retries = _share(_share(retried_twice, plan.first_failure_ratio), plan.second_failure_ratio)
        fail_count = _share(second_retries, plan.final_failure_ratio)

        first_retries = _share(retried_once, plan.first_failure_ratio)
        migrate_count = (
            (first - retry1count)
            + (first_retries - retry2count)
            + (second_retries - fail_count)
        )
        folders.append(
            FolderProgress(
                folder,
                True,
                migrate_count=migrate_count,
                retry1count=retry1count,
                retry2count=retry2count,
                fail_count=fail_count,
                bytes=migrate_count * folder.message_size,
            )
        )
    return tuple(folders)


def _share(count: int, ratio: int) -> int:
    return count * ratio // RATIO_SCALE


def render_folder(progress: FolderProgress) -> dict:
    """Build one folder object with the key order and value types of the example."""
    folder = progress.plan
    skip_count = folder.reported_skip_count
    if not progress.started:
        rendered: dict = {"next_uid": str(folder.next_uid)}
        if skip_count:
            rendered["skip_count"] = str(skip_count)
        rendered["delim"] = folder.delim
        rendered["remote_count"] = str(folder.remote_count)
        return rendered

    return {
        "next_uid": str(folder.next_uid),
        "bytes": progress.bytes,
        "migrate_count": progress.migrate_count,
        "fail_count": progress.fail_count,
        "retry1count": progress.retry1count,
        "skip_count": skip_count,
        "remote_count": str(folder.remote_count),
        "retry2count": progress.retry2count,
        "delim": folder.delim,
    }


def render_user(plan: UserPlan, t: float) -> dict:
    """Build one element of `users`, whose `status` contains the sums over the listed folders."""
    progress = user_progress(plan, t)
    folders = {item.plan.name: render_folder(item) for item in progress.folders}
    status = {
        "bytes": progress.bytes,
        "fail_count": sum(item.fail_count for item in progress.folders),
        "migrate_count": sum(item.migrate_count for item in progress.folders),
        "skip_count": sum(item.plan.reported_skip_count for item in progress.folders),
        "critical_errors": str(progress.critical_errors),
        "foldercount": len(progress.folders),
        "remote_count": str(sum(item.plan.remote_count for item in progress.folders)),
    }
    config = {"server": plan.server, "method": plan.method, plan.remote_key: plan.remote}
    return {
        "data": {"folders": folders, "status": status, "config": config},
        "local": plan.local,
        "state": progress.state,
    }


def job_bytes(users: tuple[UserPlan, ...], t: float) -> int:
    return sum(user_progress(user, t).bytes for user in users)


def format_rate(bytes_per_second: float) -> str:
    """Format a throughput like the OMA example: `613.499 KiB/s`, or `0 B/s` when idle."""
    if bytes_per_second <= 0:
        return "0 B/s"
    value = bytes_per_second
    for unit in ("B/s", "KiB/s", "MiB/s"):
        if value < 1024:
            return f"{value:.3f} {unit}"
        value /= 1024
    return f"{value:.3f} GiB/s"


def render_job_status(job: JobPlan, elapsed: float) -> dict:
    """Build the migration_status response of a job `elapsed` simulated seconds after
    the simulation started.

    `rate` is the number of bytes migrated in the last simulated minute divided by that
    minute, so it falls to `0 B/s` one minute after the last transfer.
    """
    if job.fixed_response is not None:
        return copy.deepcopy(job.fixed_response)

    t = elapsed - job.start
    moved = job_bytes(job.users, t) - job_bytes(job.users, t - RATE_WINDOW_SECONDS)
    response = {
        "rate": format_rate(moved / RATE_WINDOW_SECONDS),
        "success": True,
        "users": [render_user(user, t) for user in job.users],
    }
    if job.audit:
        response["audit"] = {"source": "opensrs-oma-simulator", "job": job.job_id}
    return response

