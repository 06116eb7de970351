"""deploy/grafana/breakglass-watcher.json: structure, datasource use and parsable PromQL.

``dashboard_queries`` is also the entry point for a live test that evaluates every query
against a real Prometheus (``from test_deploy_dashboard import dashboard_queries``).
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_deploy_alerts import CONTRACT_METRICS, metric_names, promtool

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "deploy" / "grafana" / "breakglass-watcher.json"
PROVISIONING = ROOT / "deploy" / "grafana" / "provisioning" / "dashboards.yaml"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}

# Grafana's built-in interval variables, replaced by values any Prometheus accepts.
GRAFANA_BUILTINS = {"__rate_interval": "5m", "__interval": "5m", "__range": "1h"}
_VARIABLE = re.compile(r"\$(?:\{(\w+)\}|(\w+))")


def _load(path: Path) -> dict[str, Any]:
    dashboard: dict[str, Any] = json.loads(path.read_text())
    return dashboard


def iter_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Every panel, depth first; the panels of a collapsed row are nested in the row."""
    for panel in panels:
        yield panel
        yield from iter_panels(panel.get("panels", []))


def substitute_variables(expr: str, dashboard: dict[str, Any]) -> str:
    """``expr`` with Grafana variables replaced: built-ins by fixed ranges, "All" by allValue."""
    all_values = {
        str(var["name"]): str(var["allValue"])
        for var in dashboard["templating"]["list"]
        if var.get("includeAll") and "allValue" in var
    }
    values = GRAFANA_BUILTINS | all_values

    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name not in values:
            raise ValueError(f"no value for Grafana variable ${name} in {expr!r}")
        return values[name]

    return _VARIABLE.sub(replace, expr)


def dashboard_queries(path: Path, *, substitute: bool = True) -> list[tuple[str, str]]:
    """(panel title or annotation name, expr) for every PromQL query of the dashboard.

    With ``substitute`` (the default) Grafana variables are replaced so that each expr can be
    sent to Prometheus as is; panels nested in rows, collapsed or not, are included.
    """
    dashboard = _load(path)
    queries = [
        (str(panel["title"]), str(target["expr"]))
        for panel in iter_panels(dashboard["panels"])
        for target in panel.get("targets", [])
        if "expr" in target
    ]
    queries += [
        (str(annotation["name"]), str(annotation["expr"]))
        for annotation in dashboard["annotations"]["list"]
        if "expr" in annotation
    ]
    if substitute:
        queries = [(title, substitute_variables(expr, dashboard)) for title, expr in queries]
    return queries


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return _load(DASHBOARD)


def test_identity_and_schema(dashboard: dict[str, Any]) -> None:
    assert dashboard["uid"] == "breakglass-watcher"
    assert 36 <= dashboard["schemaVersion"] <= 41
    assert dashboard["id"] is None, "a provisioned dashboard must not carry a database id"
    assert "__inputs" not in dashboard, "file provisioning does not resolve __inputs"


def test_datasource_is_a_prometheus_template_variable(dashboard: dict[str, Any]) -> None:
    variables = {var["name"]: var for var in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for var in variables.values():
        if var["type"] == "query":
            assert var["datasource"] == DATASOURCE
            assert metric_names(var["definition"]) <= CONTRACT_METRICS


def test_panel_ids_are_unique(dashboard: dict[str, Any]) -> None:
    ids = [panel["id"] for panel in iter_panels(dashboard["panels"])]
    assert len(ids) == len(set(ids))


def test_targets_have_unique_ref_ids_an_expr_and_the_variable_datasource(
    dashboard: dict[str, Any],
) -> None:
    for panel in iter_panels(dashboard["panels"]):
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == DATASOURCE, panel["title"]
        targets = panel["targets"]
        assert targets, panel["title"]
        ref_ids = [target["refId"] for target in targets]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]
        for target in targets:
            assert target["expr"].strip(), panel["title"]
            assert target["datasource"] == DATASOURCE, panel["title"]


def test_panels_do_not_overlap(dashboard: dict[str, Any]) -> None:
    cells: dict[tuple[int, int], str] = {}
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = panel["title"]


def test_annotations_mark_drills_and_unexpected_uses(dashboard: dict[str, Any]) -> None:
    annotations = dashboard["annotations"]["list"]
    queried = [a for a in annotations if not a.get("builtIn")]
    assert all(a["datasource"] == DATASOURCE for a in queried)
    exprs = " ".join(a["expr"] for a in queried)
    assert 'classification="unexpected"' in exprs
    assert 'classification="drill"' in exprs


def test_required_views_are_present() -> None:
    exprs = " ".join(expr for _, expr in dashboard_queries(DASHBOARD, substitute=False))
    for needle in (
        "breakglass_events_total",
        "breakglass_last_event_timestamp_seconds",
        'breakglass_exercise_windows_total{exercise=~"$exercise"}',
        "time() - (breakglass_principal_last_drill_timestamp_seconds",
        "breakglass_credential_check",
        "breakglass_source_up",
        "histogram_quantile(0.95, sum by (source, le) "
        "(rate(breakglass_detection_delay_seconds_bucket",
        "breakglass_exercise_last_window_start_timestamp_seconds",
        "max by (person) (breakglass_person_last_drill_timestamp_seconds",
    ):
        assert needle in exprs


def test_queries_read_only_contract_metrics() -> None:
    for title, expr in dashboard_queries(DASHBOARD):
        assert metric_names(expr) <= CONTRACT_METRICS, title


def test_every_query_parses_as_promql(tmp_path: Path) -> None:
    """promtool parses rule expressions: wrap each query in a recording rule and check them."""
    queries = dashboard_queries(DASHBOARD)
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:query_{index}", "expr": expr}
                    for index, (_, expr) in enumerate(queries)
                ],
            }
        ]
    }
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump(rules))
    result = subprocess.run(
        [promtool(), "check", "rules", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(queries)} rules found" in result.stdout


def test_dashboard_queries_handles_collapsed_rows(tmp_path: Path) -> None:
    collapsed = {
        "templating": {"list": [{"name": "principal", "includeAll": True, "allValue": ".*"}]},
        "annotations": {"list": [{"name": "marks", "expr": "up"}]},
        "panels": [
            {"type": "row", "title": "open", "panels": []},
            {
                "type": "row",
                "title": "folded",
                "collapsed": True,
                "panels": [
                    {
                        "type": "timeseries",
                        "title": "inside",
                        "targets": [{"refId": "A", "expr": 'x{p=~"$principal"}[$__rate_interval]'}],
                    }
                ],
            },
        ],
    }
    path = tmp_path / "d.json"
    path.write_text(json.dumps(collapsed))
    assert dashboard_queries(path) == [("inside", 'x{p=~".*"}[5m]'), ("marks", "up")]


def test_unknown_variables_are_an_error() -> None:
    with pytest.raises(ValueError, match=r"\$nope"):
        substitute_variables('up{a=~"$nope"}', {"templating": {"list": []}})


def test_provisioning_points_at_a_file_provider() -> None:
    config = yaml.safe_load(PROVISIONING.read_text())
    assert config["apiVersion"] == 1
    (provider,) = config["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"]


def test_counts_are_the_organisations_with_replicas_and_restarts(tmp_path: Path) -> None:
    """Three replicas each export the organisation's totals (8 → 13 in the hour); one of them
    restarts as a new series that starts at the restored total. The count panels show 5."""
    counts = {
        title: expr
        for title, expr in dashboard_queries(DASHBOARD)
        if title in {"Unexpected uses", "Drill uses"}
    }
    labels = 'job="breakglass-watcher", principal="bg", outcome="success"'
    series = [
        (f'breakglass_events_total{{{labels}, classification="{c}", instance="{i}"}}', values)
        for c in ("unexpected", "drill")
        for i, values in (
            ("a", "8x20 13x40"),
            ("b", "8x30 13x30"),
            ("c", "8x10 _x50"),  # stopped; its successor "d" started from the store's totals
            ("d", "_x10 8x15 13x35"),
        )
    ]
    tests = {
        "rule_files": [],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [{"series": s, "values": v} for s, v in series],
                "promql_expr_test": [
                    {
                        "expr": expr,
                        "eval_time": "60m",
                        "exp_samples": [{"labels": "{}", "value": 5}],
                    }
                    for expr in counts.values()
                ],
            }
        ],
    }
    assert len(counts) == 2
    path = tmp_path / "counts_test.yml"
    path.write_text(yaml.safe_dump(tests))
    result = subprocess.run(
        [promtool(), "test", "rules", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
