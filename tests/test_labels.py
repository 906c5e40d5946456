"""Label values from hostile user, folder and config names never break a scrape.

The API passes through whatever names remote IMAP servers and migration requests
contain: quotes, backslashes, newlines, control characters, emoji, lone UTF-16
surrogates and names of hundreds of bytes. These tests render them, check the
exposition with promtool, and let a real Prometheus 2.42 scrape it, once with no
limits and once with `label_value_length_limit: 200`, where one longer value would
fail the whole scrape.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families

from exporter.labels import MAX_LABEL_VALUE_BYTES, shorten_label_value
from exporter.parse import parse_status
from exporter.poller import Poller
from exporter.server import Exposition
from tests.promtools import ManagedProcess, free_port, http_get, require_binary, wait_until
from tests.scripted_server import ScriptedServer, json_reply
from tests.test_e2e import ExporterProcess
from tests.test_faults import check_with_promtool

JOB = "1700000000777"
LONG_PREFIX = "archive." * 30

HOSTILE_USERS = [
    'quote"user@example.com',
    "back\\slash@example.com",
    "literal\\nbackslash-n@example.com",
    "new\nline@example.com",
    "tab\tuser@example.com",
    "cr\ruser@example.com",
    "ctrl\x00\x01\x1b\x7f@example.com",
    "nel\x85line\u2028sep@example.com",
    "\U0001f4ec emoji@example.com",
    "percent%s%%@example.com",
    "lone\ud800surrogate@example.com",
    '"} 1\n# EOF\nfake_metric{a="b',
    "x" * 300 + "@example.com",
    LONG_PREFIX + "first@example.com",
    LONG_PREFIX + "second@example.com",
    "\U0001f4ec" * 60 + "@example.com",
]
HOSTILE_FOLDERS = [
    'Inbox/"quoted"',
    "back\\slash",
    "new\nline",
    "tab\there",
    "ctrl\x01\x1b",
    "Entw&APw-rfe",
    "100% done %s %%",
    "\U0001f4c1 emoji",
    "lone\udfffsurrogate",
    "Archive/" * 40 + "2019",
    "Archive/" * 40 + "2020",
]


def expected_label(value: str) -> str:
    """Return the label value the exporter must export for `value`, per its documentation."""
    clean = "".join("\ufffd" if 0xD800 <= ord(c) <= 0xDFFF else c for c in value)
    if len(clean.encode()) <= MAX_LABEL_VALUE_BYTES:
        return clean
    digest = hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    prefix = ""
    for character in clean:
        if len((prefix + character).encode()) > MAX_LABEL_VALUE_BYTES - 9:
            break
        prefix += character
    return f"{prefix}~{digest}"


def hostile_document() -> dict:
    users = []
    for number, local in enumerate(HOSTILE_USERS):
        folders = {name: {"migrate_count": position, "delim": "/"} for position, name in enumerate(HOSTILE_FOLDERS)}
        users.append({
            "local": local,
            "state": "active",
            "data": {
                "config": {"remote": "r" * 250 + local, "server": 'imap."quoted".example.com:993',
                           "method": "imap4s\n"},
                "status": {"migrate_count": number},
                "folders": folders,
            },
        })
    return {"success": True, "rate": "1 KiB/s", "users": users}


def expected_folders() -> set[str]:
    decoded = {"Entw&APw-rfe": "Entwürfe"}
    return {expected_label(decoded.get(name, name)) for name in HOSTILE_FOLDERS}


# shorten_label_value on its own.


def test_short_values_unchanged():
    for value in ("", "user@example.com", 'a"b\\c\nd', "\U0001f4ec", "é" * 64):
        assert shorten_label_value(value) == value


def test_value_at_limit_unchanged():
    value = "é" * 64  # 128 bytes
    assert len(value.encode()) == MAX_LABEL_VALUE_BYTES
    assert shorten_label_value(value) is value


def test_long_ascii_value_shortened():
    value = "x" * 129
    shortened = shorten_label_value(value)
    assert shortened == "x" * 119 + "~" + hashlib.sha256(value.encode()).hexdigest()[:8]
    assert len(shortened.encode()) == MAX_LABEL_VALUE_BYTES


def test_cut_never_splits_a_character():
    value = "a" + "\U0001f4ec" * 40  # 1 + 160 bytes; 119 bytes would end inside an emoji
    shortened = shorten_label_value(value)
    prefix, _, digest = shortened.rpartition("~")
    assert prefix == "a" + "\U0001f4ec" * 29
    assert digest == hashlib.sha256(value.encode()).hexdigest()[:8]
    assert len(shortened.encode()) <= MAX_LABEL_VALUE_BYTES


def test_long_values_with_one_prefix_stay_distinct():
    first, second = shorten_label_value(LONG_PREFIX + "a"), shorten_label_value(LONG_PREFIX + "b")
    assert first != second
    assert first.rpartition("~")[0] == second.rpartition("~")[0]


def test_lone_surrogates_replaced():
    assert shorten_label_value("a\ud800b\udfff") == "a\ufffdb\ufffd"
    shortened = shorten_label_value("\ud800" + "y" * 200)
    shortened.encode()  # raises if a surrogate is left
    assert shortened.startswith("\ufffd")


def test_long_values_differing_in_surrogates_stay_distinct():
    assert shorten_label_value("\ud800" + "y" * 200) != shorten_label_value("\udc00" + "y" * 200)


def test_limit_without_room_rejected():
    with pytest.raises(ValueError):
        shorten_label_value("x" * 20, limit=9)


# The parser applies it to every value that becomes a label.


def test_parser_shortens_label_values():
    status = parse_status(JOB, hostile_document())
    assert [user.user for user in status.users] == [expected_label(local) for local in HOSTILE_USERS]
    assert {folder.name for folder in status.users[0].folders} == expected_folders()
    user = status.users[0]
    assert user.remote_user == expected_label("r" * 250 + HOSTILE_USERS[0])
    assert user.server == 'imap."quoted".example.com:993'
    assert user.method == "imap4s\n"
    for user in status.users:
        for value in (user.user, user.remote_user, user.server, user.method, user.delimiter,
                      *(folder.name for folder in user.folders)):
            assert len(value.encode()) <= MAX_LABEL_VALUE_BYTES


def test_users_equal_after_shortening_kept_once():
    document = {"users": [{"local": "a\ud800"}, {"local": "a\udc00"}, {"local": "a\ufffd"}]}
    status = parse_status(JOB, document)
    assert [user.user for user in status.users] == ["a\ufffd"]
    assert [value.field for value in status.invalid_values] == ["users.local", "users.local"]


def test_folders_equal_after_shortening_kept_once():
    folders = {"x\ud800": {"migrate_count": 1}, "x\udfff": {"migrate_count": 2}, LONG_PREFIX: {}, LONG_PREFIX + "z": {}}
    status = parse_status(JOB, {"users": [{"local": "u", "data": {"folders": folders}}]})
    names = [folder.name for folder in status.users[0].folders]
    assert names == ["x\ufffd", expected_label(LONG_PREFIX), expected_label(LONG_PREFIX + "z")]
    assert [value.field for value in status.invalid_values] == ["users.folders.name"]


def test_long_delimiter_shortened():
    folders = {"INBOX": {"delim": "/" * 300}}
    status = parse_status(JOB, {"users": [{"local": "u", "data": {"folders": folders}}]})
    assert status.users[0].delimiter == expected_label("/" * 300)


# The rendered exposition.


class _StaticClient:
    def __init__(self, document: dict):
        self._document = document

    def migration_status(self, job_id: str, deadline: float) -> dict:
        return self._document

    def api_error_counts(self) -> dict[str, int]:
        return {}


def rendered_exposition(openmetrics: bool) -> str:
    poller = Poller(_StaticClient(hostile_document()), [JOB], interval=60, deadline=10, stale_after=600)
    poller.poll_all()
    accept = "application/openmetrics-text; version=1.0.0" if openmetrics else "text/plain"
    chunks, _ = Exposition(poller.view).render(accept, False)
    return b"".join(chunks).decode()


def label_values(families, metric: str, label: str) -> set[str]:
    return {sample.labels[label] for family in families for sample in family.samples if sample.name == metric}


def test_exposition_round_trips_hostile_labels():
    text = rendered_exposition(openmetrics=False)
    families = list(text_string_to_metric_families(text))
    assert label_values(families, "opensrs_migration_user_info", "user") == {expected_label(u) for u in HOSTILE_USERS}
    assert label_values(families, "opensrs_migration_folder_migrated_messages", "folder") == expected_folders()
    assert label_values(families, "opensrs_migration_user_info", "method") == {"imap4s\n"}
    check_with_promtool(text)


def test_openmetrics_round_trips_hostile_labels():
    text = rendered_exposition(openmetrics=True)
    families = list(parse_openmetrics(text))
    assert label_values(families, "opensrs_migration_user_info", "user") == {expected_label(u) for u in HOSTILE_USERS}
    assert label_values(families, "opensrs_migration_folder_migrated_messages", "folder") == expected_folders()


# A real Prometheus scrapes the console script.


class _StaticExposition:
    """Serves one fixed exposition on 127.0.0.1, as a control target."""

    def __init__(self, body: bytes):
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.address = f"127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class _Prometheus:
    """A Prometheus 2.42 that scrapes the same targets as job `plain` and as job `limited`."""

    def __init__(self, work_dir: Path, targets: list[str]):
        binary = require_binary("prometheus")
        self.url = f"http://127.0.0.1:{free_port()}"
        config = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
            "scrape_configs": [
                {"job_name": "plain", "static_configs": [{"targets": targets}]},
                {"job_name": "limited", "label_value_length_limit": 200, "static_configs": [{"targets": targets}]},
            ],
        }
        config_path = work_dir / "prometheus.yml"
        config_path.write_text(yaml.safe_dump(config))
        (work_dir / "data").mkdir()
        self.process = ManagedProcess(
            "prometheus",
            [binary, f"--config.file={config_path}", f"--storage.tsdb.path={work_dir / 'data'}",
             f"--web.listen-address={self.url.removeprefix('http://')}", "--log.level=warn"],
            work_dir / "prometheus.log",
        )
        self.process.wait_ready(f"{self.url}/-/ready")

    def api(self, path: str, **params: str) -> object:
        from urllib.parse import urlencode

        status, body = http_get(f"{self.url}/api/v1/{path}?{urlencode(params)}", timeout=10)
        assert status == 200, body[:300]
        return json.loads(body)["data"]

    def up(self) -> dict[tuple[str, str], float]:
        result = self.api("query", query="up")["result"]
        return {(item["metric"]["job"], item["metric"]["instance"]): float(item["value"][1]) for item in result}

    def label_values(self, metric: str, label: str, job: str) -> set[str]:
        series = self.api("series", **{"match[]": f'{metric}{{job="{job}"}}', "start": str(time.time() - 300)})
        return {item[label] for item in series}


@pytest.mark.prometheus
def test_prometheus_ingests_hostile_labels(tmp_path):
    control = _StaticExposition(b'control_metric{name="' + b"z" * 250 + b'"} 1\n')
    with ScriptedServer(lambda method, body: json_reply(hostile_document())) as oma:
        exporter = ExporterProcess(env={
            "OPENSRS_OMA_URL": oma.url, "OPENSRS_OMA_USER": "sre@example.com",
            "OPENSRS_PASSWORD": "test-password-7f3a", "OPENSRS_JOBS": JOB, "OPENSRS_POLL_INTERVAL": "1s",
        })
        prometheus = None
        try:
            wait_until(lambda: exporter.samples().get(("opensrs_migration_job_up", (("job_id", JOB),))) == 1,
                       20, "the exporter's first poll")
            target = exporter.metrics_url.split("/")[2]
            prometheus = _Prometheus(tmp_path, [target, control.address])
            expected = {("plain", target): 1.0, ("limited", target): 1.0,
                        ("plain", control.address): 1.0, ("limited", control.address): 0.0}
            up = wait_until(lambda: (u := prometheus.up()) and len(u) == 4 and u, 30, "four scrape results of up")
            # The control target proves the limit is enforced: its one 250-byte value
            # fails its whole scrape in job `limited`.
            assert up == expected, prometheus.process.log_tail()

            for job in ("plain", "limited"):
                users = wait_until(lambda: prometheus.label_values("opensrs_migration_user_info", "user", job),
                                   20, f"user series of job {job}")
                assert users == {expected_label(u) for u in HOSTILE_USERS}
                folders = prometheus.label_values("opensrs_migration_folder_migrated_messages", "folder", job)
                assert folders == expected_folders()
                remote = prometheus.label_values("opensrs_migration_user_info", "remote_user", job)
                assert remote == {expected_label("r" * 250 + u) for u in HOSTILE_USERS}
                methods = prometheus.label_values("opensrs_migration_user_info", "method", job)
                assert methods == {"imap4s\n"}
        finally:
            if prometheus is not None:
                prometheus.process.stop()
            exporter.stop()
            control.close()
    assert "Traceback" not in exporter.output()
