"""Tests for decode_mailbox_name: RFC 3501 examples, round trips and invalid forms."""

from __future__ import annotations

import base64

import pytest

from exporter.mutf7 import decode_mailbox_name


def encode_mailbox_name(name: str) -> str:
    """Encode `name` in modified UTF-7 as RFC 3501, section 5.1.3 defines it.

    Printable US-ASCII stands for itself, `&` becomes `&-`, and every run of other
    characters becomes `&`, its UTF-16BE bytes in BASE64 with `,` for `/` and no
    `=` padding, and `-`.
    """
    parts: list[str] = []
    pending: list[str] = []

    def flush_pending() -> None:
        if not pending:
            return
        data = "".join(pending).encode("utf-16-be")
        encoded = base64.b64encode(data).decode("ascii").rstrip("=").replace("/", ",")
        parts.append(f"&{encoded}-")
        pending.clear()

    for char in name:
        if " " <= char <= "~":
            flush_pending()
            parts.append("&-" if char == "&" else char)
        else:
            pending.append(char)
    flush_pending()
    return "".join(parts)


VALID = [
    # Examples from RFC 3501 and the OMA documentation.
    ("~peter/mail/&U,BTFw-/&ZeVnLIqe-", "~peter/mail/\u53f0\u5317/\u65e5\u672c\u8a9e"),
    ("Entw&APw-rfe", "Entwürfe"),
    ("&ZeVnLIqe-", "日本語"),
    ("A&-B", "A&B"),
    # Ampersands.
    ("&-", "&"),
    ("&-&-", "&&"),
    ("R&-D &- Sales", "R&D & Sales"),
    # Russian folder names, which IMAP servers send in this form.
    ("&BB4EQgQ,BEAEMAQyBDsENQQ9BD0ESwQ1-", "Отправленные"),
    ("[Gmail]/&BB4EQgQ,BEAEMAQyBDsENQQ9BD0ESwQ1-", "[Gmail]/Отправленные"),
    ("&BBoEPgRABDcEOAQ9BDA-", "Корзина"),
    ("Ma&AO4-tre", "Maître"),
    # A character outside the BMP is a surrogate pair in UTF-16.
    ("&2D3eAA-", "\U0001f600"),
    # Control characters must be shifted, and then they are valid.
    ("&AAk-", "\t"),
    # Two adjacent shifted runs are not the shortest form but still decode.
    ("&AOQ-&APY-", "äö"),
    # Plain printable ASCII, including characters that other encodings treat
    # specially, stands for itself.
    ("INBOX", "INBOX"),
    ("Sent Items", "Sent Items"),
    ("", ""),
    ("INBOX/Sent.Old \"quoted\" back\\slash", "INBOX/Sent.Old \"quoted\" back\\slash"),
    # "+" starts a shift in plain UTF-7 but not in modified UTF-7.
    ("+AOQ-", "+AOQ-"),
    ("a-b", "a-b"),
]


@pytest.mark.parametrize(("encoded", "decoded"), VALID, ids=[case[0] or "empty" for case in VALID])
def test_decode_valid_name(encoded, decoded):
    assert decode_mailbox_name(encoded) == decoded


INVALID = [
    pytest.param("Bad&name", id="ampersand without dash"),
    pytest.param("&AOQ", id="unterminated run"),
    pytest.param("INBOX&", id="trailing ampersand"),
    pytest.param("&U,BTFw", id="unterminated run at end"),
    pytest.param("&AGE-", id="run encodes printable a"),
    pytest.param("&ACY-", id="run encodes ampersand"),
    pytest.param("&ACA-", id="run encodes space"),
    pytest.param("&AH4-", id="run encodes tilde"),
    pytest.param("&AOQAYQ-", id="run mixes printable ASCII"),
    pytest.param("&AOQ=-", id="padding character"),
    pytest.param("&AOR-", id="non-zero padding bits"),
    pytest.param("&AOQA-", id="odd byte count"),
    pytest.param("&A-", id="lone sextet"),
    pytest.param("&AOQAAAA-", id="odd byte count long"),
    pytest.param("&2D0-", id="lone high surrogate"),
    pytest.param("&3gA-", id="lone low surrogate"),
    pytest.param("&2D3YPQ-", id="two high surrogates"),
    pytest.param("&3gDYPQ-", id="low before high surrogate"),
    pytest.param("&2D0-&3gA-", id="surrogate pair split across runs"),
    pytest.param("&AOQ/-", id="slash from standard BASE64"),
    pytest.param("&AO Q-", id="space inside run"),
    pytest.param("&&-", id="ampersand inside run"),
    pytest.param("Entwürfe", id="raw non-ASCII"),
    pytest.param("日本語", id="raw CJK"),
    pytest.param("a\tb", id="raw tab"),
    pytest.param("a\x7fb", id="raw delete"),
    pytest.param("line\nbreak", id="raw newline"),
    pytest.param("Entw&APw-rfe\u00e9", id="valid run then raw non-ASCII"),
    pytest.param("Entw&APw-rfe\t", id="valid run then raw tab"),
    pytest.param("\x01&APw-", id="raw control then valid run"),
    pytest.param("\ud800", id="raw lone surrogate"),
]


@pytest.mark.parametrize("name", INVALID)
def test_invalid_name_kept_raw(name):
    assert decode_mailbox_name(name) == name


ROUND_TRIP = [
    "Entwürfe",
    "日本語",
    "A&B",
    "&",
    "Отправленные",
    "Projekte/Äpfel & Birnen",
    "\U0001f600 mixed \U0001f4e7 emoji",
    "tab\there",
    "ümlaut at start",
    "at end ü",
    "éé&éé",
    "\u00ff\u0100\uffff",
]


@pytest.mark.parametrize("name", ROUND_TRIP)
def test_round_trip(name):
    encoded = encode_mailbox_name(name)
    assert encoded.isascii()
    assert decode_mailbox_name(encoded) == name


def test_encoder_matches_rfc_example():
    # Pins the test encoder itself, so the round trips test the decoder against
    # the encoding that RFC 3501 shows.
    assert encode_mailbox_name("~peter/mail/台北/日本語") == "~peter/mail/&U,BTFw-/&ZeVnLIqe-"
    assert encode_mailbox_name("Entwürfe") == "Entw&APw-rfe"
    assert encode_mailbox_name("A&B") == "A&-B"


def test_plain_name_returned_unchanged():
    name = "INBOX.Archive 2024"
    assert decode_mailbox_name(name) is name
