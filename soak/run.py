"""Soak test: run the exporter for minutes under faults and check that it does not grow.

Processes, all on 127.0.0.1:

- `opensrs-oma-simulator` with the demo scenario at a high `--speed`, so that the
  jobs go through a whole simulated migration during the run. It is stopped once
  mid-run and started again on the same port, so the exporter gets refused
  connections for a few seconds and then a simulation that starts over.
- `soak/fault_proxy.py` in front of it, which gives a fraction of the calls an HTTP
  503, a TCP reset, a slow answer past the poll deadline, a body that is not JSON or
  a body cut off early.
- The exporter's console script, polling the jobs through the proxy every 0.2 s.

A thread of this script scrapes `/metrics` back to back, in turn as plain text, gzip
and OpenMetrics. Every few seconds it samples the exporter's resident memory (VmRSS),
thread count and open file descriptors from /proc. After the warm-up each figure
must stay flat: its range (max - min) and its least-squares slope must stay within
the tolerances below. The result goes to `docs/benchmarks.md` between the markers
`<!-- soak:begin -->` and `<!-- soak:end -->`, and the exit status is 1 on FAIL.

Usage: python soak/run.py [--duration 210] [--warmup 30] [--output docs/benchmarks.md]
"""

from __future__ import annotations

import argparse
import gzip
import os
import platform
import re
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

REPO_ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
BEGIN_MARKER = "<!-- soak:begin -->"
END_MARKER = "<!-- soak:end -->"
USER = "soak@example.com"

# Tolerances for the figures after the warm-up. The range allows for the noise of
# one sample, such as an HTTP handler thread that is just starting or ending. The
# slope catches a steady leak that a short run keeps inside the range.
TOLERANCES = {
    "rss_mib": {"range": 8.0, "slope_per_minute": 1.0},
    "threads": {"range": 4.0, "slope_per_minute": 0.5},
    "fds": {"range": 8.0, "slope_per_minute": 0.5},
}


@dataclass
class Sample:
    elapsed: float
    rss_mib: float
    threads: int
    fds: int
    scrapes: int
    scrape_failures: int
    polls_failed: float
    jobs_up: float


@dataclass
class Scraper:
    """Scrapes the exporter back to back from a thread until stopped."""

    url: str
    count: int = 0
    failures: int = 0
    last_text: str = ""
    errors: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        formats = ({}, {"Accept-Encoding": "gzip"}, {"Accept": "application/openmetrics-text; version=1.0.0"})
        while not self._stop.is_set():
            headers = formats[self.count % len(formats)]
            try:
                request = urllib.request.Request(self.url, headers=headers)
                with urllib.request.urlopen(request, timeout=10) as response:
                    body = response.read()
                if response.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                if not headers:
                    self.last_text = body.decode()
            except OSError as error:
                self.failures += 1
                if len(self.errors) < 5:
                    self.errors.append(f"{type(error).__name__}: {error}")
            self.count += 1
            time.sleep(0.02)

    def stop(self) -> None:
        self._stop.set()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def read_line_matching(process: subprocess.Popen, stream, pattern: str, timeout: float) -> re.Match:
    """Read lines of `stream` until one matches `pattern`, or raise RuntimeError after `timeout` seconds."""
    found: list[re.Match] = []
    seen: list[str] = []

    def reader() -> None:
        for line in stream:
            seen.append(line)
            match = re.search(pattern, line)
            if match:
                found.append(match)
                return

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    thread.join(timeout)
    if not found:
        raise RuntimeError(f"{process.args[0]} printed no line matching {pattern!r} in {timeout:.0f} s: {seen[-5:]}")
    return found[0]


def drain(stream) -> None:
    """Read a pipe to its end in a daemon thread, so the child does not block on a full pipe."""
    threading.Thread(target=lambda: [None for _ in stream], daemon=True).start()


def start_simulator(port: int, speed: float, password: str) -> tuple[subprocess.Popen, str, list[str]]:
    env = {**os.environ, "OPENSRS_SIMULATOR_PASSWORD": password}
    process = subprocess.Popen(
        [str(BIN / "opensrs-oma-simulator"), "--listen-address", f"127.0.0.1:{port}", "--scenario", "demo",
         "--speed", str(speed), "--user", USER],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    jobs = read_line_matching(process, process.stderr, r"jobs (\S+)", 30).group(1).split(",")
    url = read_line_matching(process, process.stdout, r"serving at (\S+)", 30).group(1)
    drain(process.stdout)
    drain(process.stderr)
    return process, url, jobs


def stop_process(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def proc_figures(pid: int) -> tuple[float, int, int]:
    """Return VmRSS in MiB, the thread count and the open file descriptors of `pid`."""
    status = Path(f"/proc/{pid}/status").read_text()
    rss_kib = int(re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE).group(1))
    threads = int(re.search(r"^Threads:\s+(\d+)", status, re.MULTILINE).group(1))
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    return rss_kib / 1024, threads, fds


def poll_figures(text: str) -> tuple[float, float]:
    """Return the failed polls counted so far and the number of jobs that are up."""
    failed = up = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "opensrs_migration_poll_errors_total":
                failed += sample.value
            elif sample.name == "opensrs_migration_job_up":
                up += sample.value
    return failed, up


def slope_per_minute(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, value) points, in value per minute."""
    count = len(points)
    mean_x = sum(x for x, _ in points) / count
    mean_y = sum(y for _, y in points) / count
    spread = sum((x - mean_x) ** 2 for x, _ in points)
    if spread == 0:
        return 0.0
    return 60 * sum((x - mean_x) * (y - mean_y) for x, y in points) / spread


def judge(samples: list[Sample], warmup: float) -> tuple[bool, list[str]]:
    """Compare the post-warm-up samples with TOLERANCES and return the verdict and table rows."""
    measured = [sample for sample in samples if sample.elapsed >= warmup]
    if len(measured) < 3:
        raise RuntimeError(f"only {len(measured)} samples after the warm-up; run longer")
    rows = []
    passed = True
    for name, limits in TOLERANCES.items():
        values = [(sample.elapsed, float(getattr(sample, name))) for sample in measured]
        spread = max(v for _, v in values) - min(v for _, v in values)
        slope = slope_per_minute(values)
        ok = spread <= limits["range"] and abs(slope) <= limits["slope_per_minute"]
        passed &= ok
        rows.append(
            f"| {name} | {min(v for _, v in values):.1f} | {max(v for _, v in values):.1f} | {spread:.1f} "
            f"(≤ {limits['range']:g}) | {slope:+.2f} (≤ ±{limits['slope_per_minute']:g}) | {'PASS' if ok else 'FAIL'} |"
        )
    return passed, rows


def machine_description() -> str:
    model = ""
    try:
        match = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.MULTILINE)
        model = match.group(1).strip() if match else ""
    except OSError:
        pass
    memory = ""
    try:
        match = re.search(r"^MemTotal:\s+(\d+) kB", Path("/proc/meminfo").read_text(), re.MULTILINE)
        memory = f", {int(match.group(1)) / 1024 / 1024:.1f} GiB RAM" if match else ""
    except OSError:
        pass
    return (f"{platform.system()} {platform.release()}, {os.cpu_count()} CPUs ({model or 'unknown model'}){memory}, "
            f"Python {platform.python_version()}")


def write_section(output: Path, section: str) -> None:
    """Replace the text between the soak markers, or append the markers and the section."""
    text = output.read_text() if output.exists() else "# Benchmarks\n"
    block = f"{BEGIN_MARKER}\n{section.rstrip()}\n{END_MARKER}"
    if BEGIN_MARKER in text and END_MARKER in text:
        before, rest = text.split(BEGIN_MARKER, 1)
        after = rest.split(END_MARKER, 1)[1]
        text = before + block + after
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    output.write_text(text)


def build_section(args: argparse.Namespace, command: str, samples: list[Sample], passed: bool, rows: list[str],
                  scraper: Scraper, restart: tuple[float, float]) -> str:
    lines = [
        "## Soak test",
        "",
        f"Run on {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, on {machine_description()}.",
        f"Command: `{command}`.",
        "",
        f"The exporter polled the simulator's demo jobs (`--speed {args.speed:g}`, so one simulated day "
        f"passes in {86400 / args.speed:.0f} s) every 0.2 s through `soak/fault_proxy.py`, which gave "
        f"{args.fault_rate:.0%} of the calls a fault. The simulator was stopped at {restart[0]:.0f} s and "
        f"started again at {restart[1]:.0f} s. A client scraped `/metrics` back to back in turn as plain "
        f"text, gzip and OpenMetrics: {scraper.count} scrapes, {scraper.failures} failed. "
        f"The figures below are read from /proc every {args.sample_interval:g} s; the verdict uses the "
        f"samples after the {args.warmup:g} s warm-up.",
        "",
        "| elapsed (s) | RSS (MiB) | threads | open fds | scrapes | failed polls | jobs up |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    step = max(1, len(samples) // 16)
    shown = samples[::step] + ([samples[-1]] if (len(samples) - 1) % step else [])
    for sample in shown:
        lines.append(
            f"| {sample.elapsed:.0f} | {sample.rss_mib:.1f} | {sample.threads} | {sample.fds} | {sample.scrapes} | "
            f"{sample.polls_failed:.0f} | {sample.jobs_up:.0f} |"
        )
    lines += [
        "",
        "| figure | min | max | range | slope per minute | result |",
        "|---|---:|---:|---:|---:|---|",
        *rows,
        "",
        f"Verdict: **{'PASS' if passed else 'FAIL'}**. The tolerances are set in `soak/run.py` (`TOLERANCES`).",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Soak the exporter under faults and check RSS, threads and fds.")
    parser.add_argument("--duration", type=float, default=210.0, help="seconds of the run, warm-up included")
    parser.add_argument("--warmup", type=float, default=30.0, help="seconds before the figures must be flat")
    parser.add_argument("--sample-interval", type=float, default=5.0, help="seconds between /proc samples")
    parser.add_argument("--speed", type=float, default=2000.0, help="simulated seconds per real second")
    parser.add_argument("--fault-rate", type=float, default=0.1, help="fraction of OMA calls given a fault")
    parser.add_argument("--output", type=Path, default=REPO_ROOT / "docs" / "benchmarks.md",
                        help="Markdown file whose soak section is replaced")
    args = parser.parse_args(argv)
    command = " ".join(["python soak/run.py", *(argv if argv is not None else sys.argv[1:])])

    password = secrets.token_urlsafe(16)
    port = free_port()
    simulator, simulator_url, jobs = start_simulator(port, args.speed, password)
    proxy = subprocess.Popen(
        [sys.executable, str(Path(__file__).parent / "fault_proxy.py"), "--upstream", simulator_url,
         "--fault-rate", str(args.fault_rate), "--slow-seconds", "3"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    exporter = None
    scraper = None
    try:
        proxy_url = read_line_matching(proxy, proxy.stdout, r"serving at (\S+)", 30).group(1)
        drain(proxy.stdout)
        drain(proxy.stderr)
        env = {key: value for key, value in os.environ.items() if not key.startswith("OPENSRS_")}
        env.update({"OPENSRS_OMA_URL": proxy_url, "OPENSRS_OMA_USER": USER, "OPENSRS_PASSWORD": password,
                    "OPENSRS_JOBS": ",".join(jobs)})
        exporter = subprocess.Popen(
            [str(BIN / "opensrs-migration-exporter"), "--web.listen-address", "127.0.0.1:0",
             "--poll.interval", "0.2s", "--poll.finished-interval", "1s", "--poll.deadline", "2s",
             "--poll.read-timeout", "1s", "--poll.stale-after", "1m"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        metrics_url = read_line_matching(exporter, exporter.stderr, r'msg="serving metrics" url=(\S+)', 30).group(1)
        drain(exporter.stdout)
        drain(exporter.stderr)

        scraper = Scraper(metrics_url)
        threading.Thread(target=scraper.run, daemon=True).start()
        restart_at = (args.duration * 0.5, args.duration * 0.5 + 5)
        restarted = False
        samples: list[Sample] = []
        started = time.monotonic()
        next_sample = started
        print(f"soak: {args.duration:.0f} s against jobs {','.join(jobs)}; sampling exporter pid {exporter.pid}",
              flush=True)
        while (elapsed := time.monotonic() - started) < args.duration:
            if exporter.poll() is not None:
                raise RuntimeError(f"the exporter exited with status {exporter.returncode} at {elapsed:.0f} s")
            if not restarted and elapsed >= restart_at[0]:
                stop_process(simulator)
                time.sleep(restart_at[1] - restart_at[0])
                simulator, _, _ = start_simulator(port, args.speed, password)
                restarted = True
                continue
            if time.monotonic() >= next_sample:
                rss, threads, fds = proc_figures(exporter.pid)
                failed, up = poll_figures(scraper.last_text) if scraper.last_text else (0.0, 0.0)
                samples.append(Sample(elapsed, rss, threads, fds, scraper.count, scraper.failures, failed, up))
                print(f"soak: {elapsed:5.0f} s  rss {rss:6.1f} MiB  threads {threads:3d}  fds {fds:3d}  "
                      f"scrapes {scraper.count}  failed polls {failed:.0f}  jobs up {up:.0f}", flush=True)
                while next_sample <= time.monotonic():
                    next_sample += args.sample_interval
            time.sleep(0.1)
        scraper.stop()

        passed, rows = judge(samples, args.warmup)
        if scraper.failures:
            passed = False
            rows.append(f"| scrape failures | | | {scraper.failures} (≤ 0) | | FAIL |")
        section = build_section(args, command, samples, passed, rows, scraper, restart_at)
        write_section(args.output, section)
        print("\n".join(rows))
        print(f"soak: {'PASS' if passed else 'FAIL'}; section written to {args.output}", flush=True)
        if scraper.errors:
            print(f"soak: first scrape errors: {scraper.errors}", flush=True)
        return 0 if passed else 1
    finally:
        if scraper is not None:
            scraper.stop()
        for process in (exporter, proxy, simulator):
            if process is not None:
                stop_process(process)


if __name__ == "__main__":
    sys.exit(main())
