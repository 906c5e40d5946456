"""Failure kinds of a poll, named by the `reason` label of the metric contract."""

from __future__ import annotations

TIMEOUT = "timeout"
CONNECTION = "connection"
HTTP_STATUS = "http_status"
INVALID_RESPONSE = "invalid_response"
API_ERROR = "api_error"

REASONS = (TIMEOUT, CONNECTION, HTTP_STATUS, INVALID_RESPONSE, API_ERROR)


class PollError(Exception):
    """A failed OMA call, classified by `reason`.

    The message never contains a password or token: callers build it from the
    method, URL, status and error text only.
    """

    def __init__(self, reason: str, message: str, error_number: int | None = None, http_status: int | None = None,
                 transient: bool | None = None):
        if reason not in REASONS:
            raise ValueError(f"unknown poll failure reason {reason!r}")
        super().__init__(message)
        self.reason = reason
        self.error_number = error_number
        self.http_status = http_status
        self.transient = transient
        """True or False when the failure is known to be transient or not; None lets `reason` decide."""


class ResponseError(Exception):
    """A response body that is not a usable migration_status response."""
