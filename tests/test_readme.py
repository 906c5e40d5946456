"""The README's settings and metric tables match the code."""

from __future__ import annotations

import re
from pathlib import Path

from exporter import metricdefs
from exporter.cli import build_parser
from exporter.settings import OPTIONS

README = (Path(__file__).parent.parent / "README.md").read_text()


def table_rows(heading: str) -> list[str]:
    section = README.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    return [line for line in section.splitlines() if line.startswith("| `") or line.startswith("| |")]


def test_every_setting_in_readme():
    rows = "\n".join(table_rows("Settings"))
    for field, option in OPTIONS.items():
        assert f"`{option.env}`" in rows, f"{field}: {option.env} missing from the README settings table"
        if option.flag:
            assert f"`{option.flag}`" in rows, f"{field}: {option.flag} missing from the README settings table"


def test_every_flag_documented():
    rows = "\n".join(table_rows("Settings"))
    flags = {flag for action in build_parser()._actions for flag in action.option_strings if flag.startswith("--")}
    flags -= {"--help"}
    undocumented = sorted(flag for flag in flags if f"`{flag}`" not in rows and not flag.startswith("--no-"))
    assert not undocumented


def test_every_metric_in_readme():
    rows = table_rows("Metrics")
    documented = {re.match(r"\| `([a-z_]+)`", row).group(1) for row in rows}
    served = metricdefs.exposed_names()
    assert served - documented == set(), "metrics missing from the README"
    assert documented - served == set(), "README lists metrics the exporter does not serve"
