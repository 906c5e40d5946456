"""Property tests: parse_status, parse_rate and decode_mailbox_name on arbitrary input."""

from __future__ import annotations

import math
from decimal import Decimal, localcontext

from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.errors import ResponseError
from exporter.mutf7 import decode_mailbox_name
from exporter.parse import parse_status
from exporter.rate import UNIT_FACTORS, RateError, parse_rate
from exporter.snapshot import STATES, UNKNOWN_STATE, JobStatus
from tests.test_mutf7 import encode_mailbox_name

PROPERTY_SETTINGS = settings(max_examples=300, deadline=None)

FOLDER_KEYS = {
    "migrated_messages": "migrate_count",
    "skipped_messages": "skip_count",
    "failed_messages": "fail_count",
    "remote_messages": "remote_count",
    "retry1_messages": "retry1count",
    "retry2_messages": "retry2count",
    "migrated_bytes": "bytes",
    "next_uid": "next_uid",
}
STATUS_KEYS = {
    "migrated_messages": "migrate_count",
    "skipped_messages": "skip_count",
    "failed_messages": "fail_count",
    "remote_messages": "remote_count",
    "migrated_bytes": "bytes",
    "critical_errors": "critical_errors",
    "folder_count": "foldercount",
}

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=10**300, max_value=10**400),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(["5", " 7 ", "1e3", "N/A", "", "NaN", "1e400", "-0", "1_000", "\u0663"]),
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)


def shaped(keys: list[str]) -> st.SearchStrategy[dict]:
    """Objects with some of `keys`, each holding any JSON value, plus a stray key."""
    return st.fixed_dictionaries({}, optional={key: json_values for key in keys + ["extra"]})


counters = st.one_of(json_scalars, st.integers(min_value=0, max_value=10**6), st.from_regex(r"[0-9]{1,6}", fullmatch=True))
folder_names = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["INBOX", "Entw&APw-rfe", "Entwürfe", "Entw&-APw-rfe", "&AOQ-&APY-", "&AOQA9g-", "Bad&name"]),
)
folders = st.dictionaries(
    folder_names,
    st.one_of(
        st.fixed_dictionaries({}, optional={key: counters for key in list(FOLDER_KEYS.values()) + ["delim"]}),
        json_values,
    ),
    max_size=6,
)
user_status = st.fixed_dictionaries({}, optional={key: counters for key in STATUS_KEYS.values()})
configs = st.one_of(shaped(["remote", "username", "server", "method"]), json_values)
# Repeated branches of st.one_of weight the generated documents towards the
# expected shape, so that most examples reach the folder and counter code.
local_names = st.sampled_from(["a@example.com", "b@example.com", "c@example.com"])
locals_ = st.one_of(local_names, local_names, local_names, st.just(""), json_values)
user_data = st.fixed_dictionaries(
    {"folders": st.one_of(folders, folders, folders, json_values)},
    optional={"status": st.one_of(user_status, user_status, json_values), "config": configs},
)
users = st.one_of(
    st.fixed_dictionaries(
        {"local": locals_, "data": st.one_of(user_data, user_data, user_data, json_values)},
        optional={"state": st.one_of(st.sampled_from([*STATES, "Complete", "paused"]), json_values)},
    ),
    st.fixed_dictionaries(
        {"local": locals_, "data": st.one_of(user_data, user_data, user_data, json_values)},
        optional={"state": st.one_of(st.sampled_from([*STATES, "Complete", "paused"]), json_values)},
    ),
    shaped(["local", "state", "data"]),
    json_values,
)
rates = st.one_of(st.sampled_from(["613.499 KiB/s", "0 B/s", "12 K/s"]), json_values)
structured_documents = st.fixed_dictionaries(
    {"success": st.just(True), "users": st.lists(users, min_size=1, max_size=5)},
    optional={"rate": rates},
)
documents = st.one_of(
    st.fixed_dictionaries({"success": st.just(True), "users": json_values}, optional={"rate": rates}),
    shaped(["success", "users", "rate"]),
)


def is_count(value: object) -> bool:
    return value is None or (type(value) is float and math.isfinite(value))


def assert_consistent(status: JobStatus) -> None:
    assert is_count(status.throughput_bytes_per_second)
    invalid_keys = {(invalid.field, invalid.user, invalid.folder) for invalid in status.invalid_values}
    for invalid in status.invalid_values:
        assert len(invalid.value) <= 80

    locals_seen = [user.user for user in status.users]
    assert len(locals_seen) == len(set(locals_seen))
    for user in status.users:
        assert user.user
        assert user.state in STATES or user.state == UNKNOWN_STATE
        for attribute, key in STATUS_KEYS.items():
            value = getattr(user, attribute)
            assert is_count(value)
            if value is None:
                assert (f"users.status.{key}", user.user, "") in invalid_keys
        assert is_count(user.retry1_messages)
        assert is_count(user.retry2_messages)

        names = [folder.name for folder in user.folders]
        assert len(names) == len(set(names))
        for folder in user.folders:
            for attribute, key in FOLDER_KEYS.items():
                value = getattr(folder, attribute)
                assert is_count(value)
                if value is None:
                    assert (f"users.folders.{key}", user.user, folder.name) in invalid_keys


@PROPERTY_SETTINGS
@given(document=json_values)
def test_parse_status_any_json_value(document):
    try:
        status = parse_status("0001", document)
    except ResponseError:
        return
    assert_consistent(status)


@PROPERTY_SETTINGS
@given(document=documents)
def test_parse_status_any_users_value(document):
    try:
        status = parse_status("0001", document)
    except ResponseError:
        return
    assert_consistent(status)


@PROPERTY_SETTINGS
@given(document=structured_documents)
def test_parse_status_any_user_entries(document):
    assert_consistent(parse_status("0001", document))


@PROPERTY_SETTINGS
@given(
    user_list=st.lists(
        st.fixed_dictionaries(
            {
                "local": st.sampled_from(["a@example.com", "b@example.com", "c@example.com"]),
                "state": st.sampled_from(STATES),
                "data": st.fixed_dictionaries({"folders": folders, "status": user_status}),
            }
        ),
        max_size=5,
    )
)
def test_parse_status_well_formed_users(user_list):
    status = parse_status("0001", {"success": True, "rate": "1 KiB/s", "users": user_list})
    assert_consistent(status)
    assert len(status.users) == len({user["local"] for user in user_list})
    assert status.throughput_bytes_per_second == 1024.0


@PROPERTY_SETTINGS
@given(value=st.one_of(st.text(max_size=30), json_values))
def test_parse_rate_raises_only_rate_error(value):
    try:
        result = parse_rate(value)
    except RateError:
        return
    assert type(result) is float
    assert math.isfinite(result)
    assert result >= 0.0


@PROPERTY_SETTINGS
@given(
    number=st.decimals(min_value=0, max_value=10**12, places=3, allow_nan=False, allow_infinity=False),
    unit=st.sampled_from(sorted(UNIT_FACTORS)),
    spaces=st.sampled_from(["", " ", "  ", "\t"]),
)
def test_parse_rate_grammar_values(number, unit, spaces):
    digits = f"{number.copy_abs():f}"
    with localcontext() as context:
        context.prec = 60
        expected = float(Decimal(digits) * UNIT_FACTORS[unit])
    assert parse_rate(f"{digits}{spaces}{unit}") == expected


@PROPERTY_SETTINGS
@given(name=st.text())
def test_decode_never_raises(name):
    assert isinstance(decode_mailbox_name(name), str)


@PROPERTY_SETTINGS
@given(name=st.text(alphabet=st.sampled_from("&-+,/AZaz09 ~\tä日\U0001f600"), max_size=16))
def test_decode_never_raises_near_syntax(name):
    decoded = decode_mailbox_name(name)
    assert isinstance(decoded, str)
    if "&" not in name:
        assert decoded == name


@PROPERTY_SETTINGS
@given(name=st.text())
def test_mutf7_round_trip(name):
    encoded = encode_mailbox_name(name)
    assert encoded.isascii()
    assert decode_mailbox_name(encoded) == name
