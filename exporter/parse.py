"""Parse a decoded migration_status response into an immutable JobStatus.

Only a response that is unusable as a whole raises ResponseError: one that is not
a JSON object, or whose `users` is missing or not a list. Every other problem
stays with the field it is in, so one bad value never drops the rest. A value
that is present but unreadable is recorded in `JobStatus.invalid_values`, with a
dotted field path such as `users.status.fail_count`. The path leaves out list
indexes and the `data` level of each user entry.

Rules for values:

- Numbers arrive as JSON numbers or as numeric strings, even for one key within
  one response. A string is read as an ASCII float literal: surrounding ASCII
  whitespace is ignored, and a sign, decimal point and exponent are allowed
  (`" 7 "`, `"-3"`, `"1e3"`). Digit separators (`"1_000"`) and non-ASCII
  characters are invalid. Booleans, null, lists, objects, NaN, infinities and
  numbers beyond float range are invalid too. Such a counter is None, which means
  no sample. Negative numbers pass unchanged, because they are finite numbers.
- A counter that a folder or `status` object leaves out is 0.0: the API omits
  counters that have not started.
- A field that is left out is never recorded as invalid, with one exception. A
  user entry without `local` cannot be exported, so it is skipped and recorded. A
  missing `rate` gives no throughput sample. Missing `data`, `config`, `status` or
  `folders` read as empty objects, and a missing `state` reads as `unknown`.
- `data`, `config`, `status` and `folders` that are present but not objects are
  recorded and read as missing. So is a folder entry that is not an object, and
  that folder is skipped.
- A user entry that is not an object, or whose `local` is not a non-empty string,
  is skipped and recorded. When two entries have the same `local`, the first one
  is kept and the others are skipped and recorded as `users.local`, so no two user
  series get the same labels.
- `state` must be one of the documented states. It is compared after removing
  surrounding whitespace and lowering ASCII case, so `"Complete"` is `complete`.
  Any other state, or a state that is not a string, becomes `unknown` and is
  recorded so that the raw value reaches the log.
- `remote_user` is `config.remote`, or `config.username` when `remote` is missing
  or empty. `server`, `method`, the remote login and `delim` must be strings; any
  other type reads as "" and is recorded.
- The user's `delimiter` is the most common non-empty `delim` of its folders. On a
  tie, the delimiter that appears first wins.
- The user's `retry1_messages` and `retry2_messages` sum its folders' `retry1count`
  and `retry2count`. A sum with an unreadable part is None rather than a value
  that is too low, and the unreadable folder value is recorded once, at the folder.
- Folder names are decoded from IMAP modified UTF-7. Two raw names can decode to
  one label, and then one folder keeps its raw name so that no two series
  collide. A name that decoding does not change keeps it. Otherwise the folder
  earlier in the response's key order gets the decoded name. When the raw name
  is taken as well, which needs three crafted names, the folder is skipped and
  recorded as `users.folders.name`.
- Values that become labels pass through `shorten_label_value`: `local`, folder
  names after decoding, the remote login, `server`, `method` and `delim`. Lone
  UTF-16 surrogates become U+FFFD, and a value longer than 128 bytes of UTF-8 is cut
  to a prefix plus `~` and 8 hex digits of its SHA-256. The duplicate checks of
  users and folders compare these shortened values, so two entries that shorten to
  one value never share a series: the later one is skipped and recorded.
- The `success` field is not checked: callers pass only responses whose `success`
  is true. Unknown keys are ignored.

Recorded values show the `repr` of the raw value, cut to 80 characters. Objects
and lists are summarised by their keys or length instead, so a record never
copies their contents, which could contain a secret such as a password.
"""

from __future__ import annotations

from itertools import islice
from math import isfinite

from exporter.errors import ResponseError
from exporter.labels import shorten_label_value
from exporter.mutf7 import decode_mailbox_name
from exporter.rate import RateError, parse_rate
from exporter.snapshot import (
    STATES,
    UNKNOWN_STATE,
    Count,
    FolderStatus,
    InvalidValue,
    JobStatus,
    UserStatus,
)

__all__ = ["parse_status"]

_MISSING = object()
_STATE_SET = frozenset(STATES)
_VALUE_LENGTH = 80

# Record attribute of each counter key in the API.
_STATUS_COUNTERS = {
    "migrate_count": "migrated_messages",
    "skip_count": "skipped_messages",
    "fail_count": "failed_messages",
    "remote_count": "remote_messages",
    "bytes": "migrated_bytes",
    "critical_errors": "critical_errors",
    "foldercount": "folder_count",
}
_FOLDER_COUNTERS = {
    "migrate_count": "migrated_messages",
    "skip_count": "skipped_messages",
    "fail_count": "failed_messages",
    "remote_count": "remote_messages",
    "retry1count": "retry1_messages",
    "retry2count": "retry2_messages",
    "bytes": "migrated_bytes",
    "next_uid": "next_uid",
}


def parse_status(job_id: str, document: object) -> JobStatus:
    """Build the JobStatus of one successful migration_status response.

    `document` is the JSON-decoded response body. Raises ResponseError when it is
    not an object or its `users` is missing or not a list. The module docstring
    lists how every other field is read.
    """
    if not isinstance(document, dict):
        raise ResponseError(
            f"migration_status response for job {job_id!r} is a JSON {_json_type(document)}, "
            "expected an object with a users list"
        )
    users_value = document.get("users", _MISSING)
    if users_value is _MISSING:
        raise ResponseError(
            f"migration_status response for job {job_id!r} has no 'users' field; "
            f"its keys are {_describe_keys(document)}"
        )
    if not isinstance(users_value, list):
        raise ResponseError(
            f"migration_status response for job {job_id!r} has 'users' of type "
            f"{_json_type(users_value)}, expected a list"
        )

    invalid: list[InvalidValue] = []
    throughput = _parse_throughput(document, invalid)

    users: list[UserStatus] = []
    seen_locals: set[str] = set()
    for entry in users_value:
        user = _parse_user(entry, seen_locals, invalid)
        if user is not None:
            users.append(user)

    return JobStatus(
        job_id=job_id,
        throughput_bytes_per_second=throughput,
        users=tuple(users),
        invalid_values=tuple(invalid),
    )


def _parse_throughput(document: dict, invalid: list[InvalidValue]) -> Count:
    value = document.get("rate", _MISSING)
    if value is _MISSING:
        return None
    try:
        return parse_rate(value)
    except RateError:
        invalid.append(InvalidValue("rate", _describe(value)))
        return None


def _parse_user(
    entry: object, seen_locals: set[str], invalid: list[InvalidValue]
) -> UserStatus | None:
    """Build one UserStatus, or return None when the entry must be skipped."""
    if not isinstance(entry, dict):
        invalid.append(InvalidValue("users", _describe(entry)))
        return None
    local = entry.get("local", _MISSING)
    if local is _MISSING:
        invalid.append(InvalidValue("users.local", "<missing>"))
        return None
    if type(local) is not str or not local:
        invalid.append(InvalidValue("users.local", _describe(local)))
        return None
    local = shorten_label_value(local)
    if local in seen_locals:
        invalid.append(InvalidValue("users.local", _describe(local), user=local))
        return None
    seen_locals.add(local)

    state = _parse_state(entry, local, invalid)
    data = _read_object(entry, "data", "users.data", local, invalid)
    config = _read_object(data, "config", "users.config", local, invalid)
    status = _read_object(data, "status", "users.status", local, invalid)
    folders_value = _read_object(data, "folders", "users.folders", local, invalid)

    remote_user = _read_text(config, "remote", "users.config.remote", local, invalid)
    if not remote_user:
        remote_user = _read_text(config, "username", "users.config.username", local, invalid)
    server = _read_text(config, "server", "users.config.server", local, invalid)
    method = _read_text(config, "method", "users.config.method", local, invalid)
    remote_user = shorten_label_value(remote_user)
    server = shorten_label_value(server)
    method = shorten_label_value(method)

    totals = _read_counters(status, _STATUS_COUNTERS, "users.status.", local, "", invalid)
    folders = _parse_folders(folders_value, local, invalid)

    return UserStatus(
        user=local,
        state=state,
        remote_user=remote_user,
        server=server,
        method=method,
        delimiter=_most_common_delimiter(folders),
        retry1_messages=_sum_retries(folders, "retry1_messages", "retry1count", local, invalid),
        retry2_messages=_sum_retries(folders, "retry2_messages", "retry2count", local, invalid),
        folders=tuple(folders),
        **totals,
    )


def _parse_state(entry: dict, local: str, invalid: list[InvalidValue]) -> str:
    value = entry.get("state", _MISSING)
    if value is _MISSING:
        return UNKNOWN_STATE
    if type(value) is str:
        if value in _STATE_SET:
            return value
        if value.isascii():
            normalized = value.strip().lower()
            if normalized in _STATE_SET:
                return normalized
    invalid.append(InvalidValue("users.state", _describe(value), user=local))
    return UNKNOWN_STATE


def _parse_folders(
    folders_value: dict, local: str, invalid: list[InvalidValue]
) -> list[FolderStatus]:
    folders: list[FolderStatus] = []
    used_names: set[str] = set()
    for raw_name, entry in folders_value.items():
        if type(raw_name) is not str:
            invalid.append(InvalidValue("users.folders.name", _describe(raw_name), user=local))
            continue
        if not isinstance(entry, dict):
            invalid.append(
                InvalidValue("users.folders", _describe(entry), user=local, folder=raw_name)
            )
            continue

        name = _folder_label(raw_name, folders_value, used_names)
        if name is None:
            invalid.append(
                InvalidValue("users.folders.name", _describe(raw_name), user=local, folder=raw_name)
            )
            continue
        used_names.add(name)

        delimiter = entry.get("delim", "")
        if type(delimiter) is not str:
            invalid.append(
                InvalidValue("users.folders.delim", _describe(delimiter), user=local, folder=name)
            )
            delimiter = ""
        delimiter = shorten_label_value(delimiter)
        counters = _read_counters(entry, _FOLDER_COUNTERS, "users.folders.", local, name, invalid)
        folders.append(FolderStatus(name=name, delimiter=delimiter, **counters))
    return folders


def _folder_label(raw_name: str, folders_value: dict, used_names: set[str]) -> str | None:
    """Choose the `folder` label of a folder, or return None when every choice is taken.

    Two raw names can decode to one name: "Entw&APw-rfe" decodes to "Entwürfe",
    and a raw "Entwürfe" is invalid modified UTF-7 that stays as it is. A name
    that does not change when decoded has no other label, so it always keeps it.
    A decoded name that collides with it, or with an earlier folder's label,
    falls back to its raw name instead. Labels are compared after
    `shorten_label_value`, because that is the value a series gets.
    """
    decoded = decode_mailbox_name(raw_name)
    name = shorten_label_value(decoded)
    if decoded != raw_name:
        if name in used_names or (
            decoded in folders_value and decode_mailbox_name(decoded) == decoded
        ):
            name = shorten_label_value(raw_name)
    if name in used_names:
        return None
    return name


def _read_counters(
    source: dict,
    attributes: dict[str, str],
    field_prefix: str,
    local: str,
    folder: str,
    invalid: list[InvalidValue],
) -> dict[str, Count]:
    """Map the counters present in `source` to record attributes, None when unreadable.

    Counters that `source` leaves out are not in the result, so the record keeps
    its default of 0.0. Looping over the keys present rather than over every
    counter is faster, because folder objects often leave most counters out.
    """
    values: dict[str, Count] = {}
    for key, value in source.items():
        attribute = attributes.get(key)
        if attribute is None:
            continue
        # Exact type checks come first because they are the common case, and
        # because they keep out booleans, which Python counts as int.
        kind = type(value)
        if kind is int:
            try:
                number = float(value)
            except OverflowError:
                number = None
        elif kind is str:
            # Up to 308 ASCII digits are always below the largest float, 1.8e308.
            if value.isdigit() and value.isascii() and len(value) <= 308:
                number = float(value)
            else:
                number = _str_to_number(value)
        elif kind is float:
            number = value if isfinite(value) else None
        else:
            number = None
        if number is None:
            invalid.append(InvalidValue(field_prefix + key, _describe(value), local, folder))
        values[attribute] = number
    return values


def _str_to_number(text: str) -> float | None:
    """Read a numeric string as a float, or return None if it is not a finite number."""
    # float() alone would also accept "1_000", non-ASCII digits and non-ASCII
    # whitespace.
    if not text.isascii() or "_" in text:
        return None
    try:
        number = float(text)
    except ValueError:
        return None
    # float() reads "nan" and "inf", and turns too many digits into inf.
    return number if isfinite(number) else None


def _read_object(
    source: dict, key: str, field: str, local: str, invalid: list[InvalidValue]
) -> dict:
    value = source.get(key, _MISSING)
    if value is _MISSING:
        return {}
    if isinstance(value, dict):
        return value
    invalid.append(InvalidValue(field, _describe(value), user=local))
    return {}


def _read_text(
    source: dict, key: str, field: str, local: str, invalid: list[InvalidValue]
) -> str:
    value = source.get(key, _MISSING)
    if type(value) is str:
        return value
    if value is not _MISSING:
        invalid.append(InvalidValue(field, _describe(value), user=local))
    return ""


def _most_common_delimiter(folders: list[FolderStatus]) -> str:
    counts: dict[str, int] = {}
    for folder in folders:
        if folder.delimiter:
            counts[folder.delimiter] = counts.get(folder.delimiter, 0) + 1
    if not counts:
        return ""
    # max() returns the first of equal counts, and dicts keep insertion order.
    return max(counts, key=counts.__getitem__)


def _sum_retries(
    folders: list[FolderStatus],
    attribute: str,
    key: str,
    local: str,
    invalid: list[InvalidValue],
) -> Count:
    total = 0.0
    for folder in folders:
        value = getattr(folder, attribute)
        if value is None:
            return None
        total += value
    if not isfinite(total):
        invalid.append(InvalidValue(f"users.folders.{key}", "sum beyond float range", user=local))
        return None
    return total


def _describe(value: object) -> str:
    """Return the `repr` of a raw value for InvalidValue, at most 80 characters long.

    Objects and lists are described by their keys or length, because their
    contents could hold a secret and are too long to be useful in a log line.
    """
    if isinstance(value, dict):
        text = f"object with keys {_describe_keys(value)}"
    elif isinstance(value, list):
        text = f"list of {len(value)} items"
    elif type(value) is int and value.bit_length() > 256:
        # repr() of a very large int is slow, fails past 4300 digits in Python 3.11,
        # and would be cut to 80 characters anyway.
        text = f"integer of {value.bit_length()} bits"
    elif isinstance(value, str):
        text = repr(value[:_VALUE_LENGTH])
    else:
        text = repr(value)
    return text[:_VALUE_LENGTH]


def _describe_keys(value: dict) -> str:
    keys = [key if isinstance(key, str) else repr(key) for key in islice(value, 8)]
    return repr(keys)[:_VALUE_LENGTH]


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__
