"""A conventional exporter of the same series, for comparison.

It is written the way most Python exporters are. A loop polls migration_status with
`requests` and sets one `prometheus_client` Gauge child per series with
`.labels(...).set(...)`. `prometheus_client.start_http_server` runs `generate_latest`
over the default registry on every scrape and gzip-compresses the result when the
request accepts gzip. The families, names and label names are the
exporter's job, user and folder families. Responses go through the exporter's own
`parse_status`, so both expose the same series with the same values, and the
comparison measures the exposition approach alone.

It never removes a child, so a user or folder that leaves a response keeps its last
value until a restart. The benchmark's responses never change, so that does not
affect the measurements. After each poll cycle it prints one JSON line with the
cycle's wall and CPU time.
"""

from __future__ import annotations

import argparse
import logging
import os
import time

import requests
from prometheus_client import Gauge, start_http_server

from exporter import metricdefs as m
from exporter.errors import ResponseError
from exporter.parse import parse_status
from exporter.snapshot import STATES, UNKNOWN_STATE, JobStatus

from common import OMA_USER, PASSWORD_ENV, announce

log = logging.getLogger("baseline")

GAUGES = {
    definition.name: Gauge(definition.name, definition.help, definition.labels)
    for definition in m.JOB_LEVEL + m.USER_LEVEL + m.FOLDER_LEVEL
}

USER_COUNTERS = (
    (m.USER_MIGRATED, "migrated_messages"), (m.USER_SKIPPED, "skipped_messages"),
    (m.USER_FAILED, "failed_messages"), (m.USER_REMOTE, "remote_messages"), (m.USER_BYTES, "migrated_bytes"),
    (m.USER_CRITICAL, "critical_errors"), (m.USER_FOLDERS, "folder_count"),
)
FOLDER_COUNTERS = (
    (m.FOLDER_MIGRATED, "migrated_messages"), (m.FOLDER_SKIPPED, "skipped_messages"),
    (m.FOLDER_FAILED, "failed_messages"), (m.FOLDER_REMOTE, "remote_messages"),
    (m.FOLDER_BYTES, "migrated_bytes"), (m.FOLDER_NEXT_UID, "next_uid"),
)
JOB_TOTALS = (
    (m.JOB_MIGRATED, "migrated_messages"), (m.JOB_SKIPPED, "skipped_messages"), (m.JOB_FAILED, "failed_messages"),
    (m.JOB_REMOTE, "remote_messages"), (m.JOB_BYTES, "migrated_bytes"), (m.JOB_CRITICAL, "critical_errors"),
)


def fetch_status(session: requests.Session, url: str, password: str, job_id: str) -> JobStatus:
    request = {"credentials": {"user": OMA_USER, "password": password}, "client": "baseline-exporter", "job": job_id}
    response = session.post(f"{url}/migration_status", json=request, timeout=60)
    response.raise_for_status()
    document = response.json()
    if document.get("success") is not True:
        raise ResponseError(f"migration_status failed with OMA error {document.get('error_number')}")
    return parse_status(job_id, document)


def set_job(status: JobStatus) -> None:
    job_id = status.job_id
    if status.throughput_bytes_per_second is not None:
        GAUGES[m.JOB_THROUGHPUT.name].labels(job_id).set(status.throughput_bytes_per_second)
    states = [user.state for user in status.users]
    for state in STATES:
        GAUGES[m.JOB_USERS.name].labels(job_id, state).set(states.count(state))
    if UNKNOWN_STATE in states:
        GAUGES[m.JOB_USERS.name].labels(job_id, UNKNOWN_STATE).set(states.count(UNKNOWN_STATE))
    for definition, attribute in JOB_TOTALS:
        values = [getattr(user, attribute) for user in status.users]
        # One unreadable user value makes the sum unknown, as in the exporter.
        if None not in values:
            GAUGES[definition.name].labels(job_id).set(sum(values))


def set_users(status: JobStatus) -> None:
    job_id = status.job_id
    for user in status.users:
        for state in STATES + (UNKNOWN_STATE,):
            if state != UNKNOWN_STATE or user.state == UNKNOWN_STATE:
                GAUGES[m.USER_STATE.name].labels(job_id, user.user, state).set(1 if user.state == state else 0)
        GAUGES[m.USER_INFO.name].labels(
            job_id, user.user, user.remote_user, user.server, user.method, user.delimiter
        ).set(1)
        for definition, attribute in USER_COUNTERS:
            value = getattr(user, attribute)
            if value is not None:
                GAUGES[definition.name].labels(job_id, user.user).set(value)
        for attempt, value in (("1", user.retry1_messages), ("2", user.retry2_messages)):
            if value is not None:
                GAUGES[m.USER_RETRY_PENDING.name].labels(job_id, user.user, attempt).set(value)


def set_folders(status: JobStatus) -> None:
    job_id = status.job_id
    for user in status.users:
        for folder in user.folders:
            for definition, attribute in FOLDER_COUNTERS:
                value = getattr(folder, attribute)
                if value is not None:
                    GAUGES[definition.name].labels(job_id, user.user, folder.name).set(value)
            for attempt, value in (("1", folder.retry1_messages), ("2", folder.retry2_messages)):
                if value is not None:
                    GAUGES[m.FOLDER_RETRY_PENDING.name].labels(job_id, user.user, folder.name, attempt).set(value)


def poll_cycle(session: requests.Session, url: str, password: str, job_ids: list[str]) -> int:
    """Poll every job once and update its gauges; return the number of failed polls."""
    failures = 0
    for job_id in job_ids:
        try:
            status = fetch_status(session, url, password, job_id)
        except (requests.RequestException, ValueError, ResponseError) as error:
            log.warning("poll of job %s failed: %s", job_id, error)
            failures += 1
            continue
        set_job(status)
        set_users(status)
        set_folders(status)
    return failures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True, help="OMA base URL.")
    parser.add_argument("--jobs", required=True, help="Comma-separated job IDs to poll.")
    parser.add_argument("--interval", type=float, default=600.0, help="Seconds between poll cycles (default 600).")
    parser.add_argument("--back-to-back", type=int, default=1,
                        help="Poll cycles to run without a pause at start, to time them (default 1).")
    arguments = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")

    password = os.environ[PASSWORD_ENV]
    job_ids = arguments.jobs.split(",")
    server, _ = start_http_server(0, addr="127.0.0.1")
    announce(url=f"http://127.0.0.1:{server.server_port}/metrics")
    session = requests.Session()
    session.trust_env = False  # never send the simulator's traffic through a proxy from the environment
    cycle = 0
    while True:
        wall_start, cpu_start = time.perf_counter(), time.process_time()
        failures = poll_cycle(session, arguments.url, password, job_ids)
        announce(cycle=cycle, wall_seconds=time.perf_counter() - wall_start,
                 cpu_seconds=time.process_time() - cpu_start, failures=failures)
        cycle += 1
        if cycle >= arguments.back_to_back:
            time.sleep(arguments.interval)


if __name__ == "__main__":
    main()
