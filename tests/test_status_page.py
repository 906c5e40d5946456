"""The status page at `/` and the `job_id` filter of the telemetry path.

Unit tests render views built by hand, hostile names included. The browser tests
start the exporter in demo mode as a subprocess and load the page in headless
Chromium (Debian package `chromium`), comparing its figures with `/metrics` and
taking a wide and a phone-sized screenshot. Set `UPDATE_SCREENSHOT=1` to write the
wide screenshot to `docs/status-page.png`; otherwise it goes to a temporary folder.
"""

from __future__ import annotations

import gzip
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from types import MappingProxyType

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families

from exporter import __version__
from exporter.poller import JobView, View
from exporter.server import Exposition, ExporterServer, _keep_job_samples
from exporter.snapshot import FolderStatus, JobStatus, UserStatus
from exporter.status_page import (
    format_age, format_count, format_rate, job_metrics_url, progress_percent, render_status_page,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
SCREENSHOT = REPO_ROOT / "docs" / "status-page.png"
NOW = 1_800_000_000.0
HOSTILE_JOB = '<script>alert("job")</script>'
HOSTILE_ACCOUNT = 'acme"<b>&co'
HOSTILE_MESSAGE = "HTTP 502 from https://oma.example.com/api: <html>bad gateway</html>"

CHROMIUM_INSTALL = "apt-get update && apt-get install -y --no-install-recommends chromium"
DEMO_JOBS = ("1700000000001", "1700000000002", "0001700000003")
FINISHED_DEMO_JOBS = ("1700000000001", "1700000000002")
"""Demo jobs whose users all end complete or error; the third job stalls while active."""


# --- Parsing the page -------------------------------------------------------------


@dataclass
class Cell:
    text: str = ""
    values: list[str] = field(default_factory=list)
    states: dict[str, int] = field(default_factory=dict)
    links: list[str] = field(default_factory=list)
    progress: str | None = None


@dataclass
class Row:
    job_id: str
    classes: str
    cells: dict[str, Cell] = field(default_factory=dict)


class StatusPageParser(HTMLParser):
    """Collects each job row's cells by their `data-label`, the summary, links and tag counts."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.rows: list[Row] = []
        self.tags: dict[str, int] = {}
        self.meta: list[dict[str, str]] = []
        self.links: list[str] = []
        self.summary = ""
        self.texts: list[str] = []
        self._row: Row | None = None
        self._cell: Cell | None = None
        self._cell_text: list[str] = []
        self._in_summary = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {name: value or "" for name, value in attrs}
        self.tags[tag] = self.tags.get(tag, 0) + 1
        if tag == "meta":
            self.meta.append(attributes)
        if tag == "a":
            self.links.append(attributes.get("href", ""))
        if tag == "p" and attributes.get("class") == "summary":
            self._in_summary = True
        if tag == "tr" and "data-job-id" in attributes:
            self._row = Row(attributes["data-job-id"], attributes.get("class", ""))
            self.rows.append(self._row)
        if tag in ("td", "th") and self._row is not None and "data-label" in attributes:
            self._cell = Cell()
            self._cell_text = []
            self._row.cells[attributes["data-label"]] = self._cell
        if self._cell is None:
            return
        if tag == "br":
            self._cell_text.append(" | ")
        if "data-value" in attributes:
            self._cell.values.append(attributes["data-value"])
        if "data-state" in attributes:
            self._cell.states[attributes["data-state"]] = int(attributes["data-count"])
        if tag == "a":
            self._cell.links.append(attributes.get("href", ""))
        if tag == "progress":
            self._cell.progress = attributes.get("value")

    def handle_endtag(self, tag: str) -> None:
        if tag == "p":
            self._in_summary = False
        if tag in ("td", "th") and self._cell is not None:
            self._cell.text = " ".join("".join(self._cell_text).split())
            self._cell = None
        if tag == "tr":
            self._row = None

    def handle_data(self, data: str) -> None:
        self.texts.append(data)
        if self._in_summary:
            self.summary += data
        if self._cell is not None:
            self._cell_text.append(data)


def parse_page(page: str) -> StatusPageParser:
    parser = StatusPageParser()
    parser.feed(page)
    parser.close()
    return parser


# --- Views built by hand ------------------------------------------------------------


def user(name: str, state: str, migrated=0.0, skipped=0.0, failed=0.0, remote=0.0, critical=0.0,
         folders: tuple[FolderStatus, ...] = ()) -> UserStatus:
    return UserStatus(
        user=name, state=state, migrated_messages=migrated, skipped_messages=skipped, failed_messages=failed,
        remote_messages=remote, critical_errors=critical, migrated_bytes=migrated * 1000, folders=folders,
    )


def status(job_id: str, throughput: float | None, *users: UserStatus) -> JobStatus:
    return JobStatus(job_id=job_id, throughput_bytes_per_second=throughput, users=users)


def up_job(job_id: str, job_status: JobStatus | None, age: float = 1.0, account: str = "default") -> JobView:
    return JobView(job_id, account=account, status=job_status, polled=True, up=True, last_success=NOW - age,
                   poll_duration=0.2)


def hand_built_view() -> View:
    healthy = up_job("1700000000001", status(
        "1700000000001", 628222.976,
        user("alice@example.com", "complete", migrated=100, skipped=2, remote=102),
        user("bob@example.com", "complete", migrated=50, remote=50),
        user("carol@example.com", "active", migrated=30, remote=120),
    ), age=12.4)
    with_error_user = up_job("1700000000002", status(
        "1700000000002", 0.0,
        user("heidi@example.com", "error", critical=3),
        user("ivan@example.com", "complete", migrated=900, skipped=10, failed=70, remote=980),
    ), age=300)
    failing = JobView(
        HOSTILE_JOB, account=HOSTILE_ACCOUNT,
        status=status(HOSTILE_JOB, None, user("<img src=x>@example.com", "active", migrated=1, remote=4)),
        polled=True, up=False, last_success=NOW - 7200,
        poll_errors=MappingProxyType({"http_status": 4}), last_error=("http_status", HOSTILE_MESSAGE),
    )
    never_polled = JobView("1700000000009")
    stale = JobView(
        "1700000000005", status=status("1700000000005", 1e6, user("ken@example.com", "unknown")),
        polled=True, up=False, stale=True, last_success=NOW - 3 * 86400,
        poll_errors=MappingProxyType({"timeout": 250}), last_error=("timeout", "migration_status timed out after 45 s"),
    )
    without_users = up_job("1700000000004", status("1700000000004", 0.0), age=1)
    unreadable = up_job("1700000000006", status(
        "1700000000006", 1024.0,
        UserStatus(user="mallory@example.com", state="active", migrated_messages=5.0, failed_messages=None,
                   remote_messages=10.0, critical_errors=0.0),
    ), age=30)
    jobs = (healthy, with_error_user, failing, never_polled, stale, without_users, unreadable)
    return View(version=7, jobs=tuple(sorted(jobs, key=lambda job: job.job_id)), api_errors={}, ready=True)


@pytest.fixture(scope="module")
def hand_built_page() -> tuple[str, StatusPageParser]:
    page = render_status_page(hand_built_view(), "/metrics", NOW)
    return page, parse_page(page)


# --- Formatting ---------------------------------------------------------------------


@pytest.mark.parametrize("bytes_per_second, expected", [
    (0.0, "0 B/s"),
    (1023.0, "1023 B/s"),
    (1024.0, "1.0 KiB/s"),
    (628222.976, "613.5 KiB/s"),
    (5 * 1024 ** 2 + 512 * 1024, "5.5 MiB/s"),
    (3 * 1024 ** 3, "3.0 GiB/s"),
    (2048 * 1024 ** 4, "2048.0 TiB/s"),
])
def test_format_rate(bytes_per_second, expected):
    assert format_rate(bytes_per_second) == expected


@pytest.mark.parametrize("seconds, expected", [
    (None, "never"),
    (-5.0, "0 s ago"),
    (12.9, "12 s ago"),
    (119.0, "119 s ago"),
    (120.0, "2 min ago"),
    (7199.0, "119 min ago"),
    (7200.0, "2 h ago"),
    (2 * 86400 - 1, "47 h ago"),
    (3 * 86400 + 5, "3 d ago"),
])
def test_format_age(seconds, expected):
    assert format_age(seconds) == expected


@pytest.mark.parametrize("handled, remote, expected", [
    (5.0, 7.0, 71.4),
    (9996.0, 10000.0, 99.9),
    (10000.0, 10000.0, 100.0),
    (12.0, 10.0, 100.0),
    (0.0, 10.0, 0.0),
    (0.0, 0.0, None),
    (None, 10.0, None),
    (3.0, None, None),
])
def test_progress_percent(handled, remote, expected):
    assert progress_percent(handled, remote) == expected


def test_format_count_separates_thousands():
    assert format_count(1234567.0) == "1,234,567"
    assert format_count(70.0) == "70"
    assert format_count(2.5) == "2.5"


# --- The page from a hand-built view ------------------------------------------------


def test_page_orders_attention_jobs_first(hand_built_page):
    _, parsed = hand_built_page
    order = [row.job_id for row in parsed.rows]
    assert order == [
        "1700000000002", "1700000000005", HOSTILE_JOB,
        "1700000000001", "1700000000004", "1700000000006", "1700000000009",
    ]
    attention = [row.job_id for row in parsed.rows if "attention" in row.classes]
    assert attention == order[:3]


def test_page_escapes_hostile_values(hand_built_page):
    page, parsed = hand_built_page
    assert "<script" not in page
    assert "<img" not in page
    assert "<html>bad gateway" not in page
    assert "<b>" not in page
    assert parsed.tags.get("script", 0) == 0
    row = next(row for row in parsed.rows if row.job_id == HOSTILE_JOB)
    assert row.cells["Job ID"].text == HOSTILE_JOB
    assert row.cells["Account"].text == HOSTILE_ACCOUNT
    assert HOSTILE_MESSAGE in row.cells["Poll status"].text
    assert row.cells["Metrics"].links == ["/metrics?job_id=%3Cscript%3Ealert%28%22job%22%29%3C%2Fscript%3E"]


def test_page_healthy_job_figures(hand_built_page):
    _, parsed = hand_built_page
    cells = next(row for row in parsed.rows if row.job_id == "1700000000001").cells
    assert cells["Account"].text == "default"
    assert cells["Users"].states == {"complete": 2, "active": 1}
    assert cells["Users"].text == "1 active 2 complete"
    # 182 of 272 messages handled.
    assert cells["Progress"].progress == "66.9"
    assert cells["Progress"].values == ["66.9"]
    assert "66.9 %" in cells["Progress"].text
    assert cells["Throughput"].text == "613.5 KiB/s"
    assert cells["Throughput"].values == ["628222.976"]
    assert cells["Failed messages"].text == "0"
    assert cells["Critical errors"].text == "0"
    assert cells["Last successful poll"].text == "12 s ago"
    assert cells["Poll status"].text == "up"
    assert cells["Metrics"].links == ["/metrics?job_id=1700000000001"]


def test_page_error_user_job_figures(hand_built_page):
    _, parsed = hand_built_page
    cells = next(row for row in parsed.rows if row.job_id == "1700000000002").cells
    assert cells["Users"].states == {"complete": 1, "error": 1}
    assert cells["Progress"].progress == "100.0"
    assert cells["Throughput"].text == "0 B/s"
    assert cells["Failed messages"].text == "70"
    assert cells["Critical errors"].text == "3"
    assert cells["Last successful poll"].text == "5 min ago"
    assert cells["Poll status"].text == "up"


def test_page_failing_and_stale_jobs(hand_built_page):
    _, parsed = hand_built_page
    failing = next(row for row in parsed.rows if row.job_id == HOSTILE_JOB).cells
    assert failing["Poll status"].text == f"failing | http_status | {HOSTILE_MESSAGE} | 4 failed polls since start"
    assert failing["Last successful poll"].text == "2 h ago"
    assert failing["Throughput"].text == "\u2014"
    assert failing["Progress"].progress == "25.0"
    stale = next(row for row in parsed.rows if row.job_id == "1700000000005").cells
    assert stale["Poll status"].text.startswith("stale failing | timeout | migration_status timed out after 45 s")
    assert "250 failed polls since start" in stale["Poll status"].text
    assert stale["Users"].states == {"unknown": 1}
    assert stale["Last successful poll"].text == "3 d ago"


def test_page_jobs_without_figures(hand_built_page):
    _, parsed = hand_built_page
    never = next(row for row in parsed.rows if row.job_id == "1700000000009").cells
    assert never["Poll status"].text == "waiting for the first poll"
    assert never["Last successful poll"].text == "never"
    for label in ("Users", "Progress", "Throughput", "Failed messages", "Critical errors"):
        assert never[label].text == "\u2014", label
    empty = next(row for row in parsed.rows if row.job_id == "1700000000004").cells
    assert empty["Users"].text == "no users"
    assert empty["Progress"].text == "no messages"
    unreadable = next(row for row in parsed.rows if row.job_id == "1700000000006").cells
    assert unreadable["Failed messages"].text == "\u2014"
    assert unreadable["Progress"].text == "\u2014"
    assert unreadable["Critical errors"].text == "0"


def test_page_summary_line(hand_built_page):
    _, parsed = hand_built_page
    summary = " ".join(parsed.summary.split())
    assert "7 jobs" in summary
    assert "8 users: 3 active, 3 complete, 1 error, 1 unknown" in summary
    # The stale job's 1e6 B/s and the failing job's unreadable rate are left out.
    assert "total throughput 614.5 KiB/s" in summary
    assert "3 jobs need attention" in summary


def test_page_head_links_and_assets(hand_built_page):
    page, parsed = hand_built_page
    viewport = [meta for meta in parsed.meta if meta.get("name") == "viewport"]
    assert viewport == [{"name": "viewport", "content": "width=device-width, initial-scale=1"}]
    assert {"/metrics", "/-/healthy", "/-/ready"} <= set(parsed.links)
    assert __version__ in page
    assert parsed.tags.get("link", 0) == 0
    assert parsed.tags.get("img", 0) == 0
    assert "src=" not in page
    assert "url(" not in page


def test_page_escapes_telemetry_path():
    page = render_status_page(View(1, (up_job("1", status("1", 0.0), age=1),), {}, True), '/m"x<', NOW)
    parsed = parse_page(page)
    assert '/m"x<' in parsed.links
    assert parsed.rows[0].cells["Metrics"].links == ['/m"x<?job_id=1']
    assert 'href="/m"x' not in page


def test_page_without_jobs_or_first_poll():
    parsed = parse_page(render_status_page(View(1, (), {}, False), "/metrics", NOW))
    text = " ".join("".join(parsed.texts).split())
    assert "No jobs are configured." in text
    assert "The first poll cycle has not finished" in text
    assert "0 jobs" in parsed.summary
    assert "total throughput 0 B/s" in parsed.summary


def test_job_metrics_url_quotes_job_id():
    assert job_metrics_url("/metrics", "a b&c=d/e") == "/metrics?job_id=a%20b%26c%3Dd%2Fe"


# --- The job_id filter of the telemetry path, over real HTTP ---------------------------


PREFIX_JOB = "17"
LONGER_JOB = "170"
QUOTED_JOB = 'q"\\uote'
STALE_JOB = "42"


def filter_view() -> View:
    folder = FolderStatus("INBOX", 3.0, 0.0, 1.0, 4.0, 0.0, 0.0, 3000.0, 9.0, ".")
    jobs = (
        up_job(PREFIX_JOB, status(PREFIX_JOB, 10.0, user("a@example.com", "active", 3, 0, 1, 4, folders=(folder,)))),
        # A user name that imitates another job's label must not bring its samples along.
        up_job(LONGER_JOB, status(LONGER_JOB, 20.0, user(f'x,job_id="{PREFIX_JOB}"}}', "complete", 4, 0, 0, 4,
                                                             folders=(folder,)))),
        up_job(QUOTED_JOB, status(QUOTED_JOB, 30.0, user("b@example.com", "error", critical=2)), age=5,
               account="second"),
        JobView(STALE_JOB,
                status=status(STALE_JOB, 5.0, user("c@example.com", "active", 1, 0, 0, 9, folders=(folder,))),
                polled=True, up=False, stale=True, last_success=NOW - 900,
                poll_errors=MappingProxyType({"timeout": 3}), last_error=("timeout", "timed out")),
    )
    return View(3, tuple(sorted(jobs, key=lambda job: job.job_id)), {"5": 1}, True)


@pytest.fixture(scope="module")
def filter_server() -> Iterator[str]:
    view = filter_view()
    exposition = Exposition(lambda: view)
    server = ExporterServer("127.0.0.1", 0, exposition, lambda: view)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.port}"
    server.shutdown()
    server.server_close()


def fetch(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def sample_map(text: str, parse=text_string_to_metric_families) -> dict[tuple[str, tuple], float]:
    result = {}
    for family in parse(text):
        for sample in family.samples:
            result[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return result


def of_job(samples: dict[tuple[str, tuple], float], job_id: str) -> dict[tuple[str, tuple], float]:
    return {key: value for key, value in samples.items() if dict(key[1]).get("job_id") == job_id}


def job_url(base: str, job_id: str, extra: str = "") -> str:
    return f"{base}/metrics?job_id={urllib.parse.quote(job_id, safe='')}{extra}"


@pytest.mark.parametrize("job_id", [PREFIX_JOB, LONGER_JOB, QUOTED_JOB, STALE_JOB])
def test_job_filter_keeps_exactly_that_job(filter_server, job_id):
    full = sample_map(fetch(filter_server + "/metrics")[2].decode())
    status_code, headers, body = fetch(job_url(filter_server, job_id))
    assert status_code == 200
    assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
    filtered = sample_map(body.decode())
    expected = of_job(full, job_id)
    assert expected, f"the full exposition has no samples of job {job_id!r}"
    assert filtered == expected


def test_job_filter_drops_other_families(filter_server):
    text = fetch(job_url(filter_server, PREFIX_JOB))[2].decode()
    families = list(text_string_to_metric_families(text))
    assert all(family.samples for family in families), [f.name for f in families if not f.samples]
    names = {family.name for family in families}
    assert "opensrs_migration_build_info" not in names
    assert "opensrs_migration_api_errors" not in names
    assert {"opensrs_migration_job_up", "opensrs_migration_user_state", "opensrs_migration_folder_next_uid"} <= names


def test_job_filter_stale_job_has_no_user_series(filter_server):
    filtered = sample_map(fetch(job_url(filter_server, STALE_JOB))[2].decode())
    names = {name for name, _ in filtered}
    assert "opensrs_migration_job_up" in names
    assert "opensrs_migration_job_migrated_messages" in names
    assert not [name for name in names if name.startswith(("opensrs_migration_user_", "opensrs_migration_folder_"))]


def test_job_filter_output_passes_promtool(filter_server):
    promtool = shutil.which("promtool")
    assert promtool, "promtool not found: install Debian's prometheus package (make test does)"
    for job_id in (PREFIX_JOB, QUOTED_JOB):
        body = fetch(job_url(filter_server, job_id))[2]
        result = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True, timeout=60)
        assert result.returncode == 0, result.stdout + result.stderr


def test_job_filter_openmetrics_and_gzip(filter_server):
    accept = {"Accept": "application/openmetrics-text; version=1.0.0"}
    full = sample_map(fetch(filter_server + "/metrics", accept)[2].decode(), parse_openmetrics)
    status_code, headers, body = fetch(job_url(filter_server, QUOTED_JOB), accept)
    assert status_code == 200
    assert headers["Content-Type"].startswith("application/openmetrics-text")
    assert body.endswith(b"# EOF\n")
    assert sample_map(body.decode(), parse_openmetrics) == of_job(full, QUOTED_JOB)
    plain = fetch(job_url(filter_server, QUOTED_JOB))[2]
    status_code, headers, compressed = fetch(job_url(filter_server, QUOTED_JOB), {"Accept-Encoding": "gzip"})
    assert headers.get("Content-Encoding") == "gzip"
    assert gzip.decompress(compressed) == plain


def test_job_filter_with_names_and_unknown_job(filter_server):
    names = "&name[]=opensrs_migration_job_up&name[]=opensrs_migration_jobs"
    body = fetch(job_url(filter_server, LONGER_JOB, names))[2]
    assert sample_map(body.decode()) == {("opensrs_migration_job_up", (("job_id", LONGER_JOB),)): 1.0}
    status_code, _, body = fetch(job_url(filter_server, "999"))
    assert status_code == 200
    assert sample_map(body.decode()) == {}


def test_job_filter_matches_whole_label():
    text = (
        b"# HELP a_info Look-alike labels.\n# TYPE a_info gauge\n"
        b'a_info{parent_job_id="17"} 1.0\n'
        b'a_info{job_id="170"} 1.0\n'
        b"# HELP b Samples of job 17.\n# TYPE b gauge\n"
        b'b{job_id="17",user="u"} 2.0\n'
        b'b{job_id="9",user="job_id=\\"17\\""} 3.0\n'
        b"# EOF\n"
    )
    assert _keep_job_samples(text, {"17"}) == (
        b"# HELP b Samples of job 17.\n# TYPE b gauge\n"
        b'b{job_id="17",user="u"} 2.0\n'
        b"# EOF\n"
    )


def test_job_filter_several_job_ids(filter_server):
    full = sample_map(fetch(filter_server + "/metrics")[2].decode())
    filtered = sample_map(fetch(job_url(filter_server, PREFIX_JOB, f"&job_id={STALE_JOB}"))[2].decode())
    assert filtered == {**of_job(full, PREFIX_JOB), **of_job(full, STALE_JOB)}


def test_status_page_links_filter_each_job(filter_server):
    status_code, headers, body = fetch(filter_server + "/")
    assert status_code == 200
    assert headers["Content-Type"] == "text/html; charset=utf-8"
    parsed = parse_page(body.decode())
    assert sorted(row.job_id for row in parsed.rows) == sorted(job.job_id for job in filter_view().jobs)
    for row in parsed.rows:
        [link] = row.cells["Metrics"].links
        samples = sample_map(fetch(filter_server + link)[2].decode())
        assert samples, f"the metrics link of job {row.job_id!r} returned no samples"
        assert {dict(labels)["job_id"] for _, labels in samples} == {row.job_id}


# --- In a real browser ----------------------------------------------------------------


def chromium_binary() -> str:
    """Return the chromium path, installing the Debian package first when root can."""
    path = shutil.which("chromium")
    if path:
        return path
    if os.geteuid() == 0 and shutil.which("apt-get"):
        environment = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-q"], capture_output=True, timeout=600, env=environment)
        subprocess.run(["apt-get", "install", "-y", "-q", "--no-install-recommends", "chromium"],
                       capture_output=True, timeout=900, env=environment)
        path = shutil.which("chromium")
        if path:
            return path
    pytest.fail(f"chromium not found and it could not be installed; run as root: {CHROMIUM_INSTALL}", pytrace=False)


# Chromium 156 (Debian 12) looked up Google update hosts at start-up even with the
# update flags below, as strace showed. The resolver rule fails every name lookup
# except 127.0.0.1 inside Chromium, so no DNS query leaves the machine.
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-extensions", "--disable-default-apps", "--no-pings", "--disable-domain-reliability",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    "--hide-scrollbars", "--force-device-scale-factor=1",
)


def run_chromium(chromium: str, profile: Path, url: str, *arguments: str) -> subprocess.CompletedProcess[str]:
    command = [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *arguments, url]
    result = subprocess.run(command, capture_output=True, text=True, timeout=90)
    assert result.returncode == 0, f"chromium exited with {result.returncode}: {result.stderr[-2000:]}"
    return result


class DemoExporter:
    """`python -m exporter --demo` as a subprocess, with its log collected in the background."""

    def __init__(self) -> None:
        environment = {key: value for key, value in os.environ.items() if not key.startswith("OPENSRS_")}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "exporter", "--demo", "--demo.speed", "600", "--poll.interval", "1s",
             "--web.listen-address", "127.0.0.1:0"],
            cwd=REPO_ROOT, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
        self.log: list[str] = []
        self.metrics_url = ""
        self._started = threading.Event()
        threading.Thread(target=self._read_log, daemon=True).start()
        if not self._started.wait(30):
            self.stop()
            log_tail = "".join(self.log[-20:])
            raise AssertionError(f"the demo exporter logged no serving metrics line in 30 s:\n{log_tail}")
        self.base_url = self.metrics_url.rsplit("/", 1)[0]

    def _read_log(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.log.append(line)
            match = re.search(r'msg="serving metrics" url=(\S+)', line)
            if match:
                self.metrics_url = match.group(1)
                self._started.set()

    def samples(self) -> dict[tuple[str, tuple], float]:
        with urllib.request.urlopen(self.metrics_url, timeout=10) as response:
            return sample_map(response.read().decode())

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def job_figures_from_metrics(samples: dict[tuple[str, tuple], float]) -> dict[str, dict[str, object]]:
    """Pick each job's figures that the status page shows from one scrape."""
    figures: dict[str, dict[str, object]] = {}
    for (name, labels), value in samples.items():
        label_map = dict(labels)
        job_id = label_map.get("job_id")
        if job_id is None:
            continue
        job = figures.setdefault(job_id, {"states": {}})
        short = name.removeprefix("opensrs_migration_")
        if short == "job_users":
            if value:
                job["states"][label_map["state"]] = int(value)
        elif short in ("job_up", "job_failed_messages", "job_critical_errors", "job_migrated_messages",
                       "job_skipped_messages", "job_remote_messages", "job_throughput_bytes_per_second"):
            job[short] = value
    return figures


def demo_finished(samples: dict[tuple[str, tuple], float]) -> bool:
    figures = job_figures_from_metrics(samples)
    for job_id in FINISHED_DEMO_JOBS:
        states = figures.get(job_id, {}).get("states", {})
        if not states or set(states) - {"complete", "error"}:
            return False
    return all(job_id in figures and figures[job_id].get("job_up") == 1.0 for job_id in DEMO_JOBS)


@pytest.fixture(scope="module")
def chromium() -> str:
    return chromium_binary()


@pytest.fixture(scope="module")
def demo_exporter() -> Iterator[DemoExporter]:
    exporter = DemoExporter()
    try:
        deadline = time.monotonic() + 60
        while not demo_finished(exporter.samples()):
            assert time.monotonic() < deadline, "the demo jobs' users did not reach complete or error in 60 s"
            time.sleep(0.3)
        yield exporter
    finally:
        exporter.stop()
    log = "".join(exporter.log)
    assert "Traceback" not in log, log


def test_browser_page_matches_metrics(chromium, demo_exporter, tmp_path):
    # Figures of the stalled job can still move: compare only against two identical
    # scrapes taken around the page load.
    for attempt in range(5):
        before = job_figures_from_metrics(demo_exporter.samples())
        dom = run_chromium(chromium, tmp_path / f"profile-{attempt}", demo_exporter.base_url + "/", "--dump-dom").stdout
        after = job_figures_from_metrics(demo_exporter.samples())
        if before == after:
            break
    else:
        pytest.fail("the demo's figures kept changing during five page loads")
    parsed = parse_page(dom)
    rows = {row.job_id: row.cells for row in parsed.rows}
    assert sorted(rows) == sorted(DEMO_JOBS)
    assert parsed.rows[0].job_id == "1700000000002", "the job with an error user must come first"
    for job_id in DEMO_JOBS:
        expected, cells = after[job_id], rows[job_id]
        assert cells["Users"].states == expected["states"], job_id
        assert cells["Failed messages"].text == format_count(expected["job_failed_messages"]), job_id
        assert cells["Critical errors"].text == format_count(expected["job_critical_errors"]), job_id
        assert cells["Throughput"].text == format_rate(expected["job_throughput_bytes_per_second"]), job_id
        handled = (expected["job_migrated_messages"] + expected["job_skipped_messages"]
                   + expected["job_failed_messages"])
        percent = progress_percent(handled, expected["job_remote_messages"])
        assert percent is not None, job_id
        assert cells["Progress"].progress == f"{percent:.1f}", job_id
        assert cells["Poll status"].text == "up", job_id
        assert re.fullmatch(r"\d+ s ago", cells["Last successful poll"].text), cells["Last successful poll"].text
        assert cells["Metrics"].links == [f"/metrics?job_id={job_id}"], job_id
    error_users = after["1700000000002"]["states"].get("error", 0)
    assert error_users > 0, "the demo's failing job has no error user any more"
    assert f"{len(DEMO_JOBS)} jobs" in parsed.summary


def png_size_and_colours(path: Path) -> tuple[int, int, int]:
    """Return width, height and the number of distinct byte values in the decompressed pixels."""
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n"), f"{path} is not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    position, pixels = 8, b""
    while position < len(data):
        length, kind = struct.unpack(">I4s", data[position:position + 8])
        if kind == b"IDAT":
            pixels += data[position + 8:position + 8 + length]
        position += 12 + length
    return width, height, len(set(zlib.decompress(pixels)))


@pytest.mark.parametrize("width, height", [(1280, 900), (390, 844)], ids=["wide", "phone"])
def test_browser_screenshot(chromium, demo_exporter, tmp_path, width, height):
    target = tmp_path / f"status-page-{width}x{height}.png"
    run_chromium(chromium, tmp_path / "profile", demo_exporter.base_url + "/",
                 f"--screenshot={target}", f"--window-size={width},{height}")
    assert target.exists(), "chromium wrote no screenshot"
    shot_width, shot_height, colours = png_size_and_colours(target)
    assert (shot_width, shot_height) == (width, height)
    # A blank or single-colour page decompresses to a handful of distinct byte values.
    assert colours > 50, f"the screenshot looks blank: {colours} distinct byte values"
    if width == 1280 and os.environ.get("UPDATE_SCREENSHOT") == "1":
        SCREENSHOT.parent.mkdir(exist_ok=True)
        shutil.copyfile(target, SCREENSHOT)
