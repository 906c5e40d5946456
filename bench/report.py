"""Write docs/benchmarks.md from the results of bench/run.py.

The text above `MARKER` in an existing report is kept, so the intro can be edited by
hand; a new report starts with `DEFAULT_INTRO`.
"""

from __future__ import annotations

import datetime
import os
import platform
import re
import subprocess
from importlib import metadata
from pathlib import Path

MARKER = "<!-- Everything below this line is written by `make bench` (bench/run.py). Edit only the text above it. -->"
GIB = 1024**3
PACKAGES = ("opensrs-migration-exporter", "prometheus_client", "requests", "urllib3")

DEFAULT_INTRO = """\
# Benchmarks

The exporter renders each job's sample lines once per poll and serves cached bytes on
every scrape. This page checks what that buys. It shows the exporter's poll and scrape
times and peak memory, each next to a floor that no implementation can beat and next to
a conventional `prometheus_client` exporter of the same series. Every figure comes from
one run on one machine. `make bench` regenerates everything below the marker line and
keeps this intro.

How the figures are measured (the scripts are in `bench/`):

- **Scenarios.** `batch` is 1 job of 500 users with 20 folders each; `fleet` is 20 such
  jobs, about 1.6 million series. `exporter.simulator.fleet.render_fleet` (seed 1) renders
  the migration_status responses once, and a static OMA simulator serves them unchanged
  from its own process (`simulator_server.py`), so the simulator's CPU time never counts.
  Only one measured process runs at a time.
- **Poll cycle** (`measure.py`). One `OmaClient`, `Poller(prepare=render_job)` and
  `Exposition`, built as the exporter builds them. A cycle polls every job in turn (HTTP
  request, JSON decoding, `parse_status`, `render_job`), then assembles the plain and the
  gzip body once with `Exposition.render`. The figures are wall time and the process's CPU
  time (`time.process_time()`), median of 3 cycles.
- **Parsing floor.** CPU time of `json.loads` over the same response bytes, median of 5
  runs: the minimum CPU time any exporter spends to read the responses.
- **Scrape latency.** The installed console script, with `--poll.interval 10m` so that no
  poll runs during the scrape loop (the report checks this) and `--collector.series-limit 0`.
  After `/-/ready` and one warm-up scrape per format come sequential scrapes, each on a
  new connection and timed from connect to the last body byte. "plain" sends
  `Accept-Encoding: identity`, "gzip" sends `Accept-Encoding: gzip`; neither sends `Accept`,
  so the format is text 0.0.4. The client runs in the driver process (`run.py`), the same
  for every server. p50 and p99 are nearest-rank, so with fewer than 100 samples p99 is the
  slowest sample.
- **Scrape floor** (`floor_server.py`). The exporter's own bytes, fetched once, served from
  memory by a minimal `http.server`, with the same client loop.
- **Baseline** (`baseline_exporter.py`), written the usual way. It polls with `requests`
  and reads each response with the exporter's `parse_status`, so both expose the same
  series and values. It sets one `prometheus_client` Gauge child per series with
  `.labels(...).set(...)` and serves `generate_latest` through `start_http_server`, which
  gzips on request. It never removes a child, so a user or folder that leaves a response
  keeps its last value, but the benchmark's responses never change. Its poll cycles run
  back to back at start, and the first one also creates every child. It gets no warm-up
  scrape because it caches nothing. At fleet scale it gets only 3 scrapes per format,
  because each takes many seconds.
- **Peak RSS.** `VmHWM` from `/proc/<pid>/status` after the scrape loop. The floor
  server's figure is the memory that the exposition bytes alone take in a Python process.
- **Noise.** Other work on the machine slows the measured processes unevenly. The run
  section shows the load average at the start and at the end.
- **Misses.** For each missed target the report adds what the bench measured to explain
  it: for the poll-cycle CPU, each stage timed alone and the top functions of a `cProfile`
  run of one more cycle.
"""


SOAK_BEGIN = "<!-- soak:begin -->"
SOAK_END = "<!-- soak:end -->"


def write_report(path: Path, results: list[dict], duration: float, command: str, load_start: str) -> None:
    """Write the report, keeping the intro above MARKER and the soak section that `make soak` owns."""
    intro = DEFAULT_INTRO
    soak = ""
    if path.exists():
        existing = path.read_text()
        if MARKER in existing:
            intro = existing.split(MARKER, 1)[0].rstrip("\n") + "\n"
        if SOAK_BEGIN in existing and SOAK_END in existing:
            start = existing.index(SOAK_BEGIN)
            soak = existing[start:existing.index(SOAK_END, start) + len(SOAK_END)]
    sections = [intro, MARKER, "", run_section(duration, command, load_start)]
    sections += [scenario_section(result) for result in results]
    targets = evaluate_targets({result["scenario"].name: result for result in results})
    sections.append(targets_section(targets))
    sections.append(profiles_section(targets, results))
    if soak:
        sections += ["", soak]
    path.write_text("\n".join(sections).rstrip("\n") + "\n")


# Formatting.

def seconds_text(value: float) -> str:
    if value >= 1:
        return f"{value:.2f} s"
    return f"{value * 1000:.3g} ms"


def bytes_text(value: float) -> str:
    for unit, size in (("GiB", GIB), ("MiB", 1024**2), ("KiB", 1024)):
        if value >= size:
            return f"{value / size:.1f} {unit}"
    return f"{value:.0f} B"


def ratio_text(value: float) -> str:
    return f"{value:.2f}x" if value < 10 else f"{value:.0f}x"


def table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


# The run.

def run_section(duration: float, command: str, load_start: str) -> str:
    versions = [f"Python {platform.python_version()}"]
    versions += [f"{name} {metadata.version(name)}" for name in PACKAGES]
    minutes, seconds = divmod(round(duration), 60)
    lines = [
        "## Run",
        "",
        f"- Date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC",
        f"- Command: `{command}`",
        f"- Machine: `{uname()}`",
        f"- CPU: {cpu_model()}, {os.cpu_count()} cores; memory: {bytes_text(memory_total())}",
        f"- Versions: {', '.join(versions)}",
        f"- Duration of the whole run: {minutes} min {seconds} s",
        f"- Load average (1, 5, 15 min) at the start: {load_start}; at the end: {load_average()}",
        "",
    ]
    return "\n".join(lines)


def load_average() -> str:
    """Return the 1, 5 and 15 minute load averages, which show other work on the machine."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def uname() -> str:
    return subprocess.run(["uname", "-a"], capture_output=True, text=True, check=True).stdout.strip()


def cpu_model() -> str:
    match = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.MULTILINE)
    return match.group(1).strip() if match else platform.processor() or "unknown CPU"


def memory_total() -> int:
    match = re.search(r"^MemTotal:\s+(\d+) kB$", Path("/proc/meminfo").read_text(), re.MULTILINE)
    return int(match.group(1)) * 1024 if match else 0


# One scenario.

def scenario_section(result: dict) -> str:
    scenario = result["scenario"]
    measure, exporter, floor, baseline = result["measure"], result["exporter"], result["floor"], result["baseline"]
    cycle, parsing = measure["cycle"], measure["parsing_floor"]
    baseline_walls = sorted(c["wall_seconds"] for c in baseline["cycles"])
    baseline_cpus = sorted(c["cpu_seconds"] for c in baseline["cycles"])
    baseline_wall = baseline_walls[(len(baseline_walls) - 1) // 2]
    baseline_cpu = baseline_cpus[(len(baseline_cpus) - 1) // 2]
    cycles = len(cycle["wall_seconds"])

    def latency_row(fmt: str, key: str) -> tuple[str, ...]:
        ours, least, theirs = exporter[fmt][key], floor[fmt][key], baseline[fmt][key]
        return (f"Scrape {key}, {fmt}", seconds_text(ours), seconds_text(least), ratio_text(ours / least),
                seconds_text(theirs), ratio_text(theirs / ours))

    rows = [
        (f"Poll cycle, wall (median of {cycles})", seconds_text(cycle["wall_median"]), "-", "-",
         seconds_text(baseline_wall), ratio_text(baseline_wall / cycle["wall_median"])),
        (f"Poll cycle, CPU (median of {cycles})", seconds_text(cycle["cpu_median"]),
         f"{seconds_text(parsing['cpu_median'])} (`json.loads`)", ratio_text(cycle["cpu_median"] / parsing["cpu_median"]),
         seconds_text(baseline_cpu), ratio_text(baseline_cpu / cycle["cpu_median"])),
        latency_row("plain", "p50"),
        latency_row("plain", "p99"),
        latency_row("gzip", "p50"),
        latency_row("gzip", "p99"),
        ("Exposition size, plain", bytes_text(exporter["plain_bytes"]), "same bytes", "-",
         bytes_text(baseline["plain_bytes"]), ratio_text(baseline["plain_bytes"] / exporter["plain_bytes"])),
        ("Exposition size, gzip", bytes_text(exporter["gzip_bytes"]), "same bytes", "-",
         bytes_text(baseline["gzip_bytes"]), ratio_text(baseline["gzip_bytes"] / exporter["gzip_bytes"])),
        ("Series (sample lines in the body)", f"{exporter['samples_in_body']:,}", "same bytes", "-",
         f"{baseline['samples_in_body']:,}", "-"),
        ("Job, user and folder series", f"{exporter['exposition_series']:,}" if exporter["exposition_series"] is not None else "?",
         "-", "-", f"{baseline['migration_samples']:,}", "-"),
        ("Peak RSS (VmHWM)", bytes_text(exporter["peak_rss_bytes"]), bytes_text(floor["peak_rss_bytes"]),
         ratio_text(exporter["peak_rss_bytes"] / floor["peak_rss_bytes"]), bytes_text(baseline["peak_rss_bytes"]),
         ratio_text(baseline["peak_rss_bytes"] / exporter["peak_rss_bytes"])),
    ]
    header = ("Figure", "Exporter", "Floor", "Exporter / floor", "Baseline", "Baseline / exporter")
    same_series = exporter["exposition_series"] == baseline["migration_samples"]
    notes = [
        f"- Responses: {scenario.jobs} migration_status {'body' if scenario.jobs == 1 else 'bodies'}, "
        f"{bytes_text(result['response_bytes'])} of JSON.",
        f"- Scrapes per format: exporter and floor {exporter['plain']['samples']} after one warm-up each; "
        f"baseline {baseline['plain']['samples']}, without warm-up.",
        f"- Exporter poll cycles (wall): {', '.join(seconds_text(v) for v in cycle['wall_seconds'])}; "
        f"baseline: {', '.join(seconds_text(c['wall_seconds']) for c in baseline['cycles'])} "
        "(its first cycle creates every Gauge child).",
        f"- The exporter answered `/-/ready` {seconds_text(exporter['ready_seconds'])} after it started "
        "(start-up and the first poll of every job, 4 workers).",
        f"- Checks: no poll during the exporter's scrape loop: {yes_no(exporter['view_unchanged'])}; "
        f"the gzip body decompresses to the plain body: {yes_no(exporter['gzip_matches_plain'])}; "
        f"exporter and baseline serve the same number of job, user and folder series: {yes_no(same_series)}.",
        "- The baseline's sample lines include the default registry's `process_*` and `python_*` series.",
    ]
    title = f"## Scenario {scenario.name}: {scenario.size_text}"
    return "\n".join([title, "", table(header, rows), "", *notes, ""])


def yes_no(value: bool) -> str:
    return "yes" if value else "**no**"


# Targets and profiles.

def evaluate_targets(by_name: dict[str, dict]) -> list[dict]:
    """Return one row per target and format or scenario, with its measured value."""
    targets = []
    fleet, batch = by_name.get("fleet"), by_name.get("batch")
    for fmt in ("plain", "gzip"):
        name = f"Scrape p50 at fleet within 2x of the floor ({fmt})"
        if fleet is None:
            targets.append(not_measured(name, "no scenario named fleet"))
            continue
        ours, least = fleet["exporter"][fmt]["p50"], fleet["floor"][fmt]["p50"]
        targets.append({"name": name, "kind": "scrape", "scenario": "fleet", "passed": ours <= 2 * least,
                        "measured": f"{ratio_text(ours / least)} ({seconds_text(ours)} vs {seconds_text(least)})"})
    for fmt in ("plain", "gzip"):
        name = f"Scrape p50 at batch at least 10x faster than the baseline ({fmt})"
        if batch is None:
            targets.append(not_measured(name, "no scenario named batch"))
            continue
        ours, theirs = batch["exporter"][fmt]["p50"], batch["baseline"][fmt]["p50"]
        targets.append({"name": name, "kind": "baseline", "scenario": "batch", "passed": theirs >= 10 * ours,
                        "measured": f"{ratio_text(theirs / ours)} faster ({seconds_text(ours)} vs {seconds_text(theirs)})"})
    for name, result in by_name.items():
        cycle, parsing = result["measure"]["cycle"]["cpu_median"], result["measure"]["parsing_floor"]["cpu_median"]
        targets.append({"name": f"Poll-cycle CPU at most 5x the parsing floor ({name})", "kind": "cpu",
                        "scenario": name, "passed": cycle <= 5 * parsing,
                        "measured": f"{ratio_text(cycle / parsing)} ({seconds_text(cycle)} vs {seconds_text(parsing)})"})
    name = "Peak RSS at fleet under 1 GiB"
    if fleet is None:
        targets.append(not_measured(name, "no scenario named fleet"))
    else:
        rss = fleet["exporter"]["peak_rss_bytes"]
        targets.append({"name": name, "kind": "rss", "scenario": "fleet", "passed": rss < GIB,
                        "measured": bytes_text(rss)})
    return targets


def not_measured(name: str, reason: str) -> dict:
    return {"name": name, "kind": "none", "scenario": None, "passed": None, "measured": f"not measured: {reason}"}


def targets_section(targets: list[dict]) -> str:
    rows = [(t["name"], t["measured"], {True: "PASS", False: "**MISS**", None: "-"}[t["passed"]]) for t in targets]
    return "\n".join(["## Targets", "", table(("Target", "Measured", "Result"), rows), ""])


def profiles_section(targets: list[dict], results: list[dict]) -> str:
    misses = [t for t in targets if t["passed"] is False]
    lines = ["## Profiles of the misses", ""]
    if not misses:
        lines += ["Every target passed, so no profile is included.", ""]
        return "\n".join(lines)
    by_name = {result["scenario"].name: result for result in results}
    for target in misses:
        lines += [f"### {target['name']}", ""]
        if target["kind"] == "cpu":
            lines += cpu_profile(by_name[target["scenario"]])
        else:
            lines += [OTHER_MISSES[target["kind"]], ""]
    return "\n".join(lines)


STAGE_NAMES = (
    ("json_loads", "JSON decoding (`json.loads`)"),
    ("parse_status", "`parse_status`: the JobStatus snapshot"),
    ("render_job", "`render_job`: sample lines of every series"),
    ("assemble_plain", "`Exposition.render`: plain body"),
    ("assemble_gzip", "`Exposition.render`: gzip body (deflate of every fragment)"),
)


def cpu_profile(result: dict) -> list[str]:
    measure = result["measure"]
    stages, profile = measure["stages"], measure["profile"]
    floor = measure["parsing_floor"]["cpu_median"]
    cycle = measure["cycle"]["cpu_median"]
    rows = [(label, seconds_text(stages[key]), ratio_text(stages[key] / floor)) for key, label in STAGE_NAMES]
    rest = cycle - sum(stages.values())
    beyond = sum(stages.values()) - stages["json_loads"]
    rest_label = "Rest of the cycle, HTTP exchange and poller (estimate: median cycle minus the stages)"
    if rest >= 0:
        rows.append((rest_label, seconds_text(rest), ratio_text(rest / floor)))
    else:
        # Each stage is timed once, so noise can make them add up to more than the median cycle.
        rows.append((rest_label, "no estimate: the stages add up to more than the median cycle", "-"))
    rows.append(("Whole cycle (median)", seconds_text(cycle), ratio_text(cycle / floor)))
    return [
        f"CPU time of each stage of a cycle in scenario {result['scenario'].name}, timed alone once in the "
        "measure process without profiling, against the parsing floor:",
        "",
        table(("Stage", "CPU time", "x parsing floor"), rows),
        "",
        f"The stages after JSON decoding add up to {ratio_text(beyond / floor)} the parsing floor on their own.",
        "",
        f"Top {len(profile['top'])} functions by cumulative time of one more cycle under `cProfile` "
        f"({seconds_text(profile['total_seconds'])} in all; profiling slows Python code more than C code, "
        "so compare shares rather than times):",
        "",
        table(("Function", "Calls", "Own time", "Cumulative"),
              [(f"`{row['function']}`", f"{row['calls']:,}", seconds_text(row["own_seconds"]),
                seconds_text(row["cumulative_seconds"])) for row in profile["top"]]),
        "",
    ]


OTHER_MISSES = {
    "scrape": "The bench collects no profile of the exporter's HTTP path. Per scrape the exporter looks up its "
              "cached chunks and writes them to the socket, as the floor server writes its one buffer. Both "
              "figures are medians of a few samples that share the CPU with the client, so check the load "
              "average in the run section and run `make bench` again on a quiet machine.",
    "baseline": "The bench collects no profile of the baseline. Compare the exporter's scrape figures with the "
                "floor's in the scenario table: when they are close, the exporter already serves at the floor, "
                "and the baseline's `generate_latest` is fast at this number of series.",
    "rss": "The bench collects no memory profile. The floor server's peak RSS in the scenario table is what the "
           "exposition bytes alone take; the difference is everything else in the exporter process.",
}
