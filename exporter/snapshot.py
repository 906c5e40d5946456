"""Immutable records of one successful migration_status poll.

The parser builds them, the poller swaps them in whole, and the collector reads
them. Nothing changes a record after it is built, so a scrape never gets half a
poll. A counter of `None` means the API sent a value that is not a finite number:
that series gets no sample.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

STATES = ("pending", "validating", "validated", "active", "complete", "error")
"""User states that the OMA documentation lists, in the order they happen."""

UNKNOWN_STATE = "unknown"

Count = float | None


class FolderStatus(NamedTuple):
    """Counters of one remote folder, decoded name included.

    A named tuple rather than a frozen dataclass because a fleet poll builds
    hundreds of thousands of them, and a tuple is built about three times faster.
    """

    name: str
    migrated_messages: Count = 0.0
    skipped_messages: Count = 0.0
    failed_messages: Count = 0.0
    remote_messages: Count = 0.0
    retry1_messages: Count = 0.0
    retry2_messages: Count = 0.0
    migrated_bytes: Count = 0.0
    next_uid: Count = 0.0
    delimiter: str = ""


@dataclass(frozen=True, slots=True)
class UserStatus:
    """One mailbox of a job: its state, `config`, `status` totals and folders."""

    user: str
    state: str
    remote_user: str = ""
    server: str = ""
    method: str = ""
    delimiter: str = ""
    migrated_messages: Count = 0.0
    skipped_messages: Count = 0.0
    failed_messages: Count = 0.0
    remote_messages: Count = 0.0
    migrated_bytes: Count = 0.0
    critical_errors: Count = 0.0
    folder_count: Count = 0.0
    retry1_messages: Count = 0.0
    retry2_messages: Count = 0.0
    folders: tuple[FolderStatus, ...] = ()


@dataclass(frozen=True, slots=True)
class InvalidValue:
    """A value present in a response that could not be read, for counting and logs."""

    field: str
    """Dotted path of the field, for example `users.status.fail_count` or `rate`."""
    value: str
    """`repr` of the raw value, cut to 80 characters."""
    user: str = ""
    folder: str = ""


@dataclass(frozen=True, slots=True)
class JobStatus:
    """The contents of one successful migration_status response for a job."""

    job_id: str
    throughput_bytes_per_second: Count
    users: tuple[UserStatus, ...]
    invalid_values: tuple[InvalidValue, ...] = field(default=())
