"""Measure the exporter's poll cycle and the JSON parsing floor in one process.

A poll cycle is the work between two publications of a complete view. For every job
it fetches migration_status, decodes the JSON, builds the JobStatus snapshot and
renders its sample lines (`render_job`). Then it assembles the plain and the gzip
body once (`Exposition.render`). The simulator runs in another process, so the CPU time
here (`time.process_time()`, all threads of this process) is the exporter's own.

Prints one JSON object with every measurement on stdout.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import http.client
import json
import os
import pstats
import statistics
import time
from pathlib import Path
from types import MappingProxyType
from urllib.parse import urlsplit

from exporter.client import OmaClient
from exporter.parse import parse_status
from exporter.poller import JobView, Poller, View
from exporter.render import render_job
from exporter.server import Exposition

from common import OMA_USER, PASSWORD_ENV

# Long enough that nothing in the poller expires during a measurement, which only
# ever calls `Poller.poll_all()` and never starts the scheduler thread.
POLL_INTERVAL_SECONDS = 3600.0
POLL_DEADLINE_SECONDS = 600.0

PROFILE_ROWS = 15
REPOSITORY = str(Path(__file__).resolve().parent.parent) + os.sep


class CycleRunner:
    """One OMA client, poller and exposition, reused across cycles as in the exporter."""

    def __init__(self, url: str, password: str, job_ids: list[str]):
        self.client = OmaClient(url, OMA_USER, password, client_name="opensrs-migration-bench", pool_size=1)
        self.poller = Poller(
            self.client, job_ids,
            interval=POLL_INTERVAL_SECONDS, deadline=POLL_DEADLINE_SECONDS, stale_after=POLL_INTERVAL_SECONDS,
            concurrency=1, prepare=render_job,
        )
        self.exposition = Exposition(self.poller.view, series_limit=0)

    def run_cycle(self) -> tuple[int, int]:
        """Poll every job once and assemble both bodies; return their sizes in bytes."""
        self.poller.poll_all()
        failed = [job.job_id for job in self.poller.view().jobs if not job.up]
        if failed:
            raise RuntimeError(f"poll failed for jobs {failed[:5]} ({len(failed)} in all); check the simulator")
        plain, _ = self.exposition.render(None, False)
        compressed, _ = self.exposition.render(None, True)
        return sum(len(chunk) for chunk in plain), sum(len(chunk) for chunk in compressed)


def measure_cycles(runner: CycleRunner, repeats: int) -> dict:
    walls, cpus = [], []
    sizes = (0, 0)
    for _ in range(repeats):
        gc.collect()
        wall_start, cpu_start = time.perf_counter(), time.process_time()
        sizes = runner.run_cycle()
        cpus.append(time.process_time() - cpu_start)
        walls.append(time.perf_counter() - wall_start)
    return {"wall_seconds": walls, "cpu_seconds": cpus, "plain_bytes": sizes[0], "gzip_bytes": sizes[1]}


def fetch_responses(url: str, password: str, job_ids: list[str]) -> list[bytes]:
    """Return the raw migration_status bodies, exactly the bytes the poller decodes."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    bodies = []
    try:
        for job_id in job_ids:
            request = {"credentials": {"user": OMA_USER, "password": password}, "job": job_id}
            connection.request("POST", f"{parts.path}/migration_status", json.dumps(request).encode(),
                               {"Content-Type": "application/json"})
            response = connection.getresponse()
            body = response.read()
            if response.status != 200:
                raise RuntimeError(f"migration_status of job {job_id} returned HTTP {response.status}")
            bodies.append(body)
    finally:
        connection.close()
    return bodies


def measure_parsing_floor(bodies: list[bytes], repeats: int) -> dict:
    """Time `json.loads` over every body in CPU seconds: the minimum any exporter spends."""
    cpus = []
    for _ in range(repeats):
        gc.collect()
        start = time.process_time()
        for body in bodies:
            json.loads(body)
        cpus.append(time.process_time() - start)
    return {"cpu_seconds": cpus, "response_bytes": sum(len(body) for body in bodies)}


def measure_stages(bodies: list[bytes], job_ids: list[str]) -> dict:
    """Time each stage of a cycle alone, once, in CPU seconds, without HTTP or the poller.

    The stages are the ones `Poller._poll` and `Exposition.render` run; the remainder
    of a cycle is the HTTP exchange and the poller's bookkeeping.
    """
    seconds = dict.fromkeys(("json_loads", "parse_status", "render_job"), 0.0)
    jobs = []
    for job_id, body in zip(job_ids, bodies):
        gc.collect()
        started = time.process_time()
        document = json.loads(body)
        decoded = time.process_time()
        status = parse_status(job_id, document)
        parsed = time.process_time()
        del document
        fragments = render_job(status)
        rendered = time.process_time()
        seconds["json_loads"] += decoded - started
        seconds["parse_status"] += parsed - decoded
        seconds["render_job"] += rendered - parsed
        jobs.append(JobView(job_id, status=status, polled=True, up=True, rendered=fragments))
    view = View(1, tuple(sorted(jobs, key=lambda job: job.job_id)), MappingProxyType({}), True)
    exposition = Exposition(lambda: view, series_limit=0)
    for key, use_gzip in (("assemble_plain", False), ("assemble_gzip", True)):
        gc.collect()
        started = time.process_time()
        exposition.render(None, use_gzip)
        seconds[key] = time.process_time() - started
    return seconds


def profile_cycle(runner: CycleRunner) -> dict:
    """Profile one more cycle and return the functions with the largest cumulative time."""
    gc.collect()
    profiler = cProfile.Profile()
    profiler.enable()
    runner.run_cycle()
    profiler.disable()
    stats = pstats.Stats(profiler).stats
    total = max(cumulative for _, _, _, cumulative, _ in stats.values())
    rows = []
    for (filename, line, function), (_, calls, own, cumulative, _) in stats.items():
        rows.append({"function": _function_name(filename, line, function), "calls": calls,
                     "own_seconds": own, "cumulative_seconds": cumulative})
    rows.sort(key=lambda row: row["cumulative_seconds"], reverse=True)
    return {"total_seconds": total, "top": rows[:PROFILE_ROWS]}


def _function_name(filename: str, line: int, function: str) -> str:
    if filename == "~":
        return function  # a built-in, such as {built-in method _json.scanstring}
    if "site-packages" + os.sep in filename:
        filename = filename.split("site-packages" + os.sep, 1)[1]
    elif filename.startswith(REPOSITORY):
        filename = filename[len(REPOSITORY):]
    elif "python3." in filename:
        filename = "stdlib/" + Path(filename).name
    return f"{filename}:{line}({function})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True, help="OMA base URL of the static simulator.")
    parser.add_argument("--jobs", required=True, help="Comma-separated job IDs to poll.")
    parser.add_argument("--repeats", type=int, default=3, help="Poll cycles to time (default 3).")
    parser.add_argument("--floor-repeats", type=int, default=5, help="Runs of the JSON parsing floor (default 5).")
    parser.add_argument("--profile", action="store_true", help="Also profile one extra cycle with cProfile.")
    arguments = parser.parse_args()

    password = os.environ[PASSWORD_ENV]
    job_ids = arguments.jobs.split(",")
    runner = CycleRunner(arguments.url, password, job_ids)
    result = {"cycle": measure_cycles(runner, arguments.repeats)}
    bodies = fetch_responses(arguments.url, password, job_ids)
    result["parsing_floor"] = measure_parsing_floor(bodies, arguments.floor_repeats)
    result["stages"] = measure_stages(bodies, job_ids)
    del bodies
    if arguments.profile:
        result["profile"] = profile_cycle(runner)
    result["cycle"]["wall_median"] = statistics.median(result["cycle"]["wall_seconds"])
    result["cycle"]["cpu_median"] = statistics.median(result["cycle"]["cpu_seconds"])
    result["parsing_floor"]["cpu_median"] = statistics.median(result["parsing_floor"]["cpu_seconds"])
    runner.client.close()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
