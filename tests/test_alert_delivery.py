"""Alert delivery from the shipped rules through real Prometheus and Alertmanager to a webhook.

The demo exporter's job 1700000000002 has a user whose login fails, so the user
ends in state `error`. Prometheus evaluates the rules every second and sends the
firing OpenSRSMigrationUserError to Alertmanager, which posts it to a webhook
server in this test.

The rules are a test copy of rules.yml in which every `for:` is 1s, so the alert
fires within seconds instead of minutes. Expressions, labels, annotations and
keep_firing_for stay identical, and a test checks that they do.
"""

from __future__ import annotations

import json
import queue
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from tests import promql
from tests.promtools import (
    RULES_FILE,
    RUNBOOK_FILE,
    SCRAPE_JOB,
    Alertmanager,
    Prometheus,
    free_port,
    start_exporter,
    wait_until,
)

pytestmark = [pytest.mark.prometheus, pytest.mark.timeout(180)]

DEMO_SPEED = 600
FAILING_JOB = "1700000000002"
"""Demo job with a user whose migration ends in state error."""
ALERT = "OpenSRSMigrationUserError"
TEST_FOR = "1s"
DELIVERY_TIMEOUT = 60.0


class WebhookReceiver:
    """An HTTP server on 127.0.0.1 that stores each Alertmanager webhook payload."""

    def __init__(self):
        self.payloads: queue.Queue[dict] = queue.Queue()
        payloads = self.payloads

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                payloads.put(json.loads(body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, format, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/alerts"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)

    def wait_for_alert(self, matches, timeout: float) -> tuple[dict, dict]:
        """Return (payload, alert) for the first delivered alert for which `matches(alert)` is true."""
        deadline = time.monotonic() + timeout
        seen = []
        while time.monotonic() < deadline:
            try:
                payload = self.payloads.get(timeout=0.5)
            except queue.Empty:
                continue
            for alert in payload.get("alerts", []):
                seen.append(alert["labels"].get("alertname"))
                if matches(alert):
                    return payload, alert
        raise AssertionError(f"no matching alert delivered within {timeout:.0f}s; delivered alert names: {seen}")


def write_test_rules(path: Path) -> Path:
    """Write a copy of rules.yml with every `for:` set to TEST_FOR and return its path."""
    document = yaml.safe_load(RULES_FILE.read_text())
    for group in document["groups"]:
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = TEST_FOR
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def delivery(tmp_path_factory):
    work_dir = tmp_path_factory.mktemp("alert-delivery")
    rules = write_test_rules(work_dir / "rules.yml")
    exporter_address = f"127.0.0.1:{free_port()}"
    started = []
    try:
        webhook = WebhookReceiver()
        started.append(webhook)
        alertmanager = Alertmanager(work_dir, webhook.url)
        started.append(alertmanager)
        prometheus = Prometheus(work_dir, exporter_address, [rules], alertmanager_address=alertmanager.address)
        started.append(prometheus)
        exporter = start_exporter(work_dir, exporter_address, DEMO_SPEED)
        started.append(exporter)
        exporter.wait_ready(f"http://{exporter_address}/-/ready")
        yield webhook, prometheus, rules
    finally:
        for component in reversed(started):
            component.stop()


def test_test_rules_differ_only_in_for(tmp_path):
    original = yaml.safe_load(RULES_FILE.read_text())
    copy = yaml.safe_load(write_test_rules(tmp_path / "rules.yml").read_text())
    assert len(copy["groups"]) == len(original["groups"])
    for original_group, copy_group in zip(original["groups"], copy["groups"]):
        assert len(copy_group["rules"]) == len(original_group["rules"])
        for original_rule, copy_rule in zip(original_group["rules"], copy_group["rules"]):
            assert {**copy_rule, "for": None} == {**original_rule, "for": None}
    assert any(rule.get("alert") == ALERT and "for" in rule for group in copy["groups"] for rule in group["rules"])


def test_user_error_alert_delivered(delivery):
    webhook, prometheus, _ = delivery
    error_query = f'opensrs_migration_user_state{{job_id="{FAILING_JOB}", state="error"}} == 1'
    users_in_error = wait_until(
        lambda: {series["metric"]["user"] for series in prometheus.query(error_query)}, 30,
        f"a user of demo job {FAILING_JOB} in state error",
    )

    payload, alert = webhook.wait_for_alert(
        lambda alert: alert["labels"].get("alertname") == ALERT and alert["labels"].get("job_id") == FAILING_JOB,
        DELIVERY_TIMEOUT,
    )

    assert payload["receiver"] == "webhook"
    assert alert["status"] == "firing"
    labels = alert["labels"]
    assert labels["severity"] == "critical"
    assert labels["user"] in users_in_error
    assert labels["state"] == "error"
    assert labels["job"] == SCRAPE_JOB

    annotations = alert["annotations"]
    assert labels["user"] in annotations["summary"]
    assert FAILING_JOB in annotations["description"]
    assert labels["user"] in annotations["description"]
    assert "{{" not in annotations["description"], annotations["description"]

    runbook_url = annotations["runbook_url"]
    anchor = runbook_url.rpartition("#")[2]
    assert anchor == ALERT.lower()
    headings = re.findall(r"^#{1,6}\s+(.+?)\s*$", RUNBOOK_FILE.read_text(), flags=re.MULTILINE)
    assert anchor in {promql.github_anchor(heading) for heading in headings}


def test_user_error_fires_only_for_failing_job(delivery):
    _, prometheus, _ = delivery
    firing = wait_until(lambda: [a for a in prometheus.alerts() if a["labels"].get("alertname") == ALERT
                                 and a["state"] == "firing"], 30, f"{ALERT} to fire")
    assert {alert["labels"]["job_id"] for alert in firing} == {FAILING_JOB}
