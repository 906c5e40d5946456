"""Names shared by the benchmark driver and the processes it starts.

Every helper process reads the OMA password from `PASSWORD_ENV` and never prints it,
and announces that it is ready with one JSON object on a line of its stdout.
"""

from __future__ import annotations

import json
import sys

# Invented credentials of the static OMA simulator; they protect nothing.
OMA_USER = "bench@example.com"
OMA_PASSWORD = "bench-password-not-secret"
PASSWORD_ENV = "BENCH_OMA_PASSWORD"


def announce(**fields: object) -> None:
    """Write one JSON line to stdout for the driver, which waits for it."""
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()
