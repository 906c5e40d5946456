"""Tests for parse_status: the documented example response, API quirks and value rules."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from exporter.errors import ResponseError
from exporter.parse import parse_status
from exporter.snapshot import STATES, UNKNOWN_STATE, FolderStatus, InvalidValue, JobStatus

FIXTURES = Path(__file__).parent / "fixtures"

FOLDER_COUNTERS = [
    ("migrate_count", "migrated_messages"),
    ("skip_count", "skipped_messages"),
    ("fail_count", "failed_messages"),
    ("remote_count", "remote_messages"),
    ("retry1count", "retry1_messages"),
    ("retry2count", "retry2_messages"),
    ("bytes", "migrated_bytes"),
    ("next_uid", "next_uid"),
]
STATUS_COUNTERS = [
    ("migrate_count", "migrated_messages"),
    ("skip_count", "skipped_messages"),
    ("fail_count", "failed_messages"),
    ("remote_count", "remote_messages"),
    ("bytes", "migrated_bytes"),
    ("critical_errors", "critical_errors"),
    ("foldercount", "folder_count"),
]


def make_user(local="alice@example.com", state="active", folders=None, status=None, config=None, **extra):
    data = {
        "folders": {"INBOX": {"delim": "."}} if folders is None else folders,
        "status": {} if status is None else status,
        "config": {"server": "imap.example.org:993", "method": "imap4s", "remote": "alice@example.org"}
        if config is None
        else config,
    }
    user = {"data": data, "local": local, "state": state}
    user.update(extra)
    return user


def make_document(*users, rate="1 KiB/s"):
    return {"rate": rate, "success": True, "users": list(users)}


def parse_one_user(user, rate="1 KiB/s"):
    status = parse_status("1326229437638", make_document(user, rate=rate))
    assert len(status.users) == 1
    return status, status.users[0]


def fields_of(status: JobStatus) -> list[str]:
    return [invalid.field for invalid in status.invalid_values]


# The example response from the OMA migration_status documentation.


@pytest.fixture(scope="module")
def example_status() -> JobStatus:
    document = json.loads((FIXTURES / "seed_migration_status.json").read_text(encoding="utf-8"))
    return parse_status("1326229437638", document)


def test_example_user_totals(example_status):
    assert len(example_status.users) == 1
    user = example_status.users[0]
    assert user.migrated_messages == 5.0
    assert user.skipped_messages == 2.0
    assert user.remote_messages == 7.0
    assert user.failed_messages == 0.0
    assert user.migrated_bytes == 123133.0
    assert user.critical_errors == 0.0
    assert user.folder_count == 5.0


def test_example_user_state_and_config(example_status):
    user = example_status.users[0]
    assert user.state == "complete"
    assert user.server == "mail.bigmail.com:993"
    assert user.method == "imap4s"
    assert user.remote_user != ""
    assert user.delimiter == "."
    assert user.retry1_messages == 0.0
    assert user.retry2_messages == 0.0


def test_example_folders(example_status):
    folders = {folder.name: folder for folder in example_status.users[0].folders}
    assert list(folders) == ["INBOX", "Trash", "Drafts", "Spam", "Sent Items"]
    assert folders["Trash"].skipped_messages == 1.0
    assert folders["Trash"].migrated_messages == 0.0
    assert folders["Trash"].remote_messages == 1.0
    assert folders["Trash"].next_uid == 1.0
    assert folders["INBOX"].migrated_messages == 5.0
    assert folders["INBOX"].migrated_bytes == 123133.0
    assert folders["INBOX"].remote_messages == 5.0
    assert folders["INBOX"].next_uid == 5.0
    assert folders["Sent Items"].remote_messages == 0.0


def test_example_throughput_and_no_invalid(example_status):
    assert example_status.job_id == "1326229437638"
    assert example_status.throughput_bytes_per_second == 628222.976
    assert example_status.invalid_values == ()


# Response as a whole.


@pytest.mark.parametrize(
    ("document", "fragment"),
    [
        pytest.param([], "JSON array", id="list"),
        pytest.param("ok", "JSON string", id="string"),
        pytest.param(None, "JSON null", id="null"),
        pytest.param(42, "JSON number", id="number"),
        pytest.param(True, "JSON boolean", id="boolean"),
        pytest.param({"success": True, "rate": "0 B/s"}, "no 'users' field", id="users missing"),
        pytest.param({"success": True, "users": {"a": {}}}, "'users' of type object", id="users object"),
        pytest.param({"success": True, "users": "none"}, "'users' of type string", id="users string"),
        pytest.param({"success": True, "users": None}, "'users' of type null", id="users null"),
    ],
)
def test_unusable_response_raises(document, fragment):
    with pytest.raises(ResponseError) as caught:
        parse_status("0042", document)
    message = str(caught.value)
    assert fragment in message
    assert "'0042'" in message


def test_empty_users_list():
    status = parse_status("1", make_document())
    assert status.users == ()
    assert status.invalid_values == ()
    assert status.throughput_bytes_per_second == 1024.0


def test_job_id_kept_as_string():
    status = parse_status("0001326229437638", make_document(make_user()))
    assert status.job_id == "0001326229437638"


def test_unknown_keys_ignored():
    user = make_user(status={"migrate_count": 3, "eta": "soon"}, extra_key={"nested": [1]})
    user["data"]["folders"]["INBOX"]["flags"] = ["\\Seen"]
    user["data"]["audit"] = "x"
    document = make_document(user)
    document["audit"] = {"request_id": "abc"}
    status = parse_status("1", document)
    assert status.users[0].migrated_messages == 3.0
    assert status.invalid_values == ()


def test_success_field_not_checked():
    document = make_document(make_user())
    del document["success"]
    assert len(parse_status("1", document).users) == 1


def test_records_are_tuples():
    status = parse_status("1", make_document(make_user(), make_user(local="bob@example.com")))
    assert isinstance(status.users, tuple)
    assert isinstance(status.users[0].folders, tuple)
    assert isinstance(status.invalid_values, tuple)


# Numbers: JSON numbers and numeric strings, even for one key in one response.

READABLE_NUMBERS = [
    pytest.param(5, 5.0, id="int"),
    pytest.param(0, 0.0, id="zero"),
    pytest.param(5.5, 5.5, id="float"),
    pytest.param("5", 5.0, id="digit string"),
    pytest.param("0", 0.0, id="zero string"),
    pytest.param(" 7 ", 7.0, id="string with spaces"),
    pytest.param("\t7\n", 7.0, id="string with tab and newline"),
    pytest.param("1e3", 1000.0, id="exponent string"),
    pytest.param("2.5", 2.5, id="decimal string"),
    pytest.param("-3", -3.0, id="negative string"),
    pytest.param(-3, -3.0, id="negative int"),
    pytest.param("+4", 4.0, id="plus sign string"),
    pytest.param("007", 7.0, id="leading zeros"),
    pytest.param("12345678901234567890", 12345678901234567890.0, id="long digit string"),
    pytest.param(10**30, 1e30, id="large int"),
    pytest.param("9" * 308, float("9" * 308), id="308 digits"),
]


@pytest.mark.parametrize(("raw", "expected"), READABLE_NUMBERS)
@pytest.mark.parametrize(("key", "attribute"), FOLDER_COUNTERS, ids=[key for key, _ in FOLDER_COUNTERS])
def test_folder_counter_reads_number(key, attribute, raw, expected):
    status, user = parse_one_user(make_user(folders={"INBOX": {key: raw}}))
    value = getattr(user.folders[0], attribute)
    assert value == expected
    assert type(value) is float
    assert status.invalid_values == ()


@pytest.mark.parametrize(("raw", "expected"), READABLE_NUMBERS)
@pytest.mark.parametrize(("key", "attribute"), STATUS_COUNTERS, ids=[key for key, _ in STATUS_COUNTERS])
def test_status_counter_reads_number(key, attribute, raw, expected):
    status, user = parse_one_user(make_user(status={key: raw}))
    value = getattr(user, attribute)
    assert value == expected
    assert type(value) is float
    assert status.invalid_values == ()


UNREADABLE_NUMBERS = [
    pytest.param("N/A", id="N/A"),
    pytest.param("", id="empty string"),
    pytest.param("   ", id="blank string"),
    pytest.param(True, id="true"),
    pytest.param(False, id="false"),
    pytest.param(None, id="null"),
    pytest.param(float("nan"), id="NaN float"),
    pytest.param(float("inf"), id="infinity float"),
    pytest.param(float("-inf"), id="negative infinity float"),
    pytest.param("NaN", id="NaN string"),
    pytest.param("nan", id="nan string"),
    pytest.param("inf", id="inf string"),
    pytest.param("Infinity", id="Infinity string"),
    pytest.param("-Infinity", id="negative Infinity string"),
    pytest.param("1e400", id="exponent beyond float"),
    pytest.param("9" * 400, id="400 digits"),
    pytest.param(10**400, id="int beyond float"),
    pytest.param([], id="empty list"),
    pytest.param([5], id="list"),
    pytest.param({}, id="empty object"),
    pytest.param({"value": 5}, id="object"),
    pytest.param("1_000", id="digit separator"),
    pytest.param("1,000", id="comma separator"),
    pytest.param("\u0663", id="arabic-indic digit"),
    pytest.param("\uff15", id="fullwidth digit"),
    pytest.param("\u00b2", id="superscript two"),
    pytest.param("\u00a07", id="no-break space"),
    pytest.param("0x10", id="hexadecimal"),
    pytest.param("5 messages", id="number with word"),
]


@pytest.mark.parametrize("raw", UNREADABLE_NUMBERS)
@pytest.mark.parametrize(("key", "attribute"), FOLDER_COUNTERS, ids=[key for key, _ in FOLDER_COUNTERS])
def test_folder_counter_unreadable(key, attribute, raw):
    folder = {"migrate_count": 4, "skip_count": "2", "delim": "/"}
    folder[key] = raw
    status, user = parse_one_user(make_user(folders={"Archive": folder}))

    parsed = user.folders[0]
    assert getattr(parsed, attribute) is None
    assert parsed.name == "Archive"
    assert parsed.delimiter == "/"
    if key != "migrate_count":
        assert parsed.migrated_messages == 4.0
    if key != "skip_count":
        assert parsed.skipped_messages == 2.0

    assert len(status.invalid_values) == 1
    invalid = status.invalid_values[0]
    assert invalid.field == f"users.folders.{key}"
    assert invalid.user == "alice@example.com"
    assert invalid.folder == "Archive"


@pytest.mark.parametrize("raw", UNREADABLE_NUMBERS)
@pytest.mark.parametrize(("key", "attribute"), STATUS_COUNTERS, ids=[key for key, _ in STATUS_COUNTERS])
def test_status_counter_unreadable(key, attribute, raw):
    user_status = {"migrate_count": 4, "remote_count": "9"}
    user_status[key] = raw
    status, user = parse_one_user(make_user(status=user_status))

    assert getattr(user, attribute) is None
    if key != "migrate_count":
        assert user.migrated_messages == 4.0
    if key != "remote_count":
        assert user.remote_messages == 9.0
    assert len(user.folders) == 1

    assert len(status.invalid_values) == 1
    invalid = status.invalid_values[0]
    assert invalid.field == f"users.status.{key}"
    assert invalid.user == "alice@example.com"
    assert invalid.folder == ""


def test_mixed_number_types_in_one_response():
    folders = {
        "INBOX": {"skip_count": 0, "remote_count": "5"},
        "Trash": {"skip_count": "1", "remote_count": 1},
    }
    status, user = parse_one_user(make_user(folders=folders))
    assert [folder.skipped_messages for folder in user.folders] == [0.0, 1.0]
    assert [folder.remote_messages for folder in user.folders] == [5.0, 1.0]
    assert status.invalid_values == ()


# Counters left out.


def test_omitted_folder_counters_are_zero():
    status, user = parse_one_user(make_user(folders={"Drafts": {}}))
    folder = user.folders[0]
    for _, attribute in FOLDER_COUNTERS:
        assert getattr(folder, attribute) == 0.0, attribute
    assert folder.delimiter == ""
    assert status.invalid_values == ()


def test_omitted_status_counters_are_zero():
    status, user = parse_one_user(make_user(status={}))
    for _, attribute in STATUS_COUNTERS:
        assert getattr(user, attribute) == 0.0, attribute
    assert status.invalid_values == ()


def test_user_without_data():
    status, user = parse_one_user({"local": "new@example.com", "state": "pending"})
    assert user.state == "pending"
    assert user.folders == ()
    assert user.remote_user == ""
    assert user.server == ""
    assert user.method == ""
    assert user.delimiter == ""
    assert user.migrated_messages == 0.0
    assert user.retry1_messages == 0.0
    assert status.invalid_values == ()


# Invalid value records.


def test_invalid_value_shows_repr():
    status, _ = parse_one_user(make_user(status={"fail_count": "N/A"}))
    assert status.invalid_values == (
        InvalidValue(field="users.status.fail_count", value="'N/A'", user="alice@example.com"),
    )


def test_invalid_value_cut_to_80():
    status, _ = parse_one_user(make_user(status={"fail_count": "x" * 500}))
    value = status.invalid_values[0].value
    assert len(value) == 80
    assert value.startswith("'xxx")


def test_invalid_object_shows_keys_only():
    config_value = {"password": "test-password-7f3a", "remote": "alice@example.org"}
    status, _ = parse_one_user(make_user(status={"bytes": config_value}))
    value = status.invalid_values[0].value
    assert "password" in value
    assert "test-password-7f3a" not in value


def test_invalid_list_shows_length_only():
    status, _ = parse_one_user(make_user(status={"bytes": ["test-password-7f3a", 2]}))
    value = status.invalid_values[0].value
    assert value == "list of 2 items"


def test_invalid_huge_int_described():
    status, _ = parse_one_user(make_user(status={"bytes": 10**5000}))
    value = status.invalid_values[0].value
    assert value.startswith("integer of ")
    assert len(value) <= 80


def test_one_bad_value_keeps_other_users():
    good = make_user(local="good@example.com", status={"migrate_count": 3})
    bad = make_user(local="bad@example.com", status={"migrate_count": "N/A", "skip_count": 2})
    status = parse_status("1", make_document(good, bad))
    assert [user.user for user in status.users] == ["good@example.com", "bad@example.com"]
    assert status.users[0].migrated_messages == 3.0
    assert status.users[1].migrated_messages is None
    assert status.users[1].skipped_messages == 2.0
    assert fields_of(status) == ["users.status.migrate_count"]


# rate.


@pytest.mark.parametrize(
    ("rate", "expected"),
    [
        pytest.param("613.499 KiB/s", 628222.976, id="KiB/s"),
        pytest.param("2 MB/s", 2_000_000.0, id="MB/s"),
        pytest.param("8 Mbit/s", 1_000_000.0, id="Mbit/s"),
        pytest.param("0 B/s", 0.0, id="zero B/s"),
        pytest.param("0", 0.0, id="zero without unit"),
    ],
)
def test_rate_parsed(rate, expected):
    status = parse_status("1", make_document(make_user(), rate=rate))
    assert status.throughput_bytes_per_second == expected
    assert status.invalid_values == ()


@pytest.mark.parametrize(
    "rate",
    [
        pytest.param("fast", id="word"),
        pytest.param("", id="empty"),
        pytest.param("12 K/s", id="ambiguous unit"),
        pytest.param("-1 KiB/s", id="negative"),
        pytest.param("1e400 B/s", id="exponent"),
        pytest.param("NaN B/s", id="NaN"),
        pytest.param(628222, id="number without unit"),
        pytest.param(None, id="null"),
        pytest.param(True, id="true"),
        pytest.param({"value": 1}, id="object"),
    ],
)
def test_rate_invalid_counted(rate):
    status = parse_status("1", make_document(make_user(), rate=rate))
    assert status.throughput_bytes_per_second is None
    assert fields_of(status) == ["rate"]
    assert status.invalid_values[0].user == ""
    assert len(status.users) == 1


def test_rate_missing_not_counted():
    document = make_document(make_user())
    del document["rate"]
    status = parse_status("1", document)
    assert status.throughput_bytes_per_second is None
    assert status.invalid_values == ()


# config.


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        pytest.param({"remote": "r@example.org"}, "r@example.org", id="remote"),
        pytest.param({"username": "u@example.org"}, "u@example.org", id="username"),
        pytest.param({"remote": "r@example.org", "username": "u@example.org"}, "r@example.org", id="both"),
        pytest.param({"remote": "", "username": "u@example.org"}, "u@example.org", id="empty remote"),
        pytest.param({}, "", id="neither"),
    ],
)
def test_remote_user_from_config(config, expected):
    status, user = parse_one_user(make_user(config=config))
    assert user.remote_user == expected
    assert status.invalid_values == ()


def test_config_text_fields():
    config = {"server": "mail.example.org:993", "method": "imap4s", "remote": "r@example.org"}
    _, user = parse_one_user(make_user(config=config))
    assert user.server == "mail.example.org:993"
    assert user.method == "imap4s"


@pytest.mark.parametrize(
    ("config", "field"),
    [
        pytest.param({"server": 993}, "users.config.server", id="server number"),
        pytest.param({"method": None}, "users.config.method", id="method null"),
        pytest.param({"remote": ["a"]}, "users.config.remote", id="remote list"),
        pytest.param({"username": True}, "users.config.username", id="username boolean"),
    ],
)
def test_config_text_not_string(config, field):
    status, user = parse_one_user(make_user(config=config))
    assert user.server == ""
    assert user.method == ""
    assert user.remote_user == ""
    assert fields_of(status) == [field]


def test_remote_not_string_falls_back_to_username():
    status, user = parse_one_user(make_user(config={"remote": 7, "username": "u@example.org"}))
    assert user.remote_user == "u@example.org"
    assert fields_of(status) == ["users.config.remote"]


# Objects that are present but of the wrong type.


@pytest.mark.parametrize(
    ("user", "field"),
    [
        pytest.param({"local": "a@example.com", "state": "active", "data": "x"}, "users.data", id="data string"),
        pytest.param({"local": "a@example.com", "state": "active", "data": []}, "users.data", id="data list"),
        pytest.param(make_user(local="a@example.com", config="imap"), "users.config", id="config string"),
        pytest.param(make_user(local="a@example.com", status=[1, 2]), "users.status", id="status list"),
        pytest.param(make_user(local="a@example.com", folders=["INBOX"]), "users.folders", id="folders list"),
        pytest.param(make_user(local="a@example.com", folders="INBOX"), "users.folders", id="folders string"),
    ],
)
def test_wrong_type_object_counted(user, field):
    status, parsed = parse_one_user(user)
    assert parsed.user == "a@example.com"
    assert parsed.state == "active"
    assert fields_of(status) == [field]
    assert status.invalid_values[0].user == "a@example.com"


def test_status_not_object_reads_zeros():
    status, user = parse_one_user(make_user(status="done"))
    assert user.migrated_messages == 0.0
    assert user.remote_messages == 0.0
    assert fields_of(status) == ["users.status"]


def test_folders_not_object_reads_none():
    status, user = parse_one_user(make_user(folders=[{"INBOX": {}}]))
    assert user.folders == ()
    assert user.delimiter == ""
    assert fields_of(status) == ["users.folders"]


@pytest.mark.parametrize(
    "entry",
    [
        pytest.param("INBOX", id="string"),
        pytest.param(None, id="null"),
        pytest.param(5, id="number"),
        pytest.param(["x"], id="list"),
    ],
)
def test_folder_entry_not_object_skipped(entry):
    folders = {"INBOX": {"migrate_count": 1}, "Broken": entry, "Sent": {"migrate_count": 2}}
    status, user = parse_one_user(make_user(folders=folders))
    assert [folder.name for folder in user.folders] == ["INBOX", "Sent"]
    assert fields_of(status) == ["users.folders"]
    assert status.invalid_values[0].folder == "Broken"


# User entries.


@pytest.mark.parametrize(
    ("entry", "value"),
    [
        pytest.param("alice@example.com", "'alice@example.com'", id="string"),
        pytest.param(None, "None", id="null"),
        pytest.param(7, "7", id="number"),
        pytest.param(["alice@example.com"], "list of 1 items", id="list"),
    ],
)
def test_user_entry_not_object_skipped(entry, value):
    status = parse_status("1", make_document(make_user(), entry, make_user(local="bob@example.com")))
    assert [user.user for user in status.users] == ["alice@example.com", "bob@example.com"]
    assert status.invalid_values == (InvalidValue(field="users", value=value),)


@pytest.mark.parametrize(
    ("local", "value"),
    [
        pytest.param(None, "None", id="null"),
        pytest.param("", "''", id="empty"),
        pytest.param(42, "42", id="number"),
        pytest.param(True, "True", id="boolean"),
        pytest.param({"address": "a@example.com"}, "object with keys ['address']", id="object"),
    ],
)
def test_local_not_string_skipped(local, value):
    status = parse_status("1", make_document(make_user(local=local), make_user(local="bob@example.com")))
    assert [user.user for user in status.users] == ["bob@example.com"]
    assert status.invalid_values == (InvalidValue(field="users.local", value=value),)


def test_local_missing_skipped():
    user = make_user()
    del user["local"]
    status = parse_status("1", make_document(user, make_user(local="bob@example.com")))
    assert [parsed.user for parsed in status.users] == ["bob@example.com"]
    assert status.invalid_values == (InvalidValue(field="users.local", value="<missing>"),)


def test_duplicate_local_keeps_first():
    first = make_user(local="alice@example.com", status={"migrate_count": 1})
    second = make_user(local="alice@example.com", status={"migrate_count": 2})
    third = make_user(local="alice@example.com", status={"migrate_count": 3})
    other = make_user(local="bob@example.com")
    status = parse_status("1", make_document(first, second, other, third))

    assert [user.user for user in status.users] == ["alice@example.com", "bob@example.com"]
    assert status.users[0].migrated_messages == 1.0
    duplicate = InvalidValue(field="users.local", value="'alice@example.com'", user="alice@example.com")
    assert status.invalid_values == (duplicate, duplicate)


def test_duplicate_local_skipped_before_values_read():
    first = make_user(local="alice@example.com")
    second = make_user(local="alice@example.com", status={"migrate_count": "N/A"})
    status = parse_status("1", make_document(first, second))
    assert fields_of(status) == ["users.local"]


# state.


@pytest.mark.parametrize("state", STATES)
def test_documented_state_kept(state):
    status, user = parse_one_user(make_user(state=state))
    assert user.state == state
    assert status.invalid_values == ()


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param("Complete", "complete", id="capitalised"),
        pytest.param("ACTIVE", "active", id="upper case"),
        pytest.param(" pending ", "pending", id="surrounding spaces"),
    ],
)
def test_state_normalised(raw, expected):
    status, user = parse_one_user(make_user(state=raw))
    assert user.state == expected
    assert status.invalid_values == ()


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        pytest.param("paused", "'paused'", id="undocumented"),
        pytest.param("unknown", "'unknown'", id="unknown literal"),
        pytest.param("", "''", id="empty"),
        pytest.param("compl\u0113te", "'compl\u0113te'", id="non-ASCII"),
        pytest.param("\u00a0active", "'\\xa0active'", id="no-break space"),
        pytest.param(3, "3", id="number"),
        pytest.param(None, "None", id="null"),
        pytest.param(["active"], "list of 1 items", id="list"),
    ],
)
def test_unknown_state_counted(raw, value):
    status, user = parse_one_user(make_user(state=raw))
    assert user.state == UNKNOWN_STATE
    assert status.invalid_values == (InvalidValue(field="users.state", value=value, user="alice@example.com"),)


def test_missing_state_unknown():
    user = make_user()
    del user["state"]
    status, parsed = parse_one_user(user)
    assert parsed.state == UNKNOWN_STATE
    assert status.invalid_values == ()


# Delimiter.


@pytest.mark.parametrize(
    ("delims", "expected"),
    [
        pytest.param(["."], ".", id="one folder"),
        pytest.param(["/", "/", "."], "/", id="most common"),
        pytest.param([".", "/", "/"], "/", id="most common last"),
        pytest.param(["/", "."], "/", id="tie first wins"),
        pytest.param([".", "/"], ".", id="tie other order"),
        pytest.param([None, "/"], "/", id="missing ignored"),
        pytest.param(["", "", "/"], "/", id="empty ignored"),
        pytest.param([None], "", id="no delimiter"),
        pytest.param([], "", id="no folders"),
    ],
)
def test_user_delimiter(delims, expected):
    folders = {}
    for index, delim in enumerate(delims):
        folders[f"F{index}"] = {} if delim is None else {"delim": delim}
    status, user = parse_one_user(make_user(folders=folders))
    assert user.delimiter == expected
    assert status.invalid_values == ()


def test_folder_delimiter_not_string():
    folders = {"INBOX": {"delim": 46}, "Sent": {"delim": "."}}
    status, user = parse_one_user(make_user(folders=folders))
    assert [folder.delimiter for folder in user.folders] == ["", "."]
    assert user.delimiter == "."
    assert status.invalid_values == (
        InvalidValue(field="users.folders.delim", value="46", user="alice@example.com", folder="INBOX"),
    )


# Retry sums.


def test_retry_sums_over_folders():
    folders = {
        "INBOX": {"retry1count": 2, "retry2count": "1"},
        "Sent": {"retry1count": "3"},
        "Trash": {},
    }
    status, user = parse_one_user(make_user(folders=folders))
    assert user.retry1_messages == 5.0
    assert user.retry2_messages == 1.0
    assert status.invalid_values == ()


def test_retry_sum_with_unreadable_part_is_none():
    folders = {"INBOX": {"retry1count": 2, "retry2count": 4}, "Sent": {"retry1count": "N/A", "retry2count": 1}}
    status, user = parse_one_user(make_user(folders=folders))
    assert user.retry1_messages is None
    assert user.retry2_messages == 5.0
    assert fields_of(status) == ["users.folders.retry1count"]
    assert status.invalid_values[0].folder == "Sent"


def test_retry_sum_beyond_float_range():
    folders = {"A": {"retry1count": 1.5e308}, "B": {"retry1count": 1.5e308}}
    status, user = parse_one_user(make_user(folders=folders))
    assert user.retry1_messages is None
    assert user.folders[0].retry1_messages == 1.5e308
    assert fields_of(status) == ["users.folders.retry1count"]


# Folder names.


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param("Entw&APw-rfe", "Entwürfe", id="modified UTF-7"),
        pytest.param("&ZeVnLIqe-", "日本語", id="CJK"),
        pytest.param("R&-D", "R&D", id="ampersand"),
        pytest.param("INBOX/Sent Items", "INBOX/Sent Items", id="slash and space"),
        pytest.param("INBOX.Sent", "INBOX.Sent", id="dot"),
        pytest.param('Say "hi"', 'Say "hi"', id="quotes"),
        pytest.param("back\\slash", "back\\slash", id="backslash"),
        pytest.param("Bad&name", "Bad&name", id="invalid kept raw"),
        pytest.param("Entwürfe", "Entwürfe", id="raw UTF-8 kept"),
    ],
)
def test_folder_name_decoded(raw, expected):
    status, user = parse_one_user(make_user(folders={raw: {"migrate_count": 1}}))
    assert user.folders[0].name == expected
    assert status.invalid_values == ()


@pytest.mark.parametrize("reverse", [False, True], ids=["encoded first", "raw first"])
def test_decoded_name_yields_to_literal_name(reverse):
    folders = [("Entw&APw-rfe", {"migrate_count": 1}), ("Entwürfe", {"migrate_count": 2})]
    if reverse:
        folders.reverse()
    status, user = parse_one_user(make_user(folders=dict(folders)))
    labels = {folder.name: folder.migrated_messages for folder in user.folders}
    assert labels == {"Entw&APw-rfe": 1.0, "Entwürfe": 2.0}
    assert status.invalid_values == ()


def test_collision_keeps_raw_name_of_later():
    folders = {"&AOQ-&APY-": {"migrate_count": 1}, "&AOQA9g-": {"migrate_count": 2}}
    status, user = parse_one_user(make_user(folders=folders))
    assert [(folder.name, folder.migrated_messages) for folder in user.folders] == [
        ("äö", 1.0),
        ("&AOQA9g-", 2.0),
    ]
    assert status.invalid_values == ()


def test_collision_with_taken_raw_name_skipped():
    # "Entw&-APw-rfe" decodes to the raw name of the third folder, which in turn
    # decodes to the name of the first folder.
    folders = {
        "Entwürfe": {"migrate_count": 1},
        "Entw&-APw-rfe": {"migrate_count": 2},
        "Entw&APw-rfe": {"migrate_count": 3},
    }
    status, user = parse_one_user(make_user(folders=folders))
    assert [(folder.name, folder.migrated_messages) for folder in user.folders] == [
        ("Entwürfe", 1.0),
        ("Entw&APw-rfe", 2.0),
    ]
    assert status.invalid_values == (
        InvalidValue(
            field="users.folders.name",
            value="'Entw&APw-rfe'",
            user="alice@example.com",
            folder="Entw&APw-rfe",
        ),
    )


def test_folder_names_unique_per_user():
    folders = {"INBOX": {"migrate_count": 1}}
    first = make_user(local="a@example.com", folders=folders)
    second = make_user(local="b@example.com", folders=folders)
    status = parse_status("1", make_document(first, second))
    assert [user.folders[0].name for user in status.users] == ["INBOX", "INBOX"]
    assert status.invalid_values == ()


def test_folder_record_fields():
    folder = {
        "next_uid": "5",
        "bytes": 123133,
        "migrate_count": 5,
        "fail_count": 1,
        "retry1count": 2,
        "skip_count": 0,
        "remote_count": "9",
        "retry2count": 3,
        "delim": "/",
    }
    _, user = parse_one_user(make_user(folders={"INBOX": folder}))
    assert user.folders[0] == FolderStatus(
        name="INBOX",
        migrated_messages=5.0,
        skipped_messages=0.0,
        failed_messages=1.0,
        remote_messages=9.0,
        retry1_messages=2.0,
        retry2_messages=3.0,
        migrated_bytes=123133.0,
        next_uid=5.0,
        delimiter="/",
    )
