"""Every dashboard query against a real Prometheus that scrapes the demo exporter.

Prometheus starts first, with the shipped rules.yml and a 1s scrape and evaluation
interval, then the exporter starts in demo mode. Each variable query and each panel
target runs through the Prometheus HTTP API with the variables replaced the way
Grafana replaces them, and must return data. Range panels run as range queries over
the time since the exporter started, like a Grafana time series panel.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

import pytest

from tests import promql
from tests.promtools import (
    RULES_FILE,
    SCRAPE_JOB,
    ManagedProcess,
    Prometheus,
    dashboard_panels,
    free_port,
    load_dashboard,
    start_exporter,
    variable_query,
    wait_until,
)

pytestmark = [pytest.mark.prometheus, pytest.mark.timeout(180)]

# At the 600x speed of the alert delivery test every demo user reaches its final state
# within about 5 seconds, before Prometheus has the two scrapes of progress that
# deriv() needs. At 60x the healthy users progress for about 30 seconds.
DEMO_SPEED = 60
DATA_TIMEOUT = 90.0
"""Seconds from the exporter's start within which every query must return data."""
RATE_INTERVAL = "15s"
"""Value for $__rate_interval: Grafana's minimum of four scrape intervals, and more."""

DASHBOARD = load_dashboard()
VARIABLES = [variable for variable in DASHBOARD["templating"]["list"] if variable["type"] == "query"]
TARGETS = [
    (panel["title"], target["refId"], target["expr"], bool(target.get("instant")))
    for panel in dashboard_panels(DASHBOARD) if panel["type"] != "row"
    for target in panel["targets"]
]


@dataclass
class Stack:
    prometheus: Prometheus
    exporter: ManagedProcess
    started: float
    """Unix time at which the exporter started."""
    deadline: float
    """time.monotonic() value by which every query must have returned data."""


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    work_dir = tmp_path_factory.mktemp("dashboard-queries")
    exporter_address = f"127.0.0.1:{free_port()}"
    prometheus = exporter = None
    try:
        prometheus = Prometheus(work_dir, exporter_address, [RULES_FILE])
        started = time.time()
        deadline = time.monotonic() + DATA_TIMEOUT
        exporter = start_exporter(work_dir, exporter_address, DEMO_SPEED)
        exporter.wait_ready(f"http://{exporter_address}/-/ready")
        wait_until(
            lambda: prometheus.query("opensrs_migration_user_state"), 30,
            f"Prometheus to scrape user series from the exporter\n{prometheus.process.log_tail()}",
        )
        yield Stack(prometheus, exporter, started, deadline)
    finally:
        for process in (exporter, prometheus):
            if process is not None:
                process.stop()


def regex_alternation(values: list[str]) -> str:
    """Format selected values as Grafana does for a regex matcher: escaped and joined by `|`."""
    escaped = [re.sub(r"([\\^$.|?*+()\[\]{}])", r"\\\\\1", value) for value in values]
    return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"


def substitute(expr: str, selected: dict[str, list[str]], range_seconds: float) -> str:
    """Replace dashboard variables and Grafana's built-in interval variables in a query."""
    builtins = {
        "__rate_interval": RATE_INTERVAL,
        "__interval": "1s",
        "__range": f"{max(int(range_seconds), 1)}s",
        "__range_s": str(max(int(range_seconds), 1)),
    }

    def replace(match: re.Match) -> str:
        name = match.group(1) or match.group(2)
        if name in builtins:
            return builtins[name]
        if name not in selected:
            raise AssertionError(f"query uses ${name}, which the test cannot fill: {expr}")
        return regex_alternation(selected[name])

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", replace, expr)


@pytest.fixture(scope="module")
def selected(stack) -> dict[str, list[str]]:
    """Resolve the query variables in dashboard order and select all values of each."""
    values: dict[str, list[str]] = {}
    for variable in VARIABLES:
        selector, label = promql.label_values_metric(variable_query(variable))
        query = substitute(selector, values, time.time() - stack.started)

        def label_values(query=query, label=label):
            return sorted({series[label] for series in stack.prometheus.series(query, stack.started)
                           if label in series})

        values[variable["name"]] = wait_until(
            label_values, 30, f"variable {variable['name']} query {query} to return values"
        )
    return values


@pytest.mark.parametrize("name", [variable["name"] for variable in VARIABLES])
def test_variable_query_returns_values(selected, name):
    assert selected[name], f"variable {name} has no values"


def test_job_variable_is_scrape_job(selected):
    assert selected["job"] == [SCRAPE_JOB]


def test_user_variable_lists_demo_users(selected):
    assert all("@" in user for user in selected["user"]), selected["user"]


@pytest.mark.parametrize(
    "title, ref_id, expr, instant", TARGETS, ids=[f"{title}-{ref}" for title, ref, _, _ in TARGETS]
)
def test_panel_query_returns_data(stack, selected, title, ref_id, expr, instant):
    def run():
        query = substitute(expr, selected, time.time() - stack.started)
        if instant:
            return stack.prometheus.query(query)
        result = stack.prometheus.query_range(query, stack.started, time.time())
        return [series for series in result if series["values"]]

    remaining = max(stack.deadline - time.monotonic(), 5.0)
    wait_until(run, remaining, f"panel {title!r} target {ref_id} to return data: {expr}", interval=1.0)


def test_users_table_join_has_server_and_method(stack, selected):
    users = next(panel for panel in dashboard_panels(DASHBOARD) if panel["type"] == "table" and panel["title"] == "Users")
    joined = next(target for target in users["targets"] if "opensrs_migration_user_info" in target["expr"])
    result = stack.prometheus.query(substitute(joined["expr"], selected, time.time() - stack.started))
    assert result, "the Users table join returned nothing"
    for series in result:
        labels = series["metric"]
        assert labels.get("server"), labels
        assert labels.get("method"), labels
        assert labels.get("state"), labels
    assert {series["metric"]["user"] for series in result} == set(selected["user"])


def test_progress_ratio_between_zero_and_one(stack, selected):
    query = substitute('job_id:opensrs_migration_job_progress:ratio{job_id=~"$job_id"}', selected, 0)
    result = wait_until(lambda: stack.prometheus.query(query), 30, f"{query} to return data")
    for series in result:
        assert 0 <= float(series["value"][1]) <= 1, series
