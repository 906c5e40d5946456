"""Background polling of migration_status, published as immutable views.

A scheduler thread hands due jobs to a fixed pool of worker threads. Each finished
poll replaces that job's record and publishes a new `View` in one assignment, so a
scrape that reads `Poller.view()` once gets whole polls only and never waits for
the API.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, Mapping, Protocol

from exporter import errors
from exporter.errors import PollError, ResponseError
from exporter.parse import parse_status
from exporter.snapshot import JobStatus

FINAL_STATES = frozenset({"complete", "error"})
DEFAULT_ACCOUNT = "default"

log = logging.getLogger(__name__)

_EMPTY: Mapping[str, int] = MappingProxyType({})


class StatusClient(Protocol):
    def migration_status(self, job_id: str, deadline: float) -> dict[str, Any]: ...

    def api_error_counts(self) -> dict[str, int]: ...


@dataclass(frozen=True, slots=True)
class JobView:
    """The exporter's record of one job after its most recent poll."""

    job_id: str
    account: str = DEFAULT_ACCOUNT
    """Name of the OMA account the job belongs to."""
    status: JobStatus | None = None
    """The last successful poll's data; kept after failures until it is stale."""
    polled: bool = False
    up: bool = False
    stale: bool = False
    last_success: float | None = None
    """Unix time of the last successful poll."""
    poll_duration: float | None = None
    poll_errors: Mapping[str, int] = field(default_factory=lambda: _EMPTY)
    invalid_values: Mapping[str, int] = field(default_factory=lambda: _EMPTY)
    last_error: tuple[str, str] | None = None
    """Reason and message of the most recent failure, cleared by a success."""
    last_success_monotonic: float | None = None
    finished_since: float | None = None
    """Monotonic time since which every user has been `complete` or `error`."""
    rendered: Any = None
    """The result of the `prepare` callable for `status`, such as its rendered sample lines."""


@dataclass(frozen=True, slots=True)
class View:
    """Every job's record at one moment; `version` grows with each change."""

    version: int
    jobs: tuple[JobView, ...]
    api_errors: Mapping[str, int]
    ready: bool


class Poller:
    """Polls each job every `interval` seconds with `concurrency` workers.

    `clock` (monotonic) and `wall_clock` (Unix time) are arguments so tests can
    control time; `random_fraction` drives the jitter.
    """

    def __init__(
        self,
        client: StatusClient | Mapping[str, StatusClient],
        job_ids: Iterable[str] | Mapping[str, str],
        *,
        interval: float,
        deadline: float,
        stale_after: float,
        finished_interval: float | None = None,
        finished_retention: float = float("inf"),
        concurrency: int = 4,
        jitter: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        random_fraction: Callable[[], float] = random.random,
        prepare: Callable[[JobStatus], Any] | None = None,
        expect_jobs: bool = False,
    ):
        self._clients: dict[str, StatusClient] = (
            dict(client) if isinstance(client, Mapping) else {DEFAULT_ACCOUNT: client}
        )
        self._replaced_api_errors: Counter[str] = Counter()
        self._prepare = prepare
        self._interval = interval
        self._finished_interval = interval if finished_interval is None else finished_interval
        self._finished_retention = finished_retention
        self._retired: set[str] = set()
        self._deadline = deadline
        self._stale_after = stale_after
        self._concurrency = concurrency
        self._jitter = jitter
        self._clock = clock
        self._wall_clock = wall_clock
        self._random_fraction = random_fraction

        self._lock = threading.Condition()
        self._jobs: dict[str, JobView] = {}
        self._due: dict[str, float] = {}
        self._in_flight: set[str] = set()
        self._queue: list[str] = []
        self._first_cycle: set[str] = set()
        self._ready = False
        # With discovery, the job list is not complete until jobs_known() is called.
        self._jobs_known = not expect_jobs
        self._stopping = False
        self._version = 0
        self._threads: list[threading.Thread] = []
        self._listeners: list[Callable[[View], None]] = []
        self._view = View(0, (), _EMPTY, False)
        self.set_jobs(job_ids)

    def view(self) -> View:
        return self._view

    def add_listener(self, listener: Callable[[View], None]) -> None:
        """Call `listener(view)` after each change, from the thread that made it."""
        self._listeners.append(listener)

    def set_clients(self, clients: Mapping[str, StatusClient]) -> None:
        """Use these clients, by account name, from the next poll on."""
        with self._lock:
            for name, old in self._clients.items():
                if clients.get(name) is not old:
                    # Keep the replaced client's counts so the counter never goes down.
                    self._replaced_api_errors.update(old.api_error_counts())
            self._clients = dict(clients)

    def set_jobs(self, job_ids: Iterable[str] | Mapping[str, str]) -> None:
        """Poll exactly these jobs (IDs, or IDs mapped to account names) from now on.

        Removed jobs leave the view at once; a job that moves to another account
        starts again with no data.
        """
        accounts = dict(job_ids) if isinstance(job_ids, Mapping) else dict.fromkeys(job_ids, DEFAULT_ACCOUNT)
        with self._lock:
            self._retired &= set(accounts)
            wanted = {job_id: account for job_id, account in accounts.items() if job_id not in self._retired}
            now = self._clock()
            for job_id, job in list(self._jobs.items()):
                if wanted.get(job_id) != job.account:
                    del self._jobs[job_id]
                    self._due.pop(job_id, None)
                    self._first_cycle.discard(job_id)
            for job_id, account in wanted.items():
                if job_id not in self._jobs:
                    self._jobs[job_id] = JobView(job_id, account=account)
                    self._due[job_id] = now
                    if not self._ready:
                        self._first_cycle.add(job_id)
            if not self._first_cycle and self._jobs_known:
                self._ready = True
            self._publish()
            self._lock.notify_all()

    def jobs_known(self) -> None:
        """Declare the job list complete, so readiness waits only for the first poll cycle."""
        with self._lock:
            self._jobs_known = True
            if not self._first_cycle and not self._ready:
                self._ready = True
                log.info("first poll cycle finished", extra={"jobs": len(self._jobs)})
            self._publish()

    def start(self) -> Poller:
        threads = [threading.Thread(target=self._schedule, name="poll-scheduler", daemon=True)]
        threads += [
            threading.Thread(target=self._work, name=f"poll-worker-{n}", daemon=True) for n in range(self._concurrency)
        ]
        self._threads = threads
        for thread in threads:
            thread.start()
        return self

    def stop(self, timeout: float = 2.0) -> None:
        """Stop scheduling and wait up to `timeout` seconds for the threads.

        A worker blocked in an API call ends at its poll deadline at the latest.
        Workers are daemon threads, so they never keep the process alive.
        """
        with self._lock:
            self._stopping = True
            self._lock.notify_all()
        end = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, end - time.monotonic()))

    def poll_all(self) -> None:
        """Poll every job once in the calling thread; for tests and `--config.check`-like tools."""
        for job_id in list(self._jobs):
            self._poll(job_id)

    def _schedule(self) -> None:
        with self._lock:
            while not self._stopping:
                now = self._clock()
                for job_id, due in self._due.items():
                    if due <= now and job_id not in self._in_flight:
                        self._in_flight.add(job_id)
                        self._queue.append(job_id)
                        interval = self._interval_of(self._jobs[job_id])
                        self._due[job_id] = now + interval * (1 + self._jitter * (2 * self._random_fraction() - 1))
                self._expire(now)
                self._lock.notify_all()
                next_due = min(self._due.values(), default=now + self._interval)
                self._lock.wait(timeout=max(0.05, min(next_due - now, 1.0)))

    def _interval_of(self, job: JobView) -> float:
        return self._finished_interval if job.finished_since is not None else self._interval

    def _work(self) -> None:
        while True:
            with self._lock:
                while not self._queue and not self._stopping:
                    self._lock.wait()
                if self._stopping:
                    return
                job_id = self._queue.pop(0)
            try:
                self._poll(job_id)
            finally:
                with self._lock:
                    self._in_flight.discard(job_id)

    def _poll(self, job_id: str) -> None:
        started = self._clock()
        status: JobStatus | None = None
        rendered: Any = None
        failure: tuple[str, str] | None = None
        with self._lock:
            job = self._jobs.get(job_id)
            client = self._clients.get(job.account) if job is not None else None
        if client is None:
            return  # removed from the settings before its turn came
        try:
            document = client.migration_status(job_id, started + self._deadline)
            status = parse_status(job_id, document)
            del document  # the raw response can be large; free it before rendering
            if self._prepare is not None:
                rendered = self._prepare(status)
        except PollError as error:
            failure = (error.reason, str(error))
        except ResponseError as error:
            failure = (errors.INVALID_RESPONSE, f"migration_status: {error}")
        except Exception as error:  # noqa: BLE001
            # The boundary of one poll: an unexpected bug in parsing must cost this
            # job one poll, not the worker thread, so it is logged with its traceback.
            log.exception("poll failed unexpectedly", extra={"job_id": job_id})
            failure = (errors.INVALID_RESPONSE, f"unexpected {type(error).__name__}")
        duration = self._clock() - started
        self._record(job_id, status, rendered, failure, duration)

    def _record(
        self, job_id: str, status: JobStatus | None, rendered: Any, failure: tuple[str, str] | None, duration: float
    ) -> None:
        with self._lock:
            previous = self._jobs.get(job_id)
            if previous is None:
                return  # removed from the settings while it was being polled
            if status is not None:
                current = self._record_success(previous, status, duration)
                current = replace(current, rendered=rendered)
            else:
                assert failure is not None
                current = self._record_failure(previous, failure, duration)
            self._jobs[job_id] = current
            self._first_cycle.discard(job_id)
            if not self._first_cycle and not self._ready and self._jobs_known:
                self._ready = True
                log.info("first poll cycle finished", extra={"jobs": len(self._jobs)})
            self._publish()

    def _record_success(self, previous: JobView, status: JobStatus, duration: float) -> JobView:
        if previous.last_error is not None:
            log.info("poll succeeded again", extra={"job_id": status.job_id, "previous_reason": previous.last_error[0]})
        invalid = previous.invalid_values
        if status.invalid_values:
            counts = Counter(invalid)
            counts.update(value.field for value in status.invalid_values)
            invalid = MappingProxyType(dict(counts))
            first = status.invalid_values[0]
            log.debug(
                "response contains values that are not numbers",
                extra={"job_id": status.job_id, "count": len(status.invalid_values), "field": first.field,
                       "user": first.user, "folder": first.folder, "value": first.value},
            )
            if set(invalid) != set(previous.invalid_values) or previous.status is None:
                log.warning(
                    "response contains values that are not numbers; their series have no sample",
                    extra={"job_id": status.job_id, "fields": ",".join(sorted({v.field for v in status.invalid_values}))},
                )
        finished = bool(status.users) and all(user.state in FINAL_STATES for user in status.users)
        finished_since = None
        if finished:
            finished_since = previous.finished_since if previous.finished_since is not None else self._clock()
            if previous.finished_since is None:
                log.info(
                    "every user of the job is complete or error; polling it less often",
                    extra={"job_id": status.job_id, "interval_seconds": self._finished_interval},
                )
        return replace(
            previous,
            status=status,
            finished_since=finished_since,
            polled=True,
            up=True,
            stale=False,
            last_success=self._wall_clock(),
            last_success_monotonic=self._clock(),
            poll_duration=duration,
            invalid_values=invalid,
            last_error=None,
        )

    def _record_failure(self, previous: JobView, failure: tuple[str, str], duration: float) -> JobView:
        reason, message = failure
        if previous.last_error != failure:
            log.warning("poll failed", extra={"job_id": previous.job_id, "reason": reason, "error": message})
        counts = Counter(previous.poll_errors)
        counts[reason] += 1
        return replace(
            previous,
            polled=True,
            up=False,
            poll_duration=duration,
            poll_errors=MappingProxyType(dict(counts)),
            last_error=failure,
        )

    def _expire(self, now: float) -> None:
        """Mark jobs stale and retire finished jobs whose retention period has passed."""
        changed = False
        for job_id, job in list(self._jobs.items()):
            if job.finished_since is not None and now - job.finished_since > self._finished_retention:
                log.info(
                    "finished job retained long enough, no longer polled or exported",
                    extra={"job_id": job_id, "retention_seconds": self._finished_retention},
                )
                del self._jobs[job_id]
                self._due.pop(job_id, None)
                self._retired.add(job_id)
                changed = True
                continue
            if job.stale or job.status is None or job.last_success_monotonic is None:
                continue
            # A finished job is polled less often, so its data may be older by that much.
            limit = self._stale_after + (self._finished_interval if job.finished_since is not None else 0.0)
            if now - job.last_success_monotonic > limit:
                log.warning(
                    "job data is stale, removing its user and folder series",
                    extra={"job_id": job_id, "stale_after_seconds": self._stale_after},
                )
                self._jobs[job_id] = replace(job, stale=True)
                changed = True
        if changed:
            self._publish()

    def _publish(self) -> None:
        self._version += 1
        jobs = tuple(self._jobs[job_id] for job_id in sorted(self._jobs))
        counts: Counter[str] = Counter(self._replaced_api_errors)
        for client in self._clients.values():
            counts.update(client.api_error_counts())
        api_errors = MappingProxyType(dict(counts))
        self._view = View(self._version, jobs, api_errors, self._ready)
        for listener in self._listeners:
            listener(self._view)
