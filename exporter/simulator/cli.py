"""Command line of `opensrs-oma-simulator`: serve a simulated OMA until SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
import logging
import math
import os
import signal
import sys
import threading

from exporter.simulator.scenarios import SCENARIOS
from exporter.simulator.server import Faults, SimulatorServer
from exporter.simulator.simulation import Simulation

log = logging.getLogger("exporter.simulator")

PASSWORD_ENV = "OPENSRS_SIMULATOR_PASSWORD"
DEFAULT_PASSWORD = "demo-password"
DEFAULT_LISTEN_ADDRESS = "127.0.0.1:8080"


def listen_address(value: str) -> tuple[str, int]:
    """Parse `host:port` or `[ipv6]:port` into a host and a port number."""
    host, separator, port_text = value.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not separator or not host or not port_text.isdigit() or int(port_text) > 65535:
        raise argparse.ArgumentTypeError(
            f"invalid listen address {value!r}: expected host:port, for example 127.0.0.1:8080"
        )
    return host, int(port_text)


def positive_number(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not (math.isfinite(number) and number > 0):
        raise argparse.ArgumentTypeError(f"invalid value {value!r}: expected a number greater than 0")
    return number


def non_negative_number(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not (math.isfinite(number) and number >= 0):
        raise argparse.ArgumentTypeError(f"invalid value {value!r}: expected a number of at least 0")
    return number


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="opensrs-oma-simulator",
        description=(
            "Serve a simulated OpenSRS Mail API (OMA) with migration jobs, for tests and demos. "
            f"The API password is read from the environment variable {PASSWORD_ENV} "
            f"(default {DEFAULT_PASSWORD!r}, a demo value that is public)."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--listen-address",
        type=listen_address,
        default=DEFAULT_LISTEN_ADDRESS,
        metavar="HOST:PORT",
        help="address and TCP port to serve on; port 0 picks a free port",
    )
    parser.add_argument(
        "--scenario",
        choices=SCENARIOS,
        default="demo",
        help="jobs to start with: demo (three jobs: healthy, failing, stalled), seed (the "
        "documentation's example job) or empty (no jobs, for migration_add)",
    )
    parser.add_argument("--seed", type=int, default=1, help="seed of the random job plans")
    parser.add_argument(
        "--speed",
        type=positive_number,
        default=60.0,
        help="simulated seconds per real second",
    )
    parser.add_argument("--user", default="demo@example.com", help="API user name that the simulator accepts")
    parser.add_argument(
        "--latency",
        type=non_negative_number,
        default=0.0,
        help="seconds added before every API response",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    password = os.environ.get(PASSWORD_ENV, DEFAULT_PASSWORD)
    if not password:
        parser.error(f"{PASSWORD_ENV} is set but empty; unset it or set a password")

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    host, port = args.listen_address
    simulation = Simulation(scenario=args.scenario, seed=args.seed, speed=args.speed)
    try:
        server = SimulatorServer(simulation, user=args.user, password=password, host=host, port=port)
    except OSError as error:
        log.error("Cannot listen on %s:%d: %s", host, port, error)
        return 1
    server.faults = Faults(latency=args.latency)

    stop_requested = threading.Event()

    def request_stop(signum, frame):
        log.info("Received %s, stopping", signal.Signals(signum).name)
        stop_requested.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)

    server.start()
    log.info(
        "Started: scenario %s, seed %d, speed %g, user %s, latency %g s, jobs %s",
        args.scenario, args.seed, args.speed, args.user, args.latency,
        ",".join(simulation.job_ids()) or "none",
    )
    print(f"OMA simulator serving at {server.url}", flush=True)

    # Waiting in slices lets the signal handlers run promptly: on Windows a lock wait
    # without a timeout is not interrupted by Ctrl+C.
    while not stop_requested.wait(timeout=1.0):
        pass
    server.stop()
    log.info("Stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
