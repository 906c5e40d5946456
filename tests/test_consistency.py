"""Scrapes that run while polls finish never mix values of two polls."""

from __future__ import annotations

import gzip
import itertools
import threading
import time
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from exporter.client import OmaClient
from exporter.poller import Poller
from exporter.render import render_job
from exporter.server import Exposition, ExporterServer
from tests.scripted_server import ScriptedServer, json_reply

FOLDERS = ("INBOX", "Sent Items", "Archive/2020", "Trash")
JOBS = ("1", "2", "3")


def numbered_response(number: int) -> dict:
    """A response whose every counter is derived from the poll `number`."""
    folders = {name: {"migrate_count": number, "remote_count": str(number), "delim": "/"} for name in FOLDERS}
    status = {"migrate_count": number * len(FOLDERS), "remote_count": number * len(FOLDERS), "foldercount": len(FOLDERS)}
    users = [
        {"local": f"user{i}@example.com", "state": "active", "data": {"folders": folders, "status": status, "config": {}}}
        for i in range(20)
    ]
    return {"success": True, "rate": f"{number} B/s", "users": users}


def check_one_poll(text: str) -> int:
    """Return how many jobs were checked; fail when a job's values come from two polls."""
    numbers: dict[str, set[float]] = {job_id: set() for job_id in JOBS}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            job_id = sample.labels.get("job_id")
            if job_id not in numbers:
                continue
            if sample.name in ("opensrs_migration_folder_migrated_messages", "opensrs_migration_folder_remote_messages",
                               "opensrs_migration_job_throughput_bytes_per_second"):
                numbers[job_id].add(sample.value)
            elif sample.name in ("opensrs_migration_user_migrated_messages", "opensrs_migration_user_remote_messages"):
                numbers[job_id].add(sample.value / len(FOLDERS))
            elif sample.name == "opensrs_migration_job_migrated_messages":
                numbers[job_id].add(sample.value / len(FOLDERS) / 20)
    for job_id, seen in numbers.items():
        assert len(seen) <= 1, f"job {job_id} shows values of polls {sorted(seen)} in one scrape"
    return sum(1 for seen in numbers.values() if seen)


def test_scrapes_during_polls_see_whole_polls():
    counter = itertools.count(1)
    with ScriptedServer(lambda method, body: json_reply(numbered_response(next(counter)))) as oma:
        client = OmaClient(oma.url, "sre@example.com", "test-password-7f3a", client_name="test", pool_size=3)
        poller = Poller(client, JOBS, interval=0.01, deadline=10, stale_after=60, concurrency=3, prepare=render_job)
        exposition = Exposition(poller.view)
        server = ExporterServer("127.0.0.1", 0, exposition, poller.view)
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        poller.start()
        checked: list[int] = []
        failures: list[BaseException] = []

        def scrape_repeatedly(use_gzip: bool) -> None:
            end = time.monotonic() + 3.0
            headers = {"Accept-Encoding": "gzip"} if use_gzip else {}
            while time.monotonic() < end:
                request = urllib.request.Request(f"http://127.0.0.1:{server.port}/metrics", headers=headers)
                with urllib.request.urlopen(request, timeout=10) as response:
                    body = response.read()
                text = (gzip.decompress(body) if use_gzip else body).decode()
                try:
                    checked.append(check_one_poll(text))
                except AssertionError as error:
                    failures.append(error)
                    return

        scrapers = [threading.Thread(target=scrape_repeatedly, args=(n % 2 == 1,)) for n in range(4)]
        for thread in scrapers:
            thread.start()
        for thread in scrapers:
            thread.join()
        poller.stop()
        server.shutdown()
        server.server_close()
        client.close()
    polls = next(counter)
    assert not failures, failures[0]
    assert sum(checked) > 20, "too few scrapes saw data to prove anything"
    assert polls > 30, "too few polls finished during the scrapes to prove anything"
