"""The jobs each scenario starts with, and the random plans behind simulated users.

All randomness comes from a `random.Random` passed in, so a seed fixes every plan.
"""

from __future__ import annotations

import random
from typing import NamedTuple

from exporter.simulator.model import FolderPlan, JobPlan, UserPlan

SCENARIOS = ("demo", "seed", "empty")

HEALTHY_JOB = "1700000000001"
FAILING_JOB = "1700000000002"
STALLED_JOB = "0001700000003"
"""Job ID with leading zeros, which a client must keep as a string."""
SEED_JOB = "1326229437638"

# The example response of the OMA migration_status documentation, value for value. The
# published page replaced the e-mail addresses with "[email protected]" (with a no-break
# space), and the simulator keeps that text so the response matches the page exactly.
SEED_RESPONSE = {
    "rate": "613.499 KiB/s",
    "success": True,
    "users": [
        {
            "data": {
                "folders": {
                    "INBOX": {
                        "next_uid": "5",
                        "bytes": 123133,
                        "migrate_count": 5,
                        "fail_count": 0,
                        "retry1count": 0,
                        "skip_count": 0,
                        "remote_count": "5",
                        "retry2count": 0,
                        "delim": ".",
                    },
                    "Trash": {"next_uid": "1", "skip_count": "1", "delim": ".", "remote_count": "1"},
                    "Drafts": {"next_uid": "0", "delim": ".", "remote_count": "0"},
                    "Spam": {"next_uid": "1", "skip_count": "1", "delim": ".", "remote_count": "1"},
                    "Sent Items": {"next_uid": "0", "delim": ".", "remote_count": "0"},
                },
                "status": {
                    "bytes": 123133,
                    "fail_count": 0,
                    "migrate_count": 5,
                    "skip_count": 2,
                    "critical_errors": "0",
                    "foldercount": 5,
                    "remote_count": "7",
                },
                "config": {
                    "server": "mail.bigmail.com:993",
                    "method": "imap4s",
                    "remote": "[email\u00a0protected]",
                },
            },
            "local": "[email\u00a0protected]",
            "state": "complete",
        }
    ],
}

# Folder layouts of typical remote servers. Non-ASCII names are in IMAP modified UTF-7:
# "Entw&APw-rfe" is "Entwürfe" and "&ZeVnLIqe-" is "日本語".
DOT_LAYOUT = ("INBOX", "Sent Items", "Drafts", "Trash", "Spam")
SLASH_LAYOUT = (
    "INBOX",
    "Sent Items",
    "Drafts",
    "Projects",
    "Projects/2026",
    "Projects/2026/Q1",
    'Say "hello"',
    "Entw&APw-rfe",
    "Trash",
)
EXCHANGE_LAYOUT = (
    "INBOX",
    "Sent Items",
    "Deleted Items",
    "Junk E-mail",
    "Scans\\Incoming",
    "&ZeVnLIqe-",
    "Archive",
)
POP3_LAYOUT = ("INBOX",)
LAYOUTS = ((DOT_LAYOUT, "."), (SLASH_LAYOUT, "/"), (EXCHANGE_LAYOUT, "/"))

POP3_METHODS = ("pop3", "pop3s")
METHODS = ("imap4", "imap4s") + POP3_METHODS

_DISCARD_FOLDERS = {"trash", "spam", "deleted items", "junk e-mail"}


class UserSpec(NamedTuple):
    """Fields of a user that the migration request sets. A plan draws everything else."""

    local: str
    remote: str
    server: str
    method: str
    layout: tuple[str, ...]
    delim: str
    remote_key: str = "remote"
    size_factor: float = 1.0
    """Multiplier on the drawn message sizes, for mailboxes full of attachments."""
    skip: frozenset[str] = frozenset()


def draw_folder(rng: random.Random, name: str, delim: str, size_factor: float = 1.0,
                skipped: bool = False) -> FolderPlan:
    kind = name.lower()
    skip_count = 0
    if name == "INBOX":
        remote_count = rng.randint(200, 900)
        if rng.random() < 0.25:
            skip_count = rng.randint(1, 50)
    elif kind in _DISCARD_FOLDERS:
        # Like Trash and Spam in the documentation's example: everything in them was
        # migrated before, so the folder never starts and reports only `skip_count`.
        remote_count = rng.randint(0, 40)
        if rng.random() < 0.5:
            skip_count = remote_count
    elif kind == "drafts":
        remote_count = rng.randint(0, 8)
    else:
        remote_count = rng.randint(0, 300)
        if rng.random() < 0.3:
            skip_count = rng.randint(0, remote_count // 5)
    return FolderPlan(
        name=name,
        delim=delim,
        remote_count=remote_count,
        skip_count=skip_count,
        next_uid=remote_count + rng.randint(0, 40),
        message_size=int(rng.randint(4_000, 90_000) * size_factor),
        skipped=skipped,
    )


def draw_user(rng: random.Random, spec: UserSpec, profile: str) -> UserPlan:
    """Draw the plan of one user.

    Profiles:

    - `healthy` completes within about 31 simulated minutes with no failed message.
    - `failing` loses messages steadily and completes within about 40 minutes.
    - `login_failure` ends in `error` during validation.
    - `stalled` stops moving for good while `active`.
    - `added` is a quicker user for jobs created by migration_add.
    """
    folders = tuple(
        draw_folder(rng, name, spec.delim, spec.size_factor, skipped=name in spec.skip)
        for name in spec.layout
    )
    common = {
        "local": spec.local,
        "remote": spec.remote,
        "server": spec.server,
        "method": spec.method,
        "folders": folders,
        "remote_key": spec.remote_key,
    }
    if profile == "healthy":
        return UserPlan(
            **common,
            pending_seconds=rng.uniform(0, 90),
            validating_seconds=rng.uniform(30, 90),
            validated_seconds=rng.uniform(20, 90),
            active_seconds=rng.uniform(900, 1400),
            first_failure_ratio=rng.randint(0, 15),
            second_failure_ratio=rng.randint(0, 300),
        )
    if profile == "failing":
        return UserPlan(
            **common,
            pending_seconds=rng.uniform(0, 60),
            validating_seconds=rng.uniform(30, 90),
            validated_seconds=rng.uniform(20, 60),
            active_seconds=rng.uniform(1500, 2000),
            first_failure_ratio=rng.randint(60, 120),
            second_failure_ratio=rng.randint(400, 600),
            final_failure_ratio=rng.randint(500, 700),
        )
    if profile == "login_failure":
        return UserPlan(
            **common,
            pending_seconds=rng.uniform(0, 60),
            validating_seconds=rng.uniform(120, 180),
            validated_seconds=0.0,
            active_seconds=1.0,
            login_failures=3,
        )
    if profile == "stalled":
        return UserPlan(
            **common,
            pending_seconds=rng.uniform(0, 30),
            validating_seconds=rng.uniform(30, 60),
            validated_seconds=rng.uniform(10, 30),
            active_seconds=rng.uniform(1800, 2400),
            first_failure_ratio=rng.randint(0, 30),
            second_failure_ratio=rng.randint(0, 300),
            stall_after=rng.uniform(240, 600),
        )
    if profile == "added":
        return UserPlan(
            **common,
            pending_seconds=rng.uniform(5, 30),
            validating_seconds=rng.uniform(20, 60),
            validated_seconds=rng.uniform(10, 40),
            active_seconds=rng.uniform(300, 900),
            first_failure_ratio=rng.randint(0, 20),
            second_failure_ratio=rng.randint(0, 300),
            final_failure_ratio=rng.randint(0, 300),
        )
    raise ValueError(f"unknown user profile {profile!r}")


def build_jobs(scenario: str, seed: int, now: float) -> list[JobPlan]:
    """Build the jobs a scenario starts with; `now` (Unix seconds) dates the demo jobs."""
    if scenario == "empty":
        return []
    if scenario == "seed":
        return [JobPlan(SEED_JOB, date=int(SEED_JOB) // 1000, fixed_response=SEED_RESPONSE)]
    if scenario == "demo":
        return _demo_jobs(random.Random(seed), int(now))
    raise ValueError(f"unknown scenario {scenario!r}; expected one of {', '.join(SCENARIOS)}")


def _demo_jobs(rng: random.Random, now: int) -> list[JobPlan]:
    healthy = (
        UserSpec("alice@example.com", "alice@example.net", "imap.example.net:993", "imap4s",
                 SLASH_LAYOUT, "/"),
        UserSpec("bob@example.com", "bob@example.org", "mail.example.org:993", "imap4s",
                 DOT_LAYOUT, "."),
        UserSpec("carol@example.com", "carol", "exchange.example.net:993", "imap4s",
                 EXCHANGE_LAYOUT, "/", remote_key="username"),
        UserSpec("dave@example.com", "dave@example.net", "pop.example.net:995", "pop3s",
                 POP3_LAYOUT, "."),
        UserSpec("erin@example.com", "erin@example.net", "imap.example.net:143", "imap4",
                 SLASH_LAYOUT, "/", size_factor=20.0),
        UserSpec("frank@example.com", "frank", "mail.example.org:993", "imap4s",
                 DOT_LAYOUT, ".", remote_key="username"),
    )
    failing = (
        UserSpec("heidi@example.com", "heidi@example.org", "mail.example.org:993", "imap4s",
                 DOT_LAYOUT, "."),
        UserSpec("ivan@example.com", "ivan@example.net", "imap.example.net:993", "imap4s",
                 SLASH_LAYOUT, "/"),
        UserSpec("judy@example.com", "judy", "exchange.example.net:993", "imap4s",
                 EXCHANGE_LAYOUT, "/", remote_key="username"),
    )
    login_failure = UserSpec("grace@example.com", "grace@example.org", "mail.example.org:993",
                             "imap4s", DOT_LAYOUT, ".")
    stalled = (
        UserSpec("ken@example.com", "ken@example.net", "imap.example.net:993", "imap4s",
                 SLASH_LAYOUT, "/"),
        UserSpec("laura@example.com", "laura@example.org", "mail.example.org:993", "imap4s",
                 DOT_LAYOUT, "."),
        UserSpec("mallory@example.com", "mallory", "exchange.example.net:993", "imap4s",
                 EXCHANGE_LAYOUT, "/", remote_key="username"),
    )

    healthy_users = tuple(draw_user(rng, spec, "healthy") for spec in healthy)
    failing_users = (draw_user(rng, login_failure, "login_failure"),) + tuple(
        draw_user(rng, spec, "failing") for spec in failing
    )
    stalled_users = tuple(draw_user(rng, spec, "stalled") for spec in stalled)
    return [
        JobPlan(HEALTHY_JOB, date=now - 6 * 3600, users=healthy_users),
        JobPlan(FAILING_JOB, date=now - 3 * 3600, users=failing_users, audit=True),
        JobPlan(STALLED_JOB, date=now - 20 * 3600, users=stalled_users),
    ]
