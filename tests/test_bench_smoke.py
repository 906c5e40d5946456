"""Smoke test of `make bench`: the whole benchmark on a tiny fleet, checked for every figure.

Timings are never asserted, because the machines that run tests are shared and noisy.
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from exporter.parse import parse_status
from exporter.render import count_series
from exporter.simulator.fleet import render_fleet

REPOSITORY = Path(__file__).resolve().parent.parent
RUN_SCRIPT = REPOSITORY / "bench" / "run.py"
SCENARIOS = {"batch": (1, 5, 3), "fleet": (2, 5, 3)}
SEED = 1
HAND_WRITTEN_INTRO = "# Benchmarks\n\nA hand-written intro that the generator must keep.\n"

FIGURES = (
    "Poll cycle, wall (median of 1)",
    "Poll cycle, CPU (median of 1)",
    "Scrape p50, plain",
    "Scrape p99, plain",
    "Scrape p50, gzip",
    "Scrape p99, gzip",
    "Exposition size, plain",
    "Exposition size, gzip",
    "Series (sample lines in the body)",
    "Job, user and folder series",
    "Peak RSS (VmHWM)",
)
# Figures whose floor column contains a measurement rather than "-" or "same bytes".
FIGURES_WITH_FLOOR = FIGURES[1:6] + ("Peak RSS (VmHWM)",)
TARGETS = (
    "Scrape p50 at fleet within 2x of the floor (plain)",
    "Scrape p50 at fleet within 2x of the floor (gzip)",
    "Scrape p50 at batch at least 10x faster than the baseline (plain)",
    "Scrape p50 at batch at least 10x faster than the baseline (gzip)",
    "Poll-cycle CPU at most 5x the parsing floor (batch)",
    "Poll-cycle CPU at most 5x the parsing floor (fleet)",
    "Peak RSS at fleet under 1 GiB",
)
MEASUREMENT = re.compile(r"^\d[\d,.]*( (ms|s|B|KiB|MiB|GiB))?( \(`json\.loads`\))?$")


def load_report_module():
    spec = importlib.util.spec_from_file_location("bench_report", REPOSITORY / "bench" / "report.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> str:
    """Run the benchmark once on tiny scenarios over an existing report and return the new one."""
    marker = load_report_module().MARKER
    output = tmp_path_factory.mktemp("bench") / "benchmarks.md"
    output.write_text(HAND_WRITTEN_INTRO + "\n" + marker + "\n\nResults of an earlier run.\n\n" + SOAK_SECTION + "\n")
    command = [sys.executable, str(RUN_SCRIPT), "--output", str(output), "--cycles", "1", "--floor-repeats", "1"]
    for name, (jobs, users, folders) in SCENARIOS.items():
        command += ["--scenario", f"{name}={jobs}x{users}x{folders},3,2"]
    completed = subprocess.run(command, cwd=REPOSITORY, capture_output=True, text=True, timeout=90)
    assert completed.returncode == 0, f"bench/run.py failed:\n{completed.stderr[-3000:]}"
    return output.read_text()


SOAK_SECTION = "<!-- soak:begin -->\n## Soak\n\nFigures of an earlier soak run.\n<!-- soak:end -->"


def section(report: str, title_start: str) -> str:
    """Return the text of the `## ` section whose title starts with `title_start`."""
    match = re.search(rf"^## {re.escape(title_start)}.*?(?=^## |\Z)", report, re.MULTILINE | re.DOTALL)
    assert match is not None, f"no section starting with {title_start!r} in the report"
    return match.group(0)


def table_rows(text: str) -> dict[str, list[str]]:
    """Map the first cell of each Markdown table row to its other cells."""
    rows = {}
    for line in text.splitlines():
        if line.startswith("| ") and not line.startswith("|---"):
            cells = [cell.strip() for cell in line.strip("|").split("|")]
            rows[cells[0]] = cells[1:]
    return rows


def test_report_keeps_hand_written_intro(report):
    marker = load_report_module().MARKER
    assert report.startswith(HAND_WRITTEN_INTRO)
    assert report.count(marker) == 1
    assert "Results of an earlier run." not in report
    assert report.rstrip().endswith(SOAK_SECTION), "the soak section that make soak wrote was lost"
    assert load_report_module().DEFAULT_INTRO not in report


def test_run_section_describes_machine(report):
    run = section(report, "Run")
    for label in ("- Date: ", "- Command: ", "- Machine: `", "- CPU: ", "- Versions: Python 3.",
                  "- Duration of the whole run: ", "- Load average"):
        assert label in run, f"{label!r} missing from the run section"
    assert "prometheus_client " in run
    assert "requests " in run
    assert "--output" in run


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_scenario_has_every_figure(report, name):
    rows = table_rows(section(report, f"Scenario {name}:"))
    for figure in FIGURES:
        assert figure in rows, f"figure {figure!r} missing in scenario {name}"
        exporter, floor, _, baseline, _ = rows[figure]
        assert MEASUREMENT.match(exporter), f"{figure}: exporter cell {exporter!r} is not a measurement"
        assert MEASUREMENT.match(baseline), f"{figure}: baseline cell {baseline!r} is not a measurement"
        if figure in FIGURES_WITH_FLOOR:
            assert MEASUREMENT.match(floor), f"{figure}: floor cell {floor!r} is not a measurement"


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_scenario_checks_pass(report, name):
    text = section(report, f"Scenario {name}:")
    assert "no poll during the exporter's scrape loop: yes" in text
    assert "the gzip body decompresses to the plain body: yes" in text
    assert "same number of job, user and folder series: yes" in text
    assert "Scrapes per format: exporter and floor 3 after one warm-up each; baseline 2" in text


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_series_count_matches_responses(report, name):
    jobs, users, folders = SCENARIOS[name]
    expected = 0
    for job_id, body in render_fleet(jobs, users, folders, SEED).items():
        expected += sum(count_series(parse_status(job_id, json.loads(body))).values())
    rows = table_rows(section(report, f"Scenario {name}:"))
    assert rows["Job, user and folder series"][0] == f"{expected:,}"
    assert rows["Job, user and folder series"][3] == f"{expected:,}"


def test_every_target_has_verdict(report):
    rows = table_rows(section(report, "Targets"))
    for target in TARGETS:
        assert target in rows, f"target {target!r} missing"
        assert rows[target][1] in ("PASS", "**MISS**"), f"{target}: verdict {rows[target][1]!r}"


def test_every_miss_has_explanation(report):
    verdicts = {target: cells[1] for target, cells in table_rows(section(report, "Targets")).items()}
    profiles = section(report, "Profiles of the misses")
    misses = [target for target, verdict in verdicts.items() if verdict == "**MISS**"]
    if not misses:
        assert "Every target passed" in profiles
    for target in misses:
        match = re.search(rf"^### {re.escape(target)}\n(.*?)(?=^### |\Z)", profiles, re.MULTILINE | re.DOTALL)
        assert match is not None, f"no explanation for the missed target {target!r}"
        if target.startswith("Poll-cycle CPU"):
            rows = table_rows(match.group(1))
            assert "`parse_status`: the JobStatus snapshot" in rows
            assert "Whole cycle (median)" in rows
            assert any(name.startswith("`exporter/") for name in rows), "no exporter function in the profile"
