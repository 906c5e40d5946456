"""Pre-rendered migration_status responses for a large fleet of jobs, for benchmarks."""

from __future__ import annotations

import dataclasses
import json
import random

from exporter.simulator.model import JobPlan, render_job_status
from exporter.simulator.scenarios import EXCHANGE_LAYOUT, SLASH_LAYOUT, UserSpec, draw_user

FIRST_JOB_ID = 1_700_000_100_000
PROFILES = ("healthy", "failing", "login_failure", "stalled")
PROFILE_WEIGHTS = (80, 12, 3, 5)


def folder_names(count: int) -> tuple[str, ...]:
    """Return `count` distinct remote folder names with "/" as delimiter: the quirky
    names of the demo first, then `Archive/<year>` folders."""
    names = list(dict.fromkeys(SLASH_LAYOUT + EXCHANGE_LAYOUT))
    year = 2001
    while len(names) < count:
        names.append(f"Archive/{year}")
        year += 1
    return tuple(names[:count])


def render_fleet(jobs: int, users: int, folders: int, seed: int = 1) -> dict[str, bytes]:
    """Render one migration_status response body per job, keyed by job ID.

    Every user has exactly `folders` folders. Users are mostly healthy, with some that
    lose messages, fail to log in or stall, and each job is rendered at a different
    simulated time so that all states occur. The same arguments give the same bytes.
    """
    if jobs < 0 or users < 0 or folders < 1:
        raise ValueError(f"need jobs >= 0, users >= 0 and folders >= 1, got {jobs}, {users}, {folders}")
    rng = random.Random(seed)
    names = folder_names(folders)
    responses = {}
    for job_index in range(jobs):
        job_id = str(FIRST_JOB_ID + job_index)
        plans = tuple(_draw_fleet_user(rng, job_index, user_index, names) for user_index in range(users))
        job = JobPlan(job_id, date=int(job_id) // 1000, users=plans)
        elapsed = rng.uniform(600, 3000)
        responses[job_id] = json.dumps(render_job_status(job, elapsed)).encode()
    return responses


def _draw_fleet_user(rng: random.Random, job_index: int, user_index: int, names: tuple[str, ...]):
    local = f"user{user_index:05d}.job{job_index:03d}@example.com"
    username_config = rng.random() < 0.2
    spec = UserSpec(
        local=local,
        remote=local.split("@")[0] if username_config else local.replace("example.com", "example.net"),
        server="imap.example.net:993",
        method="imap4s",
        layout=names,
        delim="/",
        remote_key="username" if username_config else "remote",
    )
    profile = rng.choices(PROFILES, PROFILE_WEIGHTS)[0]
    plan = draw_user(rng, spec, profile)
    # Spread the start of users over 20 minutes so one job shows every state at once.
    return dataclasses.replace(plan, pending_seconds=plan.pending_seconds + rng.uniform(0, 1200))
