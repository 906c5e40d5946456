"""Decode IMAP mailbox names from modified UTF-7 (RFC 3501, section 5.1.3).

IMAP servers send non-ASCII folder names in modified UTF-7, and OMA passes those
names on unchanged (`Entw&APw-rfe` is `Entwürfe`). Python's `utf-7` codec does not
read this form: modified UTF-7 shifts with `&` instead of `+`, ends every shifted
run with `-`, and uses `,` instead of `/` in its BASE64 alphabet.
"""

from __future__ import annotations

import functools

__all__ = ["decode_mailbox_name"]

_BASE64_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,"
_SEXTETS = {char: index for index, char in enumerate(_BASE64_ALPHABET)}


# Most jobs reuse a few dozen folder names across thousands of users, so a fleet
# poll decodes each distinct name once instead of once per folder.
@functools.lru_cache(maxsize=65536)
def decode_mailbox_name(name: str) -> str:
    """Decode a modified UTF-7 mailbox name, or return `name` unchanged if it is invalid.

    A name is valid when printable US-ASCII (0x20 to 0x7e) other than `&` stands for
    itself, `&-` stands for `&`, and every other `&` starts a run of modified BASE64
    that ends with `-`. The run must decode to whole UTF-16BE code units with zero
    padding bits, paired surrogates and no printable US-ASCII, because that ASCII
    must stand for itself. Raw non-ASCII or control characters, an unterminated run
    and a character outside the modified BASE64 alphabet also make the name invalid.
    Never raises.
    """
    if "&" not in name and name.isascii() and name.isprintable():
        return name
    decoded = _decode_modified_utf7(name)
    return name if decoded is None else decoded


def _decode_modified_utf7(name: str) -> str | None:
    """Return the decoded name, or None if `name` is not valid modified UTF-7."""
    parts: list[str] = []
    position = 0
    while True:
        shift = name.find("&", position)
        literal = name[position:] if shift < 0 else name[position:shift]
        if not _is_printable_ascii(literal):
            return None
        parts.append(literal)
        if shift < 0:
            return "".join(parts)

        end = name.find("-", shift + 1)
        if end < 0:
            return None
        if end == shift + 1:
            parts.append("&")
        else:
            text = _decode_base64_run(name[shift + 1 : end])
            if text is None:
                return None
            parts.append(text)
        position = end + 1


def _decode_base64_run(run: str) -> str | None:
    """Decode the modified BASE64 between `&` and `-`, or return None if it is invalid."""
    data = bytearray()
    bits = 0
    bit_count = 0
    for char in run:
        sextet = _SEXTETS.get(char)
        if sextet is None:
            return None
        bits = (bits << 6) | sextet
        bit_count += 6
        if bit_count >= 8:
            bit_count -= 8
            data.append(bits >> bit_count)
            bits &= (1 << bit_count) - 1

    # BASE64 without "=" leaves 0, 2 or 4 padding bits, and they must be zero. Six
    # leftover bits mean a character that carries no whole byte.
    if bit_count >= 6 or bits != 0:
        return None
    if len(data) % 2 != 0:
        return None
    try:
        # The strict UTF-16 decoder rejects unpaired surrogates.
        text = data.decode("utf-16-be")
    except UnicodeDecodeError:
        return None
    if any(" " <= char <= "~" for char in text):
        return None
    return text


def _is_printable_ascii(text: str) -> bool:
    # For ASCII text, str.isprintable() is true exactly for 0x20 to 0x7e.
    return text.isascii() and text.isprintable()
