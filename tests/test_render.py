"""The cached renderer against prometheus_client's own encoders, byte for byte."""

from __future__ import annotations

import gzip
import zlib

import pytest
from prometheus_client import generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

from exporter.client import OmaClient
from exporter.poller import JobView, Poller, View
from exporter.render import count_series, plan_series, render_job
from exporter.server import Exposition
from exporter.simulator import Simulation, SimulatorServer
from exporter.snapshot import FolderStatus, JobStatus, UserStatus

OPENMETRICS = "application/openmetrics-text; version=1.0.0"
HOSTILE_NAMES = ['Say "hello"', "back\\slash", "new\nline", "tab\there", "emoji 📬", "x" * 300, "Entwürfe", ""]


def hostile_status(job_id: str = "00042") -> JobStatus:
    folders = tuple(
        FolderStatus(name=name, migrated_messages=float(i), skipped_messages=None if i == 2 else 1.0,
                     migrated_bytes=1e9 + i, next_uid=12345678.0, retry1_messages=0.5)
        for i, name in enumerate(HOSTILE_NAMES)
    )
    users = (
        UserStatus(user='a"b@example.com', state="active", remote_user="r\\u", server="imap:993", method="imap4s",
                   delimiter="/", migrated_messages=3.0, failed_messages=None, folders=folders),
        UserStatus(user="new\nline@example.com", state="unknown", critical_errors=2.0, migrated_bytes=2.5e12),
        UserStatus(user="z@example.com", state="error", critical_errors=5.0, folders=folders[:2]),
    )
    return JobStatus(job_id=job_id, throughput_bytes_per_second=628222.976, users=users)


def view_of(*jobs: JobView) -> View:
    return View(version=1, jobs=tuple(sorted(jobs, key=lambda job: job.job_id)), api_errors={"1": 3, "99": 1}, ready=True)


def rendered_job(status: JobStatus, **fields) -> JobView:
    return JobView(status.job_id, status=status, polled=True, up=True, last_success=1.7e9, poll_duration=0.25,
                   rendered=render_job(status), **fields)


def render(exposition: Exposition, accept: str = "text/plain", use_gzip: bool = False) -> bytes:
    chunks, _ = exposition.render(accept, use_gzip)
    return b"".join(chunks)


def assert_same_as_registry(exposition: Exposition) -> None:
    fast_text = render(exposition)
    assert fast_text == generate_latest(exposition.registry)
    fast_openmetrics = render(exposition, OPENMETRICS)
    assert fast_openmetrics == generate_openmetrics(exposition.registry)
    compressed = render(exposition, use_gzip=True)
    assert gzip.decompress(compressed) == fast_text
    # One gzip member that a single-member inflater (wbits 31) reads to the end.
    decompressor = zlib.decompressobj(31)
    assert decompressor.decompress(compressed) == fast_text
    assert decompressor.eof
    assert decompressor.unused_data == b""


@pytest.mark.parametrize("folders", [True, False])
def test_hostile_names_match_registry(folders):
    view = view_of(rendered_job(hostile_status("00042")), rendered_job(hostile_status("7"), stale=True))
    assert_same_as_registry(Exposition(lambda: view, folders=folders))


def test_fallback_render_matches_registry():
    status = hostile_status()
    view = view_of(JobView(status.job_id, status=status, polled=True, up=False, poll_errors={"timeout": 2}))
    assert_same_as_registry(Exposition(lambda: view))


def test_count_series_matches_render():
    status = hostile_status()
    assert count_series(status) == render_job(status).series


def test_series_limit_drops_whole_jobs_in_order():
    jobs = [rendered_job(hostile_status(job_id)) for job_id in ("a", "b", "c")]
    counts = jobs[0].rendered.series
    per_job_base = counts["job"] + counts["user"]
    limit = 3 * per_job_base + counts["folder"] + 1  # room for one job's folders
    plan = plan_series(jobs, folders=True, series_limit=limit)
    assert plan.folder_jobs == frozenset({"a"})
    assert plan.omitted == 2 * counts["folder"]
    assert plan.served == 3 * per_job_base + counts["folder"]

    exposition = Exposition(lambda: view_of(*jobs), series_limit=limit)
    assert_same_as_registry(exposition)
    text = render(exposition).decode()
    assert 'opensrs_migration_folder_next_uid{folder="Entwürfe",job_id="a"' in text
    assert 'job_id="b",user="z@example.com"} 5.0' in text
    assert 'opensrs_migration_folder_next_uid{folder="Entwürfe",job_id="b"' not in text
    assert f"opensrs_migration_exposition_omitted_series {float(2 * counts['folder'])!r}" in text


def test_series_limit_never_drops_job_or_user_series():
    jobs = [rendered_job(hostile_status(job_id)) for job_id in ("a", "b")]
    plan = plan_series(jobs, folders=True, series_limit=1)
    assert plan.folder_jobs == frozenset()
    assert plan.served == sum(job.rendered.series["job"] + job.rendered.series["user"] for job in jobs)


def test_simulated_jobs_match_registry():
    simulation = Simulation(scenario="demo", seed=3, speed=600.0)
    with_server = SimulatorServer(simulation, user="sre@example.com", password="test-password-7f3a").start()
    try:
        client = OmaClient(with_server.url, "sre@example.com", "test-password-7f3a", client_name="test")
        poller = Poller(client, simulation.job_ids(), interval=60, deadline=30, stale_after=600, prepare=render_job)
        exposition = Exposition(poller.view)
        poller.poll_all()
        assert_same_as_registry(exposition)
        assert render(exposition) == render(exposition)
    finally:
        with_server.stop()


def test_cache_reused_until_view_changes():
    state = {"view": view_of(rendered_job(hostile_status()))}
    exposition = Exposition(lambda: state["view"])
    first, _ = exposition.render("text/plain", True)
    again, _ = exposition.render("text/plain", True)
    assert again is first
    state["view"] = View(version=2, jobs=state["view"].jobs, api_errors={}, ready=True)
    changed, _ = exposition.render("text/plain", True)
    assert changed is not first
