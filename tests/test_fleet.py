"""Discovery, several accounts, sharding and reload, against real simulators."""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from exporter.accounts import Account, ConfigFileError, Discovery, load_config_file, shard_of
from exporter.client import OmaClient
from exporter.fleet import JobDirectory
from exporter.poller import Poller
from exporter.simulator import Faults, Simulation, SimulatorServer
from exporter.simulator.fleet import render_fleet
from tests.test_e2e import ExporterProcess, wait_for

PASSWORD_A = "account-a-password-1f0e"
PASSWORD_B = "account-b-password-9c2d"


def post_json(url: str, body: dict) -> dict:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def job_ids_in(samples: dict) -> set[str]:
    return {dict(labels)["job_id"] for name, labels in samples if name == "opensrs_migration_job_up"}


@pytest.fixture
def simulator():
    server = SimulatorServer(Simulation(scenario="demo", seed=1, speed=600.0), user="sre@example.com",
                             password=PASSWORD_A).start()
    yield server
    server.stop()


def flat_env(simulator: SimulatorServer) -> dict[str, str]:
    return {"OPENSRS_OMA_URL": simulator.url, "OPENSRS_OMA_USER": "sre@example.com", "OPENSRS_PASSWORD": PASSWORD_A}


def test_discovery_finds_added_job_without_restart(simulator):
    exporter = ExporterProcess("--discovery", "--discovery.interval", "0.5s", "--poll.interval", "0.5s",
                               env=flat_env(simulator))
    try:
        demo_jobs = set(simulator.simulation.job_ids())
        wait_for(lambda: job_ids_in(exporter.samples()) == demo_jobs, 20, "discovered jobs never appeared")
        added = post_json(simulator.url + "/migration_add", {
            "credentials": {"user": "sre@example.com", "password": PASSWORD_A},
            "job": "00424242",
            "users": [{"local": "new@example.com", "remote": "new@example.net", "password": "remote-secret-x",
                       "server": "imap.example.net:993", "method": "imap4s"}],
        })
        assert added["success"] is True
        wait_for(lambda: "00424242" in job_ids_in(exporter.samples()), 20, "added job never appeared")
        samples = exporter.samples()
        assert samples[("opensrs_migration_discovery_job_changes_total",
                        (("account", "default"), ("change", "added")))] == len(demo_jobs) + 1
    finally:
        assert exporter.stop() == 0
    assert PASSWORD_A not in exporter.output()
    assert "remote-secret-x" not in exporter.output()


def test_discovery_expires_old_jobs_and_survives_failures(simulator):
    now = [time.time()]
    client = OmaClient(simulator.url, "sre@example.com", PASSWORD_A, client_name="test", retries=0)
    poller = Poller(client, {}, interval=60, deadline=10, stale_after=600, expect_jobs=True)
    account = Account(name="default", url=simulator.url, user="sre@example.com", password=PASSWORD_A,
                      discovery=Discovery(enabled=True, interval=60, max_age=86400))
    directory = JobDirectory([account], {"default": client}, poller.set_jobs, wall_clock=lambda: now[0])
    directory.discover_all()
    jobs = {job.job_id for job in poller.view().jobs}
    assert jobs == set(simulator.simulation.job_ids())

    # The oldest demo job was submitted 20 simulated hours before start: 5 hours later
    # it is more than a day old and leaves the window.
    now[0] += 5 * 3600
    directory.discover_all()
    remaining = {job.job_id for job in poller.view().jobs}
    assert remaining == jobs - {"0001700000003"}
    assert directory.state().discovery["default"].changes["expired"] == 1

    simulator.faults = Faults(http_status=503)
    directory.discover_all()
    assert {job.job_id for job in poller.view().jobs} == remaining, "a failed discovery must keep the last list"
    assert directory.state().discovery["default"].errors["http_status"] == 1
    client.close()


def write_config(path: Path, accounts: list[dict]) -> None:
    import yaml

    path.write_text(yaml.safe_dump({"accounts": accounts}))


@pytest.fixture
def two_simulators():
    first = SimulatorServer(Simulation(scenario="demo", seed=1, speed=600.0), user="a@example.com",
                            password=PASSWORD_A).start()
    second = SimulatorServer.static(render_fleet(2, 3, 2, seed=5), user="b@example.org", password=PASSWORD_B).start()
    yield first, second
    first.stop()
    second.stop()


def two_accounts(tmp_path: Path, first: SimulatorServer, second: SimulatorServer, first_jobs: list[str]) -> Path:
    (tmp_path / "a.pw").write_text(PASSWORD_A + "\n")
    (tmp_path / "b.pw").write_text(PASSWORD_B)
    config = tmp_path / "accounts.yml"
    write_config(config, [
        {"name": "cluster-a", "url": first.url, "user": "a@example.com", "password_file": "a.pw", "jobs": first_jobs},
        {"name": "cluster-b", "url": second.url, "user": "b@example.org", "password_file": "b.pw",
         "session_token": True,
         # The static fleet's jobs carry 2023 dates, so the age limit must reach back that far.
         "discovery": {"enabled": True, "interval": "1s", "max_age": "10000d"}},
    ])
    return config


def test_two_accounts_keep_credentials_apart(tmp_path, two_simulators):
    first, second = two_simulators
    config = two_accounts(tmp_path, first, second, ["1700000000001"])
    exporter = ExporterProcess("--config.file", str(config), "--poll.interval", "0.5s", env={})
    try:
        second_jobs = {entry["job"] for entry in second.simulation.jobs()}
        wanted = {"1700000000001"} | second_jobs

        def all_up():
            samples = exporter.samples()
            return all(samples.get(("opensrs_migration_job_up", (("job_id", job),))) == 1 for job in wanted) and samples

        samples = wait_for(all_up, 20, "jobs of both accounts never came up")
        info = {dict(labels)["job_id"]: dict(labels) for name, labels in samples if name == "opensrs_migration_job_info"}
        assert info["1700000000001"]["account"] == "cluster-a"
        assert info["1700000000001"]["api_url"] == first.url
        for job_id in second_jobs:
            assert info[job_id]["account"] == "cluster-b"
    finally:
        exporter.stop()
    first_bodies = json.dumps([body for _, body in first.requests])
    second_bodies = json.dumps([body for _, body in second.requests])
    assert PASSWORD_A in first_bodies
    assert PASSWORD_B not in first_bodies
    assert PASSWORD_A not in second_bodies
    assert [method for method, body in second.requests if "password" in body.get("credentials", {})] == ["authenticate"]
    assert PASSWORD_A not in exporter.output()
    assert PASSWORD_B not in exporter.output()


@pytest.mark.parametrize(
    "change, fragment",
    [
        pytest.param({"colour": "blue"}, "accounts.0.colour: unknown key", id="unknown-key"),
        pytest.param({"url": "ftp://x"}, "accounts.0.url", id="bad-url"),
        pytest.param({"jobs": [], "discovery": {"enabled": False}}, "needs job IDs", id="no-jobs"),
        pytest.param({"password_file": "missing.pw"}, "cannot read password_file", id="missing-password"),
        pytest.param({"discovery": {"enabled": True, "every": "1m"}}, "discovery.every: unknown key", id="nested-key"),
    ],
)
def test_invalid_config_file_rejected(tmp_path, change, fragment):
    (tmp_path / "a.pw").write_text(PASSWORD_A)
    account = {"name": "a", "url": "http://127.0.0.1:9/api", "user": "u", "password_file": "a.pw", "jobs": ["1"]}
    account.update(change)
    config = tmp_path / "accounts.yml"
    write_config(config, [account])
    with pytest.raises(ConfigFileError) as caught:
        load_config_file(config)
    assert fragment in str(caught.value)
    assert str(config) in str(caught.value)


def test_same_job_in_two_accounts_rejected(tmp_path):
    (tmp_path / "pw").write_text(PASSWORD_A)
    config = tmp_path / "accounts.yml"
    write_config(config, [
        {"name": "a", "url": "http://127.0.0.1:9/api", "user": "u", "password_file": "pw", "jobs": ["00123"]},
        {"name": "b", "url": "http://127.0.0.1:8/api", "user": "u", "password_file": "pw", "jobs": ["7", "00123"]},
    ])
    with pytest.raises(ConfigFileError) as caught:
        load_config_file(config)
    assert "job ID '00123' is listed in accounts 'a' and 'b'" in str(caught.value)


def test_config_file_cli_exits_2_on_unknown_key(tmp_path):
    (tmp_path / "pw").write_text(PASSWORD_A)
    config = tmp_path / "accounts.yml"
    config.write_text(f"accounts:\n  - name: a\n    url: http://127.0.0.1:9/api\n    user: u\n"
                      f"    password_file: pw\n    jobs: [1]\n    pasword: {PASSWORD_B}\n")
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENSRS_")}
    result = subprocess.run([sys.executable, "-m", "exporter", "--config.file", str(config), "--config.check"],
                            env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "accounts.0.pasword: unknown key" in result.stderr
    assert PASSWORD_B not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_shards_split_without_overlap():
    job_ids = [str(1_700_000_000_000 + n) for n in range(500)] + ["00123", "abc", "0001700000003"]
    for total in (1, 2, 3, 7):
        shards = [{job for job in job_ids if shard_of(job, total) == index} for index in range(total)]
        union = set().union(*shards)
        assert union == set(job_ids)
        assert sum(len(shard) for shard in shards) == len(job_ids)
        if total > 1:
            assert all(shards), f"an empty shard among {total}: the hash does not spread"


def data_series(exporter: ExporterProcess) -> dict:
    return {key: value for key, value in exporter.samples().items()
            if key[0].startswith(("opensrs_migration_job_", "opensrs_migration_user_", "opensrs_migration_folder_"))
            and not key[0].startswith(("opensrs_migration_job_up", "opensrs_migration_job_poll_duration",
                                       "opensrs_migration_job_last_success", "opensrs_migration_job_render",
                                       "opensrs_migration_job_info"))}


def test_two_shards_export_what_one_replica_exports():
    responses = render_fleet(8, 4, 3, seed=11)
    server = SimulatorServer.static(responses, user="sre@example.com", password=PASSWORD_A).start()
    env = {"OPENSRS_OMA_URL": server.url, "OPENSRS_OMA_USER": "sre@example.com", "OPENSRS_PASSWORD": PASSWORD_A,
           "OPENSRS_JOBS": ",".join(responses)}
    replicas = [
        ExporterProcess("--poll.interval", "1s", env=env),
        ExporterProcess("--poll.interval", "1s", "--total-shards", "2", "--shard", "0", env=env),
        ExporterProcess("--poll.interval", "1s", "--total-shards", "2", "--shard", "1", env=env),
    ]
    try:
        def ready(process):
            try:
                urllib.request.urlopen(process.metrics_url.replace("/metrics", "/-/ready"), timeout=5)
                return True
            except urllib.error.HTTPError:
                return False

        for process in replicas:
            wait_for(lambda: ready(process), 20, "replica never became ready")
        alone, first, second = (data_series(process) for process in replicas)
        assert alone, "the single replica exported no data series"
        assert not set(first) & set(second), "two shards exported the same series"
        assert {**first, **second} == alone
        assert first and second, "one shard got no jobs at all"
        assert replicas[1].samples()[("opensrs_migration_total_shards", ())] == 2
        assert replicas[2].samples()[("opensrs_migration_shard", ())] == 1
    finally:
        for process in replicas:
            process.stop()
        server.stop()


def test_reload_by_signal_and_http(tmp_path, two_simulators):
    first, second = two_simulators
    config = two_accounts(tmp_path, first, second, ["1700000000001"])
    exporter = ExporterProcess("--config.file", str(config), "--poll.interval", "0.5s", env={})
    reload_url = exporter.metrics_url.replace("/metrics", "/-/reload")
    try:
        wait_for(lambda: "1700000000001" in job_ids_in(exporter.samples()), 20, "first job never appeared")
        config = two_accounts(tmp_path, first, second, ["1700000000001", "1700000000002"])
        exporter.process.send_signal(signal.SIGHUP)
        wait_for(lambda: "1700000000002" in job_ids_in(exporter.samples()), 20, "SIGHUP did not add the job")

        config = two_accounts(tmp_path, first, second, ["1700000000002"])
        request = urllib.request.Request(reload_url, method="POST", data=b"")
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200
        assert "1700000000001" not in job_ids_in(exporter.samples())
        assert exporter.samples()[("opensrs_migration_config_last_reload_successful", ())] == 1

        config.write_text("accounts: [this is: not valid")
        request = urllib.request.Request(reload_url, method="POST", data=b"")
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(request, timeout=10)
        assert caught.value.code == 500
        samples = exporter.samples()
        assert samples[("opensrs_migration_config_last_reload_successful", ())] == 0
        assert "1700000000002" in job_ids_in(samples), "a failed reload must keep the running jobs"
    finally:
        assert exporter.stop() == 0


def test_discovery_skips_unusable_job_ids():
    from exporter.fleet import _parse_jobs

    now = time.time()
    listed, problems = _parse_jobs({"jobs": [
        {"job": "a b", "date": now}, {"job": "", "date": now}, {"job": "x" * 5000, "date": now},
        {"job": "00123", "date": now - 60}, {"job": 42, "date": "oops"}, {"job": "future", "date": 9e99},
        {"job": True}, "not an object",
    ]}, now)
    assert set(listed) == {"00123", "42", "future"}
    assert listed["00123"] == pytest.approx(now - 60)
    assert listed["42"] is None
    assert listed["future"] is None
    assert len(problems) == 5


def test_undated_job_expires_after_first_listing():
    class Jobs:
        def migration_jobs(self, deadline):
            return {"success": True, "jobs": [{"job": "future", "date": 9e99}, {"job": "undated"}]}

    now = [1_800_000_000.0]
    applied: list[dict] = []
    account = Account(name="a", url="http://127.0.0.1:9/api", user="u", password="p",
                      discovery=Discovery(enabled=True, interval=60, max_age=3600))
    directory = JobDirectory([account], {"a": Jobs()}, applied.append, wall_clock=lambda: now[0])
    directory.discover_all()
    assert set(applied[-1]) == {"future", "undated"}
    now[0] += 1800
    directory.discover_all()
    assert set(applied[-1]) == {"future", "undated"}, "first listing is the submission time"
    now[0] += 1801
    directory.discover_all()
    assert applied[-1] == {}, "a job without a usable date must still leave the window"


@pytest.mark.parametrize(
    "text, fragment",
    [
        pytest.param("", "the top level must be a mapping", id="empty"),
        pytest.param("- a\n- b\n", "the top level must be a mapping", id="list"),
        pytest.param("accounts: [this is: not valid", "line 1, column", id="broken-yaml"),
        pytest.param(f"accounts:\n  - name: a\n    password: {PASSWORD_B}\n", "passwords are not accepted", id="inline"),
    ],
)
def test_config_file_structure_errors(tmp_path, text, fragment):
    config = tmp_path / "accounts.yml"
    config.write_text(text)
    with pytest.raises(ConfigFileError) as caught:
        load_config_file(config)
    assert fragment in str(caught.value)
    assert PASSWORD_B not in str(caught.value)
