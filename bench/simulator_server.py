"""Serve pre-rendered fleet responses from a static OMA simulator until SIGTERM.

Runs in its own process so that the simulator's CPU time never counts against the
exporter being measured. Prints `{"url": ..., "jobs": [...]}` once it listens.
"""

from __future__ import annotations

import argparse
import os
import signal
import threading

from exporter.simulator import SimulatorServer
from exporter.simulator.fleet import render_fleet

from common import OMA_USER, PASSWORD_ENV, announce


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, required=True, help="Number of migration jobs.")
    parser.add_argument("--users", type=int, required=True, help="Users per job.")
    parser.add_argument("--folders", type=int, required=True, help="Folders per user.")
    parser.add_argument("--seed", type=int, default=1, help="Random seed of the fleet (default 1).")
    arguments = parser.parse_args()

    responses = render_fleet(arguments.jobs, arguments.users, arguments.folders, arguments.seed)
    server = SimulatorServer.static(
        responses, user=OMA_USER, password=os.environ[PASSWORD_ENV], host="127.0.0.1", port=0
    ).start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    announce(url=server.url, jobs=list(responses), response_bytes=sum(len(body) for body in responses.values()))
    stop.wait()
    server.stop()


if __name__ == "__main__":
    main()
