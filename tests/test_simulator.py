"""Tests of the OMA simulator, over real HTTP on 127.0.0.1 with ephemeral ports."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from exporter.simulator import Faults, Simulation, SimulatorServer
from exporter.simulator.fleet import render_fleet
from exporter.simulator.model import format_rate

USER = "sre@example.com"
PASSWORD = "test-password-7f3a"
CREDENTIALS = {"user": USER, "password": PASSWORD}

HEALTHY_JOB = "1700000000001"
FAILING_JOB = "1700000000002"
STALLED_JOB = "0001700000003"
SEED_JOB = "1326229437638"

STATE_ORDER = ("pending", "validating", "validated", "active", "complete")
FOLDER_COUNTERS = ("bytes", "migrate_count", "fail_count", "retry1count", "retry2count")
RATE_PATTERN = re.compile(r"^(0 B/s|\d+\.\d{3} (B|KiB|MiB|GiB)/s)$")
FIXTURE = Path(__file__).parent / "fixtures" / "seed_migration_status.json"


class ManualClock:
    """A clock that moves only when a test sets `now` (seconds)."""

    def __init__(self, now: float = 0.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


class OmaClient:
    """Minimal OMA client on one keep-alive connection."""

    def __init__(self, url: str):
        parts = urlsplit(url)
        self.base_path = parts.path
        self.connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)

    def raw(self, path: str, body: bytes = b"", http_method: str = "POST"):
        self.connection.request(http_method, path, body=body, headers={"Content-Type": "application/json"})
        response = self.connection.getresponse()
        return response.status, response.getheaders(), response.read()

    def call(self, method: str, credentials: dict | None = CREDENTIALS, **fields) -> dict:
        body = dict(fields)
        if credentials is not None:
            body["credentials"] = credentials
        status, _, data = self.raw(f"{self.base_path}/{method}", json.dumps(body).encode())
        assert status == 200, data
        return json.loads(data)

    def close(self):
        self.connection.close()


@pytest.fixture
def serve():
    """Start simulator servers for a test and stop them afterwards."""
    started = []

    def start(simulation=None, **kwargs) -> tuple[SimulatorServer, OmaClient]:
        if simulation is None:
            simulation = Simulation(scenario="demo", seed=1, clock=ManualClock())
        server = SimulatorServer(simulation, user=USER, password=PASSWORD, **kwargs).start()
        client = OmaClient(server.url)
        started.append((server, client))
        return server, client

    yield start
    for server, client in started:
        client.close()
        server.stop()


def folder_sum(folders: dict, key: str) -> int:
    return sum(int(folder.get(key, 0)) for folder in folders.values())


def assert_same_json(actual, expected, path="response"):
    """Compare JSON values including their types, so "0" and 0 differ."""
    assert type(actual) is type(expected), f"{path}: {actual!r} is not {expected!r}"
    if isinstance(expected, dict):
        assert list(actual) == list(expected), f"{path}: keys {list(actual)} != {list(expected)}"
        for key in expected:
            assert_same_json(actual[key], expected[key], f"{path}.{key}")
    elif isinstance(expected, list):
        assert len(actual) == len(expected), f"{path}: length {len(actual)} != {len(expected)}"
        for index, (item, expected_item) in enumerate(zip(actual, expected)):
            assert_same_json(item, expected_item, f"{path}[{index}]")
    else:
        assert actual == expected, f"{path}: {actual!r} != {expected!r}"


# Protocol errors


def test_unknown_method_is_404(serve):
    server, client = serve()

    status, headers, body = client.raw("/api/migration_stat", json.dumps({"credentials": CREDENTIALS}).encode())

    assert status == 404
    assert dict(headers)["Content-Type"].startswith("text/")
    assert b"migration_stat" in body


def test_other_paths_and_methods(serve):
    server, client = serve()

    assert client.raw("/", b"{}")[0] == 404
    assert client.raw("/api", b"{}")[0] == 404
    assert client.raw("/api/", b"{}")[0] == 404
    assert client.raw("/other/migration_status", b"{}")[0] == 404
    assert client.raw("/api/migration_status", http_method="GET")[0] == 405
    assert client.raw("/api/migration_status", b"{}", http_method="PUT")[0] == 405
    assert client.raw("/api/migration_status", http_method="DELETE")[0] == 405


@pytest.mark.parametrize("body", [b"", b"{", b"not json", b"\xff\xfe", b"[1, 2]", b'"text"', b"null"])
def test_body_not_json_object_is_400(serve, body):
    server, client = serve()

    status, _, _ = client.raw("/api/migration_status", body)

    assert status == 400


@pytest.mark.parametrize(
    "credentials",
    [
        None,
        {"user": USER, "password": "wrong-password"},
        {"user": "other@example.com", "password": PASSWORD},
        {"user": USER},
        {"password": PASSWORD},
        "sre@example.com",
    ],
)
def test_bad_credentials_are_error_1(serve, credentials):
    server, client = serve()
    body = {"job": HEALTHY_JOB}
    if credentials is not None:
        body["credentials"] = credentials

    status, _, data = client.raw("/api/migration_status", json.dumps(body).encode())
    response = json.loads(data)

    assert status == 200
    assert response["success"] is False
    assert response["error_number"] == 1
    assert PASSWORD not in data.decode()


def test_unknown_job_is_error_2(serve):
    server, client = serve()

    response = client.call("migration_status", job="1700000000009")

    assert response["success"] is False
    assert response["error_number"] == 2
    assert isinstance(response["error"], str)


def test_missing_job_is_error_5(serve):
    server, client = serve()

    missing = client.call("migration_status")
    null = client.call("migration_status", job=None)
    wrong_type = client.call("migration_status", job=[HEALTHY_JOB])

    assert missing["error_number"] == 5
    assert null["error_number"] == 5
    assert wrong_type["error_number"] == 5


def test_duplicate_job_is_error_19(serve):
    server, client = serve(Simulation(scenario="empty", clock=ManualClock()))
    users = [{"local": "u1@example.com", "remote": "u1@example.net", "password": "remote-secret-1",
              "server": "imap.example.net:993", "method": "imap4s"}]

    first = client.call("migration_add", users=users, job="job-a")
    second = client.call("migration_add", users=users, job="job-a")

    assert first == {"success": True, "job": "job-a"}
    assert second["success"] is False
    assert second["error_number"] == 19


def test_job_id_types(serve):
    server, client = serve()

    as_string = client.call("migration_status", job=STALLED_JOB)
    as_number = client.call("migration_status", job=int(STALLED_JOB))
    healthy_as_number = client.call("migration_status", job=int(HEALTHY_JOB))

    assert as_string["success"] is True
    assert as_number["error_number"] == 2
    assert healthy_as_number["success"] is True


# Session tokens


def test_token_flow(serve):
    token_clock = ManualClock(1000.0)
    server, client = serve(token_clock=token_clock)

    issued = client.call("authenticate", generate_session_token=True, session_token_duration=60)
    token = issued["session_token"]
    with_token = client.call("migration_status", credentials={"user": USER, "token": token}, job=HEALTHY_JOB)
    token_clock.now += 59.0
    before_expiry = client.call("migration_jobs", credentials={"user": USER, "token": token})
    token_clock.now += 1.0
    after_expiry = client.call("migration_jobs", credentials={"user": USER, "token": token})

    assert issued["success"] is True
    assert issued["session_token_duration"] == 60
    assert with_token["success"] is True
    assert before_expiry["success"] is True
    assert after_expiry["error_number"] == 1


def test_token_default_duration_and_reuse_by_other_user(serve):
    server, client = serve()

    issued = client.call("authenticate", generate_session_token=True)
    other_user = client.call(
        "migration_jobs", credentials={"user": "other@example.com", "token": issued["session_token"]}
    )
    unknown = client.call("migration_jobs", credentials={"user": USER, "token": "not-a-token"})

    assert issued["session_token_duration"] == 10800
    assert other_user["error_number"] == 1
    assert unknown["error_number"] == 1


def test_expire_tokens(serve):
    server, client = serve()
    token = client.call("authenticate", generate_session_token=True)["session_token"]
    token_credentials = {"user": USER, "token": token}

    before = client.call("migration_jobs", credentials=token_credentials)
    server.expire_tokens()
    after = client.call("migration_jobs", credentials=token_credentials)
    renewed = client.call("authenticate", generate_session_token=True)

    assert before["success"] is True
    assert after["error_number"] == 1
    assert renewed["session_token"] != token


@pytest.mark.parametrize("duration, error_number", [(0, 6), (86401, 6), (-5, 6), ("60", 5), (1.5, 5)])
def test_token_duration_out_of_range(serve, duration, error_number):
    server, client = serve()

    response = client.call("authenticate", generate_session_token=True, session_token_duration=duration)

    assert response["success"] is False
    assert response["error_number"] == error_number


def test_authenticate_without_token(serve):
    server, client = serve()

    response = client.call("authenticate", client="opensrs-migration-exporter 0.1.0")

    assert response["success"] is True
    assert "session_token" not in response


# Scenarios over HTTP


def test_seed_scenario_matches_documented_example(serve):
    expected = json.loads(FIXTURE.read_text())
    server, client = serve(Simulation(scenario="seed", clock=ManualClock()))

    first = client.call("migration_status", job=SEED_JOB)
    jobs = client.call("migration_jobs")

    assert_same_json(first, expected)
    assert jobs["jobs"] == [{"date": 1326229437, "job": SEED_JOB}]


def test_seed_scenario_does_not_change_over_time(serve):
    expected = json.loads(FIXTURE.read_text())
    clock = ManualClock()
    server, client = serve(Simulation(scenario="seed", clock=clock))

    clock.now = 10_000.0
    later = client.call("migration_status", job=SEED_JOB)

    assert_same_json(later, expected)


def test_demo_jobs_listed(serve):
    now = time.time()
    server, client = serve()

    response = client.call("migration_jobs", user=USER)

    jobs = {job["job"]: job["date"] for job in response["jobs"]}
    assert response["success"] is True
    assert set(jobs) >= {HEALTHY_JOB, FAILING_JOB, STALLED_JOB}
    for job_id, date in jobs.items():
        assert isinstance(date, int), job_id
        assert now - 86400 <= date <= now, job_id


def test_same_seed_gives_same_bytes(serve):
    clock = ManualClock()
    servers = [serve(Simulation(scenario="demo", seed=7, speed=1.0, clock=clock)) for _ in range(2)]
    other_seed = serve(Simulation(scenario="demo", seed=8, speed=1.0, clock=clock))

    for now in (0.0, 95.0, 400.0, 1234.5, 2500.0):
        clock.now = now
        bodies = []
        for server, client in servers:
            status, _, body = client.raw("/api/migration_status",
                                         json.dumps({"credentials": CREDENTIALS, "job": FAILING_JOB}).encode())
            assert status == 200
            bodies.append(body)
        assert bodies[0] == bodies[1], f"different bytes at {now} s"

    clock.now = 1234.5
    _, _, other = other_seed[1].raw("/api/migration_status",
                                    json.dumps({"credentials": CREDENTIALS, "job": FAILING_JOB}).encode())
    _, _, same = servers[0][1].raw("/api/migration_status",
                                   json.dumps({"credentials": CREDENTIALS, "job": FAILING_JOB}).encode())
    assert other != same


def collect_demo_history(client: OmaClient, clock: ManualClock, until: float, step: float) -> dict:
    """Poll every demo job from 0 to `until` simulated seconds and return the responses by job."""
    history = {HEALTHY_JOB: [], FAILING_JOB: [], STALLED_JOB: []}
    now = 0.0
    while now <= until:
        clock.now = now
        for job_id, responses in history.items():
            response = client.call("migration_status", job=job_id)
            assert response["success"] is True, response
            responses.append((now, response))
        now += step
    return history


@pytest.fixture(scope="module")
def demo_history():
    """Responses of the demo jobs every 15 simulated seconds for one simulated hour."""
    clock = ManualClock()
    simulation = Simulation(scenario="demo", seed=1, speed=1.0, clock=clock)
    server = SimulatorServer(simulation, user=USER, password=PASSWORD).start()
    client = OmaClient(server.url)
    try:
        return collect_demo_history(client, clock, until=3600.0, step=15.0)
    finally:
        client.close()
        server.stop()


def test_demo_states_move_forward(demo_history):
    for job_id, responses in demo_history.items():
        last_state = {}
        for now, response in responses:
            for user in response["users"]:
                state = user["state"]
                previous = last_state.get(user["local"], "pending")
                if state == "error":
                    assert previous in ("validating", "error"), (job_id, user["local"], now)
                else:
                    assert STATE_ORDER.index(state) >= STATE_ORDER.index(previous), (job_id, user["local"], now)
                last_state[user["local"]] = state


def test_demo_healthy_job_completes(demo_history):
    seen = set()
    complete_at = None
    for now, response in demo_history[HEALTHY_JOB]:
        states = {user["state"] for user in response["users"]}
        seen |= states
        if complete_at is None and states == {"complete"}:
            complete_at = now
    final_users = demo_history[HEALTHY_JOB][-1][1]["users"]

    assert len(final_users) >= 5
    assert seen == set(STATE_ORDER)
    assert complete_at is not None
    assert 20 * 60 <= complete_at <= 35 * 60
    assert all(folder_sum(user["data"]["folders"], "fail_count") == 0 for user in final_users)


def test_demo_counters_never_decrease(demo_history):
    for job_id, responses in demo_history.items():
        last = {}
        for now, response in responses:
            for user in response["users"]:
                for name, folder in user["data"]["folders"].items():
                    for counter in FOLDER_COUNTERS:
                        key = (user["local"], name, counter)
                        value = folder.get(counter, 0)
                        assert value >= last.get(key, 0), (job_id, key, now)
                        last[key] = value
                    assert folder.get("fail_count", 0) <= folder.get("retry2count", 0) <= folder.get("retry1count", 0)


def test_demo_counters_never_decrease_second_by_second():
    clock = ManualClock()
    simulation = Simulation(scenario="demo", seed=3, speed=1.0, clock=clock)
    last = {}
    for second in range(0, 2500):
        clock.now = float(second)
        for job_id in (HEALTHY_JOB, FAILING_JOB, STALLED_JOB):
            for user in simulation.status(job_id)["users"]:
                for name, folder in user["data"]["folders"].items():
                    for counter in FOLDER_COUNTERS:
                        key = (job_id, user["local"], name, counter)
                        value = folder.get(counter, 0)
                        assert value >= last.get(key, 0), (key, second)
                        last[key] = value


def test_demo_status_totals_equal_folder_sums(demo_history):
    for job_id, responses in demo_history.items():
        for now, response in responses:
            for user in response["users"]:
                folders = user["data"]["folders"]
                status = user["data"]["status"]
                where = (job_id, user["local"], now)
                assert status["bytes"] == folder_sum(folders, "bytes"), where
                assert status["migrate_count"] == folder_sum(folders, "migrate_count"), where
                assert status["fail_count"] == folder_sum(folders, "fail_count"), where
                assert status["skip_count"] == folder_sum(folders, "skip_count"), where
                assert status["remote_count"] == str(folder_sum(folders, "remote_count")), where
                assert status["foldercount"] == len(folders), where


def test_demo_complete_folders_are_fully_accounted(demo_history):
    now, response = demo_history[HEALTHY_JOB][-1]
    for user in response["users"]:
        for name, folder in user["data"]["folders"].items():
            accounted = int(folder.get("skip_count", 0)) + folder.get("migrate_count", 0) + folder.get("fail_count", 0)
            assert accounted == int(folder["remote_count"]), (user["local"], name)


def test_demo_rate_format_and_idle(demo_history):
    rates = {job_id: [response["rate"] for _, response in responses] for job_id, responses in demo_history.items()}

    for job_id, job_rates in rates.items():
        for rate in job_rates:
            assert RATE_PATTERN.match(rate), (job_id, rate)
    assert any(rate != "0 B/s" for rate in rates[HEALTHY_JOB])
    assert rates[HEALTHY_JOB][-1] == "0 B/s"
    assert rates[HEALTHY_JOB][0] == "0 B/s"
    assert {rate.split()[1] for rate in rates[HEALTHY_JOB]} >= {"KiB/s", "MiB/s"}


def test_demo_failing_job(demo_history):
    responses = demo_history[FAILING_JOB]
    failures = [sum(user["data"]["status"]["fail_count"] for user in response["users"]) for _, response in responses]
    final_users = responses[-1][1]["users"]
    errors = [user for user in final_users if user["state"] == "error"]

    assert len(errors) == 1
    assert int(errors[0]["data"]["status"]["critical_errors"]) > 0
    assert isinstance(errors[0]["data"]["status"]["critical_errors"], str)
    assert failures[-1] > 0
    rises = sum(1 for before, after in zip(failures, failures[1:]) if after > before)
    assert rises >= 10, failures
    assert "audit" in responses[-1][1]


def test_demo_stalled_job(demo_history):
    responses = demo_history[STALLED_JOB]
    late = [response for now, response in responses if now >= 2400]

    for response in late:
        assert response["rate"] == "0 B/s"
        assert {user["state"] for user in response["users"]} == {"active"}
    assert late[0]["users"] == late[-1]["users"]
    assert any(user["data"]["status"]["migrate_count"] > 0 for user in late[-1]["users"])


def test_demo_quirks(demo_history):
    folder_names = set()
    skip_types = set()
    config_keys = set()
    unstarted_without_counters = 0
    for responses in demo_history.values():
        for _, response in responses:
            for user in response["users"]:
                config_keys |= set(user["data"]["config"]) - {"server", "method"}
                assert isinstance(user["data"]["status"]["critical_errors"], str)
                assert isinstance(user["data"]["status"]["remote_count"], str)
                for name, folder in user["data"]["folders"].items():
                    folder_names.add(name)
                    assert isinstance(folder["remote_count"], str)
                    assert isinstance(folder["next_uid"], str)
                    assert folder["delim"] in (".", "/")
                    if "skip_count" in folder:
                        skip_types.add(type(folder["skip_count"]))
                    if "migrate_count" not in folder:
                        unstarted_without_counters += 1
                        assert "bytes" not in folder
                        assert "fail_count" not in folder

    assert {"INBOX", "Sent Items", "Projects/2026/Q1", 'Say "hello"', "Entw&APw-rfe", "&ZeVnLIqe-"} <= folder_names
    assert any("\\" in name for name in folder_names)
    assert skip_types == {str, int}
    assert config_keys == {"remote", "username"}
    assert unstarted_without_counters > 0


@pytest.mark.parametrize("seed", range(1, 11))
def test_demo_at_speed_600_completes_within_5_seconds(seed):
    clock = ManualClock()
    simulation = Simulation(scenario="demo", seed=seed, speed=600.0, clock=clock)

    clock.now = 5.0
    healthy = simulation.status(HEALTHY_JOB)["users"]
    failing = simulation.status(FAILING_JOB)["users"]

    assert {user["state"] for user in healthy} == {"complete"}
    assert {user["state"] for user in failing} == {"complete", "error"}


def test_simulation_rejects_invalid_arguments():
    with pytest.raises(ValueError, match="scenario"):
        Simulation(scenario="nope")
    for speed in (0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="speed"):
            Simulation(speed=speed)


@pytest.mark.parametrize(
    "bytes_per_second, expected",
    [(0, "0 B/s"), (512, "512.000 B/s"), (628223, "613.499 KiB/s"), (3 * 1024 * 1024, "3.000 MiB/s")],
)
def test_format_rate(bytes_per_second, expected):
    assert format_rate(bytes_per_second) == expected


# migration_add and migration_trace


def added_user(local: str, **overrides) -> dict:
    user = {"local": local, "remote": local.replace("example.com", "example.net"), "password": "remote-secret-9",
            "server": "imap.example.net:993", "method": "imap4s", "skip": [], "translate": {}}
    user.update(overrides)
    return user


def test_add_job_progresses_from_now(serve):
    clock = ManualClock()
    server, client = serve(Simulation(scenario="empty", speed=1.0, clock=clock))
    clock.now = 5000.0
    users = [
        added_user("ann@example.com"),
        added_user("bea@example.com", method="pop3s", server="pop.example.net:995"),
        added_user("cid@example.com", skip=["Trash", "Spam", "Deleted Items", "Junk E-mail"]),
        added_user("dan@example.com", server="mail.example.invalid:993"),
    ]

    empty = client.call("migration_jobs")
    added = client.call("migration_add", users=users)
    job_id = added["job"]
    at_start = client.call("migration_status", job=job_id)
    clock.now += 3600.0
    later = client.call("migration_status", job=job_id)
    jobs = client.call("migration_jobs")

    assert empty == {"success": True, "jobs": []}
    assert re.fullmatch(r"\d{13}", job_id)
    assert [job["job"] for job in jobs["jobs"]] == [job_id]
    assert {user["state"] for user in at_start["users"]} == {"pending"}
    states = {user["local"]: user["state"] for user in later["users"]}
    assert states == {"ann@example.com": "complete", "bea@example.com": "complete",
                      "cid@example.com": "complete", "dan@example.com": "error"}
    bea = next(user for user in later["users"] if user["local"] == "bea@example.com")
    assert list(bea["data"]["folders"]) == ["INBOX"]
    assert "remote-secret-9" not in json.dumps([added, at_start, later, jobs])


def test_add_job_keeps_requested_id(serve):
    server, client = serve(Simulation(scenario="empty", clock=ManualClock()))

    with_zeros = client.call("migration_add", users=[added_user("ann@example.com")], job="0042")
    numeric = client.call("migration_add", users=[added_user("ann@example.com")], job=42)
    lookup = client.call("migration_status", job="0042")

    assert with_zeros["job"] == "0042"
    assert numeric["job"] == "42"
    assert lookup["success"] is True


@pytest.mark.parametrize(
    "users, error_number",
    [
        (None, 5),
        ([], 5),
        ("ann@example.com", 5),
        ([{"local": "ann@example.com"}], 5),
        ([added_user("ann@example.com", method="smtp")], 6),
        ([added_user("ann@example.com", server="imap.example.net")], 6),
        ([added_user("ann@example.com", server="imap.example.net:70000")], 6),
        ([added_user("ann@example.com", password="")], 6),
        ([added_user("ann@example.com", skip="Trash")], 5),
        ([added_user("ann@example.com"), added_user("ann@example.com")], 7),
    ],
)
def test_add_job_rejects_invalid_users(serve, users, error_number):
    server, client = serve(Simulation(scenario="empty", clock=ManualClock()))
    fields = {} if users is None else {"users": users}

    response = client.call("migration_add", **fields)
    jobs = client.call("migration_jobs")

    assert response["success"] is False
    assert response["error_number"] == error_number
    assert jobs["jobs"] == []


def test_trace_url_and_log(serve):
    server, client = serve()

    response = client.call("migration_trace", job=STALLED_JOB, user="ken@example.com")
    unknown_user = client.call("migration_trace", job=STALLED_JOB, user="nobody@example.com")
    unknown_job = client.call("migration_trace", job="123", user="ken@example.com")
    missing_user = client.call("migration_trace", job=STALLED_JOB)
    with urllib.request.urlopen(response["trace"], timeout=10) as log_response:
        log_text = log_response.read().decode()

    assert response["trace"] == f"http://127.0.0.1:{server.port}/trace/{STALLED_JOB}/ken@example.com.log"
    assert "ken@example.com" in log_text
    assert unknown_user["error_number"] == 2
    assert unknown_job["error_number"] == 2
    assert missing_user["error_number"] == 5


# Faults


def test_fault_latency(serve):
    server, client = serve()
    server.faults = Faults(latency=0.3)

    started = time.monotonic()
    response = client.call("migration_status", job=HEALTHY_JOB)
    elapsed = time.monotonic() - started

    assert response["success"] is True
    assert elapsed >= 0.3


@pytest.mark.parametrize("status", [500, 502, 503])
def test_fault_http_status(serve, status):
    server, client = serve()
    server.faults = Faults(http_status=status)

    code, headers, body = client.raw("/api/migration_status",
                                     json.dumps({"credentials": CREDENTIALS, "job": HEALTHY_JOB}).encode())

    assert code == status
    assert dict(headers)["Content-Type"].startswith("text/html")
    assert body.lstrip().startswith(b"<html>")
    assert str(status).encode() in body


def test_fault_invalid_json(serve):
    server, client = serve()
    server.faults = Faults(invalid_json=True)

    code, _, body = client.raw("/api/migration_status",
                               json.dumps({"credentials": CREDENTIALS, "job": HEALTHY_JOB}).encode())

    assert code == 200
    with pytest.raises(json.JSONDecodeError):
        json.loads(body)


@pytest.mark.parametrize("error_number", [0, 20, 22, 25, 99])
def test_fault_api_error(serve, error_number):
    server, client = serve()
    server.faults = Faults(api_error=error_number)

    response = client.call("migration_status", job=HEALTHY_JOB)

    assert response["success"] is False
    assert response["error_number"] == error_number
    assert isinstance(response["error"], str) and response["error"]


def test_fault_limited_to_jobs_and_cleared(serve):
    server, client = serve()
    server.faults = Faults(api_error=22, job_ids={STALLED_JOB})

    faulty = client.call("migration_status", job=STALLED_JOB)
    other = client.call("migration_status", job=HEALTHY_JOB)
    jobs = client.call("migration_jobs")
    server.faults = Faults()
    recovered = client.call("migration_status", job=STALLED_JOB)

    assert faulty["error_number"] == 22
    assert other["success"] is True
    assert jobs["success"] is True
    assert recovered["success"] is True


def test_fault_invalid_values_rejected():
    with pytest.raises(ValueError):
        Faults(latency=-1.0)
    with pytest.raises(ValueError):
        Faults(http_status=700)


# Server behaviour


def test_requests_are_recorded(serve):
    server, client = serve()

    client.call("migration_status", job=HEALTHY_JOB, client="test-client")
    client.call("migration_jobs")

    assert [method for method, _ in server.requests] == ["migration_status", "migration_jobs"]
    assert server.requests[0][1]["job"] == HEALTHY_JOB
    assert server.requests[0][1]["client"] == "test-client"


def test_keep_alive_and_content_length(serve):
    server, client = serve()

    for _ in range(3):
        status, headers, body = client.raw("/api/migration_status",
                                           json.dumps({"credentials": CREDENTIALS, "job": HEALTHY_JOB}).encode())
        assert status == 200
        assert int(dict(headers)["Content-Length"]) == len(body)
    local_port = client.connection.sock.getsockname()[1]
    client.raw("/api/migration_jobs", json.dumps({"credentials": CREDENTIALS}).encode())

    assert client.connection.sock.getsockname()[1] == local_port


def test_quiet_on_stderr(serve, capfd):
    server, client = serve()

    client.call("migration_status", job=HEALTHY_JOB)
    client.raw("/api/nope", b"{}")
    client.raw("/api/migration_status", b"{")

    captured = capfd.readouterr()
    assert captured.err == ""
    assert captured.out == ""


def test_stop_twice_and_refuses_connections():
    server = SimulatorServer(Simulation(clock=ManualClock()), user=USER, password=PASSWORD).start()
    port = server.port

    server.stop()
    server.stop()

    with pytest.raises(OSError):
        http.client.HTTPConnection("127.0.0.1", port, timeout=2).connect()


def test_stop_closes_keep_alive_connections(serve):
    server, client = serve()
    client.call("migration_jobs")

    server.stop()

    with pytest.raises((http.client.HTTPException, OSError)):
        client.call("migration_jobs")


def test_static_server():
    responses = {"17": b'{"success": true, "rate": "0 B/s", "users": []}', "0018": b'{"success": true}'}
    server = SimulatorServer.static(responses, user=USER, password=PASSWORD).start()
    client = OmaClient(server.url)
    try:
        status, _, body = client.raw("/api/migration_status",
                                     json.dumps({"credentials": CREDENTIALS, "job": "17"}).encode())
        zeros = client.call("migration_status", job="0018")
        unknown = client.call("migration_status", job="18")
        wrong_password = client.call("migration_status", credentials={"user": USER, "password": "x"}, job="17")
        jobs = client.call("migration_jobs")
    finally:
        client.close()
        server.stop()

    assert status == 200
    assert body == responses["17"]
    assert zeros == {"success": True}
    assert unknown["error_number"] == 2
    assert wrong_password["error_number"] == 1
    assert [job["job"] for job in jobs["jobs"]] == ["17", "0018"]


# Fleet


def test_render_fleet_shape():
    responses = render_fleet(jobs=3, users=40, folders=20, seed=5)

    assert len(responses) == 3
    assert len(set(responses)) == 3
    states = set()
    for job_id, body in responses.items():
        response = json.loads(body)
        assert response["success"] is True
        assert RATE_PATTERN.match(response["rate"])
        assert len(response["users"]) == 40
        for user in response["users"]:
            states.add(user["state"])
            folders = user["data"]["folders"]
            if user["state"] in ("validated", "active", "complete"):
                assert len(folders) == 20, (job_id, user["local"])
            assert user["data"]["status"]["migrate_count"] == folder_sum(folders, "migrate_count")
            for folder in folders.values():
                assert isinstance(folder["remote_count"], str)
    assert {"pending", "active", "complete"} <= states
    assert render_fleet(jobs=3, users=40, folders=20, seed=5) == responses
    assert render_fleet(jobs=3, users=40, folders=20, seed=6) != responses


def test_render_fleet_benchmark_size_is_fast():
    started = time.monotonic()
    responses = render_fleet(jobs=20, users=500, folders=20)
    elapsed = time.monotonic() - started

    assert len(responses) == 20
    assert elapsed < 30, f"render_fleet took {elapsed:.1f} s"


# Command line


def run_cli(*args: str, env: dict | None = None, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "exporter.simulator.cli", *args],
                          capture_output=True, text=True, timeout=30, env=env, **kwargs)


def test_cli_serves_and_stops_on_sigterm():
    env = dict(os.environ, OPENSRS_SIMULATOR_PASSWORD=PASSWORD)
    process = subprocess.Popen(
        [sys.executable, "-m", "exporter.simulator.cli", "--listen-address", "127.0.0.1:0",
         "--user", USER, "--speed", "600"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    try:
        line = process.stdout.readline()
        match = re.search(r"(http://127\.0\.0\.1:\d+/api)\b", line)
        assert match, line
        client = OmaClient(match.group(1))
        response = client.call("migration_status", job=STALLED_JOB)
        client.close()

        process.send_signal(signal.SIGTERM)
        returncode = process.wait(timeout=10)
        stdout, stderr = process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

    assert response["success"] is True
    assert returncode == 0
    assert PASSWORD not in line + stdout + stderr
    assert "Stopped" in stderr


def test_cli_help_names_units_and_defaults():
    result = run_cli("--help")

    assert result.returncode == 0
    assert "simulated seconds per real second" in result.stdout
    assert "127.0.0.1:8080" in result.stdout
    assert "OPENSRS_SIMULATOR_PASSWORD" in result.stdout
    assert "seconds added before every API response" in result.stdout


@pytest.mark.parametrize(
    "args, value",
    [
        (["--speed", "-3"], "-3"),
        (["--speed", "fast"], "fast"),
        (["--latency", "-1"], "-1"),
        (["--listen-address", "localhost"], "localhost"),
        (["--listen-address", "127.0.0.1:99999"], "127.0.0.1:99999"),
        (["--scenario", "busy"], "busy"),
        (["--seed", "x1"], "x1"),
    ],
)
def test_cli_rejects_invalid_flags(args, value):
    result = run_cli(*args)

    assert result.returncode == 2
    assert value in result.stderr
