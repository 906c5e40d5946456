"""Checks of deploy/prometheus/rules.yml with the real promtool, and of its unit tests and runbook links."""

from __future__ import annotations

import re
import subprocess

import pytest
import yaml

from tests import promql
from tests.promtools import RULE_TESTS_DIR, RULES_FILE, RUNBOOK_FILE, load_rules, require_binary

pytestmark = pytest.mark.prometheus

RUNBOOK_URL_PREFIX = (
    "https://github.com/opensrs-migration-exporter/opensrs-migration-exporter/blob/main/docs/runbook.md#"
)
SEVERITIES = {"critical", "warning", "info"}
RECORDING_RULE_NAME = re.compile(r"^[a-z][a-z0-9_]*:opensrs_migration_[a-z0-9_]+:[a-z0-9_]+$")

ALERTS = [rule for rule in load_rules() if "alert" in rule]
RECORDING_RULES = [rule for rule in load_rules() if "record" in rule]
TEST_FILES = sorted(RULE_TESTS_DIR.glob("*.yml"))


def _test_groups() -> list[tuple[str, dict]]:
    """Return (file name, test group) for every test group of every promtool test file."""
    groups = []
    for path in TEST_FILES:
        document = yaml.safe_load(path.read_text())
        for group in document.get("tests", []):
            groups.append((path.name, group))
    return groups


def _alert_checks() -> list[tuple[str, dict, dict]]:
    """Return (file name, test group, alert_rule_test entry) for every alert check."""
    return [(name, group, check) for name, group in _test_groups() for check in group.get("alert_rule_test", [])]


def _runbook_anchors() -> set[str]:
    headings = re.findall(r"^#{1,6}\s+(.+?)\s*$", RUNBOOK_FILE.read_text(), flags=re.MULTILINE)
    return {promql.github_anchor(heading) for heading in headings}


def _run(command: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=RULES_FILE.parent)


def test_rules_file_has_alerts_and_recording_rules():
    assert ALERTS, "rules.yml defines no alert"
    assert RECORDING_RULES, "rules.yml defines no recording rule"
    assert TEST_FILES, f"no promtool test files in {RULE_TESTS_DIR}"


def test_promtool_check_rules_clean():
    promtool = require_binary("promtool")
    result = _run([promtool, "check", "rules", str(RULES_FILE)])
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    findings = [
        line for line in output.splitlines()
        if line.strip() and not line.startswith("Checking ") and "SUCCESS" not in line
    ]
    assert findings == [], output
    assert f"SUCCESS: {len(ALERTS) + len(RECORDING_RULES)} rules found" in output, output


def test_promtool_unit_tests_pass():
    promtool = require_binary("promtool")
    result = _run([promtool, "test", "rules", *map(str, TEST_FILES)])
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert output.count("SUCCESS") == len(TEST_FILES), output


@pytest.mark.parametrize("alert", ALERTS, ids=lambda rule: rule["alert"])
def test_alert_has_firing_and_quiet_unit_tests(alert):
    checks = [check for _, _, check in _alert_checks() if check["alertname"] == alert["alert"]]
    firing = [check for check in checks if check.get("exp_alerts")]
    quiet = [check for check in checks if not check.get("exp_alerts")]
    assert firing, f"no promtool test expects {alert['alert']} to fire"
    assert quiet, f"no promtool test expects {alert['alert']} to stay quiet"


def test_unit_tests_name_only_defined_alerts():
    defined = {rule["alert"] for rule in ALERTS}
    tested = {check["alertname"] for _, _, check in _alert_checks()}
    assert tested - defined == set()


def test_unit_test_series_span_evaluations():
    for file_name, group in _test_groups():
        interval = promql.parse_duration(group.get("interval", "1m"))
        eval_times = [promql.parse_duration(check["eval_time"]) for check in group.get("alert_rule_test", [])]
        eval_times += [promql.parse_duration(check["eval_time"]) for check in group.get("promql_expr_test", [])]
        last_eval = max(eval_times)
        for series in group["input_series"]:
            samples = promql.expand_series_values(series["values"])
            last_sample = (len(samples) - 1) * interval
            assert last_sample >= last_eval, (
                f"{file_name}, test {group.get('name')!r}: series {series['series']} ends at "
                f"{last_sample:.0f}s, before the last evaluation at {last_eval:.0f}s"
            )


def _is_decreasing(samples: list[str]) -> bool:
    values = [float(sample) for sample in samples if sample not in ("_", "stale")]
    steps = [b - a for a, b in zip(values, values[1:])]
    return any(step < 0 for step in steps) and all(step <= 0 for step in steps)


@pytest.mark.parametrize(
    "alert", [rule for rule in ALERTS if "Rising" in rule["alert"]], ids=lambda rule: rule["alert"]
)
def test_rising_alert_has_decreasing_gauge_test(alert):
    metrics = promql.metric_names(alert["expr"])
    covered = False
    for _, group, check in _alert_checks():
        if check["alertname"] != alert["alert"] or check.get("exp_alerts"):
            continue
        for series in group["input_series"]:
            name = series["series"].split("{", 1)[0]
            if name in metrics and _is_decreasing(promql.expand_series_values(series["values"])):
                covered = True
    assert covered, f"no quiet test of {alert['alert']} feeds it a decreasing gauge"


@pytest.mark.parametrize(
    "alert",
    [rule for rule in ALERTS if "keep_firing_for" in rule and "opensrs_migration_" in rule["expr"]],
    ids=lambda rule: rule["alert"],
)
def test_alert_has_missed_scrape_test(alert):
    groups_with_gap = [
        group for _, group, check in _alert_checks()
        if check["alertname"] == alert["alert"] and check.get("exp_alerts")
        and any({"stale", "_"} & set(promql.expand_series_values(s["values"])) for s in group["input_series"])
    ]
    assert groups_with_gap, f"no firing test of {alert['alert']} has a failed scrape (stale) or gap (_) in its series"


@pytest.mark.parametrize("alert", ALERTS, ids=lambda rule: rule["alert"])
def test_alert_labels_and_annotations(alert):
    assert alert.get("labels", {}).get("severity") in SEVERITIES
    annotations = alert.get("annotations", {})
    for key in ("summary", "description", "runbook_url"):
        assert annotations.get(key), f"{alert['alert']} has no {key} annotation"
    assert "$value" in annotations["description"]


@pytest.mark.parametrize("alert", ALERTS, ids=lambda rule: rule["alert"])
def test_alert_description_names_its_labels(alert):
    """Every job_id or user label that the unit tests expect must appear in the description."""
    description = alert["annotations"]["description"]
    expected_labels = set()
    for _, _, check in _alert_checks():
        if check["alertname"] == alert["alert"]:
            for expected in check.get("exp_alerts") or []:
                expected_labels |= set(expected.get("exp_labels", {}))
    for label in {"job_id", "user"} & expected_labels:
        assert f"$labels.{label}" in description, f"{alert['alert']} description does not name {label}"


@pytest.mark.parametrize("alert", ALERTS, ids=lambda rule: rule["alert"])
def test_runbook_url_anchor_exists(alert):
    url = alert["annotations"]["runbook_url"]
    assert url.startswith(RUNBOOK_URL_PREFIX), url
    anchor = url.removeprefix(RUNBOOK_URL_PREFIX)
    assert anchor in _runbook_anchors(), f"docs/runbook.md has no heading with anchor #{anchor}"


@pytest.mark.parametrize("rule", RECORDING_RULES, ids=lambda rule: rule["record"])
def test_recording_rule_name_follows_convention(rule):
    assert RECORDING_RULE_NAME.match(rule["record"]), rule["record"]


def test_alert_names_unique():
    names = [rule["alert"] for rule in ALERTS]
    assert len(names) == len(set(names))


def test_alerts_use_keep_firing_for():
    missing = [rule["alert"] for rule in ALERTS if "absent(" not in rule["expr"] and "keep_firing_for" not in rule]
    assert missing == []
