"""Benchmark the exporter against its floors and a conventional baseline; write the report.

For each scenario this starts a static OMA simulator in its own process. Then it
measures, one after the other, the poll cycle and the JSON parsing floor (measure.py),
the real exporter console script, a server of the same bytes from memory
(floor_server.py) and a conventional prometheus_client exporter (baseline_exporter.py). Only one measured
process runs at a time, next to the idle simulator. `make bench` runs this with
`--output docs/benchmarks.md`.
"""

from __future__ import annotations

import argparse
import gzip
import logging
import os
import re
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from processes import ExporterProcess, start_helper
from report import load_average, write_report
from scrape import latency_summary, scrape, scrape_loop

log = logging.getLogger("bench")

# A poll interval far longer than a scenario's scrape loop, so no poll publishes a new
# view while it runs. 10m also equals the defaults of --poll.stale-after and
# --poll.finished-interval, which must not be shorter than --poll.interval.
EXPORTER_POLL_INTERVAL = "10m"
BASELINE_POLL_INTERVAL_SECONDS = 3600.0
STARTUP_TIMEOUT_SECONDS = 600.0
SERIES_GAUGE = re.compile(rb"^opensrs_migration_exposition_series (\S+)$", re.MULTILINE)
SCENARIO_PATTERN = re.compile(r"^(?P<name>[a-z][a-z0-9_-]*)=(?P<jobs>\d+)x(?P<users>\d+)x(?P<folders>\d+)"
                              r",(?P<scrapes>\d+),(?P<baseline_scrapes>\d+)$")


@dataclass(frozen=True)
class Scenario:
    name: str
    jobs: int
    users: int
    folders: int
    scrapes: int
    """Timed scrapes per format of the exporter and of the floor server."""
    baseline_scrapes: int
    """Timed scrapes per format of the baseline, which is far slower at scale."""

    @property
    def size_text(self) -> str:
        jobs = "1 job" if self.jobs == 1 else f"{self.jobs} jobs"
        return f"{jobs} x {self.users} users x {self.folders} folders"


DEFAULT_SCENARIOS = (
    Scenario("batch", jobs=1, users=500, folders=20, scrapes=50, baseline_scrapes=20),
    Scenario("fleet", jobs=20, users=500, folders=20, scrapes=15, baseline_scrapes=3),
)


def parse_scenario(text: str) -> Scenario:
    match = SCENARIO_PATTERN.match(text)
    if match is None:
        raise argparse.ArgumentTypeError(
            f"invalid scenario {text!r}; expected NAME=JOBSxUSERSxFOLDERS,SCRAPES,BASELINE_SCRAPES such as "
            "batch=1x500x20,50,20"
        )
    fields = match.groupdict()
    numbers = {key: int(value) for key, value in fields.items() if key != "name"}
    if min(numbers.values()) < 1:
        raise argparse.ArgumentTypeError(f"invalid scenario {text!r}; every number must be at least 1")
    return Scenario(fields["name"], **numbers)


def run_scenario(scenario: Scenario, cycles: int, floor_repeats: int, seed: int, workdir: Path) -> dict:
    log.info("scenario %s: %s, rendering the responses", scenario.name, scenario.size_text)
    simulator_arguments = ["--jobs", str(scenario.jobs), "--users", str(scenario.users),
                           "--folders", str(scenario.folders), "--seed", str(seed)]
    with start_helper("simulator", "simulator_server.py", simulator_arguments) as simulator:
        announced = simulator.read_json(STARTUP_TIMEOUT_SECONDS)
        oma_url, job_ids = announced["url"], announced["jobs"]
        result = {"scenario": scenario, "response_bytes": announced["response_bytes"]}

        log.info("scenario %s: poll cycles and parsing floor", scenario.name)
        result["measure"] = run_measure(oma_url, job_ids, cycles, floor_repeats)

        log.info("scenario %s: exporter, %d scrapes per format", scenario.name, scenario.scrapes)
        plain_file, gzip_file = workdir / f"{scenario.name}.prom", workdir / f"{scenario.name}.prom.gz"
        result["exporter"] = measure_exporter(oma_url, job_ids, scenario.scrapes, plain_file, gzip_file)

        log.info("scenario %s: floor server, %d scrapes per format", scenario.name, scenario.scrapes)
        result["floor"] = measure_floor(plain_file, gzip_file, scenario.scrapes)

        log.info("scenario %s: baseline exporter, %d scrapes per format", scenario.name, scenario.baseline_scrapes)
        result["baseline"] = measure_baseline(oma_url, job_ids, cycles, scenario.baseline_scrapes)
    return result


def run_measure(oma_url: str, job_ids: list[str], cycles: int, floor_repeats: int) -> dict:
    arguments = ["--url", oma_url, "--jobs", ",".join(job_ids), "--repeats", str(cycles),
                 "--floor-repeats", str(floor_repeats), "--profile"]
    with start_helper("measure process", "measure.py", arguments) as measure:
        return measure.read_json(STARTUP_TIMEOUT_SECONDS)


def measure_exporter(oma_url: str, job_ids: list[str], count: int, plain_file: Path, gzip_file: Path) -> dict:
    arguments = ["--web.listen-address", "127.0.0.1:0", "--poll.interval", EXPORTER_POLL_INTERVAL,
                 "--collector.series-limit", "0"]
    with ExporterProcess(oma_url, job_ids, arguments) as exporter:
        started = time.monotonic()
        exporter.wait_ready(STARTUP_TIMEOUT_SECONDS)
        ready_seconds = time.monotonic() - started
        url = exporter.metrics_url
        # The warm-up scrapes fill the exporter's cache of each format and supply the
        # bytes that the floor server serves.
        plain = scrape(url, use_gzip=False, keep_body=True).body
        compressed = scrape(url, use_gzip=True, keep_body=True).body
        assert plain is not None and compressed is not None
        result = {
            "plain": latency_summary(scrape_loop(url, False, count)),
            "gzip": latency_summary(scrape_loop(url, True, count)),
            "peak_rss_bytes": exporter.peak_rss_bytes(),
            "ready_seconds": ready_seconds,
        }
        # Identical bytes before and after the loop mean that no poll published a new
        # view while it ran: every poll changes the last-success timestamps.
        result["view_unchanged"] = scrape(url, use_gzip=False, keep_body=True).body == plain
    match = SERIES_GAUGE.search(plain)
    result.update({
        "plain_bytes": len(plain),
        "gzip_bytes": len(compressed),
        "gzip_matches_plain": gzip.decompress(compressed) == plain,
        "samples_in_body": count_samples(plain),
        "exposition_series": int(float(match.group(1))) if match else None,
    })
    plain_file.write_bytes(plain)
    gzip_file.write_bytes(compressed)
    return result


def measure_floor(plain_file: Path, gzip_file: Path, count: int) -> dict:
    arguments = ["--plain", str(plain_file), "--gzip", str(gzip_file)]
    with start_helper("floor server", "floor_server.py", arguments) as floor:
        url = floor.read_json(STARTUP_TIMEOUT_SECONDS)["url"]
        scrape(url, use_gzip=False)
        scrape(url, use_gzip=True)
        return {
            "plain": latency_summary(scrape_loop(url, False, count)),
            "gzip": latency_summary(scrape_loop(url, True, count)),
            "peak_rss_bytes": floor.peak_rss_bytes(),
        }


def measure_baseline(oma_url: str, job_ids: list[str], cycles: int, count: int) -> dict:
    arguments = ["--url", oma_url, "--jobs", ",".join(job_ids), "--back-to-back", str(cycles),
                 "--interval", str(BASELINE_POLL_INTERVAL_SECONDS)]
    with start_helper("baseline exporter", "baseline_exporter.py", arguments) as baseline:
        url = baseline.read_json(STARTUP_TIMEOUT_SECONDS)["url"]
        cycle_results = [baseline.read_json(STARTUP_TIMEOUT_SECONDS) for _ in range(cycles)]
        failures = sum(cycle["failures"] for cycle in cycle_results)
        if failures:
            raise RuntimeError(f"the baseline exporter had {failures} failed polls; see its stderr")
        # The baseline caches nothing, so its first scrape does the same work as the
        # others and it gets no warm-up. The first plain scrape is kept for its size.
        first = scrape(url, use_gzip=False, keep_body=True)
        assert first.body is not None
        plain = [first.seconds] + scrape_loop(url, False, count - 1)
        compressed = [scrape(url, use_gzip=True) for _ in range(count)]
        return {
            "cycles": cycle_results,
            "plain": latency_summary(plain),
            "gzip": latency_summary([sample.seconds for sample in compressed]),
            "plain_bytes": len(first.body),
            "gzip_bytes": compressed[0].size,
            "samples_in_body": count_samples(first.body),
            "migration_samples": count_samples(first.body, b"opensrs_migration_"),
            "peak_rss_bytes": baseline.peak_rss_bytes(),
        }


def count_samples(body: bytes, prefix: bytes = b"") -> int:
    """Count the sample lines of a text exposition, or those that start with `prefix`."""
    if prefix:
        return body.count(b"\n" + prefix) + body.startswith(prefix)
    lines = body.count(b"\n")
    comments = body.count(b"\n#") + body.startswith(b"#")
    return lines - comments


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", type=Path, required=True, help="Markdown report to write.")
    parser.add_argument("--scenario", type=parse_scenario, action="append", dest="scenarios",
                        help="NAME=JOBSxUSERSxFOLDERS,SCRAPES,BASELINE_SCRAPES; repeat for several. "
                             "Default: batch=1x500x20,50,20 and fleet=20x500x20,15,3. The targets "
                             "refer to the scenarios named batch and fleet.")
    parser.add_argument("--cycles", type=int, default=3, help="Poll cycles to time per exporter (default 3).")
    parser.add_argument("--floor-repeats", type=int, default=5, help="Runs of the JSON parsing floor (default 5).")
    parser.add_argument("--seed", type=int, default=1, help="Random seed of the simulated fleet (default 1).")
    arguments = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)

    started = time.monotonic()
    load_start = load_average()
    results = []
    with tempfile.TemporaryDirectory(prefix="opensrs-bench-") as workdir:
        for scenario in arguments.scenarios or DEFAULT_SCENARIOS:
            results.append(run_scenario(scenario, arguments.cycles, arguments.floor_repeats, arguments.seed,
                                        Path(workdir)))
    duration = time.monotonic() - started
    write_report(arguments.output, results, duration, command_line(), load_start)
    log.info("wrote %s after %.0f s", arguments.output, duration)
    return 0


def command_line() -> str:
    """Return how this run was started: `make bench` when make is the parent."""
    script = " ".join([os.path.relpath(sys.executable), *sys.argv])
    return f"make bench (runs {script})" if "MAKELEVEL" in os.environ else script


if __name__ == "__main__":
    sys.exit(main())
