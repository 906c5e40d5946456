"""The console script as a subprocess against the simulator over real HTTP."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from exporter import metricdefs
from exporter.simulator import Faults, Simulation, SimulatorServer

PASSWORD = "test-password-7f3a"
USER = "sre@example.com"
HEALTHY_JOB = "1700000000001"
SCRIPT = Path(sys.executable).parent / "opensrs-migration-exporter"


class ExporterProcess:
    """Runs the installed console script and collects its stderr in the background."""

    def __init__(self, *args: str, env: dict[str, str]):
        clean = {k: v for k, v in os.environ.items() if not k.startswith("OPENSRS_")}
        clean.update(env)
        self.process = subprocess.Popen(
            [str(SCRIPT), "--web.listen-address", "127.0.0.1:0", *args],
            env=clean, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        self.lines: list[str] = []
        self.stdout: list[str] = []
        self._url_found = threading.Event()
        self.metrics_url = ""
        threading.Thread(target=self._read_stderr, daemon=True).start()
        threading.Thread(target=self._read_stdout, daemon=True).start()
        assert self._url_found.wait(30), f"exporter did not start: {self.lines}"

    def _read_stderr(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line)
            match = re.search(r'msg="serving metrics" url=(\S+)', line)
            if match:
                self.metrics_url = match.group(1)
                self._url_found.set()

    def _read_stdout(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.stdout.append(line)

    def scrape(self) -> str:
        with urllib.request.urlopen(self.metrics_url, timeout=10) as response:
            return response.read().decode()

    def samples(self) -> dict[tuple[str, tuple], float]:
        result = {}
        for family in text_string_to_metric_families(self.scrape()):
            for sample in family.samples:
                result[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
        return result

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=10)

    def output(self) -> str:
        return "".join(self.lines) + "".join(self.stdout)


def wait_for(condition, timeout: float, message):
    """Poll `condition` until it returns something true; `message` may be a callable for the failure text."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        result = condition()
        if result:
            return result
        time.sleep(0.3)
    raise AssertionError(message() if callable(message) else message)


@pytest.fixture
def simulator():
    server = SimulatorServer(Simulation(scenario="demo", seed=1, speed=600.0), user=USER, password=PASSWORD).start()
    yield server
    server.stop()


def exporter_env(simulator: SimulatorServer, password: str = PASSWORD) -> dict[str, str]:
    return {
        "OPENSRS_OMA_URL": simulator.url,
        "OPENSRS_OMA_USER": USER,
        "OPENSRS_PASSWORD": password,
        "OPENSRS_JOBS": f"{HEALTHY_JOB}, 1700000000002, 0001700000003",
        "OPENSRS_POLL_INTERVAL": "0.5",
        "OPENSRS_LOG_LEVEL": "debug",
    }


def test_users_reach_complete(simulator):
    exporter = ExporterProcess(env=exporter_env(simulator))
    try:
        def all_complete():
            samples = exporter.samples()
            complete = samples.get(("opensrs_migration_job_users", (("job_id", HEALTHY_JOB), ("state", "complete"))))
            users = [v for (name, labels), v in samples.items()
                     if name == "opensrs_migration_job_users" and ("job_id", HEALTHY_JOB) in labels]
            return complete is not None and complete > 0 and complete == sum(users) and samples

        samples = wait_for(all_complete, 60, "the healthy job's users never all reached complete")
        migrated = samples[("opensrs_migration_job_migrated_messages", (("job_id", HEALTHY_JOB),))]
        assert migrated > 0
        assert samples[("opensrs_migration_job_up", (("job_id", "0001700000003"),))] == 1
        assert exporter.stop() == 0
    finally:
        if exporter.process.poll() is None:
            exporter.process.kill()
    output = exporter.output()
    assert PASSWORD not in output
    assert "Traceback" not in output


def test_wrong_password_reported_and_served(simulator):
    exporter = ExporterProcess(env=exporter_env(simulator, password="wrong-password-0000"))
    try:
        key = ("opensrs_migration_api_errors_total", (("error_number", "1"),))
        first = wait_for(lambda: exporter.samples().get(key), 20, "api_errors_total{error_number=1} never counted")
        wait_for(lambda: exporter.samples()[key] > first, 20, "api_errors_total{error_number=1} did not move")
        samples = exporter.samples()
        assert samples[("opensrs_migration_job_up", (("job_id", HEALTHY_JOB),))] == 0
        assert samples[("opensrs_migration_poll_errors_total", (("job_id", HEALTHY_JOB), ("reason", "api_error")))] > 0
        metrics_text = exporter.scrape()
    finally:
        exporter.stop()
    output = exporter.output()
    assert "wrong-password-0000" not in output
    assert "wrong-password-0000" not in metrics_text
    failure_lines = [line for line in exporter.lines if 'msg="poll failed"' in line and HEALTHY_JOB in line]
    assert len(failure_lines) == 1, "a repeated identical failure must be logged once"


def test_demo_serves_every_contract_metric():
    exporter = ExporterProcess("--demo", "--discovery", "--poll.interval", "1s", env={})
    try:
        contract = metricdefs.exposed_names() - {"opensrs_migration_invalid_values_total"}

        def missing_names():
            present = {name for name, _ in exporter.samples()}
            return contract - present

        wait_for(lambda: not missing_names(), 30, lambda: f"demo never served {sorted(missing_names())}")
        assert any("OMA simulator: http://127.0.0.1:" in line for line in exporter.stdout)
    finally:
        assert exporter.stop() == 0


def test_sigterm_stops_quickly(simulator):
    simulator.faults = Faults(latency=20.0)  # every poll is in flight when the signal arrives
    exporter = ExporterProcess(env=exporter_env(simulator))
    time.sleep(1.0)
    started = time.monotonic()
    code = exporter.stop()
    assert code == 0
    assert time.monotonic() - started < 5.0
    assert "Traceback" not in exporter.output()
