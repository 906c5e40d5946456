"""Structure checks of the Grafana dashboard and its provisioning files, and of the metric names it and rules.yml use."""

from __future__ import annotations

import json
import re

import pytest
import yaml

from exporter import metricdefs
from exporter.metricdefs import exposed_names
from tests import promql
from tests.promtools import (
    DASHBOARD_FILE,
    REPO_ROOT,
    RULES_FILE,
    dashboard_panels,
    load_dashboard,
    load_rules,
    variable_query,
)

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
PROVISIONING = REPO_ROOT / "grafana" / "provisioning"
DASHBOARD_MOUNT = "/var/lib/grafana/dashboards/opensrs"

DASHBOARD = load_dashboard()
PANELS = dashboard_panels(DASHBOARD)
DATA_PANELS = [panel for panel in PANELS if panel["type"] != "row"]
VARIABLES = {variable["name"]: variable for variable in DASHBOARD["templating"]["list"]}
RULES = load_rules()
RECORDED_NAMES = {rule["record"] for rule in RULES if "record" in rule}
COUNTER_SAMPLES = {name for name in exposed_names() if name.endswith("_total")}


def _panel_id(panel: dict) -> str:
    return f"{panel['id']}-{panel['title']}"


def _dashboard_expressions() -> list[tuple[str, str]]:
    """Return (where, PromQL) for every panel target and query variable."""
    expressions = [
        (f"panel {panel['title']!r} target {target['refId']}", target["expr"])
        for panel in DATA_PANELS for target in panel["targets"]
    ]
    for name, variable in VARIABLES.items():
        if variable["type"] == "query":
            selector, _ = promql.label_values_metric(variable_query(variable))
            expressions.append((f"variable {name}", selector))
    return expressions


def _rule_expressions() -> list[tuple[str, str]]:
    return [(f"rule {rule.get('alert') or rule.get('record')}", rule["expr"]) for rule in RULES]


def test_dashboard_identity():
    assert DASHBOARD["uid"] == "opensrs-migrations"
    assert DASHBOARD["title"]
    assert "opensrs" in DASHBOARD["tags"]
    assert 36 <= DASHBOARD["schemaVersion"] <= 41


def test_dashboard_has_no_import_placeholders():
    text = DASHBOARD_FILE.read_text()
    assert "__inputs" not in DASHBOARD
    assert "__requires" not in DASHBOARD
    assert "${DS_" not in text
    assert "DS_PROMETHEUS" not in text


def test_dashboard_names_no_datasource_uid():
    """Every datasource reference in the file is the variable (or Grafana's built-in annotations)."""
    text = DASHBOARD_FILE.read_text()
    uids = set(re.findall(r'"uid":\s*"([^"]*)"', text)) - {DASHBOARD["uid"]}
    assert uids <= {"${datasource}", "-- Grafana --"}, uids
    for datasource_file in (PROVISIONING / "datasources").glob("*.y*ml"):
        for datasource in yaml.safe_load(datasource_file.read_text())["datasources"]:
            assert datasource["uid"] not in text, f"the dashboard names provisioned uid {datasource['uid']}"


def test_datasource_variable():
    variable = VARIABLES.get("datasource")
    assert variable is not None, "no variable named datasource"
    assert variable["type"] == "datasource"
    assert variable["query"] == "prometheus"
    assert not variable.get("current", {}).get("value"), "a saved data source value would not exist on import"


@pytest.mark.parametrize(
    "name, metric, multi",
    [
        ("job", "opensrs_migration_build_info", False),
        ("instance", "opensrs_migration_build_info", True),
        ("job_id", "opensrs_migration_job_up", True),
        ("user", "opensrs_migration_user_state", True),
    ],
)
def test_query_variable(name, metric, multi):
    variable = VARIABLES.get(name)
    assert variable is not None, f"no variable named {name}"
    assert variable["type"] == "query"
    assert variable["datasource"] == DATASOURCE
    selector, label = promql.label_values_metric(variable_query(variable))
    assert label == name
    assert promql.metric_names(selector) == {metric}
    assert variable["multi"] is multi
    assert variable["includeAll"] is multi


def test_user_variable_follows_job_id():
    selector, _ = promql.label_values_metric(variable_query(VARIABLES["user"]))
    assert 'job_id=~"$job_id"' in selector


@pytest.mark.parametrize("panel", PANELS, ids=_panel_id)
def test_panel_has_title(panel):
    assert panel.get("title", "").strip()


@pytest.mark.parametrize("panel", DATA_PANELS, ids=_panel_id)
def test_panel_has_description_and_unit(panel):
    assert panel.get("description", "").strip(), "no description"
    assert panel.get("fieldConfig", {}).get("defaults", {}).get("unit"), "no fieldConfig.defaults.unit"


@pytest.mark.parametrize("panel", DATA_PANELS, ids=_panel_id)
def test_panel_uses_datasource_variable(panel):
    assert panel["datasource"] == DATASOURCE
    assert panel["targets"], "no targets"
    for target in panel["targets"]:
        assert target["datasource"] == DATASOURCE, target["refId"]


@pytest.mark.parametrize("panel", DATA_PANELS, ids=_panel_id)
def test_panel_filters_by_target_variables(panel):
    for target in panel["targets"]:
        for selector in re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*\{[^}]*\}", target["expr"]):
            assert 'job=~"$job"' in selector, f"{target['refId']}: {selector} ignores $job"
            assert 'instance=~"$instance"' in selector, f"{target['refId']}: {selector} ignores $instance"


def test_rows_hold_no_queries():
    for panel in PANELS:
        if panel["type"] == "row":
            assert not panel.get("targets"), panel["title"]


def test_panel_ids_unique():
    ids = [panel["id"] for panel in PANELS]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize(
    "row",
    ["Fleet overview", "Per job", "Users", "Folders", "Exporter health"],
)
def test_dashboard_has_row(row):
    assert row in [panel["title"] for panel in PANELS if panel["type"] == "row"]


@pytest.mark.parametrize("where, expr", _dashboard_expressions(), ids=lambda value: str(value)[:60])
def test_dashboard_ranges_use_rate_interval(where, expr):
    for selector_range in promql.range_selectors(expr):
        assert selector_range == "$__rate_interval", f"{where} uses range [{selector_range}]"


@pytest.mark.parametrize(
    "where, expr", _dashboard_expressions() + _rule_expressions(), ids=lambda value: str(value)[:60]
)
def test_counter_functions_only_on_counters(where, expr):
    for function, name in promql.counter_function_arguments(expr):
        assert name in COUNTER_SAMPLES, f"{where} applies {function}() to {name}, which is not a counter"


@pytest.mark.parametrize(
    "where, expr", _dashboard_expressions() + _rule_expressions(), ids=lambda value: str(value)[:60]
)
def test_metric_names_exist(where, expr):
    known = exposed_names() | RECORDED_NAMES | {"up"}
    unknown = promql.metric_names(expr) - known
    assert unknown == set(), f"{where} uses {unknown}, which neither the exporter nor rules.yml defines"


def test_folders_table_shows_every_folder_counter():
    folders = next(panel for panel in DATA_PANELS if panel["title"] == "Folders of the selected users")
    used = set()
    for target in folders["targets"]:
        used |= promql.metric_names(target["expr"])
    assert {definition.name for definition in metricdefs.FOLDER_LEVEL} - used == set()


def test_progress_ratio_rule_is_used():
    exprs = " ".join(expr for _, expr in _dashboard_expressions())
    assert "job_id:opensrs_migration_job_progress:ratio" in exprs


def test_users_table_joins_user_info():
    users = next(panel for panel in DATA_PANELS if panel["title"] == "Users")
    joined = [target["expr"] for target in users["targets"] if "opensrs_migration_user_info" in target["expr"]]
    assert joined, "the Users table does not read opensrs_migration_user_info"
    assert re.search(r"\*\s*on\s*\([^)]*\bjob_id\b[^)]*\buser\b[^)]*\)\s*group_left\s*\(\s*server,\s*method\s*\)",
                     joined[0]), joined[0]
    assert users["options"]["sortBy"][0]["desc"] is True


def test_table_targets_are_instant_tables():
    for panel in DATA_PANELS:
        if panel["type"] != "table":
            continue
        for target in panel["targets"]:
            assert target.get("format") == "table", f"{panel['title']} {target['refId']}"
            assert target.get("instant") is True, f"{panel['title']} {target['refId']}"


def test_datasource_provisioning():
    files = list((PROVISIONING / "datasources").glob("*.y*ml"))
    assert files, "no data source provisioning file"
    datasources = [source for path in files for source in yaml.safe_load(path.read_text())["datasources"]]
    prometheus = [source for source in datasources if source["type"] == "prometheus"]
    assert len(prometheus) == 1
    assert prometheus[0]["uid"], "the provisioned data source needs a fixed uid"
    assert prometheus[0].get("isDefault") is True, "the dashboard's datasource variable picks the default"


def test_dashboard_provisioning_loads_file():
    files = list((PROVISIONING / "dashboards").glob("*.y*ml"))
    assert files, "no dashboard provisioning file"
    providers = [provider for path in files for provider in yaml.safe_load(path.read_text())["providers"]]
    assert [provider["type"] for provider in providers] == ["file"]
    assert providers[0]["options"]["path"] == DASHBOARD_MOUNT


def test_dashboard_file_is_formatted_json():
    """The file is what json.dumps(indent=2) writes, so a UI export diff stays small."""
    text = DASHBOARD_FILE.read_text()
    assert text == json.dumps(json.loads(text), indent=2, ensure_ascii=False) + "\n"


def test_rules_file_is_valid_yaml():
    assert yaml.safe_load(RULES_FILE.read_text())["groups"]
