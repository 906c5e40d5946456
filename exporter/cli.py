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
from exporter.accounts import (
    DEFAULT_ACCOUNT, Account, ConfigFileError, Discovery, account_from_settings, load_config_file,
)
from exporter.settings import OPTIONS, Settings, SettingsError, load_settings, parse_listen_address
from exporter.webconfig import WebConfigError, WebConfigFile, load_web_config

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
    add("jobs", 'Migration job IDs to poll: "a,b", a JSON list or one ID (required unless --demo, --discovery '
        "or --config.file).", metavar="IDS")
    add("config_file", "YAML file that names several OMA accounts, each with its own URL, user, password file, "
        "token mode, jobs and discovery; re-read on SIGHUP or POST /-/reload.", metavar="FILE")
    add("discovery", "Find jobs with migration_jobs and poll those submitted within --discovery.max-age, "
        "plus any --jobs (default off).", action=argparse.BooleanOptionalAction)
    add("discovery_interval", "Time between two migration_jobs calls (default 5m).", metavar="DURATION")
    add("discovery_max_age", "Poll discovered jobs submitted at most this long ago (default 7d).", metavar="DURATION")
    add("shard", "Index of this replica, from 0 to --total-shards minus 1 (default 0).", metavar="N")
    add("total_shards", "Number of replicas that split the jobs by a hash of the job ID (default 1).", metavar="N")
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
                        help="Validate the settings and files they name, print the number of configured jobs, and exit.")
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
    if settings.config_file is not None:
        try:
            accounts = load_config_file(settings.config_file)
        except ConfigFileError as error:
            print(f"opensrs-migration-exporter: {error}", file=sys.stderr)
            return EXIT_INVALID_SETTINGS
        job_count = sum(len(account.jobs) for account in accounts)
    else:
        job_count = len(settings.jobs)
    if settings.web_config_file is not None:
        try:
            load_web_config(settings.web_config_file)
        except WebConfigError as error:
            print(f"opensrs-migration-exporter: {error}", file=sys.stderr)
            return EXIT_INVALID_SETTINGS
    if config_check:
        jobs = "1 job" if job_count == 1 else f"{job_count} jobs"
        print(f"opensrs-migration-exporter: settings are valid ({jobs})")
        return 0

    logs.configure(settings.log_level, settings.log_format)
    log.info("starting", extra={"version": __version__, **settings.summary()})
    if settings.config_file is not None and (settings.password is not None or settings.password_file is not None):
        # Not an error: the container image sets OPENSRS_PASSWORD_FILE by default.
        log.warning("OPENSRS_PASSWORD and OPENSRS_PASSWORD_FILE are ignored with --config.file; "
                    "each account names its own password_file")
    return run(settings, password)


def run(settings: Settings, password: str) -> int:
    """Start the simulator (in demo mode), the exporter and the HTTP server; block until a signal."""
    # Handlers first: a SIGTERM during start-up must end the process cleanly, not with
    # the default action, and the loop below handles it once start-up is done.
    stop = threading.Event()
    reload_requested = threading.Event()
    for number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(number, lambda signum, frame: stop.set())
    signal.signal(signal.SIGHUP, lambda signum, frame: reload_requested.set())

    from exporter.app import Exporter
    from exporter.server import ExporterServer

    simulator = None
    if settings.demo:
        simulator, account = _start_demo_simulator(settings)
        load_accounts = lambda: [account]  # noqa: E731 (the demo account never changes)
    elif settings.config_file is not None:
        config_file = settings.config_file
        load_accounts = lambda: load_config_file(config_file)  # noqa: E731
    else:
        load_accounts = lambda: [account_from_settings(settings, settings.read_password())]  # noqa: E731

    try:
        exporter = Exporter(settings, load_accounts)
    except (ConfigFileError, SettingsError) as error:
        log.error("invalid configuration", extra={"error": str(error)})
        if simulator is not None:
            simulator.stop()
        return EXIT_INVALID_SETTINGS
    host, port = parse_listen_address(settings.web_listen_address)
    server = web_config = None
    try:
        web_config = WebConfigFile(settings.web_config_file) if settings.web_config_file is not None else None
        server = ExporterServer(host, port, exporter.exposition, exporter.poller.view, settings.web_telemetry_path,
                                web_config=web_config)
    except WebConfigError as error:
        # main() validated the file, so it changed since then.
        log.error("invalid web configuration file", extra={"file": str(error.path), "error": error.problem})
    except OSError as error:
        log.error("cannot listen", extra={"address": settings.web_listen_address, "error": str(error)})
    if server is None:
        if simulator is not None:
            simulator.stop()
        return 1
    server.reload_handler = exporter.reload

    exporter.start()
    serving = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, name="http", daemon=True)
    serving.start()
    shown_host = host or "0.0.0.0"
    scheme = "https" if web_config is not None and web_config.current().tls else "http"
    metrics_url = f"{scheme}://{_url_host(shown_host)}:{server.port}{settings.web_telemetry_path}"
    log.info("serving metrics", extra={"url": metrics_url})
    if simulator is not None:
        print(f"Demo running. OMA simulator: {simulator.url}  Metrics: {metrics_url}  Stop with Ctrl+C.", flush=True)

    while not stop.is_set():
        # Signal handlers only set events; the reload itself runs here, in the main thread.
        stop.wait(0.2)
        if reload_requested.is_set():
            reload_requested.clear()
            log.info("reloading the configuration on SIGHUP")
            exporter.reload()
    log.info("stopping")
    server.shutdown()
    server.server_close()
    exporter.stop()
    if simulator is not None:
        simulator.stop()
    return 0


def _start_demo_simulator(settings: Settings):
    from exporter.simulator import Simulation, SimulatorServer

    # A fresh random password per run: the demo needs no real secret, and none is printed.
    password = secrets.token_urlsafe(16)
    simulation = Simulation(scenario="demo", seed=1, speed=settings.demo_speed)
    simulator = SimulatorServer(simulation, user=DEMO_USER, password=password, host="127.0.0.1", port=0).start()
    log.info("demo simulator started", extra={"url": simulator.url, "speed": settings.demo_speed})
    # Without job IDs and without discovery, the demo polls every simulated job.
    jobs = settings.jobs or (() if settings.discovery else tuple(simulation.job_ids()))
    account = Account(
        name=DEFAULT_ACCOUNT,
        url=simulator.url,
        user=DEMO_USER,
        jobs=jobs,
        discovery=Discovery(settings.discovery, settings.discovery_interval, settings.discovery_max_age),
        password=password,
    )
    return simulator, account


def _describe_unknown(arguments: list[str]) -> str:
    """Name unknown flags without their values, which may be secrets."""
    names = [argument.split("=", 1)[0] for argument in arguments if argument.startswith("-")]
    message = f"unknown flags: {' '.join(names)}" if names else "unexpected arguments"
    if any("password" in name or "token" in name for name in names):
        message += " (the password is read only from OPENSRS_PASSWORD or OPENSRS_PASSWORD_FILE, never from a flag)"
    return message


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
