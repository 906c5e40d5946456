"""The status page served at `/`: every job's users, progress and poll health at a glance.

The page is rendered on the server from one `View`, with inline CSS and no JavaScript
or external assets, so it works offline and on a phone. Job IDs, account names and
error messages come from settings files and API responses, so every value is passed
through `html.escape` before it reaches the page.
"""

from __future__ import annotations

import html
import math
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from urllib.parse import quote

from exporter import __version__
from exporter.poller import JobView, View
from exporter.render import USER_STATES, state_counts, total

REFRESH_SECONDS = 30
"""The page reloads itself this often through `<meta http-equiv="refresh">`."""

MAX_MESSAGE_LENGTH = 300
"""Error messages longer than this many characters are cut on the page. The poller's log has them whole."""

RATE_UNITS = ("B/s", "KiB/s", "MiB/s", "GiB/s", "TiB/s")

NO_VALUE = "\u2014"
"""Em dash, shown for an unknown figure: before the first successful poll, or for a value that is not a number."""


@dataclass(frozen=True, slots=True)
class JobFigures:
    """The figures of one job's row, summed over its users. `None` marks an unknown figure."""

    job: JobView
    counts: dict[str, int] | None
    handled: float | None
    """Messages migrated, skipped or failed for good."""
    remote: float | None
    failed: float | None
    critical: float | None
    throughput: float | None

    @property
    def failing(self) -> bool:
        return (self.job.polled and not self.job.up) or self.job.stale

    @property
    def needs_attention(self) -> bool:
        return self.failing or (self.counts is not None and self.counts["error"] > 0)


def job_figures(job: JobView) -> JobFigures:
    """Sum one job's users the way the job-level metrics do."""
    status = job.status
    if status is None:
        return JobFigures(job, None, None, None, None, None, None)
    users = status.users
    migrated = total(user.migrated_messages for user in users)
    skipped = total(user.skipped_messages for user in users)
    failed = total(user.failed_messages for user in users)
    handled = total((migrated, skipped, failed))
    return JobFigures(
        job=job,
        counts=state_counts(status),
        handled=handled,
        remote=total(user.remote_messages for user in users),
        failed=failed,
        critical=total(user.critical_errors for user in users),
        throughput=status.throughput_bytes_per_second,
    )


def sort_jobs(figures: Iterable[JobFigures]) -> list[JobFigures]:
    """Order rows with failing, stale and error-state jobs first, then by job ID."""
    return sorted(figures, key=lambda row: (not row.needs_attention, row.job.job_id))


def progress_percent(handled: float | None, remote: float | None) -> float | None:
    """Return handled over remote messages in percent, rounded down to one decimal.

    Rounding down keeps 99.96 % from showing as 100.0 % while messages remain. The
    result is capped at 100 because the remote count can shrink while a job runs.
    None means unknown: a value is unreadable, or the remote servers have no messages.
    """
    if handled is None or remote is None or remote <= 0:
        return None
    percent = min(100.0, max(0.0, handled / remote * 100))
    return math.floor(percent * 10) / 10


def format_rate(bytes_per_second: float) -> str:
    """Format a throughput with binary prefixes, for example `613.5 KiB/s`."""
    value = bytes_per_second
    for unit in RATE_UNITS:
        if abs(value) < 1024 or unit == RATE_UNITS[-1]:
            break
        value /= 1024
    if unit == RATE_UNITS[0]:
        return f"{value:.0f} {unit}"
    return f"{value:.1f} {unit}"


def format_count(value: float) -> str:
    """Format a message or error count with thousands separators."""
    if value.is_integer():
        return f"{int(value):,}"
    return f"{value:,.1f}"


def format_age(seconds: float | None) -> str:
    """Format the time since an event, for example `12 s ago`, or `never` for None.

    A negative age, from a wall clock that was set back, shows as `0 s ago`.
    """
    if seconds is None:
        return "never"
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{int(seconds)} s ago"
    if seconds < 2 * 3600:
        return f"{int(seconds // 60)} min ago"
    if seconds < 2 * 86400:
        return f"{int(seconds // 3600)} h ago"
    return f"{int(seconds // 86400)} d ago"


def job_metrics_url(telemetry_path: str, job_id: str) -> str:
    """Return the telemetry URL whose `job_id` parameter keeps that job's samples only."""
    return f"{telemetry_path}?job_id={quote(job_id, safe='')}"


def render_status_page(view: View, telemetry_path: str, now: float) -> str:
    """Render the whole status page for `view`, counting ages from `now` (Unix time)."""
    rows = sort_jobs(job_figures(job) for job in view.jobs)
    generated = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(now))
    path = html.escape(telemetry_path)
    parts = [
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">",
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">",
        f"<meta http-equiv=\"refresh\" content=\"{REFRESH_SECONDS}\">",
        "<title>OpenSRS migration exporter</title>",
        f"<style>{STYLE}</style></head><body>",
        "<header><h1>OpenSRS migration exporter</h1>",
        f"<p class=\"meta\">Version <span id=\"version\">{html.escape(__version__)}</span> \u00b7 "
        f"generated <time datetime=\"{_iso_time(now)}\">{generated}</time> \u00b7 "
        f"reloads every {REFRESH_SECONDS} s</p>",
        "<nav><ul>",
        f"<li><a href=\"{path}\">Metrics</a></li>",
        "<li><a href=\"/-/healthy\">Health</a></li>",
        "<li><a href=\"/-/ready\">Readiness</a></li>",
        "</ul></nav></header><main>",
        _summary(rows),
    ]
    if not view.ready:
        parts.append("<p class=\"notice\" role=\"status\">The first poll cycle has not finished, "
                     "so some jobs have no data yet.</p>")
    parts.append(_table(rows, telemetry_path, now))
    parts.append("</main></body></html>\n")
    return "".join(parts)


def _summary(rows: list[JobFigures]) -> str:
    users: Counter[str] = Counter()
    for row in rows:
        if row.counts is not None:
            users.update(row.counts)
    user_total = sum(users.values())
    by_state = ", ".join(f"{users[state]:,} {state}" for state in USER_STATES if users[state])
    # Stale jobs keep their last throughput, which no longer describes the present.
    current = [row.throughput for row in rows if row.throughput is not None and not row.job.stale]
    attention = sum(row.needs_attention for row in rows)
    items = [
        f"<span id=\"summary-jobs\">{_plural(len(rows), 'job')}</span>",
        f"<span id=\"summary-users\">{_plural(user_total, 'user')}{': ' + by_state if by_state else ''}</span>",
        f"<span id=\"summary-throughput\">total throughput {format_rate(sum(current))}</span>",
    ]
    if attention:
        items.append(f"<span id=\"summary-attention\" class=\"alert\">{_plural(attention, 'job')} "
                     f"{'needs' if attention == 1 else 'need'} attention</span>")
    return "<p class=\"summary\">" + " \u00b7 ".join(items) + "</p>"


COLUMNS = (
    ("Job ID", "job-id"), ("Account", "account"), ("Users", "users"), ("Progress", "progress"),
    ("Throughput", "throughput"), ("Failed messages", "failed"), ("Critical errors", "critical"),
    ("Last successful poll", "last-success"), ("Poll status", "poll-status"), ("Metrics", "metrics"),
)
"""Header text and CSS class of each column; the class is shared by its cells."""


def _table(rows: list[JobFigures], telemetry_path: str, now: float) -> str:
    head = "".join(f"<th scope=\"col\" class=\"{css_class}\">{label}</th>" for label, css_class in COLUMNS)
    parts = [
        "<div class=\"jobs\"><table id=\"jobs\">",
        "<caption>Migration jobs: failing, stale and error-state jobs first, then by job ID</caption>",
        f"<thead><tr>{head}</tr></thead><tbody>",
    ]
    if not rows:
        parts.append(f"<tr><td colspan=\"{len(COLUMNS)}\" class=\"empty\">No jobs are configured.</td></tr>")
    for row in rows:
        parts.append(_row(row, telemetry_path, now))
    parts.append("</tbody></table></div>")
    return "".join(parts)


def _row(row: JobFigures, telemetry_path: str, now: float) -> str:
    job = row.job
    job_id = html.escape(job.job_id)
    age = None if job.last_success is None else now - job.last_success
    cells = (
        f"<th scope=\"row\" data-label=\"Job ID\" class=\"job-id\"><code>{job_id}</code></th>",
        _cell("Account", html.escape(job.account), "account"),
        _cell("Users", _state_chips(row.counts), "users"),
        _cell("Progress", _progress(row), "progress"),
        _cell("Throughput", _figure(row.throughput, format_rate), "throughput"),
        _cell("Failed messages", _figure(row.failed, format_count), "failed"),
        _cell("Critical errors", _figure(row.critical, format_count), "critical"),
        _cell("Last successful poll", _age(job, age), "last-success"),
        _cell("Poll status", _poll_status(row), "poll-status"),
        _cell("Metrics", f"<a href=\"{html.escape(job_metrics_url(telemetry_path, job.job_id))}\" "
                         f"title=\"Samples of job {job_id} only\">metrics</a>", "metrics"),
    )
    css_class = " class=\"attention\"" if row.needs_attention else ""
    return f"<tr{css_class} data-job-id=\"{job_id}\">{''.join(cells)}</tr>"


def _cell(label: str, content: str, name: str) -> str:
    return f"<td data-label=\"{label}\" class=\"{name}\">{content}</td>"


def _figure(value: float | None, format_value: Callable[[float], str]) -> str:
    if value is None:
        return NO_VALUE
    return f"<span data-value=\"{value!r}\">{format_value(value)}</span>"


def _state_chips(counts: dict[str, int] | None) -> str:
    if counts is None:
        return NO_VALUE
    chips = [
        f"<span class=\"state state-{state}\" data-state=\"{state}\" data-count=\"{counts[state]}\">"
        f"{counts[state]:,} {state}</span>"
        for state in USER_STATES
        if counts[state]
    ]
    return " ".join(chips) if chips else "no users"


def _progress(row: JobFigures) -> str:
    percent = progress_percent(row.handled, row.remote)
    if percent is None:
        if row.remote is not None and row.remote <= 0 and row.handled is not None:
            return "no messages"
        return NO_VALUE
    assert row.handled is not None and row.remote is not None
    text = f"{percent:.1f} %"
    title = (f"{format_count(row.handled)} of {format_count(row.remote)} remote messages handled "
             "(migrated, skipped or failed for good)")
    label = html.escape(f"Progress of job {row.job.job_id}")
    return (
        f"<span class=\"bar\" title=\"{title}\">"
        f"<progress value=\"{percent:.1f}\" max=\"100\" aria-label=\"{label}\">{text}</progress> "
        f"<span class=\"percent\" data-value=\"{percent:.1f}\">{text}</span></span>"
    )


def _age(job: JobView, age: float | None) -> str:
    if job.last_success is None or age is None:
        return "never"
    timestamp = _iso_time(job.last_success)
    return f"<time datetime=\"{timestamp}\" title=\"{timestamp}\">{format_age(age)}</time>"


def _poll_status(row: JobFigures) -> str:
    job = row.job
    if not job.polled:
        return "<span class=\"badge waiting\">waiting for the first poll</span>"
    badges = []
    if job.stale:
        badges.append("<span class=\"badge stale\" title=\"The last successful poll is too old; "
                      "user and folder series are no longer exported.\">stale</span>")
    if job.up:
        badges.append("<span class=\"badge up\">up</span>")
    else:
        badges.append("<span class=\"badge failing\">failing</span>")
    parts = [" ".join(badges)]
    if not job.up and job.last_error is not None:
        reason, message = job.last_error
        if len(message) > MAX_MESSAGE_LENGTH:
            message = message[:MAX_MESSAGE_LENGTH] + "\u2026"
        parts.append(f"<code class=\"reason\">{html.escape(reason)}</code>")
        parts.append(f"<small class=\"message\">{html.escape(message)}</small>")
    failed_polls = sum(job.poll_errors.values())
    if failed_polls:
        parts.append(f"<small class=\"poll-errors\">{_plural(failed_polls, 'failed poll')} since start</small>")
    return "<br>".join(parts)


def _plural(count: int, noun: str) -> str:
    return f"{count:,} {noun}" if count == 1 else f"{count:,} {noun}s"


def _iso_time(unix_seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(unix_seconds))


STYLE = """
:root{color-scheme:light dark;--fg:#1b1f24;--muted:#57606a;--bg:#fff;--line:#d0d7de;--head:#f6f8fa;
--ok:#1a7f37;--bad:#cf222e;--warn:#9a6700;--info:#0969da;--attention:#fff5f5}
@media (prefers-color-scheme:dark){:root{--fg:#e6edf3;--muted:#9198a1;--bg:#0d1117;--line:#3d444d;
--head:#161b22;--ok:#3fb950;--bad:#f85149;--warn:#d29922;--info:#4493f8;--attention:#2a1417}}
*{box-sizing:border-box}
body{margin:0;padding:1rem;font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;
color:var(--fg);background:var(--bg)}
h1{font-size:1.4rem;margin:0 0 .25rem}
.meta{margin:0;color:var(--muted);font-size:.9rem}
nav ul{list-style:none;display:flex;flex-wrap:wrap;gap:.25rem 1rem;padding:0;margin:.5rem 0 1rem}
a{color:var(--info)}
.summary{font-size:1rem;margin:0 0 1rem}
.alert{color:var(--bad);font-weight:600}
.notice{border-left:4px solid var(--warn);padding:.5rem .75rem;background:var(--head)}
.jobs{overflow-x:auto}
table{border-collapse:collapse;width:100%}
caption{text-align:left;color:var(--muted);font-size:.85rem;padding:.25rem 0}
th,td{padding:.45rem .5rem;border-bottom:1px solid var(--line);text-align:left;vertical-align:top}
thead th{background:var(--head);font-size:.75rem;text-transform:uppercase;letter-spacing:.02em;vertical-align:bottom}
.throughput,.failed,.critical{text-align:right}
td.throughput,td.failed,td.critical{white-space:nowrap;font-variant-numeric:tabular-nums}
tr.attention{background:var(--attention)}
tr.attention th{box-shadow:inset 4px 0 0 var(--bad)}
code{font:.9em ui-monospace,"DejaVu Sans Mono",monospace}
.state{display:inline-block;margin:0 .2rem .2rem 0;padding:0 .4rem;border-radius:.6rem;font-size:.8rem;
border:1px solid var(--line);white-space:nowrap}
.state-complete{color:var(--ok);border-color:var(--ok)}
.state-error,.state-unknown{color:var(--bad);border-color:var(--bad)}
.state-active{color:var(--info);border-color:var(--info)}
.bar{display:flex;align-items:center;gap:.4rem;white-space:nowrap}
progress{width:7rem;height:.8rem;accent-color:var(--ok)}
.percent{font-variant-numeric:tabular-nums}
.badge{display:inline-block;padding:0 .45rem;border-radius:.3rem;font-size:.8rem;font-weight:600;color:#fff}
.up{background:var(--ok)}.failing{background:var(--bad)}.stale{background:var(--warn)}
.waiting{background:var(--muted)}
.message,.poll-errors{color:var(--muted);overflow-wrap:anywhere}
@media (max-width:760px){
body{padding:.6rem}
thead{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0)}
table,tbody,tr,th,td{display:block;width:100%}
tr{border:1px solid var(--line);border-radius:.4rem;margin:0 0 .8rem}
caption{display:block}
th,td{display:flow-root;padding-left:9.5rem}
tr>:last-child{border-bottom:0}
th::before,td::before{content:attr(data-label);float:left;width:8.5rem;margin-left:-9rem;
font-weight:600;color:var(--muted);font-size:.85rem}
td.throughput,td.failed,td.critical{text-align:left}
tr.attention th{box-shadow:none}
tr.attention{border-left:4px solid var(--bad)}
td.empty{padding-left:.6rem}
}
"""
