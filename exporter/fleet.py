"""The job list of this replica: configured IDs, discovered jobs and the shard split.

`JobDirectory` owns the accounts and their clients. It merges each account's
configured job IDs with the jobs that `migration_jobs` lists (when discovery is on),
keeps only the jobs whose shard is this replica's, and hands the result to the
poller. A failing discovery call keeps the last known list.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, Protocol

from exporter import errors
from exporter.accounts import Account, shard_of
from exporter.errors import PollError
from exporter.settings import job_id_problem

log = logging.getLogger(__name__)

_EMPTY: Mapping[str, int] = MappingProxyType({})

# How long one migration_jobs call may take, retries included.
DISCOVERY_DEADLINE = 60.0


class JobsClient(Protocol):
    def migration_jobs(self, deadline: float) -> dict[str, Any]: ...


@dataclass(frozen=True, slots=True)
class DiscoveryStats:
    """Outcome of one account's discovery calls so far."""

    jobs: int = 0
    last_success: float | None = None
    errors: Mapping[str, int] = field(default_factory=lambda: _EMPTY)
    changes: Mapping[str, int] = field(default_factory=lambda: _EMPTY)
    """`added` and `expired` job counts."""


@dataclass(frozen=True, slots=True)
class FleetState:
    """Account, shard, discovery and reload facts for the health metrics."""

    accounts: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    """Account name to OMA base URL."""
    shard: int = 0
    total_shards: int = 1
    discovery: Mapping[str, DiscoveryStats] = field(default_factory=lambda: MappingProxyType({}))
    reload_successful: bool = True
    reload_success_timestamp: float | None = None


class JobDirectory:
    """Decides the poller's job list and runs discovery in a background thread.

    `apply(job_accounts)` is called with the job-to-account mapping after each
    change; `clock` is monotonic and `wall_clock` Unix time, both replaceable in tests.
    """

    def __init__(
        self,
        accounts: list[Account],
        clients: Mapping[str, JobsClient],
        apply: Callable[[dict[str, str]], None],
        *,
        shard: int = 0,
        total_shards: int = 1,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ):
        self._apply = apply
        self._shard = shard
        self._total_shards = total_shards
        self._clock = clock
        self._wall_clock = wall_clock
        self._lock = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._discovered: dict[str, dict[str, float]] = {}
        self._stats: dict[str, DiscoveryStats] = {}
        self._due: dict[str, float] = {}
        self._accounts: list[Account] = []
        self._clients: Mapping[str, JobsClient] = {}
        self._reload_successful = True
        self._reload_success_timestamp: float | None = None
        self._on_first_pass: Callable[[], None] = lambda: None
        self._first_seen: dict[str, dict[str, float]] = {}
        self._problems_logged: dict[str, set[str]] = {}
        self._state = FleetState()
        self.set_accounts(accounts, clients)

    def state(self) -> FleetState:
        return self._state

    def set_accounts(self, accounts: list[Account], clients: Mapping[str, JobsClient]) -> None:
        """Switch to a new account list, as after a reload, and apply the job list."""
        with self._lock:
            names = {account.name for account in accounts}
            self._accounts = list(accounts)
            self._clients = dict(clients)
            for stale in set(self._discovered) - names:
                del self._discovered[stale]
            for stale in set(self._stats) - names:
                del self._stats[stale]
            now = self._clock()
            self._due = {a.name: now for a in accounts if a.discovery.enabled}
            self._reload_success_timestamp = self._wall_clock()
            self._reload_successful = True
            self._publish()
            self._lock.notify_all()

    def reload_failed(self) -> None:
        with self._lock:
            self._reload_successful = False
            self._publish()

    def start(self, on_first_pass: Callable[[], None] = lambda: None) -> JobDirectory:
        """Start discovering in the background; `on_first_pass` runs once every account was tried."""
        self._on_first_pass = on_first_pass
        self._thread = threading.Thread(target=self._run, name="discovery", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 2.0) -> None:
        with self._lock:
            self._stopping = True
            self._lock.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)

    def discover_all(self) -> None:
        """Run discovery once for every account that has it on, in the calling thread."""
        for account in list(self._accounts):
            if account.discovery.enabled:
                self._discover(account)

    def job_accounts(self) -> dict[str, str]:
        """Return this shard's jobs mapped to their account names, configured IDs first."""
        result: dict[str, str] = {}
        for account in self._accounts:
            for job_id in account.jobs:
                result.setdefault(job_id, account.name)
        for account in self._accounts:
            for job_id in self._discovered.get(account.name, {}):
                owner = result.setdefault(job_id, account.name)
                if owner != account.name:
                    log.debug("discovered job belongs to another account already",
                              extra={"job_id": job_id, "account": account.name, "owner": owner})
        return {job_id: name for job_id, name in result.items() if shard_of(job_id, self._total_shards) == self._shard}

    def _run(self) -> None:
        first_pass = True
        with self._lock:
            while not self._stopping:
                now = self._clock()
                due = [a for a in self._accounts if a.discovery.enabled and self._due.get(a.name, now) <= now]
                for account in due:
                    self._due[account.name] = now + account.discovery.interval
                if due:
                    self._lock.release()
                    try:
                        for account in due:
                            self._discover(account)
                    finally:
                        self._lock.acquire()
                    continue
                if first_pass:
                    first_pass = False
                    self._on_first_pass()
                next_due = min(self._due.values(), default=now + 60.0)
                self._lock.wait(timeout=max(0.05, min(next_due - now, 5.0)))

    def _discover(self, account: Account) -> None:
        client = self._clients.get(account.name)
        if client is None:
            return
        now = self._wall_clock()
        try:
            document = client.migration_jobs(self._clock() + DISCOVERY_DEADLINE)
            listed, problems = _parse_jobs(document, now)
        except PollError as error:
            self._record_failure(account, error.reason, str(error))
            return

        self._log_new_problems(account, problems)
        dated = self._date_jobs(account, listed, now)
        oldest = now - account.discovery.max_age
        current = {job_id: date for job_id, date in dated.items() if date >= oldest}
        self._record_discovery(account, current)

    def _date_jobs(self, account: Account, listed: dict[str, float | None], now: float) -> dict[str, float]:
        """Give each listed job a submission time, using the first listing for undated jobs.

        An undated job is polled at once and still leaves the window like any other.
        """
        first_seen = self._first_seen.setdefault(account.name, {})
        dated = {job_id: date if date is not None else first_seen.setdefault(job_id, now)
                 for job_id, date in listed.items()}
        for job_id in set(first_seen) - set(listed):
            del first_seen[job_id]
        return dated

    def _record_discovery(self, account: Account, current: dict[str, float]) -> None:
        with self._lock:
            previous = self._discovered.get(account.name)
            stats = self._stats.get(account.name, DiscoveryStats())
            changes = Counter(stats.changes)
            if previous is not None:
                added = sorted(set(current) - set(previous))
                expired = sorted(set(previous) - set(current))
                for job_id in added:
                    log.info("discovered a new job", extra={"job_id": job_id, "account": account.name})
                for job_id in expired:
                    log.info("job left the discovery window", extra={"job_id": job_id, "account": account.name})
                changes["added"] += len(added)
                changes["expired"] += len(expired)
            else:
                log.info("discovered jobs", extra={"account": account.name, "jobs": len(current)})
                changes["added"] += len(current)
            self._discovered[account.name] = current
            self._stats[account.name] = replace(
                stats, jobs=len(current), last_success=self._wall_clock(), changes=MappingProxyType(dict(changes))
            )
            self._publish()

    def _log_new_problems(self, account: Account, problems: list[str]) -> None:
        """Log each unusable migration_jobs entry once per account, not on every discovery."""
        seen = self._problems_logged.setdefault(account.name, set())
        for problem in problems:
            if problem not in seen and len(seen) < 1000:
                seen.add(problem)
                log.warning("migration_jobs listed an unusable job; skipping it",
                            extra={"account": account.name, "error": problem})

    def _record_failure(self, account: Account, reason: str, message: str) -> None:
        with self._lock:
            stats = self._stats.get(account.name, DiscoveryStats())
            counts = Counter(stats.errors)
            counts[reason] += 1
            self._stats[account.name] = replace(stats, errors=MappingProxyType(dict(counts)))
            known = len(self._discovered.get(account.name, {}))
            self._publish()
        log.warning(
            "job discovery failed; keeping the last known job list",
            extra={"account": account.name, "reason": reason, "error": message, "known_jobs": known},
        )

    def _publish(self) -> None:
        self._state = FleetState(
            accounts=MappingProxyType({account.name: account.url for account in self._accounts}),
            shard=self._shard,
            total_shards=self._total_shards,
            discovery=MappingProxyType(dict(self._stats)),
            reload_successful=self._reload_successful,
            reload_success_timestamp=self._reload_success_timestamp,
        )
        self._apply(self.job_accounts())


def _parse_jobs(document: Mapping[str, Any], now: float) -> tuple[dict[str, float | None], list[str]]:
    """Return job IDs with submission times from a migration_jobs response, and the problems.

    Entries without a usable `job` are skipped and described in the problems. An
    entry whose `date` is missing, malformed or in the future gets None, so the
    caller can date it by when it was first listed.
    """
    jobs = document.get("jobs")
    if not isinstance(jobs, list):
        raise PollError(errors.INVALID_RESPONSE, "migration_jobs: response has no 'jobs' list")
    result: dict[str, float | None] = {}
    problems: list[str] = []
    for entry in jobs:
        job = entry.get("job") if isinstance(entry, dict) else None
        if isinstance(job, bool) or not isinstance(job, str | int):
            problems.append("an entry without a string or whole-number 'job'")
            continue
        problem = job_id_problem(str(job))
        if problem:
            problems.append(problem)
            continue
        date = entry.get("date")
        if isinstance(date, str):
            try:
                date = float(date)
            except ValueError:
                date = None
        if isinstance(date, bool) or not isinstance(date, int | float) or not now - 1e10 < date <= now:
            date = None
        result[str(job)] = None if date is None else float(date)
    return result, problems
