"""The scrape client: timed GET requests of a whole exposition, and percentiles."""

from __future__ import annotations

import http.client
import math
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

READ_BUFFER_BYTES = 1024 * 1024
SCRAPE_TIMEOUT_SECONDS = 600.0


@dataclass(frozen=True)
class Scrape:
    seconds: float
    size: int
    """Bytes of the body as sent, so compressed bytes for a gzip scrape."""
    body: bytes | None = None


def scrape(url: str, use_gzip: bool, keep_body: bool = False) -> Scrape:
    """GET `url` on a new connection and read the whole body, timing connect to last byte.

    A new connection per scrape treats every server alike, because the baseline's
    WSGI server closes the connection after each response. The body is read into
    one reused buffer, so the client makes no copies, unless `keep_body` is true.
    """
    parts = urlsplit(url)
    buffer = bytearray(READ_BUFFER_BYTES)
    chunks: list[bytes] = []
    size = 0
    started = time.perf_counter()
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=SCRAPE_TIMEOUT_SECONDS)
    try:
        connection.request("GET", parts.path or "/", headers={"Accept-Encoding": "gzip" if use_gzip else "identity"})
        response = connection.getresponse()
        while count := response.readinto(buffer):
            size += count
            if keep_body:
                chunks.append(bytes(memoryview(buffer)[:count]))
        seconds = time.perf_counter() - started
    finally:
        connection.close()
    if response.status != 200:
        raise RuntimeError(f"GET {url} returned HTTP {response.status}")
    encoding = response.getheader("Content-Encoding", "")
    if (encoding == "gzip") != use_gzip:
        raise RuntimeError(f"GET {url} with gzip={use_gzip} returned Content-Encoding {encoding!r}")
    return Scrape(seconds, size, b"".join(chunks) if keep_body else None)


def scrape_loop(url: str, use_gzip: bool, count: int) -> list[float]:
    """Return the latencies of `count` sequential scrapes in seconds."""
    return [scrape(url, use_gzip).seconds for _ in range(count)]


def percentile(values: list[float], fraction: float) -> float:
    """Return the nearest-rank percentile: with fewer than 100 values p99 is the maximum."""
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def latency_summary(values: list[float]) -> dict:
    return {"samples": len(values), "p50": percentile(values, 0.50), "p99": percentile(values, 0.99),
            "seconds": values}
