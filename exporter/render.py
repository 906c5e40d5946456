"""Fast text rendering of the exposition, one job at a time.

At fleet scale (20 jobs of 500 users with 20 folders: about 1.6 million series)
building `prometheus_client` metric families on each scrape takes seconds. Here each
job's sample lines are rendered once, when its poll finishes, into one bytes object
per metric family. A scrape then joins references to those fragments under headers,
which costs microseconds per job. The output is byte-for-byte what
`prometheus_client.generate_latest` (text format 0.0.4) and its OpenMetrics encoder
produce for `MigrationCollector`; `tests/test_render.py` checks that.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field

from prometheus_client.utils import floatToGoString

from exporter import metricdefs as m
from exporter.snapshot import STATES, UNKNOWN_STATE, JobStatus

USER_STATES = STATES + (UNKNOWN_STATE,)


def format_value(value: float) -> str:
    # floatToGoString switches to Go's exponent notation only from 1e6 up; below
    # that it returns repr(), which is several times faster to call directly.
    return repr(value) if value < 1e6 else floatToGoString(value)


def escape_label_value(value: str) -> str:
    if "\\" in value or "\n" in value or '"' in value:
        return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
    return value


def label_text(pairs: Iterable[tuple[str, str]]) -> str:
    """Return `{a="x",b="y"}` with names sorted, as prometheus_client writes labels."""
    return "{" + ",".join(f'{name}="{escape_label_value(value)}"' for name, value in sorted(pairs)) + "}"


def total(values: Iterable[float | None]) -> float | None:
    """Sum the users' values; one unreadable value makes the sum unknown, not smaller."""
    result = 0.0
    for value in values:
        if value is None:
            return None
        result += value
    return result


def state_counts(status: JobStatus) -> dict[str, int]:
    counts = dict.fromkeys(USER_STATES, 0)
    for user in status.users:
        counts[user.state] += 1
    return counts


@dataclass(slots=True)
class JobFragments:
    """The rendered sample lines of one successful poll, per metric family name."""

    status: JobStatus
    lines: dict[str, bytes]
    series: dict[str, int]
    """Samples per level: `job`, `user` and `folder`."""
    render_seconds: float
    compressed: dict[str, tuple[bytes, int]] = field(default_factory=dict)
    """Raw deflate segments and CRC-32 per family name, filled on the first gzip scrape."""


def render_job(status: JobStatus) -> JobFragments:
    """Render every job, user and folder sample line of one job."""
    started = time.perf_counter()
    lines: dict[str, list[str]] = {definition.name: [] for definition in m.JOB_LEVEL + m.USER_LEVEL + m.FOLDER_LEVEL}
    _render_job_level(status, lines)
    _render_user_level(status, lines)
    _render_folder_level(status, lines)
    encoded = {name: "".join(parts).encode() for name, parts in lines.items()}
    series = {
        "job": sum(len(lines[d.name]) for d in m.JOB_LEVEL),
        "user": sum(len(lines[d.name]) for d in m.USER_LEVEL),
        "folder": sum(len(lines[d.name]) for d in m.FOLDER_LEVEL),
    }
    return JobFragments(status, encoded, series, time.perf_counter() - started)


def _render_job_level(status: JobStatus, lines: dict[str, list[str]]) -> None:
    labels = label_text([("job_id", status.job_id)])

    def add(definition: m.MetricDef, value: float | None) -> None:
        if value is not None:
            lines[definition.name].append(f"{definition.name}{labels} {format_value(value)}\n")

    add(m.JOB_THROUGHPUT, status.throughput_bytes_per_second)
    counts = state_counts(status)
    users = lines[m.JOB_USERS.name]
    for state in STATES:
        users.append(f"{m.JOB_USERS.name}{label_text([('job_id', status.job_id), ('state', state)])} {float(counts[state])!r}\n")
    if counts[UNKNOWN_STATE]:
        state_labels = label_text([("job_id", status.job_id), ("state", UNKNOWN_STATE)])
        users.append(f"{m.JOB_USERS.name}{state_labels} {float(counts[UNKNOWN_STATE])!r}\n")
    add(m.JOB_MIGRATED, total(u.migrated_messages for u in status.users))
    add(m.JOB_SKIPPED, total(u.skipped_messages for u in status.users))
    add(m.JOB_FAILED, total(u.failed_messages for u in status.users))
    add(m.JOB_REMOTE, total(u.remote_messages for u in status.users))
    add(m.JOB_BYTES, total(u.migrated_bytes for u in status.users))
    add(m.JOB_CRITICAL, total(u.critical_errors for u in status.users))


def _render_user_level(status: JobStatus, lines: dict[str, list[str]]) -> None:
    state_lines = lines[m.USER_STATE.name]
    info_lines = lines[m.USER_INFO.name]
    retry_lines = lines[m.USER_RETRY_PENDING.name]
    counters = (
        (lines[m.USER_MIGRATED.name], m.USER_MIGRATED.name, "migrated_messages"),
        (lines[m.USER_SKIPPED.name], m.USER_SKIPPED.name, "skipped_messages"),
        (lines[m.USER_FAILED.name], m.USER_FAILED.name, "failed_messages"),
        (lines[m.USER_REMOTE.name], m.USER_REMOTE.name, "remote_messages"),
        (lines[m.USER_BYTES.name], m.USER_BYTES.name, "migrated_bytes"),
        (lines[m.USER_CRITICAL.name], m.USER_CRITICAL.name, "critical_errors"),
        (lines[m.USER_FOLDERS.name], m.USER_FOLDERS.name, "folder_count"),
    )
    job_id = escape_label_value(status.job_id)
    for user in status.users:
        name = escape_label_value(user.user)
        labels = f'{{job_id="{job_id}",user="{name}"}} '
        for state in USER_STATES:
            if state != UNKNOWN_STATE or user.state == UNKNOWN_STATE:
                value = "1.0" if user.state == state else "0.0"
                state_lines.append(f'{m.USER_STATE.name}{{job_id="{job_id}",state="{state}",user="{name}"}} {value}\n')
        info = label_text([
            ("job_id", status.job_id), ("user", user.user), ("remote_user", user.remote_user),
            ("server", user.server), ("method", user.method), ("delimiter", user.delimiter),
        ])
        info_lines.append(f"{m.USER_INFO.name}{info} 1.0\n")
        for target, metric_name, attribute in counters:
            value = getattr(user, attribute)
            if value is not None:
                target.append(f"{metric_name}{labels}{format_value(value)}\n")
        for attempt, value in (("1", user.retry1_messages), ("2", user.retry2_messages)):
            if value is not None:
                retry_lines.append(
                    f'{m.USER_RETRY_PENDING.name}{{attempt="{attempt}",job_id="{job_id}",user="{name}"}} '
                    f"{format_value(value)}\n"
                )


def _render_folder_level(status: JobStatus, lines: dict[str, list[str]]) -> None:
    migrated = lines[m.FOLDER_MIGRATED.name]
    skipped = lines[m.FOLDER_SKIPPED.name]
    failed = lines[m.FOLDER_FAILED.name]
    remote = lines[m.FOLDER_REMOTE.name]
    retry = lines[m.FOLDER_RETRY_PENDING.name]
    migrated_bytes = lines[m.FOLDER_BYTES.name]
    next_uid = lines[m.FOLDER_NEXT_UID.name]
    migrated_name, skipped_name, failed_name, remote_name, retry_name, bytes_name, uid_name = (
        d.name for d in m.FOLDER_LEVEL
    )
    job_id = escape_label_value(status.job_id)
    for user in status.users:
        tail = f'",job_id="{job_id}",user="{escape_label_value(user.user)}"}} '
        for folder in user.folders:
            labels = '{folder="' + escape_label_value(folder.name) + tail
            # Each counter is None only when the API sent something unreadable.
            if (value := folder.migrated_messages) is not None:
                migrated.append(f"{migrated_name}{labels}{format_value(value)}\n")
            if (value := folder.skipped_messages) is not None:
                skipped.append(f"{skipped_name}{labels}{format_value(value)}\n")
            if (value := folder.failed_messages) is not None:
                failed.append(f"{failed_name}{labels}{format_value(value)}\n")
            if (value := folder.remote_messages) is not None:
                remote.append(f"{remote_name}{labels}{format_value(value)}\n")
            # Concatenated, never %-formatted: names can contain "%".
            retry_tail = '",folder="' + escape_label_value(folder.name) + tail
            if (value := folder.retry1_messages) is not None:
                retry.append(f'{retry_name}{{attempt="1{retry_tail}{format_value(value)}\n')
            if (value := folder.retry2_messages) is not None:
                retry.append(f'{retry_name}{{attempt="2{retry_tail}{format_value(value)}\n')
            if (value := folder.migrated_bytes) is not None:
                migrated_bytes.append(f"{bytes_name}{labels}{format_value(value)}\n")
            if (value := folder.next_uid) is not None:
                next_uid.append(f"{uid_name}{labels}{format_value(value)}\n")


def help_line(definition: m.MetricDef, openmetrics: bool) -> bytes:
    """Return the `# HELP` and `# TYPE` lines of a family in either format."""
    if openmetrics:
        name = definition.name
        text = definition.help.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
    else:
        name = definition.name + "_total" if definition.type == "counter" else definition.name
        text = definition.help.replace("\\", "\\\\").replace("\n", "\\n")
    return f"# HELP {name} {text}\n# TYPE {name} {definition.type}\n".encode()


def deflate_segment(data: bytes, level: int) -> bytes:
    """Compress `data` as raw deflate blocks that end on a byte boundary.

    A fresh compressor never refers back to earlier data. A sync flush ends its
    output on a byte boundary without a final block. So such segments can be
    concatenated and closed with one final empty block to form a valid stream.
    """
    compressor = zlib.compressobj(level, zlib.DEFLATED, -zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)


# Raw deflate for "no more data": a final, empty, fixed-Huffman block.
DEFLATE_END = b"\x03\x00"
GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"


def count_series(status: JobStatus) -> dict[str, int]:
    """Count the samples `render_job` would write per level, without rendering."""
    counts = state_counts(status)
    job = 6 - sum(
        total(getattr(u, attribute) for u in status.users) is None
        for attribute in ("migrated_messages", "skipped_messages", "failed_messages", "remote_messages",
                          "migrated_bytes", "critical_errors")
    )
    job += len(STATES) + (1 if counts[UNKNOWN_STATE] else 0) + (status.throughput_bytes_per_second is not None)
    user = folder = 0
    for entry in status.users:
        user += len(STATES) + (entry.state == UNKNOWN_STATE) + 1
        user += sum(
            getattr(entry, attribute) is not None
            for attribute in ("migrated_messages", "skipped_messages", "failed_messages", "remote_messages",
                              "migrated_bytes", "critical_errors", "folder_count", "retry1_messages", "retry2_messages")
        )
        for item in entry.folders:
            folder += sum(
                value is not None
                for value in (item.migrated_messages, item.skipped_messages, item.failed_messages, item.remote_messages,
                              item.retry1_messages, item.retry2_messages, item.migrated_bytes, item.next_uid)
            )
    return {"job": job, "user": user, "folder": folder}


@dataclass(frozen=True, slots=True)
class SeriesPlan:
    """The jobs whose folder series an exposition contains, and the resulting series counts."""

    folder_jobs: frozenset[str]
    served: int
    omitted: int


def plan_series(jobs: Iterable, folders: bool, series_limit: int) -> SeriesPlan:
    """Choose the jobs whose folder series fit in `series_limit` (0: no limit).

    Job and user series always count and are always kept. Folder series are then
    added job by job in job ID order. From the first job that does not fit, every
    later job's folder series are left out, so the cut moves only when the counts do.
    `jobs` are poller JobViews in job ID order.
    """
    served = omitted = 0
    candidates: list[tuple[str, int]] = []
    for job in jobs:
        if job.status is None:
            continue
        counts = job.rendered.series if isinstance(job.rendered, JobFragments) else count_series(job.status)
        served += counts["job"]
        if job.stale:
            continue
        served += counts["user"]
        if folders:
            candidates.append((job.job_id, counts["folder"]))
    included: list[str] = []
    budget = series_limit - served if series_limit else float("inf")
    for position, (job_id, count) in enumerate(candidates):
        if count > budget:
            omitted = sum(later for _, later in candidates[position:])
            break
        included.append(job_id)
        budget -= count
        served += count
    return SeriesPlan(frozenset(included), served, omitted)
