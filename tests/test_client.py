"""OmaClient over real HTTP: request shape, failure reasons, retries, deadlines, tokens."""

from __future__ import annotations

import time

import pytest

from exporter import errors
from exporter.client import OmaClient
from exporter.errors import PollError
from tests.scripted_server import Reply, ScriptedServer, json_reply, make_self_signed_certificate

PASSWORD = "test-password-7f3a"
OK_STATUS = {"success": True, "rate": "0 B/s", "users": []}


def make_client(server: ScriptedServer, **options) -> OmaClient:
    defaults = dict(client_name="exporter-test/1", connect_timeout=2.0, read_timeout=2.0, retries=2, backoff=0.01)
    defaults.update(options)
    return OmaClient(server.url, "sre@example.com", PASSWORD, **defaults)


def deadline(seconds: float = 5.0) -> float:
    return time.monotonic() + seconds


def test_request_carries_credentials_and_client_in_body():
    with ScriptedServer(lambda method, body: json_reply(OK_STATUS)) as server:
        document = make_client(server).migration_status("00123", deadline())
    method, body, headers = server.requests[0]
    assert document == OK_STATUS
    assert method == "migration_status"
    assert body["job"] == "00123"
    assert body["credentials"] == {"user": "sre@example.com", "password": PASSWORD}
    assert body["client"] == "exporter-test/1"
    assert all(PASSWORD not in value for value in headers.values())


def test_trailing_slash_in_base_url_is_ignored():
    with ScriptedServer(lambda method, body: json_reply(OK_STATUS)) as server:
        client = OmaClient(server.url + "/", "sre@example.com", PASSWORD, client_name="t")
        client.migration_status("1", deadline())
    assert client.base_url == server.url


def test_connection_kept_alive_between_calls():
    with ScriptedServer(lambda method, body: json_reply(OK_STATUS)) as server:
        client = make_client(server)
        for _ in range(3):
            client.migration_status("1", deadline())
    ports = {headers.get("Host") for _, _, headers in server.requests}
    assert len(server.requests) == 3
    assert len(ports) == 1


def test_connection_refused_is_connection():
    with ScriptedServer(lambda method, body: json_reply(OK_STATUS)) as server:
        url = server.url
    client = OmaClient(url, "sre@example.com", PASSWORD, client_name="t", retries=1, backoff=0.01)
    with pytest.raises(PollError) as caught:
        client.migration_status("1", deadline())
    assert caught.value.reason == errors.CONNECTION


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_http_5xx_retried_then_http_status(status):
    html = Reply(status=status, body=b"<html><body>Bad gateway</body></html>", headers={"Content-Type": "text/html"})
    with ScriptedServer(lambda method, body: html) as server:
        with pytest.raises(PollError) as caught:
            make_client(server, retries=2).migration_status("1", deadline())
    assert caught.value.reason == errors.HTTP_STATUS
    assert caught.value.http_status == status
    assert len(server.requests) == 3


def test_http_404_not_retried():
    with ScriptedServer(lambda method, body: Reply(status=404, body=b"no such method")) as server:
        with pytest.raises(PollError) as caught:
            make_client(server).migration_status("1", deadline())
    assert caught.value.reason == errors.HTTP_STATUS
    assert len(server.requests) == 1


def test_5xx_then_success_returns_document():
    replies = [Reply(status=503, body=b"busy"), json_reply(OK_STATUS)]
    with ScriptedServer(lambda method, body: replies.pop(0)) as server:
        document = make_client(server).migration_status("1", deadline())
    assert document == OK_STATUS
    assert len(server.requests) == 2


@pytest.mark.parametrize("number", [0, 20, 22, 25])
def test_transient_api_errors_retried(number):
    failure = {"success": False, "error": "try later", "error_number": number}
    replies = [json_reply(failure), json_reply(OK_STATUS)]
    with ScriptedServer(lambda method, body: replies.pop(0)) as server:
        client = make_client(server)
        document = client.migration_status("1", deadline())
    assert document == OK_STATUS
    assert client.api_error_counts() == {str(number): 1}


@pytest.mark.parametrize("number", [1, 2, 5, 6, 21, 99])
def test_other_api_errors_not_retried(number):
    failure = {"success": False, "error": "no", "error_number": number, "audit": {"id": 1}}
    with ScriptedServer(lambda method, body: json_reply(failure)) as server:
        client = make_client(server)
        with pytest.raises(PollError) as caught:
            client.migration_status("1", deadline())
    assert caught.value.reason == errors.API_ERROR
    assert caught.value.error_number == number
    assert len(server.requests) == 1
    assert client.api_error_counts() == {str(number): 1}


def test_api_error_without_number_counted_as_unknown():
    with ScriptedServer(lambda method, body: json_reply({"success": False, "error_number": "x"})) as server:
        client = make_client(server)
        with pytest.raises(PollError):
            client.migration_status("1", deadline())
    assert client.api_error_counts() == {"unknown": 1}


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"<html>proxy error</html>", id="html"),
        pytest.param(b"[1, 2]", id="list"),
        pytest.param(b'{"rate": "1 B/s"}', id="no-success"),
        pytest.param(b'{"success": "true"}', id="success-string"),
        pytest.param(b'{"success": true, "x": "\xff\xfe"}', id="invalid-utf8"),
        pytest.param(b"[" * 100000 + b"]" * 100000, id="deep-nesting"),
        pytest.param(b"", id="empty"),
    ],
)
def test_unusable_body_is_invalid_response(body):
    with ScriptedServer(lambda method, request: Reply(body=body)) as server:
        with pytest.raises(PollError) as caught:
            make_client(server).migration_status("1", deadline())
    assert caught.value.reason == errors.INVALID_RESPONSE


def test_slow_response_is_timeout():
    def respond(method, body):
        time.sleep(1.5)
        return json_reply(OK_STATUS)

    with ScriptedServer(respond) as server:
        with pytest.raises(PollError) as caught:
            make_client(server, read_timeout=0.5).migration_status("1", deadline())
    assert caught.value.reason == errors.TIMEOUT


def test_trickled_body_stopped_by_deadline():
    body = b'{"success": true, "users": []}' + b" " * 200
    trickle = Reply(chunks=[bytes([b]) for b in body], delay=0.2, headers={"Content-Type": "application/json"})
    with ScriptedServer(lambda method, request: trickle) as server:
        started = time.monotonic()
        with pytest.raises(PollError) as caught:
            make_client(server, read_timeout=5.0).migration_status("1", deadline(1.5))
        elapsed = time.monotonic() - started
    assert caught.value.reason == errors.TIMEOUT
    assert elapsed < 4.0


def test_body_over_size_limit_is_invalid_response():
    big = json_reply({"success": True, "users": [], "padding": "x" * 5000})
    with ScriptedServer(lambda method, body: big) as server:
        with pytest.raises(PollError) as caught:
            make_client(server, max_response_size=1000).migration_status("1", deadline())
    assert caught.value.reason == errors.INVALID_RESPONSE
    assert "limit of 1000 bytes" in str(caught.value)


def test_chunked_body_over_size_limit_stops_reading():
    pieces = [b'{"success": true, "padding": "'] + [b"x" * 1000] * 50
    endless = Reply(chunks=pieces, delay=0.0)
    with ScriptedServer(lambda method, body: endless) as server:
        with pytest.raises(PollError) as caught:
            make_client(server, max_response_size=4096).migration_status("1", deadline())
    assert caught.value.reason == errors.INVALID_RESPONSE


def test_chunked_body_cut_off_is_connection():
    cut = Reply(chunks=[b'{"success": true, ', b'"users": ['], close_early=True)
    with ScriptedServer(lambda method, body: cut) as server:
        with pytest.raises(PollError) as caught:
            make_client(server, retries=0).migration_status("1", deadline())
    assert caught.value.reason == errors.CONNECTION


def test_content_length_longer_than_body_is_connection():
    short = Reply(body=b'{"success": true}', content_length=500)
    with ScriptedServer(lambda method, body: short) as server:
        with pytest.raises(PollError) as caught:
            make_client(server, retries=0).migration_status("1", deadline())
    assert caught.value.reason == errors.CONNECTION


def test_messages_never_contain_password():
    replies = [Reply(status=500, body=PASSWORD.encode()), json_reply({"success": False, "error": "bad", "error_number": 1})]
    with ScriptedServer(lambda method, body: replies.pop(0) if replies else Reply(body=b"x")) as server:
        client = make_client(server, retries=0)
        for _ in range(3):
            with pytest.raises(PollError) as caught:
                client.migration_status("1", deadline())
            assert PASSWORD not in str(caught.value)
            assert PASSWORD not in repr(caught.value.args)


class TokenServer:
    """Plays authenticate and migration_status with tokens that the test can revoke."""

    def __init__(self):
        self.issued: list[str] = []
        self.valid: set[str] = set()

    def respond(self, method: str, body: dict) -> Reply:
        credentials = body.get("credentials", {})
        if method == "authenticate":
            if credentials.get("password") != PASSWORD or body.get("generate_session_token") is not True:
                return json_reply({"success": False, "error": "bad", "error_number": 1})
            token = f"token-{len(self.issued)}"
            self.issued.append(token)
            self.valid.add(token)
            return json_reply({"success": True, "session_token": token, "session_token_duration": 3600})
        if credentials.get("token") in self.valid:
            return json_reply(OK_STATUS)
        return json_reply({"success": False, "error": "Invalid credentials", "error_number": 1})


def test_session_token_reused_across_calls():
    tokens = TokenServer()
    with ScriptedServer(tokens.respond) as server:
        client = make_client(server, session_token=True)
        for _ in range(3):
            client.migration_status("1", deadline())
    methods = [method for method, _, _ in server.requests]
    assert methods == ["authenticate", "migration_status", "migration_status", "migration_status"]
    status_bodies = [body for method, body, _ in server.requests if method == "migration_status"]
    assert all("password" not in body["credentials"] for body in status_bodies)
    assert all(body["credentials"]["token"] == "token-0" for body in status_bodies)


def test_rejected_token_authenticates_again_once():
    tokens = TokenServer()
    with ScriptedServer(tokens.respond) as server:
        client = make_client(server, session_token=True)
        client.migration_status("1", deadline())
        tokens.valid.clear()
        document = client.migration_status("1", deadline())
    methods = [method for method, _, _ in server.requests]
    assert document == OK_STATUS
    assert methods == ["authenticate", "migration_status", "migration_status", "authenticate", "migration_status"]


def test_token_renewed_before_expiry():
    tokens = TokenServer()
    now = [1000.0]
    with ScriptedServer(tokens.respond) as server:
        client = make_client(server, session_token=True, clock=lambda: now[0])
        client.migration_status("1", now[0] + 5)
        now[0] += 3600 - 30  # inside the renewal margin of a 3600 s token
        client.migration_status("1", now[0] + 5)
    assert tokens.issued == ["token-0", "token-1"]


def test_wrong_password_in_token_mode_is_api_error_1():
    with ScriptedServer(TokenServer().respond) as server:
        client = OmaClient(server.url, "sre@example.com", "wrong-password", client_name="t", session_token=True)
        with pytest.raises(PollError) as caught:
            client.migration_status("1", deadline())
    assert caught.value.reason == errors.API_ERROR
    assert caught.value.error_number == 1
    assert [method for method, _, _ in server.requests] == ["authenticate", "authenticate"]


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_redirect_not_followed(status):
    with ScriptedServer(lambda method, body: json_reply(OK_STATUS)) as elsewhere:
        moved = Reply(status=status, headers={"Location": elsewhere.url + "/migration_status"})
        with ScriptedServer(lambda method, body: moved) as server:
            with pytest.raises(PollError) as caught:
                make_client(server).migration_status("1", deadline())
    assert caught.value.reason == errors.HTTP_STATUS
    assert caught.value.http_status == status
    assert "set --oma.url to the final URL" in str(caught.value)
    assert elsewhere.requests == [], "the credentials went to the redirect target"
    assert len(server.requests) == 1


def test_untrusted_certificate_not_retried(tmp_path):
    import ssl

    certificate, key = make_self_signed_certificate(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certificate, key)
    with ScriptedServer(lambda method, body: json_reply(OK_STATUS), ssl_context=context) as server:
        with pytest.raises(PollError) as caught:
            make_client(server, retries=2).migration_status("1", deadline())
        # The server counts a failed handshake in its own thread, after the client gave up.
        end = time.monotonic() + 3
        while server.handshake_failures == 0 and time.monotonic() < end:
            time.sleep(0.05)
        time.sleep(0.3)
        failures = server.handshake_failures
    assert caught.value.reason == errors.CONNECTION
    assert "certificate" in str(caught.value).lower()
    assert failures == 1, "a certificate that fails verification must not be retried"
