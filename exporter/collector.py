"""The collector: metric families built from the poller's latest view.

It never calls the API. `collect()` reads one `View`, so a scrape gets whole polls
only. Example output for the seed response of job 1326229437638:

    opensrs_migration_job_throughput_bytes_per_second{job_id="1326229437638"} 628222.976
    opensrs_migration_user_migrated_messages{job_id="1326229437638",user="user@example.com"} 5.0
    opensrs_migration_folder_skipped_messages{folder="Trash",job_id="1326229437638",user="user@example.com"} 1.0
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from exporter import __version__
from exporter import metricdefs as m
from exporter.errors import REASONS
from exporter.fleet import FleetState
from exporter.poller import JobView, View
from exporter.render import USER_STATES, JobFragments, SeriesPlan, plan_series, state_counts, total
from exporter.snapshot import STATES, UNKNOWN_STATE, JobStatus

# OMA's documented error numbers start at 0, so rate() catches their first occurrence;
# any other number appears when it first happens.
DOCUMENTED_API_ERRORS = ("0", "1", "2", "5", "6", "7", "19", "20", "21", "22", "25")


def _error_number_order(item: tuple[str, int]) -> tuple[int, str]:
    number = item[0]
    return (int(number), "") if number.isdigit() else (1 << 30, number)


def _family(definition: m.MetricDef) -> GaugeMetricFamily | CounterMetricFamily:
    if definition.type == "counter":
        return CounterMetricFamily(definition.name, definition.help, labels=definition.labels)
    return GaugeMetricFamily(definition.name, definition.help, labels=definition.labels)


def _add(family: Metric, labels: list[str], value: float | None) -> None:
    # None marks a value the API sent that is not a finite number: no sample.
    if value is not None:
        family.add_metric(labels, value)


class MigrationCollector(Collector):
    """Builds every family of the metric contract from `view_source()` on each collect."""

    def __init__(
        self,
        view_source: Callable[[], View],
        *,
        folders: bool = True,
        series_limit: int = 0,
        fleet_source: Callable[[], FleetState] = FleetState,
    ):
        self._view_source = view_source
        self._fleet_source = fleet_source
        self._folders = folders
        self._series_limit = series_limit

    def describe(self) -> list[Metric]:
        # Registering a collector that has describe() does not call collect(), so
        # start-up never waits for a poll.
        return [_family(definition) for definition in m.ALL]

    def collect(self) -> Iterator[Metric]:
        view = self._view_source()
        plan = plan_series(view.jobs, self._folders, self._series_limit)
        yield from self.health(view, plan)
        fresh = [job for job in view.jobs if job.status is not None]
        yield from self._job_level(fresh)
        current = [job.status for job in fresh if not job.stale and job.status is not None]
        yield from self._user_level(current)
        yield from self._folder_level([status for status in current if status.job_id in plan.folder_jobs])

    def health(self, view: View, plan: SeriesPlan) -> Iterator[Metric]:
        build_info = _family(m.BUILD_INFO)
        build_info.add_metric([__version__], 1)
        jobs = _family(m.JOBS)
        jobs.add_metric([], len(view.jobs))
        up, last_success, duration, poll_errors, invalid = (
            _family(d) for d in (m.JOB_UP, m.JOB_LAST_SUCCESS, m.JOB_POLL_DURATION, m.POLL_ERRORS, m.INVALID_VALUES)
        )
        for job in view.jobs:
            self._job_health(job, up, last_success, duration, poll_errors, invalid)
        api_errors = _family(m.API_ERRORS)
        counts = {number: 0 for number in DOCUMENTED_API_ERRORS}
        counts.update(view.api_errors)
        for number, count in sorted(counts.items(), key=_error_number_order):
            api_errors.add_metric([number], count)
        render_duration = _family(m.JOB_RENDER_DURATION)
        for job in view.jobs:
            if isinstance(job.rendered, JobFragments):
                render_duration.add_metric([job.job_id], job.rendered.render_seconds)
        series, omitted = _family(m.EXPOSITION_SERIES), _family(m.EXPOSITION_OMITTED_SERIES)
        series.add_metric([], plan.served)
        omitted.add_metric([], plan.omitted)
        yield from (build_info, jobs, up, last_success, duration, poll_errors, api_errors, invalid, render_duration,
                    series, omitted)
        yield from self._fleet(view, self._fleet_source())

    @staticmethod
    def _fleet(view: View, fleet: FleetState) -> Iterator[Metric]:
        info = _family(m.JOB_INFO)
        for job in view.jobs:
            info.add_metric([job.job_id, job.account, fleet.accounts.get(job.account, "")], 1)
        shard, total_shards = _family(m.SHARD), _family(m.TOTAL_SHARDS)
        shard.add_metric([], fleet.shard)
        total_shards.add_metric([], fleet.total_shards)
        found, last_success, failures, changes = (
            _family(d) for d in (m.DISCOVERY_JOBS, m.DISCOVERY_LAST_SUCCESS, m.DISCOVERY_ERRORS, m.DISCOVERY_CHANGES)
        )
        for account, stats in sorted(fleet.discovery.items()):
            found.add_metric([account], stats.jobs)
            _add(last_success, [account], stats.last_success)
            for reason in REASONS:
                failures.add_metric([account, reason], stats.errors.get(reason, 0))
            for change in ("added", "expired"):
                changes.add_metric([account, change], stats.changes.get(change, 0))
        reload_ok, reload_time = _family(m.CONFIG_RELOAD_SUCCESSFUL), _family(m.CONFIG_RELOAD_TIMESTAMP)
        reload_ok.add_metric([], 1 if fleet.reload_successful else 0)
        _add(reload_time, [], fleet.reload_success_timestamp)
        yield from (info, shard, total_shards, found, last_success, failures, changes, reload_ok, reload_time)

    @staticmethod
    def _job_health(job: JobView, up: Metric, last_success: Metric, duration: Metric, poll_errors: Metric,
                    invalid: Metric) -> None:
        labels = [job.job_id]
        up.add_metric(labels, 1 if job.up else 0)
        _add(last_success, labels, job.last_success)
        _add(duration, labels, job.poll_duration)
        # Every reason is present from the start, so rate() catches the first failure.
        for reason in REASONS:
            poll_errors.add_metric([job.job_id, reason], job.poll_errors.get(reason, 0))
        for field, count in sorted(job.invalid_values.items()):
            invalid.add_metric([job.job_id, field], count)

    def _job_level(self, jobs: list[JobView]) -> Iterator[Metric]:
        throughput, users, migrated, skipped, failed, remote, migrated_bytes, critical = (
            _family(d) for d in m.JOB_LEVEL
        )
        for job in jobs:
            status = job.status
            assert status is not None
            labels = [status.job_id]
            _add(throughput, labels, status.throughput_bytes_per_second)
            counts = state_counts(status)
            for state in STATES:
                users.add_metric([status.job_id, state], counts[state])
            if counts[UNKNOWN_STATE]:
                users.add_metric([status.job_id, UNKNOWN_STATE], counts[UNKNOWN_STATE])
            _add(migrated, labels, total(u.migrated_messages for u in status.users))
            _add(skipped, labels, total(u.skipped_messages for u in status.users))
            _add(failed, labels, total(u.failed_messages for u in status.users))
            _add(remote, labels, total(u.remote_messages for u in status.users))
            _add(migrated_bytes, labels, total(u.migrated_bytes for u in status.users))
            _add(critical, labels, total(u.critical_errors for u in status.users))
        yield from (throughput, users, migrated, skipped, failed, remote, migrated_bytes, critical)

    def _user_level(self, statuses: list[JobStatus]) -> Iterator[Metric]:
        state, info, migrated, skipped, failed, remote, migrated_bytes, critical, folders, retry = (
            _family(d) for d in m.USER_LEVEL
        )
        for status in statuses:
            for user in status.users:
                labels = [status.job_id, user.user]
                for name in USER_STATES:
                    if name != UNKNOWN_STATE or user.state == UNKNOWN_STATE:
                        state.add_metric(labels + [name], 1 if user.state == name else 0)
                info.add_metric(labels + [user.remote_user, user.server, user.method, user.delimiter], 1)
                _add(migrated, labels, user.migrated_messages)
                _add(skipped, labels, user.skipped_messages)
                _add(failed, labels, user.failed_messages)
                _add(remote, labels, user.remote_messages)
                _add(migrated_bytes, labels, user.migrated_bytes)
                _add(critical, labels, user.critical_errors)
                _add(folders, labels, user.folder_count)
                _add(retry, labels + ["1"], user.retry1_messages)
                _add(retry, labels + ["2"], user.retry2_messages)
        yield from (state, info, migrated, skipped, failed, remote, migrated_bytes, critical, folders, retry)

    def _folder_level(self, statuses: list[JobStatus]) -> Iterator[Metric]:
        migrated, skipped, failed, remote, retry, migrated_bytes, next_uid = (_family(d) for d in m.FOLDER_LEVEL)
        for status in statuses:
            for user in status.users:
                for folder in user.folders:
                    labels = [status.job_id, user.user, folder.name]
                    _add(migrated, labels, folder.migrated_messages)
                    _add(skipped, labels, folder.skipped_messages)
                    _add(failed, labels, folder.failed_messages)
                    _add(remote, labels, folder.remote_messages)
                    _add(retry, labels + ["1"], folder.retry1_messages)
                    _add(retry, labels + ["2"], folder.retry2_messages)
                    _add(migrated_bytes, labels, folder.migrated_bytes)
                    _add(next_uid, labels, folder.next_uid)
        yield from (migrated, skipped, failed, remote, retry, migrated_bytes, next_uid)
