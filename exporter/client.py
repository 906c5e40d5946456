"""OpenSRS Mail API client: JSON POSTs with deadlines, retries and session tokens.

This is the only module that imports `requests`. Every failure leaves it as a
PollError whose `reason` is one of the metric contract's poll failure reasons.
Credentials travel only in the JSON body, and no message built here contains them.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import requests
import urllib3

from exporter import errors
from exporter.errors import PollError

log = logging.getLogger(__name__)

# API error numbers that OMA documents as worth retrying later.
RETRYABLE_API_ERRORS = frozenset({0, 20, 22, 25})
INVALID_CREDENTIALS = 1

# Renew a session token this long before OMA would expire it, so a poll never
# starts with a token that runs out halfway.
TOKEN_RENEWAL_MARGIN = 60.0

_CHUNK_SIZE = 256 * 1024


class OmaClient:
    """A keep-alive session to one OMA endpoint for one admin user.

    Thread-safe: the poller calls `migration_status` from several worker threads.
    `clock`, `sleep` and `random_fraction` are arguments so tests can control time.
    """

    def __init__(
        self,
        base_url: str,
        user: str,
        password: str,
        *,
        client_name: str,
        ca_file: str | None = None,
        connect_timeout: float = 5.0,
        read_timeout: float = 30.0,
        retries: int = 2,
        backoff: float = 0.5,
        max_response_size: int = 64 * 1024 * 1024,
        session_token: bool = False,
        session_token_duration: float = 10800.0,
        pool_size: int = 4,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        random_fraction: Callable[[], float] = random.random,
    ):
        self.base_url = base_url.rstrip("/")
        self._user = user
        self._password = password
        self._client_name = client_name
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._retries = retries
        self._backoff = backoff
        self._max_response_size = max_response_size
        self._use_token = session_token
        self._token_duration = int(session_token_duration)
        self._clock = clock
        self._sleep = sleep
        self._random_fraction = random_fraction

        self._token: str | None = None
        self._token_expires = 0.0
        self._token_lock = threading.Lock()
        self._counts_lock = threading.Lock()
        self._api_errors: Counter[str] = Counter()

        self._session = requests.Session()
        adapter = requests.adapters.HTTPAdapter(pool_connections=1, pool_maxsize=max(pool_size, 1), max_retries=0)
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)
        self._session.verify = ca_file or True
        self._session.trust_env = False
        self._session.headers.update({"User-Agent": client_name, "Accept": "application/json"})

    def api_error_counts(self) -> dict[str, int]:
        """Return how many responses had `success: false`, by error number, since start."""
        with self._counts_lock:
            return dict(self._api_errors)

    def close(self) -> None:
        self._session.close()

    def migration_status(self, job_id: str, deadline: float) -> dict[str, Any]:
        """Return the decoded migration_status response of one job.

        `deadline` is a `clock()` time after which the call gives up with reason `timeout`.
        """
        return self.call("migration_status", {"job": job_id}, deadline)

    def migration_jobs(self, deadline: float) -> dict[str, Any]:
        return self.call("migration_jobs", {}, deadline)

    def call(self, method: str, fields: dict[str, Any], deadline: float) -> dict[str, Any]:
        """POST one method with credentials, retrying what OMA documents as transient.

        In session-token mode an error 1 means the token is no longer valid: the
        client authenticates again once and retries once.
        """
        try:
            return self._call_with_retries(method, fields, deadline)
        except PollError as error:
            if not (self._use_token and error.error_number == INVALID_CREDENTIALS):
                raise
            log.info("session token rejected, authenticating again", extra={"method": method})
            self._drop_token()
            return self._call_with_retries(method, fields, deadline)

    def _call_with_retries(self, method: str, fields: dict[str, Any], deadline: float) -> dict[str, Any]:
        attempt = 0
        while True:
            try:
                body = {"credentials": self._credentials(deadline), "client": self._client_name, **fields}
                return self._post(method, body, deadline)
            except PollError as error:
                if attempt >= self._retries or not _is_retryable(error):
                    raise
                delay = self._backoff * (2**attempt) * (0.5 + self._random_fraction())
                if self._clock() + delay >= deadline:
                    raise
                log.debug(
                    "retrying OMA call",
                    extra={"method": method, "reason": error.reason, "error": str(error), "delay_seconds": round(delay, 3)},
                )
                self._sleep(delay)
                attempt += 1

    def _credentials(self, deadline: float) -> dict[str, str]:
        if not self._use_token:
            return {"user": self._user, "password": self._password}
        return {"user": self._user, "token": self._session_token(deadline)}

    def _session_token(self, deadline: float) -> str:
        with self._token_lock:
            if self._token is None or self._clock() >= self._token_expires:
                self._token, self._token_expires = self._authenticate(deadline)
            return self._token

    def _drop_token(self) -> None:
        with self._token_lock:
            self._token = None

    def _authenticate(self, deadline: float) -> tuple[str, float]:
        body = {
            "credentials": {"user": self._user, "password": self._password},
            "client": self._client_name,
            "generate_session_token": True,
            "session_token_duration": self._token_duration,
        }
        started = self._clock()
        document = self._post("authenticate", body, deadline)
        token = document.get("session_token")
        if not isinstance(token, str) or not token:
            raise PollError(errors.INVALID_RESPONSE, "authenticate returned no session_token")
        duration = document.get("session_token_duration", self._token_duration)
        if isinstance(duration, bool) or not isinstance(duration, int | float) or duration <= 0:
            duration = self._token_duration
        margin = min(TOKEN_RENEWAL_MARGIN, duration / 10)
        log.info("authenticated with a session token", extra={"token_duration_seconds": duration})
        return token, started + duration - margin

    def _post(self, method: str, body: dict[str, Any], deadline: float) -> dict[str, Any]:
        url = f"{self.base_url}/{method}"
        payload = self._read_body(method, url, json.dumps(body).encode(), deadline)
        document = _decode(method, payload)
        if document["success"] is True:
            return document
        number = document.get("error_number")
        if isinstance(number, bool) or not isinstance(number, int):
            number = None
        with self._counts_lock:
            self._api_errors["unknown" if number is None else str(number)] += 1
        text = document.get("error")
        # Redact before cutting, so a secret cut in two cannot leave its first half.
        text = self._redact(text[:1000], body["credentials"])[:200] if isinstance(text, str) else ""
        raise PollError(errors.API_ERROR, f"{method} failed with OMA error {number}: {text}", error_number=number)

    def _redact(self, text: str, credentials: dict[str, str]) -> str:
        """Replace the password and session tokens in server-supplied text.

        A proxy or a server that echoes the request in its error text would
        otherwise put them into the log. The token sent with the request is
        replaced too, because another thread may have renewed `_token` since.
        """
        for secret in (self._password, self._token, credentials.get("password"), credentials.get("token")):
            if secret:
                text = text.replace(secret, "<hidden>")
        return text

    def _read_body(self, method: str, url: str, data: bytes, deadline: float) -> bytes:
        """POST and read the whole body, stopping at the deadline or the size limit.

        The read timeout bounds each wait for data, and the deadline bounds the whole
        call, so a server that trickles its body one byte at a time is cut off too.
        """
        remaining = deadline - self._clock()
        if remaining <= 0:
            raise PollError(errors.TIMEOUT, f"{method}: poll deadline passed before the request was sent")
        timeout = (min(self._connect_timeout, remaining), min(self._read_timeout, remaining))
        try:
            # Never follow redirects: the body carries the credentials, and a redirect
            # could send them to another host or over plain HTTP.
            response = self._session.post(
                url, data=data, headers={"Content-Type": "application/json"}, timeout=timeout, stream=True,
                allow_redirects=False,
            )
        except requests.Timeout as error:
            raise PollError(errors.TIMEOUT, f"{method}: {url} timed out ({type(error).__name__})") from None
        except requests.exceptions.SSLError as error:
            # A certificate that fails verification fails again on a retry.
            raise PollError(
                errors.CONNECTION, f"{method}: TLS with {url} failed ({_describe(_innermost(error))})", transient=False
            ) from None
        except (requests.ConnectionError, requests.exceptions.InvalidURL) as error:
            raise PollError(errors.CONNECTION, f"{method}: cannot connect to {url} ({_describe(_innermost(error))})") from None

        with response:
            if response.status_code != 200:
                location = response.headers.get("Location") if 300 <= response.status_code < 400 else None
                hint = f" redirecting to {location[:200]}; set --oma.url to the final URL" if location else ""
                raise PollError(
                    errors.HTTP_STATUS,
                    f"{method}: {url} returned HTTP {response.status_code}{hint}",
                    http_status=response.status_code,
                )
            declared = response.headers.get("Content-Length", "")
            if declared.isdigit() and int(declared) > self._max_response_size:
                raise PollError(
                    errors.INVALID_RESPONSE,
                    f"{method}: response of {declared} bytes exceeds the limit of {self._max_response_size} bytes "
                    "(raise --poll.max-response-size)",
                )
            return self._read_chunks(method, url, response, deadline)

    def _read_chunks(self, method: str, url: str, response: requests.Response, deadline: float) -> bytes:
        chunks: list[bytes] = []
        size = 0
        raw = response.raw
        try:
            while True:
                chunk = raw.read1(_CHUNK_SIZE, decode_content=True)
                if not chunk:
                    break
                size += len(chunk)
                if size > self._max_response_size:
                    raise PollError(
                        errors.INVALID_RESPONSE,
                        f"{method}: response exceeds the limit of {self._max_response_size} bytes "
                        "(raise --poll.max-response-size)",
                    )
                chunks.append(chunk)
                if self._clock() > deadline:
                    raise PollError(errors.TIMEOUT, f"{method}: {url} body not complete by the poll deadline")
        except (urllib3.exceptions.ReadTimeoutError, TimeoutError):
            raise PollError(errors.TIMEOUT, f"{method}: {url} timed out reading the body") from None
        except (urllib3.exceptions.HTTPError, OSError) as error:
            raise PollError(errors.CONNECTION, f"{method}: {url} body cut off ({_describe(_innermost(error))})") from None
        return b"".join(chunks)


def _decode(method: str, payload: bytes) -> dict[str, Any]:
    try:
        document = json.loads(payload)
    except RecursionError:
        raise PollError(errors.INVALID_RESPONSE, f"{method}: response JSON is nested too deeply") from None
    except ValueError as error:
        # UnicodeDecodeError is a ValueError too, so invalid UTF-8 lands here.
        raise PollError(errors.INVALID_RESPONSE, f"{method}: response is not valid JSON ({_describe(error)})") from None
    if not isinstance(document, dict):
        raise PollError(errors.INVALID_RESPONSE, f"{method}: response is a JSON {type(document).__name__}, not an object")
    if not isinstance(document.get("success"), bool):
        raise PollError(errors.INVALID_RESPONSE, f"{method}: response has no boolean 'success'")
    return document


def _is_retryable(error: PollError) -> bool:
    if error.transient is not None:
        return error.transient
    if error.reason == errors.CONNECTION:
        return True
    if error.reason == errors.HTTP_STATUS:
        return error.http_status is not None and error.http_status >= 500
    if error.reason == errors.API_ERROR:
        return error.error_number in RETRYABLE_API_ERRORS
    return False


def _innermost(error: BaseException) -> BaseException:
    """Return the exception that `error` wraps at the bottom.

    requests and urllib3 wrap the cause of a failed connection two or three levels
    deep, as `reason` or as an argument. The outer messages repeat the URL and pool
    details, so the cause, such as a rejected certificate, comes last and would be
    cut off by `_describe`.
    """
    seen: set[int] = set()
    while id(error) not in seen:
        seen.add(id(error))
        inner = getattr(error, "reason", None)
        if not isinstance(inner, BaseException):
            inner = next((argument for argument in error.args if isinstance(argument, BaseException)), None)
        if inner is None:
            break
        error = inner
    return error


def _describe(error: BaseException) -> str:
    """Name an exception in one short line; requests' messages can run to hundreds of characters."""
    text = str(error).splitlines()[0] if str(error) else ""
    return f"{type(error).__name__}: {text[:160]}" if text else type(error).__name__
