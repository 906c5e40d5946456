"""Parse the `rate` field of migration_status into bytes per second.

OMA sends the job's aggregate throughput as human-readable text such as
`"613.499 KiB/s"`. The accepted grammar, after leading and trailing whitespace is
removed, is::

    rate   = number [spaces] unit
           | zero                    ; a unitless zero, string or JSON number
    number = digits ["." [digits]] | "." digits    ; ASCII digits only
    spaces = one or more spaces or tabs
    unit   = [prefix] base
    prefix = "k" | "M" | "G" | "T" | "P"           ; SI, powers of 1000
           | "Ki" | "Mi" | "Gi" | "Ti" | "Pi"      ; IEC, powers of 1024
    base   = "B/s" | "Bps"                         ; bytes per second
           | "bit/s" | "b/s" | "bps"               ; bits per second, divided by 8

Units are case-sensitive because case carries meaning: `B` is a byte and `b` a
bit, `k` is the SI kilo and `m` would be milli. `K` alone is rejected: it is no
SI prefix, and `KB/s` means 1000 or 1024 bytes depending on the tool that wrote
it. Signs, exponents, thousands separators, `NaN` and `Infinity` are rejected, and
so is a result that does not fit in a float.

A number without a unit is rejected, as a string and as a JSON number, because the
unit cannot be known. The exception is zero (`"0"`, `"0.0"`, `0`), which means the
same in every unit. Every rejected value raises RateError, so the caller records no
sample instead of a guessed one.
"""

from __future__ import annotations

import math
import re
from decimal import MAX_EMAX, MIN_EMIN, Context, Decimal

__all__ = ["RateError", "parse_rate"]


class RateError(ValueError):
    """A `rate` value that is not a number with a known throughput unit."""


_SI_PREFIXES = {"": 1, "k": 1000, "M": 1000**2, "G": 1000**3, "T": 1000**4, "P": 1000**5}
_IEC_PREFIXES = {"Ki": 1024, "Mi": 1024**2, "Gi": 1024**3, "Ti": 1024**4, "Pi": 1024**5}
_BYTE_BASES = ("B/s", "Bps")
_BIT_BASES = ("bit/s", "b/s", "bps")


def _build_unit_factors() -> dict[str, Decimal]:
    factors: dict[str, Decimal] = {}
    for prefix, multiplier in {**_SI_PREFIXES, **_IEC_PREFIXES}.items():
        for base in _BYTE_BASES:
            factors[prefix + base] = Decimal(multiplier)
        for base in _BIT_BASES:
            factors[prefix + base] = Decimal(multiplier) / 8
    return factors


UNIT_FACTORS = _build_unit_factors()
"""Bytes per second that one of each accepted unit is worth."""

_RATE_PATTERN = re.compile(r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+)[ \t]*([A-Za-z/]+)")
_ZERO_PATTERN = re.compile(r"0*(?:\.0*)?")

# 40 significant digits keep the product of a unit factor and any number with up
# to 17 significant digits exact, so the only rounding is the final conversion to
# float. Without traps, an oversized product becomes Infinity instead of raising.
_DECIMAL_CONTEXT = Context(prec=40, Emax=MAX_EMAX, Emin=MIN_EMIN, traps=[])


def parse_rate(value: object) -> float:
    """Convert a `rate` value to bytes per second.

    Raises RateError when the value does not match the grammar in the module
    docstring, uses an unknown or ambiguous unit, or is too large for a float.
    """
    if type(value) is int or type(value) is float:
        if value == 0:
            return 0.0
        raise RateError(f"rate {value!r} has no unit; expected text such as '613.499 KiB/s'")
    if not isinstance(value, str):
        raise RateError(
            f"rate has type {type(value).__name__}; expected text such as '613.499 KiB/s'"
        )

    text = value.strip()
    if text not in ("", ".") and _ZERO_PATTERN.fullmatch(text):
        return 0.0

    match = _RATE_PATTERN.fullmatch(text)
    if match is None:
        raise RateError(
            f"invalid rate {_shorten(value)}: expected an unsigned decimal number "
            "and a unit such as 'KiB/s', 'MB/s' or 'Mbit/s'"
        )

    number, unit = match.groups()
    factor = UNIT_FACTORS.get(unit)
    if factor is None:
        raise RateError(
            f"unknown rate unit {unit!r} in {_shorten(value)}: expected one of "
            "B/s, kB/s, MB/s, KiB/s, MiB/s, bit/s, kbit/s, Mbit/s and the like"
        )

    result = float(_DECIMAL_CONTEXT.multiply(Decimal(number), factor))
    if not math.isfinite(result):
        raise RateError(f"rate {_shorten(value)} is too large for a float")
    return result


def _shorten(value: str) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
