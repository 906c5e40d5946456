"""Tests for parse_rate: every accepted unit and every rejected form."""

from __future__ import annotations

import pytest

from exporter.rate import UNIT_FACTORS, RateError, parse_rate

ACCEPTED = [
    # The value from the OMA documentation's example response.
    ("613.499 KiB/s", 628222.976),
    # Bytes.
    ("1 B/s", 1.0),
    ("2 Bps", 2.0),
    # SI prefixes, powers of 1000.
    ("1 kB/s", 1_000.0),
    ("1 MB/s", 1_000_000.0),
    ("1 GB/s", 1e9),
    ("1 TB/s", 1e12),
    ("1 PB/s", 1e15),
    ("3 kBps", 3_000.0),
    ("3 MBps", 3_000_000.0),
    # IEC prefixes, powers of 1024.
    ("1 KiB/s", 1024.0),
    ("1 MiB/s", 1024.0**2),
    ("1 GiB/s", 1024.0**3),
    ("1 TiB/s", 1024.0**4),
    ("1 PiB/s", 1024.0**5),
    ("2 KiBps", 2048.0),
    # Bits, divided by 8.
    ("8 bit/s", 1.0),
    ("8 b/s", 1.0),
    ("8 bps", 1.0),
    ("8 kbit/s", 1_000.0),
    ("8 kb/s", 1_000.0),
    ("8 kbps", 1_000.0),
    ("8 Mbit/s", 1_000_000.0),
    ("8 Mb/s", 1_000_000.0),
    ("8 Mbps", 1_000_000.0),
    ("8 Gbit/s", 1e9),
    ("8 Gbps", 1e9),
    ("8 Tbit/s", 1e12),
    ("8 Pbit/s", 1e15),
    ("8 Kibit/s", 1024.0),
    ("8 Mibit/s", 1024.0**2),
    ("8 Gibps", 1024.0**3),
    ("1 bit/s", 0.125),
    # Number forms and whitespace.
    ("613.499KiB/s", 628222.976),
    ("613.499 \t KiB/s", 628222.976),
    ("  613.499 KiB/s\n", 628222.976),
    ("0.5 KiB/s", 512.0),
    (".5 KiB/s", 512.0),
    ("5. KiB/s", 5120.0),
    ("007 B/s", 7.0),
    ("1.1 kB/s", 1100.0),
    ("0.3 MB/s", 300_000.0),
    ("0 B/s", 0.0),
    ("0 KiB/s", 0.0),
    # Zero without a unit is the same in every unit.
    ("0", 0.0),
    ("0.0", 0.0),
    (" 0 ", 0.0),
    ("0.", 0.0),
    (".0", 0.0),
    (0, 0.0),
    (0.0, 0.0),
]


@pytest.mark.parametrize(("text", "expected"), ACCEPTED, ids=[repr(case[0]) for case in ACCEPTED])
def test_parse_rate_accepts(text, expected):
    result = parse_rate(text)
    assert result == expected
    assert type(result) is float


REJECTED = [
    # Empty, words and broken numbers.
    "",
    "   ",
    "fast",
    "N/A",
    "KiB/s",
    ". KiB/s",
    "1.2.3 KiB/s",
    "1,5 KiB/s",
    "1 000 KiB/s",
    "1_000 KiB/s",
    # Signs, exponents and non-finite spellings.
    "-1 KiB/s",
    "+1 KiB/s",
    "1e3 B/s",
    "1e400 B/s",
    "1E3 B/s",
    "NaN B/s",
    "nan B/s",
    "inf B/s",
    "Infinity B/s",
    # Non-ASCII digits and whitespace inside.
    "\u0663 KiB/s",
    "\uff11 KiB/s",
    "1\u00a0KiB/s",
    # Ambiguous units: "K" is no SI prefix, so KB means 1000 or 1024.
    "12 K/s",
    "12 KB/s",
    "12 Kbit/s",
    "12 Kbps",
    "12 k/s",
    # Wrong case.
    "1 kib/s",
    "1 KIB/s",
    "1 kiB/s",
    "1 mb/s",
    "1 mB/s",
    "1 b/S",
    "1 B/S",
    "1 GIB/s",
    # Units that are not per second or are not known.
    "1 KiB",
    "1 B",
    "1 KiB/sec",
    "1 KiB/min",
    "1 KiB / s",
    "1 bytes/s",
    "1 EiB/s",
    "1 XB/s",
    "1 KiB/s extra",
    "613.499 KiB/s 613.499 KiB/s",
    # Numbers without a unit, other than zero.
    "5",
    "613.499",
    "00.1",
    # Too large for a float once the unit is applied.
    "9" * 400 + " B/s",
    "1" + "0" * 305 + " PiB/s",
]


@pytest.mark.parametrize("text", REJECTED, ids=[repr(text)[:40] for text in REJECTED])
def test_parse_rate_rejects_text(text):
    with pytest.raises(RateError):
        parse_rate(text)


REJECTED_VALUES = [
    pytest.param(5, id="int without unit"),
    pytest.param(628222.976, id="float without unit"),
    pytest.param(-0.5, id="negative float"),
    pytest.param(float("nan"), id="NaN float"),
    pytest.param(float("inf"), id="infinity float"),
    pytest.param(True, id="true"),
    pytest.param(False, id="false"),
    pytest.param(None, id="null"),
    pytest.param(["613.499 KiB/s"], id="list"),
    pytest.param({"value": 613.499, "unit": "KiB/s"}, id="object"),
    pytest.param(b"613.499 KiB/s", id="bytes"),
]


@pytest.mark.parametrize("value", REJECTED_VALUES)
def test_parse_rate_rejects_non_text(value):
    with pytest.raises(RateError):
        parse_rate(value)


def test_rate_error_is_value_error():
    with pytest.raises(ValueError):
        parse_rate("fast")


def test_rate_error_names_value_and_unit():
    with pytest.raises(RateError) as caught:
        parse_rate("12 K/s")
    message = str(caught.value)
    assert "'K/s'" in message
    assert "'12 K/s'" in message


def test_rate_error_shortens_long_value():
    with pytest.raises(RateError) as caught:
        parse_rate("x" * 1000)
    assert len(str(caught.value)) < 300


def test_unit_table_factors():
    assert UNIT_FACTORS["B/s"] == 1
    assert UNIT_FACTORS["KiB/s"] == 1024
    assert UNIT_FACTORS["kB/s"] == 1000
    assert UNIT_FACTORS["Mbit/s"] == 125_000
    assert "KB/s" not in UNIT_FACTORS
    assert "K/s" not in UNIT_FACTORS


@pytest.mark.parametrize("unit", sorted(UNIT_FACTORS))
def test_every_listed_unit_parses(unit):
    assert parse_rate(f"2 {unit}") == float(2 * UNIT_FACTORS[unit])
