"""Label values that every Prometheus server can ingest, whatever the API sends.

User, folder and `config` values come from remote IMAP servers and migration
requests, so they can be arbitrarily long and can contain lone UTF-16 surrogates,
which JSON allows as `\\ud800` escapes but UTF-8 cannot encode.

Long values are shortened to at most MAX_LABEL_VALUE_BYTES bytes of UTF-8. Prometheus
counts a label value's length in bytes for `label_value_length_limit`, and in
Prometheus 2.42 a scrape with one longer value fails as a whole, so every series of
the target is lost. 128 bytes stays below limits of 200 or more with room to spare,
and it still keeps the whole of nearly every mailbox address and folder path.
"""

from __future__ import annotations

import hashlib
import re

MAX_LABEL_VALUE_BYTES = 128
"""Maximum length, in UTF-8 bytes, of a label value that `shorten_label_value` returns."""

HASH_SUFFIX_LENGTH = 9
"""Bytes of the suffix of a shortened value: `~` and 8 hex digits."""

_SURROGATE = re.compile("[\ud800-\udfff]")


def shorten_label_value(value: str, limit: int = MAX_LABEL_VALUE_BYTES) -> str:
    """Make `value` encodable as UTF-8 and at most `limit` bytes long.

    Lone surrogates become U+FFFD. A value of more than `limit` bytes becomes its
    longest prefix that fits in `limit - 9` bytes without splitting a character, then
    `~` and the first 8 hex digits of the SHA-256 of the whole value. Two long values
    with the same prefix therefore stay distinct unless their hashes collide, a
    chance of 1 in 2**32. A value that is short and valid is returned unchanged.
    Raises ValueError when `limit` leaves no room for a prefix.
    """
    if limit <= HASH_SUFFIX_LENGTH:
        raise ValueError(f"label value limit must be more than {HASH_SUFFIX_LENGTH} bytes, got {limit}")
    if value.isascii():
        if len(value) <= limit:
            return value
        encoded = value.encode("ascii")
        original = encoded
    else:
        try:
            encoded = value.encode("utf-8")
            original = encoded
        except UnicodeEncodeError:
            # Hash the raw code points so that two names that differ only in their
            # lone surrogates keep distinct suffixes when they are shortened.
            original = value.encode("utf-8", "surrogatepass")
            value = _SURROGATE.sub("\ufffd", value)
            encoded = value.encode("utf-8")
        if len(encoded) <= limit:
            return value
    digest = hashlib.sha256(original).hexdigest()[:8]
    # Dropping the bytes of a character cut in two keeps the prefix valid UTF-8.
    prefix = encoded[: limit - HASH_SUFFIX_LENGTH].decode("utf-8", "ignore")
    return f"{prefix}~{digest}"
