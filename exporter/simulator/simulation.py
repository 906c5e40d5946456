"""The simulated OMA account: its jobs and the simulated clock they progress on."""

from __future__ import annotations

import math
import random
import re
import threading
import time
from collections.abc import Callable

from exporter.simulator.model import JobPlan, render_job_status, user_progress
from exporter.simulator.scenarios import (
    LAYOUTS,
    METHODS,
    POP3_LAYOUT,
    POP3_METHODS,
    SCENARIOS,
    UserSpec,
    build_jobs,
    draw_user,
)

MAX_JOB_ID_LENGTH = 64
_SERVER_PATTERN = re.compile(r"^[A-Za-z0-9.-]+:(?P<port>[0-9]{1,5})$")


class RequestError(Exception):
    """A request the OMA would reject, with the OMA `error_number` it gets."""

    def __init__(self, error_number: int, message: str):
        super().__init__(message)
        self.error_number = error_number


class UnknownJobError(RequestError, LookupError):
    def __init__(self, job_id: str):
        super().__init__(2, f"migration job {job_id!r} not found")


class Simulation:
    """The jobs of one simulated OMA account, progressing on a simulated clock.

    Simulated time is `(clock() - start) * speed`, where `start` is the clock reading at
    construction. Responses depend only on the seed, the jobs added and simulated time,
    so tests drive `clock` by hand. `wall_clock` (Unix seconds) only dates jobs for
    migration_jobs and names the jobs that migration_add creates without an ID.
    Methods are safe to call from several threads.
    """

    def __init__(
        self,
        scenario: str = "demo",
        seed: int = 1,
        speed: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        *,
        wall_clock: Callable[[], float] = time.time,
    ):
        if scenario not in SCENARIOS:
            raise ValueError(f"unknown scenario {scenario!r}; expected one of {', '.join(SCENARIOS)}")
        if not (isinstance(speed, (int, float)) and math.isfinite(speed) and speed > 0):
            raise ValueError(f"speed must be a positive number of simulated seconds per real second, got {speed!r}")
        self.scenario = scenario
        self.seed = seed
        self.speed = float(speed)
        self._clock = clock
        self._wall_clock = wall_clock
        self._start = clock()
        self._lock = threading.Lock()
        self._jobs: dict[str, JobPlan] = {job.job_id: job for job in build_jobs(scenario, seed, wall_clock())}

    def elapsed(self) -> float:
        """Return the simulated seconds since the simulation started."""
        return (self._clock() - self._start) * self.speed

    def status(self, job_id: str) -> dict:
        """Return the full migration_status response object of a job.

        Raises UnknownJobError for a job ID that does not exist.
        """
        job = self._job(job_id)
        return render_job_status(job, self.elapsed())

    def jobs(self) -> list[dict]:
        with self._lock:
            return [{"date": job.date, "job": job.job_id} for job in self._jobs.values()]

    def job_ids(self) -> list[str]:
        with self._lock:
            return list(self._jobs)

    def add_job(self, users: list[dict], job: str | None = None) -> str:
        """Create a job as migration_add does and return its ID.

        The job starts at the current simulated time. A user whose server host ends in
        `.invalid` fails to log in and ends in `error`. Passwords are checked for
        presence and then discarded. Raises RequestError with error 5 for a missing
        field or wrong JSON type, 6 for an invalid value, 7 for a user listed twice and
        19 for a job ID that exists.
        """
        specs = [_user_spec(index, user) for index, user in enumerate(_require_list(users))]
        locals_seen = set()
        for spec in specs:
            if spec.local in locals_seen:
                raise RequestError(7, f"user {spec.local!r} is listed twice in users")
            locals_seen.add(spec.local)

        requested_id = None if job is None else _job_id(job)
        with self._lock:
            if requested_id is not None and requested_id in self._jobs:
                raise RequestError(19, f"a migration job with ID {requested_id!r} already exists")
            job_id = requested_id or self._new_job_id()
            # String seeds of random.Random are hashed with SHA-512, so the plans of a
            # job depend only on the simulation seed and the job ID.
            rng = random.Random(f"{self.seed}:{job_id}")
            plans = tuple(draw_user(rng, spec, _profile(spec)) for spec in specs)
            self._jobs[job_id] = JobPlan(
                job_id, date=int(self._wall_clock()), start=self.elapsed(), users=plans
            )
        return job_id

    def has_user(self, job_id: str, user: str) -> bool:
        """Report whether a job migrates the local address `user`; the seed job has one
        user, which any address matches."""
        job = self._job(job_id)
        if job.fixed_response is not None:
            return True
        return any(plan.local == user for plan in job.users)

    def trace(self, job_id: str, user: str) -> str:
        """Return a short migration log of one user, as migration_trace links to."""
        job = self._job(job_id)
        elapsed = self.elapsed()
        lines = [f"job {job_id} user {user}: simulated log at {elapsed:.0f} simulated seconds"]
        for plan in job.users:
            if plan.local != user:
                continue
            progress = user_progress(plan, elapsed - job.start)
            lines.append(f"state {progress.state}, critical errors {progress.critical_errors}")
            for folder in progress.folders:
                lines.append(
                    f"folder {folder.plan.name!r}: migrated {folder.migrate_count} of "
                    f"{folder.plan.remote_count}, failed {folder.fail_count}"
                )
        return "\n".join(lines) + "\n"

    def _job(self, job_id: str) -> JobPlan:
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None:
            raise UnknownJobError(job_id)
        return job

    def _new_job_id(self) -> str:
        """Return an unused ID that looks like the OMA's: epoch milliseconds, 13 digits."""
        candidate = int(self._wall_clock() * 1000)
        while str(candidate) in self._jobs:
            candidate += 1
        return str(candidate)


def _require_list(users) -> list:
    if not isinstance(users, list) or not users:
        raise RequestError(5, "users must be a non-empty list of user objects")
    return users


def _job_id(job) -> str:
    if isinstance(job, bool) or not isinstance(job, (str, int)):
        raise RequestError(5, f"job must be a string, got {type(job).__name__}")
    job_id = str(job)
    if not job_id or len(job_id) > MAX_JOB_ID_LENGTH:
        raise RequestError(6, f"job must be 1 to {MAX_JOB_ID_LENGTH} characters long")
    return job_id


def _user_spec(index: int, user) -> UserSpec:
    """Validate one element of migration_add's `users` and keep what a plan needs."""
    where = f"users[{index}]"
    if not isinstance(user, dict):
        raise RequestError(5, f"{where} must be an object")
    for key in ("local", "remote", "password", "server", "method"):
        if key not in user:
            raise RequestError(5, f"{where} is missing {key}")
        if not isinstance(user[key], str):
            raise RequestError(5, f"{where}.{key} must be a string")
    for key in ("local", "remote", "password"):
        if not user[key]:
            raise RequestError(6, f"{where}.{key} must not be empty")
    server = _SERVER_PATTERN.match(user["server"])
    if server is None or not 0 < int(server.group("port")) < 65536:
        raise RequestError(6, f"{where}.server must be host:port, got {user['server']!r}")
    if user["method"] not in METHODS:
        raise RequestError(6, f"{where}.method must be one of {', '.join(METHODS)}, got {user['method']!r}")

    skip = user.get("skip", [])
    if not isinstance(skip, list) or not all(isinstance(name, str) for name in skip):
        raise RequestError(5, f"{where}.skip must be a list of folder names")
    translate = user.get("translate", {})
    if not isinstance(translate, dict) or not all(isinstance(value, str) for value in translate.values()):
        raise RequestError(5, f"{where}.translate must be an object of folder names")

    if user["method"] in POP3_METHODS:
        layout, delim = POP3_LAYOUT, "."
    else:
        # The layout depends on the address only, so one mailbox looks the same in
        # every job that migrates it.
        layout, delim = LAYOUTS[sum(user["local"].encode()) % len(LAYOUTS)]
    return UserSpec(
        local=user["local"],
        remote=user["remote"],
        server=user["server"],
        method=user["method"],
        layout=layout,
        delim=delim,
        skip=frozenset(skip),
    )


def _profile(spec: UserSpec) -> str:
    host = spec.server.rsplit(":", 1)[0]
    return "login_failure" if host.endswith(".invalid") else "added"
