"""Start real prometheus, prometheus-alertmanager and the demo exporter for tests.

Every server listens on 127.0.0.1 on a port that the OS picked free and keeps its
data in a temporary folder. Its output goes to a log file, and the failure message
shows the log's tail when the server does not come up. A missing binary fails the
test: these tests never skip.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
RULES_FILE = REPO_ROOT / "deploy" / "prometheus" / "rules.yml"
RULE_TESTS_DIR = REPO_ROOT / "deploy" / "prometheus" / "tests"
DASHBOARD_FILE = REPO_ROOT / "grafana" / "opensrs-migrations.json"
RUNBOOK_FILE = REPO_ROOT / "docs" / "runbook.md"

SCRAPE_JOB = "opensrs-migration"
"""Scrape job name that the exporter alerts in rules.yml select."""

STARTUP_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0

T = TypeVar("T")


def require_binary(*names: str) -> str:
    """Return the path of the first binary found on PATH, or fail the test."""
    for name in names:
        path = shutil.which(name)
        if path:
            return path
    pytest.fail(
        f"{' or '.join(names)} not found on PATH; install the Debian packages prometheus and "
        "prometheus-alertmanager (Prometheus 2.42 or later, for keep_firing_for)",
        pytrace=False,
    )


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(check: Callable[[], T | None], timeout: float, description: str, interval: float = 0.5) -> T:
    """Call `check` until it returns a truthy value and return that value.

    Raises AssertionError with `description` when `timeout` seconds pass first.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {description}")
        time.sleep(interval)


def http_get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    """GET a URL and return the status and body; connection errors give status 0."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return 0, b""


class ManagedProcess:
    """A child process whose output goes to a log file and that `stop()` ends."""

    def __init__(self, name: str, command: list[str], log_path: Path, cwd: Path | None = None,
                 env: dict[str, str] | None = None):
        self.name = name
        self.command = command
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.process = subprocess.Popen(
            command, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            cwd=cwd, env=env,
        )

    def log_tail(self, lines: int = 30) -> str:
        self._log.flush()
        text = self.log_path.read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def wait_ready(self, url: str, timeout: float = STARTUP_TIMEOUT) -> None:
        """Wait until `url` returns HTTP 200; fail with the log tail if the process exits or time runs out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(
                    f"{self.name} exited with status {self.process.returncode} before {url} was ready; "
                    f"command {self.command}\n{self.log_tail()}"
                )
            status, _ = http_get(url, timeout=2.0)
            if status == 200:
                return
            time.sleep(0.2)
        raise AssertionError(f"{self.name} not ready at {url} after {timeout:.0f}s\n{self.log_tail()}")

    def stop(self) -> None:
        """Send SIGTERM, wait, then SIGKILL if the process is still running."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=STOP_TIMEOUT)
        self._log.close()


def start_exporter(work_dir: Path, address: str, speed: float) -> ManagedProcess:
    """Start the exporter in demo mode on `address` with a 1s poll interval.

    OPENSRS_* variables of the calling environment are dropped, so no local setting or
    password reaches the test exporter. The caller waits for `/-/ready`.
    """
    command = [
        sys.executable, "-m", "exporter", "--demo", "--demo.speed", str(speed),
        "--poll.interval", "1", "--web.listen-address", address,
    ]
    env = {key: value for key, value in os.environ.items() if not key.startswith("OPENSRS_")}
    return ManagedProcess("exporter", command, work_dir / "exporter.log", cwd=REPO_ROOT, env=env)


class Prometheus:
    """A real Prometheus server with a 1s scrape and evaluation interval."""

    def __init__(self, work_dir: Path, scrape_address: str, rule_files: Iterable[Path] = (),
                 alertmanager_address: str | None = None):
        binary = require_binary("prometheus")
        self.address = f"127.0.0.1:{free_port()}"
        self.url = f"http://{self.address}"
        config: dict[str, Any] = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(path) for path in rule_files],
            "scrape_configs": [{"job_name": SCRAPE_JOB, "static_configs": [{"targets": [scrape_address]}]}],
        }
        if alertmanager_address:
            config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [alertmanager_address]}]}]}
        config_path = work_dir / "prometheus.yml"
        config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        storage = work_dir / "prometheus-data"
        storage.mkdir()
        self.process = ManagedProcess(
            "prometheus",
            [binary, f"--config.file={config_path}", f"--storage.tsdb.path={storage}",
             f"--web.listen-address={self.address}", "--log.level=warn"],
            work_dir / "prometheus.log",
        )
        self.process.wait_ready(f"{self.url}/-/ready")

    def stop(self) -> None:
        self.process.stop()

    def _api(self, path: str, params: dict[str, str] | list[tuple[str, str]]) -> Any:
        url = f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        status, body = http_get(url, timeout=10.0)
        try:
            payload = json.loads(body)
        except ValueError:
            payload = {}
        if status != 200 or payload.get("status") != "success":
            raise AssertionError(
                f"Prometheus API {path} failed with HTTP {status}: {payload.get('error', body[:300])!r}; "
                f"parameters {params}"
            )
        return payload["data"]

    def query(self, expr: str) -> list[dict]:
        """Run an instant query at the current time and return the result list."""
        data = self._api("query", {"query": expr})
        if data["resultType"] not in ("vector", "matrix"):
            return [data["result"]]
        return data["result"]

    def query_range(self, expr: str, start: float, end: float, step: str = "1s") -> list[dict]:
        """Run a range query and return the result list (one entry per series)."""
        data = self._api("query_range", {"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": step})
        return data["result"]

    def series(self, selector: str, start: float) -> list[dict[str, str]]:
        """Return the label sets of the series that match `selector` since `start`."""
        return self._api("series", [("match[]", selector), ("start", f"{start:.3f}")])

    def alerts(self) -> list[dict]:
        return self._api("alerts", {})["alerts"]


class Alertmanager:
    """A real Alertmanager with clustering off that sends every alert to one webhook."""

    def __init__(self, work_dir: Path, webhook_url: str):
        binary = require_binary("prometheus-alertmanager", "alertmanager")
        self.address = f"127.0.0.1:{free_port()}"
        self.url = f"http://{self.address}"
        config = {
            "route": {
                "receiver": "webhook",
                "group_by": ["alertname", "job_id", "user"],
                "group_wait": "1s",
                "group_interval": "1s",
                "repeat_interval": "1h",
            },
            "receivers": [{"name": "webhook", "webhook_configs": [{"url": webhook_url, "send_resolved": False}]}],
        }
        config_path = work_dir / "alertmanager.yml"
        config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        storage = work_dir / "alertmanager-data"
        storage.mkdir()
        self.process = ManagedProcess(
            "alertmanager",
            [binary, f"--config.file={config_path}", f"--storage.path={storage}",
             f"--web.listen-address={self.address}", "--cluster.listen-address=", "--log.level=warn"],
            work_dir / "alertmanager.log",
        )
        self.process.wait_ready(f"{self.url}/-/ready")

    def stop(self) -> None:
        self.process.stop()


def load_rules(path: Path = RULES_FILE) -> list[dict]:
    """Return every rule of a rules file, each with its group name under `group`."""
    document = yaml.safe_load(path.read_text())
    rules = []
    for group in document["groups"]:
        for rule in group["rules"]:
            rules.append({**rule, "group": group["name"]})
    return rules


def load_dashboard(path: Path = DASHBOARD_FILE) -> dict:
    return json.loads(path.read_text())


def dashboard_panels(dashboard: dict) -> list[dict]:
    """Return every panel, including panels nested in collapsed rows."""
    panels = []
    for panel in dashboard.get("panels", []):
        panels.append(panel)
        panels.extend(panel.get("panels", []))
    return panels


def variable_query(variable: dict) -> str:
    """Return the query text of a Grafana query variable (string or object form)."""
    query = variable.get("query")
    if isinstance(query, dict):
        return query.get("query", "")
    return query or ""
