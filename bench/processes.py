"""Start, watch and stop the processes that a benchmark scenario measures.

Every process gets its own stdout and stderr pipes, which background threads drain
so that a chatty process never blocks on a full pipe.
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

from common import OMA_PASSWORD, OMA_USER, PASSWORD_ENV

BENCH_DIRECTORY = Path(__file__).resolve().parent
EXPORTER_SCRIPT = Path(sys.executable).parent / "opensrs-migration-exporter"
SERVING_LINE = re.compile(r'msg="serving metrics" url=(\S+)')
STOP_TIMEOUT_SECONDS = 20.0


def base_environment() -> dict[str, str]:
    """Return this process's environment without exporter settings, plus the bench password."""
    environment = {key: value for key, value in os.environ.items() if not key.startswith("OPENSRS_")}
    environment[PASSWORD_ENV] = OMA_PASSWORD
    return environment


class Process:
    """A child process whose stdout lines arrive on a queue and whose stderr is kept."""

    def __init__(self, name: str, command: Sequence[str], environment: dict[str, str]):
        self.name = name
        self.popen = subprocess.Popen(
            list(command), env=environment, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True,
        )
        self.stdout: queue.Queue[str | None] = queue.Queue()
        self.stderr_lines: list[str] = []
        threading.Thread(target=self._drain_stdout, daemon=True).start()
        threading.Thread(target=self._drain_stderr, daemon=True).start()

    @property
    def pid(self) -> int:
        return self.popen.pid

    def _drain_stdout(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            self.stdout.put(line)
        self.stdout.put(None)

    def _drain_stderr(self) -> None:
        assert self.popen.stderr is not None
        for line in self.popen.stderr:
            self.stderr_lines.append(line)
            self.on_stderr_line(line)

    def on_stderr_line(self, line: str) -> None:
        """Hook for subclasses that watch the log."""

    def read_json(self, timeout: float) -> dict:
        """Return the next JSON line of stdout; raise if the process exits or stays silent."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RuntimeError(f"{self.name} printed no result within {timeout:.0f} s{self._stderr_tail()}")
            try:
                line = self.stdout.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                raise RuntimeError(f"{self.name} exited with status {self.popen.wait()}{self._stderr_tail()}")
            if line.startswith("{"):
                return json.loads(line)

    def _stderr_tail(self) -> str:
        # Give the stderr thread a moment to collect the last lines of a dying process.
        time.sleep(0.2)
        tail = "".join(self.stderr_lines[-15:]).rstrip()
        return f"; last lines of its stderr:\n{tail}" if tail else ""

    def peak_rss_bytes(self) -> int:
        """Return the peak resident set size (VmHWM) of the process so far."""
        status = Path(f"/proc/{self.pid}/status").read_text()
        match = re.search(r"^VmHWM:\s+(\d+) kB$", status, re.MULTILINE)
        if match is None:
            raise RuntimeError(f"/proc/{self.pid}/status of {self.name} has no VmHWM line")
        return int(match.group(1)) * 1024

    def stop(self) -> None:
        """Send SIGTERM, then SIGKILL if the process is still running after the timeout."""
        if self.popen.poll() is not None:
            return
        self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()

    def __enter__(self) -> Process:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def start_helper(name: str, script: str, arguments: Sequence[str]) -> Process:
    """Start one of the scripts in bench/ with this interpreter."""
    command = [sys.executable, str(BENCH_DIRECTORY / script), *arguments]
    return Process(name, command, base_environment())


class ExporterProcess(Process):
    """The installed exporter console script, configured by OPENSRS_* variables."""

    def __init__(self, oma_url: str, job_ids: Sequence[str], arguments: Sequence[str]):
        environment = base_environment()
        del environment[PASSWORD_ENV]
        environment.update({
            "OPENSRS_OMA_URL": oma_url,
            "OPENSRS_OMA_USER": OMA_USER,
            "OPENSRS_PASSWORD": OMA_PASSWORD,
            "OPENSRS_JOBS": ",".join(job_ids),
        })
        self.metrics_url = ""
        self._serving = threading.Event()
        super().__init__("exporter", [str(EXPORTER_SCRIPT), *arguments], environment)

    def on_stderr_line(self, line: str) -> None:
        match = SERVING_LINE.search(line)
        if match:
            self.metrics_url = match.group(1)
            self._serving.set()

    def wait_ready(self, timeout: float) -> None:
        """Wait for the "serving metrics" log line, then for /-/ready to return 200."""
        deadline = time.monotonic() + timeout
        while not self._serving.wait(0.1):
            if self.popen.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"exporter did not log its metrics URL{self._stderr_tail()}")
        parts = urlsplit(self.metrics_url)
        ready_url = f"{parts.scheme}://{parts.netloc}/-/ready"
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise RuntimeError(f"exporter exited with status {self.popen.returncode}{self._stderr_tail()}")
            try:
                with urllib.request.urlopen(ready_url, timeout=5) as response:
                    if response.status == 200:
                        return
            except urllib.error.HTTPError as error:
                if error.code != 503:
                    raise
            except (urllib.error.URLError, TimeoutError):
                pass
            time.sleep(0.2)
        raise RuntimeError(f"exporter was not ready within {timeout:.0f} s{self._stderr_tail()}")
