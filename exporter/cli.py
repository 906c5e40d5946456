"""Command line: flags, start-up, and a clean stop on SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
import logging
import secrets
import signal
import sys
import threading
from typing import Any, NoReturn

from exporter import __version__, logs
from exporter.settings import OPTIONS, Settings, SettingsError, load_settings, parse_listen_address

log = logging.getLogger("exporter")

EXIT_INVALID_SETTINGS = 2
DEMO_USER = "demo@example.com"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line, and never the rejected values: a mistyped flag may be followed
        # by a password.
        self.exit(EXIT_INVALID_SETTINGS, f"{self.prog}: invalid command line: {message}; see --help\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="opensrs-migration-exporter",
        description="Prometheus exporter for OpenSRS Hosted Email mailbox migrations. "
        "Polls the OMA migration_status method for each job and serves the results as metrics. "
        "Every flag can also be set by the environment variable shown; the password only by "
        "OPENSRS_PASSWORD or OPENSRS_PASSWORD_FILE.",
        argument_default=argparse.SUPPRESS,
        allow_abbrev=False,
    )

    def add(field: str, help_text: str, **kwargs: Any) -> None:
        option = OPTIONS[field]
        assert option.flag is not None
        parser.add_argument(option.flag, dest=field, help=f"{help_text} [env {option.env}]", **kwargs)

    add("oma_url", "OMA base URL, e.g. https://admin.a.hostedemail.com/api (required unless --demo).", metavar="URL")
    add("oma_user", "OMA admin user (required unless --demo).", metavar="USER")
    add("oma_client", f"Client string sent with every call for OpenSRS logs (default opensrs-migration-exporter/{__version__}).",
        metavar="TEXT")
    add("oma_ca_file", "PEM file of CA certificates to verify the OMA server with (default: system CAs).", metavar="FILE")
    add("oma_session_token", "Authenticate once and send a session token instead of the password (default off).",
        action=argparse.BooleanOptionalAction)
    add("oma_session_token_duration", "Lifetime requested for session tokens, 1s to 24h (default 3h).", metavar="DURATION")
    add("jobs", 'Migration job IDs to poll: "a,b", a JSON list or one ID (required unless --demo).', metavar="IDS")
    add("poll_interval", "Time between two polls of one job (default 60s). Plain numbers are seconds.", metavar="DURATION")
    add("poll_connect_timeout", "Timeout for connecting to OMA (default 5s).", metavar="DURATION")
    add("poll_read_timeout", "Timeout for each wait for response data (default 30s).", metavar="DURATION")
    add("poll_deadline", "Overall limit for one poll of one job, retries included (default 45s).", metavar="DURATION")
    add("poll_retries", "Retries of a call after a connection error, HTTP 5xx or OMA error 0, 20, 22 or 25 (default 2).",
        metavar="N")
    add("poll_concurrency", "Jobs polled at the same time (default 4).", metavar="N")
    add("poll_stale_after", "Remove a job's user and folder series when its last successful poll is older than this "
        "(default 10m).", metavar="DURATION")
    add("poll_finished_interval", "Time between polls of a job whose users are all complete or error (default 10m).",
        metavar="DURATION")
    add("poll_finished_retention", "How long a finished job's final values stay exported before the job is dropped "
        "(default 24h).", metavar="DURATION")
    add("poll_max_response_size", "Largest migration_status response accepted (default 64MiB).", metavar="SIZE")
    add("collector_folders", "Export folder series (default on); --no-collector.folders keeps job and user series only.",
        action=argparse.BooleanOptionalAction)
    add("collector_series_limit", "Most job, user and folder series to export; past it, whole jobs' folder series are "
        "left out, last job IDs first (default 2000000, 0 for no limit).", metavar="N")
    add("web_listen_address", "Address to serve metrics on, [host]:port (default :19877).", metavar="ADDRESS")
    add("web_telemetry_path", "Path under which to serve metrics (default /metrics).", metavar="PATH")
    add("web_config_file", "Web configuration file (exporter-toolkit format) for TLS and basic authentication "
        "on every endpoint; re-read when it changes (default: plain HTTP, no authentication).", metavar="FILE")
    add("log_level", "Log level: debug, info, warn or error (default info).", metavar="LEVEL")
    add("log_format", "Log format: logfmt or json (default logfmt).", metavar="FORMAT")
    add("demo", "Start the built-in OMA simulator on loopback and poll its demo jobs.", action="store_true")
    add("demo_speed", "Simulated seconds per real second in --demo mode (default 60).", metavar="FACTOR")
    parser.add_argument("--config.check", dest="config_check", action="store_true", default=False,
                        help="Validate the settings, print a summary without secrets, and exit.")
    parser.add_argument("--version", action="version", version=f"opensrs-migration-exporter {__version__}")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    namespace, unknown = parser.parse_known_args(argv)
    if unknown:
        parser.error(_describe_unknown(unknown))
    flags = vars(namespace)
    config_check = flags.pop("config_check")
    try:
        settings = load_settings(flags)
        password = settings.read_password()
    except SettingsError as error:
        print(f"opensrs-migration-exporter: {error}", file=sys.stderr)
        return EXIT_INVALID_SETTINGS
    if config_check:
        print(f"opensrs-migration-exporter: settings are valid ({len(settings.jobs)} jobs)")
        return 0

    logs.configure(settings.log_level, settings.log_format)
    log.info("starting", extra={"version": __version__, **settings.summary()})
    return run(settings, password)


def run(settings: Settings, password: str) -> int:
    """Start the simulator (in demo mode), the poller and the HTTP server; block until a signal."""
    from exporter.client import OmaClient
    from exporter.poller import Poller
    from exporter.render import render_job
    from exporter.server import Exposition, ExporterServer

    simulator = None
    job_ids = settings.jobs
    base_url, user = settings.oma_url or "", settings.oma_user or ""
    if settings.demo:
        simulator, base_url, user, password, demo_jobs = _start_demo_simulator(settings.demo_speed)
        job_ids = job_ids or demo_jobs

    client = OmaClient(
        base_url, user, password,
        client_name=settings.oma_client,
        ca_file=str(settings.oma_ca_file) if settings.oma_ca_file else None,
        connect_timeout=settings.poll_connect_timeout,
        read_timeout=settings.poll_read_timeout,
        retries=settings.poll_retries,
        max_response_size=settings.poll_max_response_size,
        session_token=settings.oma_session_token,
        session_token_duration=settings.oma_session_token_duration,
        pool_size=settings.poll_concurrency,
    )
    poller = Poller(
        client, job_ids,
        interval=settings.poll_interval,
        deadline=settings.poll_deadline,
        stale_after=settings.poll_stale_after,
        finished_interval=settings.poll_finished_interval,
        finished_retention=settings.poll_finished_retention,
        concurrency=settings.poll_concurrency,
        prepare=render_job,
    )
    exposition = Exposition(
        poller.view, folders=settings.collector_folders, series_limit=settings.collector_series_limit
    )
    host, port = parse_listen_address(settings.web_listen_address)
    try:
        server = ExporterServer(host, port, exposition, poller.view, settings.web_telemetry_path)
    except OSError as error:
        log.error("cannot listen", extra={"address": settings.web_listen_address, "error": str(error)})
        if simulator is not None:
            simulator.stop()
        return 1

    stop = threading.Event()
    for number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(number, lambda signum, frame: stop.set())
    poller.start()
    serving = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, name="http", daemon=True)
    serving.start()
    shown_host = host or "0.0.0.0"
    metrics_url = f"http://{_url_host(shown_host)}:{server.port}{settings.web_telemetry_path}"
    log.info("serving metrics", extra={"url": metrics_url})
    if simulator is not None:
        print(f"Demo running. OMA simulator: {simulator.url}  Metrics: {metrics_url}  Stop with Ctrl+C.", flush=True)

    stop.wait()
    log.info("stopping")
    server.shutdown()
    server.server_close()
    poller.stop(timeout=2.0)
    client.close()
    if simulator is not None:
        simulator.stop()
    return 0


def _start_demo_simulator(speed: float):
    from exporter.simulator import Simulation, SimulatorServer

    # A fresh random password per run: the demo needs no real secret, and none is printed.
    password = secrets.token_urlsafe(16)
    simulator = SimulatorServer(Simulation(scenario="demo", seed=1, speed=speed), user=DEMO_USER, password=password,
                                host="127.0.0.1", port=0).start()
    demo_jobs = tuple(simulator.simulation.job_ids())
    log.info("demo simulator started", extra={"url": simulator.url, "speed": speed})
    return simulator, simulator.url, DEMO_USER, password, demo_jobs


def _describe_unknown(arguments: list[str]) -> str:
    """Name unknown flags without their values, which may be secrets."""
    names = [argument.split("=", 1)[0] for argument in arguments if argument.startswith("-")]
    message = f"unknown flags: {' '.join(names)}" if names else "unexpected arguments"
    if any("password" in name or "token" in name for name in names):
        message += " (the password is read only from OPENSRS_PASSWORD or OPENSRS_PASSWORD_FILE, never from a flag)"
    return message


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
