"""Text helpers for PromQL expressions and promtool test series in the tests.

They read just enough PromQL to find metric names, range selectors and the functions
applied to them. They are no parser: expressions with subqueries or `@` modifiers
are outside what they handle, and the rules and dashboard use neither.
"""

from __future__ import annotations

import re

KEYWORDS = frozenset({
    "and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring",
    "group_left", "group_right", "inf", "nan",
})
COUNTER_FUNCTIONS = ("rate", "irate", "increase", "resets")

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_LABEL_LIST = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_MATCHERS = re.compile(r"\{[^}]*\}")
_RANGE = re.compile(r"\[([^\]]*)\]")
_IDENTIFIER = re.compile(r"(?<![\w:$.])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?")
_COUNTER_CALL = re.compile(
    r"\b(" + "|".join(COUNTER_FUNCTIONS) + r")\s*\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)"
)


def _strip(expr: str) -> str:
    """Remove strings, label lists, matchers and ranges, which contain no metric names."""
    text = _STRING.sub('""', expr)
    text = _LABEL_LIST.sub(" ", text)
    text = _MATCHERS.sub(" ", text)
    return _RANGE.sub(" ", text)


def metric_names(expr: str) -> set[str]:
    """Return the metric names that an expression selects."""
    names = set()
    for match in _IDENTIFIER.finditer(_strip(expr)):
        name, call = match.groups()
        if call or name.lower() in KEYWORDS:
            continue
        names.add(name)
    return names


def range_selectors(expr: str) -> list[str]:
    """Return the text inside every `[...]` range selector."""
    return _RANGE.findall(_STRING.sub('""', expr))


def counter_function_arguments(expr: str) -> list[tuple[str, str]]:
    """Return (function, metric name) for each rate(), irate(), increase() or resets() call."""
    return _COUNTER_CALL.findall(_STRING.sub('""', expr))


def label_values_metric(query: str) -> tuple[str, str]:
    """Split a Grafana `label_values(selector, label)` variable query into selector and label."""
    match = re.fullmatch(r"\s*label_values\(\s*(.+)\s*,\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\)\s*", query)
    if match is None:
        raise ValueError(f"not a label_values(selector, label) query: {query!r}")
    return match.group(1), match.group(2)


def expand_series_values(values: str) -> list[str]:
    """Expand promtool's series notation into one token per sample.

    `a+bxn` and `a-bxn` give n+1 samples, `axn` gives n+1 copies of a, `_xn` gives n
    missing samples (`_`), and `stale` is one staleness marker. Each number is
    returned as `str(float(value))`.
    """
    samples: list[str] = []
    for token in values.split():
        if token in ("_", "stale"):
            samples.append(token)
            continue
        missing = re.fullmatch(r"_x(\d+)", token)
        if missing:
            samples.extend(["_"] * int(missing.group(1)))
            continue
        series = re.fullmatch(r"(-?[\d.e+]+?)(?:([+-])([\d.e+]+))?x(\d+)", token)
        if series:
            start, sign, step, count = series.groups()
            delta = float(step or 0) * (-1 if sign == "-" else 1)
            samples.extend(str(float(start) + delta * i) for i in range(int(count) + 1))
            continue
        samples.append(str(float(token)))
    return samples


def parse_duration(text: str) -> float:
    """Return the seconds of a Prometheus duration such as `6h40m` or `15s`."""
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
    parts = re.findall(r"(\d+)(ms|s|m|h|d|w|y)", text)
    if not parts or "".join(number + unit for number, unit in parts) != text:
        raise ValueError(f"not a Prometheus duration: {text!r}")
    return sum(int(number) * units[unit] for number, unit in parts)


def github_anchor(heading: str) -> str:
    """Return the anchor GitHub gives a Markdown heading: lower case, punctuation dropped, spaces as `-`."""
    text = heading.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")
